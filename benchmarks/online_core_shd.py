"""Does on-chip delay learning fit at the SHD size? The online core with axonal delays, synthesised.

    python benchmarks/online_core_shd.py --out benchmarks/online_core_shd.json

The learning core of :mod:`delrec.hw.online_core` at the input, hidden and
output size of the SHD network (C = 140 inputs, N = 256 neurons, K = 20
classes) with learnable axonal input delays (one per input channel), the
default spec of the online rule and a Gaussian-derivative LUT of up
to R = 768 entries, behind the seven-pin serial top, synthesised, placed
and routed with YoWASP yosys + nextpnr for each device, in three modes:

* ``sample`` -- a per-sample learning signal from the host: weights and
  delays learn, two eligibility sums per synapse (feedforward);
* ``step`` -- a per-step signal formed on chip from the label, an update
  every step: the delays and the readout learn, the input weights stay; one
  delay trace per channel; the weights and the input history packed in
  single-port memory (SPRAM on the UP5K) (feedforward);
* ``recurrent`` -- the same with the hidden layer recurrent (256 x 256
  weights) and its 256 axonal recurrent delays learned too: the SHD DelRec
  network learning its delays on chip.

Each case records what synthesis measured, with the cycles of one learning
step (:func:`delrec.hw.online_ports.step_cycles`, checked against the RTL's
counter in the co-simulation tests) for a silent step and for one with 10 %
of the neurons firing, and the steps per second at the achieved fmax. A
design that does not fit carries the resources over capacity and the
memories with their bits, so the report says which memory does not fit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from delrec.firmware.online import OnlineBuild
from delrec.hw.online_ports import step_cycles
from delrec.hw.synth import DEVICES, synthesis_case, write_benchmark_report

SHD = dict(inputs=140, neurons=256, classes=20)
MAX_REACH = 768
#: (signal mode, device) measured by default
CASES = ["sample:up5k", "sample:ecp5-25f", "sample:ecp5-85f", "step:up5k", "step:ecp5-25f",
         "recurrent:up5k", "recurrent:ecp5-25f"]
MODES = {"sample": dict(signal="sample"), "step": dict(signal="step"),
         "recurrent": dict(signal="step", recurrent=True)}


def learning_step_cycles(build: OnlineBuild, spikes: int) -> int:
    """Cycles of one learning step that counts, every channel reading three LUT taps."""
    g = build.geometry
    per_step = g.signal == "step"
    return step_cycles(g, spikes=spikes, taps=3 * g.channels, learn=True,
                       eligibility_passes=0 if per_step else spikes,
                       step_update=per_step, delays_learn=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/online_core_shd.json"))
    parser.add_argument("--cases", nargs="+", default=CASES,
                        help="MODE:DEVICE pairs, MODE in sample/step/recurrent, DEVICE in "
                             + "/".join(sorted(DEVICES)))
    parser.add_argument("--work", type=Path, default=Path("build/online_core_shd"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    builds, cases = {}, []
    for spec in args.cases:
        mode, _, device = spec.partition(":")
        if mode not in MODES or device not in DEVICES:
            parser.error(f"Case must be MODE:DEVICE with MODE one of {sorted(MODES)} and DEVICE one "
                         f"of {sorted(DEVICES)}, not {spec!r}")
        build = builds.setdefault(mode, OnlineBuild(**SHD, delay_kind="axonal", max_reach=MAX_REACH,
                                                    learning=True, **MODES[mode]))
        case = dict(name=f"{device}-{mode}", device=device, mode=mode)
        case.update(synthesis_case(build, device, args.work / f"{mode}-{device}", seed=args.seed))
        cycles = {"silent": learning_step_cycles(build, 0),
                  "spikes_10_percent": learning_step_cycles(build, SHD["neurons"] // 10)}
        case["learning_step_cycles"] = cycles
        if case.get("fmax_mhz"):
            case["learning_steps_per_second"] = {k: case["fmax_mhz"] * 1e6 / v for k, v in cycles.items()}
        cases.append(case)
        print(json.dumps({k: case.get(k) for k in ("name", "status", "lut", "ff", "bram", "spram", "dsp",
                                                  "fmax_mhz", "over_capacity", "learning_step_cycles",
                                                  "wall_seconds")}), flush=True)
    report = dict(
        description="Online-learning core at the SHD size (C=140, N=256, K=20, learnable axonal "
                    "input delays, LUT up to R=768) behind the seven-pin serial top: per-sample and "
                    "per-step learning signal, and per-step with a recurrent hidden layer and "
                    "learnable axonal recurrent delays; synthesised, placed and routed with YoWASP "
                    "yosys and nextpnr",
        builds={mode: build.to_dict() for mode, build in builds.items()},
        seed=args.seed,
        cases=cases,
    )
    write_benchmark_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
