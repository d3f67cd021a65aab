"""harness.stats sits below the report and the runner: its modules import numpy, scipy and each other,
never torch, matplotlib, pandas or another harness package (read from the source, not by importing)."""

import ast
from pathlib import Path

import harness.stats

PACKAGE = Path(harness.stats.__file__).parent
ALLOWED = ("__future__", "collections", "dataclasses", "functools", "math", "typing", "warnings", "numpy",
           "scipy", "harness.stats")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            names.add(node.module)
    return names


def test_stats_imports_nothing_upward():
    modules = sorted(PACKAGE.glob("*.py"))
    assert {m.stem for m in modules} >= {"rates", "two_rates", "multiplicity", "paired", "survival", "frontier",
                                         "d50_ratio", "summaries"}
    for m in modules:
        for name in _imports(m):
            assert name.split(".")[0] in {a.split(".")[0] for a in ALLOWED}, f"{m.name} imports {name}"
            assert not name.startswith("harness") or name.startswith("harness.stats"), f"{m.name} imports {name}"
