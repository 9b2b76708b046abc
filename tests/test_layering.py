"""The layering of the packages, read from the source (``ast``; nothing is imported).

Every ``.py`` file of ``golden/``, ``hw/``, ``sim/``, ``firmware/`` and the
root ``delrec/`` folder is parsed and every import collected, function-local
and relative ones included (``from .x import y`` is resolved against the
file's package: ``golden/`` is ``delrec.golden``, and so on). The rules:

* ``delrec.golden`` (PyTorch models) never imports the gateware, the
  simulation, the firmware, the command line or Amaranth/cocotb;
* ``delrec.hw`` (gateware) never imports torch, the golden models, the
  firmware, the simulation or the command line;
* ``delrec.firmware`` (compiler, protocol, driver) never imports the
  simulation, the golden models, torch or the command line;
* the plain modules (``delrec.arith``, ``delrec.build``, ``delrec.image``,
  ``delrec.wire``, ``delrec.settings``) import none of torch, Amaranth,
  cocotb or the packages above, so that every side can import them.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parent.parent

#: Package of each source folder (the layout of ``pyproject.toml``).
FOLDERS = {"delrec": "delrec", "golden": "delrec.golden", "hw": "delrec.hw", "sim": "delrec.sim",
           "firmware": "delrec.firmware"}

_SIDES = ("delrec.golden", "delrec.hw", "delrec.sim", "delrec.firmware", "delrec.cli", "delrec.demo")
PLAIN_MODULES = ("delrec.arith", "delrec.build", "delrec.image", "delrec.wire", "delrec.settings")

#: ``(importer, forbidden imports)``: a module is the importer or inside it (prefix up to a dot).
RULES = [
    ("delrec.golden", ("delrec.hw", "delrec.sim", "delrec.firmware", "delrec.cli", "delrec.demo",
                       "amaranth", "cocotb")),
    ("delrec.hw", ("torch", "delrec.golden", "delrec.firmware", "delrec.sim", "delrec.cli")),
    ("delrec.firmware", ("delrec.sim", "delrec.golden", "torch", "delrec.cli")),
] + [(plain, ("torch", "amaranth", "cocotb") + _SIDES) for plain in PLAIN_MODULES]

#: Known violations in files this change could not edit, each with why: ``(file, line, imported module)``.
#: Remove an entry once its import is gone (a stale entry fails the test too).
ALLOWED: set[tuple[str, int, str]] = set()

#: The fewest files each package must have, so that the walk cannot pass by finding nothing.
MIN_FILES = {"delrec": 8, "delrec.golden": 12, "delrec.hw": 15, "delrec.sim": 8, "delrec.firmware": 4}


class Import(NamedTuple):
    file: str       # relative to the repository
    line: int
    importer: str   # the importing module
    module: str     # the imported module (for ``from a import b``: ``a`` and ``a.b``)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def module_name(path: Path) -> str:
    """The dotted name of a source file (``hw/core.py`` -> ``delrec.hw.core``)."""
    relative = path.relative_to(REPO)
    parts = [FOLDERS[relative.parts[0]], *relative.parts[1:-1]]
    if relative.stem != "__init__":
        parts.append(relative.stem)
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False, file: str = "<source>") -> list[Import]:
    """Every import of a module's source, anywhere in it, relative ones resolved.

    Parameters
    ----------
    source : str
        The module's text.
    module : str
        Its dotted name.
    is_package : bool
        Whether it is a package's ``__init__`` (relative imports then start from it).
    """
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source, filename=file)):
        if isinstance(node, ast.Import):
            found += [Import(file, node.lineno, module, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            # ``from a import b`` may import the module ``a.b``: check both
            found.append(Import(file, node.lineno, module, base))
            found += [Import(file, node.lineno, module, f"{base}.{alias.name}") for alias in node.names
                      if alias.name != "*"]
    return found


def violations(imports) -> list[Import]:
    """The imports that break :data:`RULES`: the first culprit of each import statement."""
    bad, statements = [], set()
    for imp in imports:
        statement = (imp.file, imp.line, imp.importer)
        if statement in statements:
            continue
        for importer, forbidden in RULES:
            if _within(imp.importer, importer) and any(_within(imp.module, f) for f in forbidden):
                statements.add(statement)
                bad.append(imp)
                break
    return bad


def source_files() -> list[Path]:
    return sorted(path for folder in FOLDERS for path in (REPO / folder).rglob("*.py")
                  if "__pycache__" not in path.parts)


def test_walk_finds_every_package():
    counts = {package: 0 for package in FOLDERS.values()}
    for path in source_files():
        counts[FOLDERS[path.relative_to(REPO).parts[0]]] += 1
    for package, least in MIN_FILES.items():
        assert counts[package] >= least, f"found {counts[package]} files of {package}, expected >= {least}"
    names = {module_name(path) for path in source_files()}
    for plain in PLAIN_MODULES:
        assert plain in names, f"{plain} not found"


def test_layering():
    imports = []
    for path in source_files():
        imports += imports_of(path.read_text(), module_name(path), path.name == "__init__.py",
                              str(path.relative_to(REPO)))
    assert len(imports) > 200, "too few imports found: is the walk broken?"
    found = violations(imports)
    reported = {(imp.file, imp.line, imp.module) for imp in found}
    unexpected = [imp for imp in found if (imp.file, imp.line, imp.module) not in ALLOWED]
    assert not unexpected, "layering violations:\n" + "\n".join(
        f"{imp.file}:{imp.line}: {imp.importer} imports {imp.module}" for imp in unexpected)
    stale = ALLOWED - reported
    assert not stale, f"allowed violations that no longer occur (remove them from ALLOWED): {sorted(stale)}"


@pytest.mark.parametrize("module, is_package, source, culprit", [
    ("delrec.hw.fake", False, "import torch\n", "torch"),
    ("delrec.hw.fake", False, "def f():\n    from delrec.firmware.protocol import SYNC\n",
     "delrec.firmware.protocol"),
    ("delrec.hw.fake", False, "from ..firmware import protocol\n", "delrec.firmware"),
    ("delrec.golden.tasks.fake", False, "from ...sim import cosim\n", "delrec.sim"),
    ("delrec.golden", True, "from ..hw.core import InferenceCore\n", "delrec.hw.core"),
    ("delrec.golden.fake", False, "from delrec import cli\n", "delrec.cli"),
    ("delrec.firmware.fake", False, "import delrec.sim.cosim as cosim\n", "delrec.sim.cosim"),
    ("delrec.wire", False, "from .hw.ports import Counter\n", "delrec.hw.ports"),
    ("delrec.settings", False, "from amaranth.hdl import Signal\n", "amaranth.hdl"),
    ("delrec.build", False, "if True:\n    import cocotb\n", "cocotb"),
])
def test_checker_reports_a_forbidden_import(module, is_package, source, culprit):
    found = violations(imports_of(source, module, is_package))
    assert [(imp.line, imp.importer, imp.module) for imp in found] == [
        (source.count("\n", 0, source.index("import")) + 1, module, culprit)]


@pytest.mark.parametrize("module, source", [
    ("delrec.hw.fake", "from delrec.wire import SYNC\nfrom delrec.build import CoreBuild\n"),
    ("delrec.firmware.fake", "from delrec.hw.ports import Counter\nfrom .protocol import encode_frame\n"),
    ("delrec.golden.fake", "import torch\nfrom delrec.settings import key_value\nfrom .lif import LIF\n"),
    ("delrec.sim.fake", "from delrec.golden.fixed import run_fixed\nimport cocotb\n"),
    ("delrec.cli", "from delrec.hw.synth import DEVICES\nimport torch\n"),
    ("delrec.wire", "from .arith import DELAY_KINDS\nfrom .build import QUEUE_KINDS\n"),
])
def test_checker_accepts_allowed_imports(module, source):
    assert violations(imports_of(source, module)) == []
