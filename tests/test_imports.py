"""Imports run one way: CLI (sfm_fusion.cli) -> stages (sfm_fusion.stages) -> library (the rest
of sfm_fusion).

Parses every module of the package: no import cycle, no library -> stages import, and no
project import hidden inside a function outside the CLI (the CLI imports lazily so that
`pipeline --help` does not load torch; anywhere else a function-level import is how a cycle hides).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sfm_fusion",)


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
            if in_func and not m.startswith("sfm_fusion.cli"):
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


def _is_library(mod: str) -> bool:
    return not mod.startswith(("sfm_fusion.cli", "sfm_fusion.stages"))


def test_library_never_imports_stages():
    edges, _ = _graph()
    up = sorted(
        (m, t)
        for m, ts in edges.items()
        for t in ts
        if _is_library(m) and t.startswith("sfm_fusion.stages")
    )
    assert up == []


def test_no_project_imports_hidden_in_functions():
    _, hidden = _graph()
    assert sorted(set(hidden)) == []
