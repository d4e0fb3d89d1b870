"""The package's layers.

Imports (lazy ones included) only point to the same or an earlier layer, so no two packages import
each other and the data flow reads one way: data -> models -> training -> inference -> results.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "brats_seg"

# Earlier layers first. A module may import its own layer and any earlier one.
LAYERS: list[set[str]] = [
    {
        "__init__",
        "__version__",
        "errors",
        "atomic",
        "outputs",
        "memory",
        "config",
        "config_schema",
        "tf_import",
    },
    {"data"},
    {"metrics"},
    {"viz"},
    {"models", "losses"},
    {"runfolder"},
    {"training"},
    {"inference"},
    {"results"},
    {"jobs"},
    {"commands"},
    {"cli", "__main__"},
]


def _unit(parts: tuple[str, ...]) -> str:
    """The layer unit of a module path inside brats_seg.

    Its sub-package, or the root module's name.
    """

    return parts[0].removesuffix(".py")


def _layer(unit: str) -> int:
    for i, layer in enumerate(LAYERS):
        if unit in layer:
            return i
    raise AssertionError(f"brats_seg.{unit} is in no layer of tests/test_layout.py; add it")


def _imports(path: Path) -> set[str]:
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("brats_seg"):
            names = node.module.split(".")[1:] or [alias.name for alias in node.names]
            targets.update(names[:1] if node.module != "brats_seg" else names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("brats_seg."):
                    targets.add(alias.name.split(".")[1])
    return targets


def test_every_import_points_to_an_earlier_or_the_same_layer():
    backwards = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).parts
        if rel[0] == "configs":
            continue
        unit = _unit(rel)
        for target in _imports(path):
            if target == "configs":
                continue
            if _layer(target) > _layer(unit):
                backwards.append(f"{'/'.join(rel)} imports brats_seg.{target}")
    assert not backwards, "imports against the layer order:\n" + "\n".join(backwards)


def test_the_scanner_sees_lazy_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    from brats_seg.results import table\n    import brats_seg.jobs.train\n"
    )
    assert _imports(probe) == {"results", "jobs"}


def test_no_test_module_imports_another():
    """Shared test helpers live in tests/conftest.py (lazy imports included)."""
    tests = Path(__file__).resolve().parent
    offenders = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            offenders += [
                f"{path.relative_to(tests)} imports {n}"
                for n in names
                if n.split(".")[-1].startswith("test_")
            ]
    assert not offenders, "\n".join(offenders)


def test_no_two_test_modules_share_a_name():
    """The test folders are not packages (pytest imports each module by its file name, and
    `from conftest import ...` finds tests/conftest.py), so two files of one name would clash."""
    tests = Path(__file__).resolve().parent
    names: dict[str, list[str]] = {}
    for path in sorted(tests.rglob("*.py")):
        names.setdefault(path.name, []).append(path.relative_to(tests).as_posix())
    clashes = {name: paths for name, paths in names.items() if len(paths) > 1}
    assert not clashes, clashes
    assert not list(tests.rglob("__init__.py")), "the test folders are not packages"
