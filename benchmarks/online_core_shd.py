"""Does on-chip delay learning fit at the SHD size? The online core with axonal delays, synthesised.

    python benchmarks/online_core_shd.py --out benchmarks/online_core_shd.json

The learning core of :mod:`delrec.hw.online_core` at the input, hidden and
output size of the SHD network (C = 140 inputs, N = 256 neurons, K = 20
classes) with learnable axonal input delays (one per input channel), the
default :class:`~delrec.arith.FixedSpec` and a Gaussian-derivative LUT of up
to R = 768 entries, behind the seven-pin serial top, synthesised, placed
and routed with YoWASP yosys + nextpnr for each device. It is the
feedforward layer the learning core builds (its hidden layer has no
recurrent connections), so it is the lower bound of what the recurrent SHD
network with on-chip delay learning would need.

Each case records what synthesis measured; a design that does not fit
carries the resources over capacity and the memories with their bits, so
the report says which memory does not fit, not only that something does not.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from delrec.firmware.online import OnlineBuild
from delrec.hw.synth import DEVICES, synthesis_case, write_benchmark_report

SHD = dict(inputs=140, neurons=256, classes=20)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/online_core_shd.json"))
    parser.add_argument("--devices", nargs="+", default=["up5k", "ecp5-25f", "ecp5-85f"],
                        choices=sorted(DEVICES))
    parser.add_argument("--work", type=Path, default=Path("build/online_core_shd"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    build = OnlineBuild(**SHD, delay_kind="axonal", max_reach=768, learning=True)
    cases = []
    for device in args.devices:
        case = dict(name=f"{device}-learning", device=device)
        case.update(synthesis_case(build, device, args.work / device, seed=args.seed))
        cases.append(case)
        print(json.dumps({k: case.get(k) for k in ("name", "status", "lut", "ff", "bram", "spram", "dsp",
                                                  "fmax_mhz", "over_capacity", "wall_seconds")}),
              flush=True)
    report = dict(
        description="Online-learning core at the SHD size (C=140, N=256, K=20, learnable axonal "
                    "input delays, LUT up to R=768) behind the seven-pin serial top, synthesised, "
                    "placed and routed with YoWASP yosys and nextpnr",
        build=build.to_dict(),
        seed=args.seed,
        cases=cases,
    )
    write_benchmark_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
