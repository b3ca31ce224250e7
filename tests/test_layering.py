"""The package's layers (DESIGN.md): the engine never imports the tools built on top of it.

``flashmd/learn`` (the active-learning loop) calls data, train and md, and ``flashmd/bench`` times
them; neither may be imported by the engine's packages, at module level or inside a function, so
the engine stays usable (and importable) without them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "flashmd"
ENGINE = ("nn", "data", "models", "train", "md", "analysis", "ase")
TOOLS = ("flashmd.learn", "flashmd.bench")


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, anywhere in the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", ENGINE)
def test_engine_does_not_import_learning_or_benchmarks(package):
    offenders = {
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for name in imported_modules(path)
        if any(name == tool or name.startswith(tool + ".") for tool in TOOLS)
    }
    assert not offenders, sorted(offenders)


def test_the_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from flashmd.bench.speed import bench_speed\n")
    assert "flashmd.bench.speed" in imported_modules(module)
