"""What the synthesis tools report, parsed: cell counts, memory mapping, utilisation, timing.

The readers of the files a YoWASP run writes (:func:`delrec.hw.synth.synthesize`,
:func:`delrec.hw.boards.build_bitstream`): yosys' ``stat -json`` and log,
nextpnr's ``--report`` JSON and log. Plain text and JSON in, dictionaries out;
nothing here runs a tool.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["memory_mapping", "utilization_from_log", "summarize_critical_path", "cell_counts",
           "timing_from_report"]

# yosys cell types per resource class (flip-flops: every type with the prefix)
_CELLS = {
    "ice40": dict(lut4=("SB_LUT4",), carry=("SB_CARRY",), bram=("SB_RAM40_4K",),
                  spram=("SB_SPRAM256KA",), dsp=("SB_MAC16",), lutram=(), ff_prefix="SB_DFF"),
    "ecp5": dict(lut4=("LUT4",), carry=("CCU2C",), bram=("DP16KD", "PDPW16KD"), spram=(),
                 dsp=("MULT18X18D", "ALU54B"), lutram=("TRELLIS_DPR16X4",), ff_prefix="TRELLIS_FF"),
}
# nextpnr utilisation entries: logic cells (LUT4 + FF sites)
_LOGIC_BEL = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}


def memory_mapping(log_text: str, sizes: dict) -> dict:
    """Where yosys put every memory: a RAM cell type, ``"registers"`` or ``"removed"``.

    ``log_text`` is yosys' log, ``sizes`` the design's memories
    (:func:`delrec.hw.synth.memory_sizes`); each entry of the result is the
    memory's size with ``mapped_to`` added.
    """
    mapped = {}
    for name, cell in re.findall(r"mapping memory (\S+) via (\S+)", log_text):
        mapped[name] = cell.replace("$__", "").rstrip("_")
    for name in re.findall(r"Replacing memory \\?(\S+) with list of registers", log_text):
        mapped.setdefault(name, "registers")
    for name in re.findall(r"using FF mapping for memory (\S+)", log_text):  # memory_libmap
        mapped.setdefault(name, "registers")
    for name in re.findall(r"Mapping memory \\?(\S+) in module", log_text):  # memory_map
        mapped.setdefault(name, "registers")
    out = {}
    for name, size in sorted(sizes.items()):
        where = mapped.get(name)
        if where is None:
            # yosys logs flattened names; memory_map may print the bare memory id
            short = name.split(".", 1)[-1]
            where = mapped.get(short, "removed")
        out[name] = dict(size, mapped_to=where)
    return out


def utilization_from_log(log_text: str) -> dict:
    """nextpnr's "Device utilisation" table from its log (the last one printed)."""
    table = {}
    for bel, used, available in re.findall(r"^Info:\s+(\S+):\s+(\d+)/\s*(\d+)\s+\d+%", log_text, re.M):
        used, available = int(used), int(available)
        table[bel] = dict(used=used, available=available,
                          percent=round(100.0 * used / available, 2) if available else None)
    return table


def _count(cells: dict, types) -> int:
    return sum(int(cells.get(t, 0)) for t in types)


# where the names yosys and nextpnr derive for packed cells start to repeat the netlist
_DERIVED_NAME = re.compile(r"_(?:SB_|TRELLIS_|LUT4_|CCU2C_|DP16KD_|MULT18X18D_|PFUMX_|L6MUX21_|"
                           r"DFFLC|LC$|DSP$|\$)")


def _short_cell_name(name: str) -> str:
    """The design signal a nextpnr cell name starts with (``core.readout.values[0]``)."""
    match = _DERIVED_NAME.search(name)
    return name[:match.start()] if match and match.start() > 0 else name


#: nextpnr reports constant nets it drives into DSP clock pins as clocks: not real ones
_PSEUDO_CLOCK = re.compile(r"\$PACKER_(?:GND|VCC)_NET")


