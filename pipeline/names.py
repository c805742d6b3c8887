"""The names users type, known without importing torch: a light table the registries fill.

An interface named `X` lives in `pipeline/interfaces/X.py` and a task named `X` in
`pipeline/tasks/X.py`; the module registers its class with one `register(...)` line (see those
packages). So the names are the package's module files (minus its helpers), listed without
importing them, plus whatever `register` was called with in this process (an extension
registered from a user's own code). The plan, `--help` and the CLI's checks read this table;
the registries (`pipeline.interfaces`, `pipeline.tasks`) import only the module of the name a
run uses, so a run's DVC dependencies are that module and its imports, not the whole folder.

Upstream names are the table in pipeline/upstreams/registry.py (`UPSTREAM_NAMES` there is
torch-free too).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

from pipeline.errors import UserError

ROOT = Path(__file__).resolve().parent
# helper modules of each package: no registered name of their own
HELPERS = {
    "interface": ("__init__", "base", "align"),
    "task": ("__init__", "base", "ctc", "metrics", "specaug"),
}
PACKAGES = {"interface": "interfaces", "task": "tasks"}
# the live registries (pipeline.interfaces.REGISTRY, pipeline.tasks.TASKS), once imported
_TABLES: dict[str, Mapping[str, object]] = {}
# Which of a task's defaults a run starts from: Task.demo, Task.recipe, or neither (`none`).
DEFAULTS_LAYERS = ("demo", "recipe", "none")


class UnknownName(UserError, ValueError):
    """A name (interface, task, upstream, column) that nothing defines; the message names the
    closest known ones."""


def attach(kind: str, table: Mapping[str, object]) -> None:
    """Called by a registry when it is imported: its names (registered in this process, from
    a module file or a user's own code) are known from then on."""
    _TABLES[kind] = table


def module_path(kind: str, name: str) -> Path:
    """pipeline/<package>/<name>.py: where the interface or task `name` is defined."""
    return ROOT / PACKAGES[kind] / f"{name}.py"


def module_names(kind: str) -> list[str]:
    """The names defined by module files of the package (no module is imported)."""
    folder = ROOT / PACKAGES[kind]
    return sorted(p.stem for p in folder.glob("*.py") if p.stem not in HELPERS[kind])


def known(kind: str) -> list[str]:
    """Every name of `kind` ("interface" | "task"): module files and in-process registrations."""
    return sorted(set(module_names(kind)) | set(_TABLES.get(kind, {})))


def closest(name: str, choices: Iterable[str]) -> str:
    """`did you mean ...?` text for `name` among `choices`, and the full list."""
    choices = sorted(choices)
    near = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(f'`{n}`' for n in near)}? " if near else ""
    return f"{hint}known: {', '.join(choices)}"


def unknown(what: str, name: str, choices: Iterable[str], where: str = "") -> UnknownName:
    """The error for an unknown name: `WHERE: unknown WHAT `NAME`; did you mean ...? known: ...`."""
    head = f"{where}: " if where else ""
    return UnknownName(f"{head}unknown {what} `{name}`; {closest(name, choices)}")


def check(kind: str, name: str, where: str = "") -> str:
    """`name` if an interface/task of that name exists, else UnknownName (nothing imported)."""
    if name not in known(kind):
        raise unknown(kind, name, known(kind), where)
    return name


@cache
def _imports_of(path: Path) -> tuple[str, ...]:
    """The `pipeline.*` modules a file imports at its top level (parsed, not imported)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return tuple(m for m in out if m.startswith("pipeline."))


def code_files(kind: str, name: str) -> list[str]:
    """The files of its package that the module of `name` runs: itself and what it imports
    from the same package, transitively (repo-relative paths, sorted). These are what a run of
    that interface or task depends on in DVC, beside the library code every run shares."""
    pkg = f"pipeline.{PACKAGES[kind]}"
    todo, seen = [name], set()
    while todo:
        mod = todo.pop()
        if mod in seen or not module_path(kind, mod).is_file():
            continue
        seen.add(mod)
        for m in _imports_of(module_path(kind, mod)):
            parts = m.split(".")
            if m.startswith(pkg + ".") and len(parts) >= 3:
                todo.append(parts[2])
    return sorted(f"pipeline/{PACKAGES[kind]}/{m}.py" for m in seen)
