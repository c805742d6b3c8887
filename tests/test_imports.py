"""Imports run one way: the CLI (pipeline.cli) -> the library (the rest of pipeline), and the
DVC stages (the checkout's top-level stages/) -> the library.

Parses every module of both: no import cycle, the library imports neither the CLI nor the
stages, the CLI and the stages never import each other, and no project import is hidden inside
a function outside the CLI (the CLI imports lazily so that `pipeline --help` does not load
torch; anywhere else a function-level import is how a cycle hides).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _imports(mod: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported project module, inside a function?) for every import statement of `mod`."""
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            f = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                    base = ".".join(up[: len(up) - (child.level - 1)] + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in child.names]
            for n in names:
                r = _resolve(n, mods)
                if r and r != mod:
                    out.append((r, f))
            visit(child, f)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return out


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    hidden = []
    for m, p in mods.items():
        for target, in_func in _imports(m, p, mods):
            edges[m].add(target)
            if in_func and not m.startswith("pipeline.cli"):
                hidden.append((m, target))
    return edges, hidden


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_planted_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    edges, _ = _graph()
    assert _cycles(edges) == []


def _side(mod: str) -> str:
    """cli | stages | library."""
    if mod == "pipeline.cli" or mod.startswith("pipeline.cli."):
        return "cli"
    if mod == "stages" or mod.startswith("stages."):
        return "stages"
    return "library"


def test_imports_run_one_way():
    """library -> nothing above it; cli and stages -> library only (never each other)."""
    edges, _ = _graph()
    wrong = sorted(
        (m, t)
        for m, ts in edges.items()
        for t in ts
        if _side(t) != "library" and _side(t) != _side(m)
    )
    assert wrong == []


def test_one_way_check_sees_a_planted_upward_import():
    assert _side("pipeline.cli.train") == "cli" and _side("stages.train") == "stages"
    assert _side("pipeline.train.loop") == "library" and _side("pipeline.client") == "library"


def test_no_project_imports_hidden_in_functions():
    _, hidden = _graph()
    assert sorted(set(hidden)) == []