def summarize_critical_path(path_entry: dict, max_cells: int = 12) -> dict:
    """A short summary of one nextpnr ``critical_paths`` entry.

    Returns
    -------
    dict
        ``from_clock``, ``to_clock``, ``delay_ns`` (total), ``logic_ns``,
        ``routing_ns``, ``logic_levels``, ``start`` and ``end`` (``cell.port``),
        ``cells`` and ``nets``: the cells and nets along the path (at most
        ``max_cells`` each, the first and last kept; the names synthesis
        derives are cut back to the design signal they start with, which
        for logic merged by the tools can be a neighbouring signal's).
    """
    steps = path_entry.get("path", [])
    total = sum(float(s.get("delay", 0.0)) for s in steps)
    routing = sum(float(s.get("delay", 0.0)) for s in steps if s.get("type") == "routing")
    logic_steps = [s for s in steps if s.get("type") == "logic"]
    cells = []
    for step in steps:
        for end in ("from", "to"):
            cell = (step.get(end) or {}).get("cell")
            cell = cell and _short_cell_name(cell)
            if cell and (not cells or cells[-1] != cell):
                cells.append(cell)
    if len(cells) > max_cells:
        cells = cells[:max_cells // 2] + ["..."] + cells[-(max_cells // 2):]
    nets = []
    for step in steps:
        net = step.get("net")
        net = net and _short_cell_name(net)
        if net and net not in nets:
            nets.append(net)
    if len(nets) > max_cells:
        nets = nets[:max_cells // 2] + ["..."] + nets[-(max_cells // 2):]

    def port(step, end):
        point = (step or {}).get(end) or {}
        return f"{_short_cell_name(point.get('cell', '?'))}.{point.get('port', '?')}"

    return dict(
        from_clock=path_entry.get("from"), to_clock=path_entry.get("to"),
        delay_ns=round(total, 3), logic_ns=round(total - routing, 3), routing_ns=round(routing, 3),
        logic_levels=len(logic_steps),
        start=port(steps[0] if steps else None, "from"), end=port(steps[-1] if steps else None, "to"),
        cells=cells, nets=nets,
    )


def cell_counts(stat_json: Path, family: str) -> dict:
    """LUT4, FF, block RAM, SPRAM, DSP and every cell type from yosys' ``stat -json`` output."""
    stat = json.loads(Path(stat_json).read_text())
    cells = {k: int(v) for k, v in stat["design"].get("num_cells_by_type", {}).items()
             if not k.startswith("$scopeinfo")}
    kinds = _CELLS[family]
    counts = {key: _count(cells, kinds[key]) for key in ("lut4", "carry", "bram", "spram", "dsp", "lutram")}
    counts["ff"] = sum(n for t, n in cells.items() if t.startswith(kinds["ff_prefix"]))
    return dict(lut=counts["lut4"], ff=counts["ff"], bram=counts["bram"], spram=counts["spram"],
                dsp=counts["dsp"], cells=counts, cell_types=cells)


def timing_from_report(report: dict, family: str) -> dict:
    """Utilisation, fmax per clock, timing verdict and critical paths from nextpnr's ``--report``.

    Paths cut at an iCE40 DSP (nextpnr times the DSP as clocked by its
    constant clock net) are listed apart in ``dsp_split_paths`` with a note:
    ``fmax_mhz`` does not include them.
    """
    utilization = {}
    for bel, use in sorted(report.get("utilization", {}).items()):
        used, available = int(use.get("used", 0)), int(use.get("available", 0))
        utilization[bel] = dict(used=used, available=available,
                                percent=round(100.0 * used / available, 2) if available else None)
    fmax = {clock: dict(achieved=round(float(v["achieved"]), 2), constraint=round(float(v["constraint"]), 2))
            for clock, v in report.get("fmax", {}).items()}
    clocks = {c: v for c, v in fmax.items() if not _PSEUDO_CLOCK.search(c)}
    paths = report.get("critical_paths", [])
    cut = [summarize_critical_path(p) for p in paths if _PSEUDO_CLOCK.search(f"{p.get('from')} {p.get('to')}")]
    notes = []
    if cut:
        into = max((p["delay_ns"] for p in cut if not _PSEUDO_CLOCK.search(p["from_clock"] or "")), default=0.0)
        out_of = max((p["delay_ns"] for p in cut if not _PSEUDO_CLOCK.search(p["to_clock"] or "")), default=0.0)
        notes.append(
            f"nextpnr times the DSP blocks as if clocked by their constant CLK net: a path through "
            f"a combinational DSP is cut at the DSP and fmax_mhz does not include it (longest part "
            f"into a DSP {into:.1f} ns, out of one {out_of:.1f} ns; see dsp_split_paths). "
            f"Synthesise without DSPs (dsp=False) for a fully timed figure.")
    return dict(
        fmax_mhz=min((v["achieved"] for v in clocks.values()), default=None),
        utilization=utilization,
        logic_cells=utilization.get(_LOGIC_BEL[family], {}),
        fmax_per_clock=fmax,
        timing_met=bool(clocks) and all(v["achieved"] >= v["constraint"] for v in clocks.values()),
        critical_paths=[summarize_critical_path(p) for p in paths
                        if not _PSEUDO_CLOCK.search(f"{p.get('from')} {p.get('to')}")],
        dsp_split_paths=cut,
        timing_notes=notes,
    )
