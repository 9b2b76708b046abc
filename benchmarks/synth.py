"""What the SHD-size inference core costs on open FPGAs (YoWASP yosys + nextpnr).

    python benchmarks/synth.py --seeds 1 2 --out benchmarks/synth_shd.json
    python benchmarks/synth.py --devices up5k --queues history --out build/synth_up5k.json

The network of the Spiking Heidelberg Digits setting: C = 140 inputs, N = 256
recurrent neurons with axonal delays up to 63 (D = 64), K = 20 classes, the
default :class:`~delrec.arith.CoreSpec` (8-bit weights, 16-bit membranes and
accumulators, multiply leak), one lane (P = 1). Each case wraps the core in the
seven-pin serial top level (:mod:`delrec.hw.synth_top`) and runs
:func:`delrec.hw.synth.synthesize` for one device and one delay queue. With
``--no-dsp-variant`` left off, the UP5K is also run without DSP blocks:
nextpnr-ice40 cuts the timing of paths at its combinational DSPs, so only that
run times every path.

A case that does not fit the device is recorded with what synthesis measured,
the resources over capacity and nextpnr's error, not dropped. With several
``--seeds`` every case is placed and routed once per placer seed, and
``fmax_by_seed`` gives each case's lowest, median and highest fmax: the
placer's luck moves a design near its limit by several MHz.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from delrec.arith import CoreSpec
from delrec.build import QUEUE_KINDS, CoreBuild
from delrec.hw.synth import DEVICES, synthesis_case, write_benchmark_report

SHD = dict(inputs=140, neurons=256, classes=20, lanes=1)


def run_case(device: str, queue: str, dsp: bool, work: Path, seed: int) -> dict:
    build = CoreBuild(spec=CoreSpec(), queue=queue, **SHD)
    name = f"{device}-{queue}" + ("" if dsp else "-nodsp")
    case = dict(name=name, device=device, queue=queue, dsp_blocks_allowed=dsp, seed=seed)
    case.update(synthesis_case(build, device, work / f"{name}-seed{seed}", seed=seed, dsp=dsp))
    return case


def fmax_by_seed(cases: list) -> dict:
    """``{case name: {"seeds", "min", "median", "max"}}`` over the cases that placed and routed."""
    by_name = {}
    for case in cases:
        if case.get("fmax_mhz") is not None:
            by_name.setdefault(case["name"], []).append((case["seed"], case["fmax_mhz"]))
    return {name: dict(seeds=[s for s, _ in runs], min=min(f for _, f in runs), max=max(f for _, f in runs),
                       median=round(statistics.median(f for _, f in runs), 2))
            for name, runs in by_name.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/synth_shd.json"))
    parser.add_argument("--devices", nargs="+", default=["up5k", "ecp5-25f"], choices=sorted(DEVICES))
    parser.add_argument("--queues", nargs="+", default=["history", "ring"], choices=QUEUE_KINDS)
    parser.add_argument("--no-dsp-variant", action="store_true",
                        help="skip the UP5K run without DSP blocks")
    parser.add_argument("--work", type=Path, default=Path("build/synth_bench"),
                        help="folder of the tool runs (logs, netlists, reports)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="nextpnr placer seeds")
    args = parser.parse_args(argv)

    plan = [(device, queue, True) for queue in args.queues for device in args.devices]
    if not args.no_dsp_variant and "up5k" in args.devices and "history" in args.queues:
        plan.append(("up5k", "history", False))
    cases = []
    for device, queue, dsp in plan:
        for seed in args.seeds:
            case = run_case(device, queue, dsp, args.work, seed)
            cases.append(case)
            print(json.dumps({k: case.get(k) for k in ("name", "seed", "status", "lut", "ff", "bram", "spram",
                                                      "dsp", "fmax_mhz", "over_capacity", "wall_seconds")}),
                  flush=True)
            if case.get("status") == "does_not_fit":
                break   # another seed does not change what fits
    report = dict(
        description="SHD-size DelRec inference core (C=140, N=256, D=64, K=20, 8-bit weights, "
                    "P=1) behind the seven-pin serial top level, synthesised, placed and routed "
                    "with YoWASP yosys and nextpnr",
        network=dict(SHD, spec=CoreSpec().to_dict()),
        seeds=args.seeds,
        cases=cases,
        fmax_by_seed=fmax_by_seed(cases),
    )
    write_benchmark_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
