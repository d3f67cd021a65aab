"""The import graph of `harness/` has no cycle, and every import inside a function says why it is there.

Read from the source with `ast` (nothing is imported): every `import` and `from … import`, at module level, in
functions and under `if TYPE_CHECKING:` alike. `from pkg import name` is an edge to `pkg.name` when that is a
module, else to `pkg`; importing `pkg.mod` from outside `pkg` is an edge to `pkg` too (Python runs its
`__init__` first).
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import harness

ROOT = Path(harness.__file__).parent
# Function-level imports of these need a reason: a harness module, or a library some modules must not load.
HEAVY = {"harness", "torch", "optuna", "mlflow", "wandb", "tensorboard", "submitit", "matplotlib"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(name: str, path: Path, tree: ast.Module | None = None) -> list[tuple[str, ast.stmt, bool]]:
    """(imported module, statement, inside a function) for every import statement of a module (`tree`:
    its source parsed already)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, ast.stmt, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, child, inner) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([child.module] if child.module else []))
                out.extend((f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base, child, inner)
                           for a in child.names)
            visit(child, inner)

    visit(tree or ast.parse(path.read_text(encoding="utf-8")), False)
    return out


def graph() -> dict[str, set[str]]:
    """harness module -> the harness modules it imports (anywhere in it), with the packages Python runs
    first: importing harness.queue.backends runs harness/queue/__init__.py (unless the importer is inside
    that package already; `harness` itself, which imports nothing at load, is left out)."""
    out = {}
    for name, path in MODULES.items():
        targets = {m for m, _, _ in imports(name, path) if m in MODULES}
        parents = {".".join(m.split(".")[:i]) for m in targets for i in range(2, m.count(".") + 1)}
        out[name] = {m for m in targets | parents if m != name and not name.startswith(m + ".")}
    return out


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, …, a], or None (depth-first search, white/grey/black)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(edges):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"y2"}, "y2": {"y"}}) == ["y", "y2", "y"]


def test_the_graph_sees_module_level_function_level_and_submodule_imports():
    g = graph()
    assert "harness.names" in g["harness.models"]                 # import at module level
    assert "harness.device" in g["harness.plan"]                  # inside check_devices
    assert "harness.report.outcomes" in g["harness.report"]       # from harness.report import outcomes as O
    assert "harness.report.data" in g["harness.report.sections"]  # under TYPE_CHECKING
    assert "harness.queue" in g["harness.storage"]                # harness.queue.backends runs it first
    assert "harness.report" not in g["harness.report.sections"]   # its own package: not an edge


def test_the_harness_imports_in_no_circle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _comment_lines(source: str) -> set[int]:
    return {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT}


def unexplained_imports() -> list[str]:
    """Function-level imports of a harness module or a HEAVY library without a comment. A run of
    consecutive import statements shares one reason: a comment on any of their lines or on the line
    just above the first."""
    missing = []
    for name, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        comments = _comment_lines(source)
        statements = {id(s) for m, s, inner in imports(name, path, tree) if inner and m.split(".")[0] in HEAVY}
        if not statements:
            continue
        # Group each checked statement with the import statements right before it in the same body.
        for node in ast.walk(tree):
            for field in ("body", "orelse", "finalbody", "handlers"):
                body = getattr(node, field, None)
                if not isinstance(body, list):
                    continue
                run: list[ast.stmt] = []
                for stmt in [*body, None]:
                    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                        run.append(stmt)
                        continue
                    if run:
                        lines = {n for s in run for n in range(s.lineno, s.end_lineno + 1)} | {run[0].lineno - 1}
                        if not lines & comments:
                            missing += [f"{path.relative_to(ROOT.parent)}:{s.lineno}: {ast.unparse(s)}"
                                        for s in run if id(s) in statements]
                    run = []
    return sorted(set(missing))


def test_every_function_level_import_says_why():
    missing = unexplained_imports()
    assert not missing, ("a function-level import with no reason (a comment on its line or the line above: start-up "
                         "time, or keeping torch / Optuna / a tracker out of a module that must not load it):\n"
                         + "\n".join(missing))
