"""The one core, with and without its learning unit, beside the learning core it replaces.

    python benchmarks/one_core.py --out benchmarks/one_core.json            # everything (about 30 min)
    python benchmarks/one_core.py --cases shd:learning:up5k --no-cosim       # one synthesis

Synthesis (YoWASP yosys + nextpnr, behind the seven-pin serial top) of three
designs at two sizes on the iCE40 UP5K and the ECP5-25F, side by side in one
run:

* ``inference`` -- :class:`delrec.hw.core.InferenceCore` without learning
  (spike-history queue, 8-bit weights, :class:`~delrec.arith.CoreSpec`);
* ``learning`` -- the same core with its learning unit, per-step signal,
  axonal input and recurrent delays learning, the readout learning
  (``LEARNING_SPEC``: learning fractions of 8 weight and 6 delay bits; a
  Gaussian-derivative table of up to R = 768, ``sigma`` up to 4 steps); at
  the SHD size in the shared memory that lets the UP5K's SPRAMs hold it;
* ``online`` -- the learning core of :mod:`delrec.hw.online_core` it
  replaces, at equal function (per-step signal, recurrent, axonal delays
  learning, the same table).

Sizes: ``demo`` (32 inputs, 64 neurons, 4 classes: the network ``delrec
demo`` trains and deploys) and ``shd`` (140, 256, 20, D = 64).

With co-simulation (the default), the SHD-size learning core also runs in
Verilator on random input at about 10 % of the neurons firing, learning every
step bit-exact with the golden rule; the core's ``CYCLES`` counter of each
learning step, divided by the fmax nextpnr reports on the UP5K, gives the
time of one learning step (an SHD bin is 10 ms).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIZES = {"demo": (32, 64, 4), "shd": (140, 256, 20)}
DESIGNS = ("inference", "learning", "online")
DEVICES = ("up5k", "ecp5-25f")
MAX_REACH = 768
#: Input spike probability per channel and step of the SHD-size co-simulation; with its weights
#: (``input_gain`` 4.5) and input delays (0-8 steps), about 10 % of the neurons fire per step
#: once the delayed inputs arrive (from the fourth step).
INPUT_RATE = 0.1
SETTLED = 3


def build_of(size: str, design: str):
    """The hardware configuration of one case."""
    from delrec.arith import CoreSpec
    from delrec.build import CoreBuild
    from delrec.firmware.online import OnlineBuild
    from delrec.golden.online_fixed import LEARNING_SPEC

    C, N, K = SIZES[size]
    if design == "inference":
        return CoreBuild(C, N, K, CoreSpec(), queue="history")
    if design == "learning":
        return CoreBuild(C, N, K, LEARNING_SPEC, queue="history", input_delays="axonal", learning="step",
                         max_reach=MAX_REACH, shared_memory=size == "shd")
    return OnlineBuild(C, N, K, delay_kind="axonal", max_reach=MAX_REACH, signal="step", recurrent=True)


def synthesize_cases(cases: list[str], work: Path) -> dict:
    from delrec.hw.synth import synthesis_case

    out = {}
    for case in cases:
        size, design, device = case.split(":")
        began = time.perf_counter()
        result = synthesis_case(build_of(size, design), device, work / size / design / device)
        print(f"{case}: {result['status']} in {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
        out[case] = result
    return out


def cosimulate_learning_steps(steps: int, seed: int, work: Path) -> dict:
    """The SHD-size learning core on random input, about 10 % of the neurons firing: cycles per step."""
    from delrec.arith import LearningRates
    from delrec.golden.online import OnlineConfig
    from delrec.golden.online_fixed import LEARNING_SPEC, FixedOnlineNetwork
    from delrec.sim.learning import LearningSample, cosimulate_learning

    C, N, K = SIZES["shd"]
    build = build_of("shd", "learning")
    config = OnlineConfig(inputs=C, hidden=N, classes=K, input_delays="axonal", recurrent=True,
                          recurrent_delays="axonal", reset="hard", gate_traces=False, tau=1.05,
                          signal="step", update_every=1, learn_weights=False, sigma=1.0, radius=3.0,
                          delay_init=(0.0, 8.0), input_gain=4.5, recurrent_gain=1.5, readout_gain=1.0)
    net = FixedOnlineNetwork(config, LEARNING_SPEC, LearningRates(lr_delay_shift=24, lr_readout_shift=4),
                             seed=seed)
    rng = np.random.default_rng(seed)
    x = (rng.random((steps, C)) < INPUT_RATE).astype(np.int64)
    began = time.perf_counter()
    result = cosimulate_learning(net, [LearningSample(x=x, label=int(rng.integers(K)))], build=build,
                                 stall=0.0, check_state=False, build_root=work / "sim", work_dir=work / "cosim")
    spikes = np.zeros(steps)
    for t, _ in result.spikes[0]:
        spikes[t] += 1
    return dict(steps=steps, input_rate=INPUT_RATE, cycles=result.cycles[0], firing=(spikes / N).tolist(),
                firing_mean=float(spikes.mean() / N), wall_seconds=time.perf_counter() - began,
                bit_exact=True)


def summary(synth: dict, cosim: dict | None) -> dict:
    """The table of the README: resources and fmax per case; the SHD learning step's time."""
    keys = ("lut", "ff", "bram", "spram", "dsp", "fmax_mhz")
    table = {case: {"status": r["status"], **{k: r.get(k) for k in keys},
                    "logic_cells_percent": (r.get("logic_cells") or {}).get("percent")}
             for case, r in synth.items()}
    out = {"table": table}
    for size in SIZES:
        for device in DEVICES:
            one, old = synth.get(f"{size}:learning:{device}"), synth.get(f"{size}:online:{device}")
            if one and old and one.get("lut") and old.get("lut"):
                out[f"lut_ratio_{size}_{device}"] = one["lut"] / old["lut"]
    learning = synth.get("shd:learning:up5k", {})
    if cosim and learning.get("fmax_mhz"):
        cycles = np.asarray(cosim["cycles"][SETTLED:], dtype=float)   # once the delayed inputs arrive
        out["shd_learning_step"] = dict(cycles_mean=float(cycles.mean()), cycles_max=float(cycles.max()),
                                        fmax_mhz=learning["fmax_mhz"],
                                        ms_mean=float(cycles.mean() / learning["fmax_mhz"] / 1e3),
                                        ms_max=float(cycles.max() / learning["fmax_mhz"] / 1e3),
                                        firing_mean=float(np.mean(cosim["firing"][SETTLED:])),
                                        steps_measured=len(cycles))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=[f"{s}:{d}:{v}" for s in SIZES for d in DESIGNS
                                                       for v in DEVICES],
                        help="size:design:device (sizes %s, designs %s, devices %s)" % (
                            list(SIZES), list(DESIGNS), list(DEVICES)))
    parser.add_argument("--no-cosim", action="store_true", help="skip the SHD-size learning co-simulation")
    parser.add_argument("--steps", type=int, default=16, help="co-simulated learning steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=REPO / "build" / "one_core")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    for case in args.cases:
        size, design, device = (case.split(":") + ["", "", ""])[:3]
        if size not in SIZES or design not in DESIGNS or device not in DEVICES:
            parser.error(f"Case {case!r} is not size:design:device with size in {list(SIZES)}, design in "
                         f"{list(DESIGNS)}, device in {list(DEVICES)}")
    synth = synthesize_cases(args.cases, args.work)
    cosim = None if args.no_cosim else cosimulate_learning_steps(args.steps, args.seed, args.work)
    report = dict(benchmark="one_core", cases=synth, cosim=cosim, summary=summary(synth, cosim))
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(args.out)
    print(json.dumps(report["summary"], indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
