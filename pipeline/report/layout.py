"""What the report shows: rows (sections × upstream sets × interfaces), task columns, labels,
and which run directories fill each cell.

With an experiment config the rows come from its plan (pipeline/plan/). A cell's run
directories are found by what each run's config.yaml says (models, interface, task, the
column's structural task settings, the seed), so the runs of every seed of a cell land in it
whatever their directory names. Without a config, rows are inferred from the runs' configs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from pipeline.interfaces import interface_label
from pipeline.names import UnknownName
from pipeline.plan import Row, as_experiment, make_plan, train_settings
from pipeline.report.runs import RunResult, same_value
from pipeline.tasks import METRIC_LABELS, task_class

# Names, metrics and labels come from the registries beside the code (defined once there).
METRIC_LABEL = METRIC_LABELS
# The paper's interfaces, in its order: the order of a table's rows and what the findings compare.
PAPER_INTERFACES = ("ws", "hconv", "chconv", "gumd")


class _InterfaceLabels(Mapping[str, str]):
    """name -> printed label (`HConv`), looked up when asked: only the interfaces a report shows
    are imported. Iterates over the paper's interfaces."""

    def __getitem__(self, name: str) -> str:
        return interface_label(name)

    def get(self, name: str, default: object = None) -> str:  # type: ignore[override]
        return interface_label(name)

    def __iter__(self) -> Iterator[str]:
        return iter(PAPER_INTERFACES)

    def __len__(self) -> int:
        return len(PAPER_INTERFACES)


INTERFACE_LABEL = _InterfaceLabels()


def task_metric(task: str) -> tuple[str, str]:
    """(metric, direction) the task `task` reports; ("score", "lower") for an unknown name."""
    try:
        cls = task_class(task)
    except UnknownName:
        return "score", "lower"
    return cls.metric, cls.direction


ARROW = {"lower": "↓", "higher": "↑"}
SPLIT_LABEL = {"test_unseen": "unseen voices"}
NOT_SCORED = ("train", "dev")  # splits that never get a table column


@dataclass
class Layout:
    """What the tables show: rows (sections × sets × interfaces), columns, labels.

    `rows[i].cells[col]` lists the run directories of that cell (every seed and expansion);
    `planned[(i, col)]` how many runs the plan expects there."""

    rows: list[Row]
    columns: list[str]
    column_task: dict[str, str]  # column -> pipeline task
    expanded: dict[str, str]  # column -> the expand key (fold, config) when it has one
    group_of: dict[str, str]  # run dir -> its expansion value (a fold, a mono-1h config)
    names: dict[str, str] = field(default_factory=dict)  # upstream/alias -> display name
    column_labels: dict[str, str] = field(default_factory=dict)
    title: str = "Results"
    split: str = "test"
    cfg: dict = field(default_factory=dict)
    planned: dict[tuple[int, str], int] = field(default_factory=dict)
    split_labels: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # run dirs the report could not place


def _expansion(group: dict) -> str | None:
    g = {k: v for k, v in group.items() if k != "seed"}
    return str(next(iter(g.values()))) if g else None


def _unlike_plan(run: RunResult, expected: Mapping[str, object]) -> list[str]:
    """The planned settings (`train_settings`' dotted keys) the run's config.yaml has another
    value for, as "key=run's (plan: planned)"; a key the config does not record is not compared."""
    have = run.settings
    out = []
    for k, v in expected.items():
        if k in have and not same_value(have[k], v):
            out.append(f"{k}={have[k]} (plan: {v})")
    return out


def _matches(run: RunResult, planned) -> bool:
    """Does the run dir's config say it is this planned run (any seed unless the plan fixes one)?"""
    if run.models != list(planned.models) or run.interface != planned.interface:
        return False
    if run.task != planned.task:
        return False
    args = run.task_args
    if any(str(args.get(k)) != str(v) for k, v in planned.settings.items()):
        return False
    seed = getattr(planned, "seed", None)
    return seed is None or int(seed) == run.seed


def seeds_of(cfg: dict) -> list[int]:
    """The experiment's `seeds` ([0] when absent)."""
    seeds = cfg.get("seeds")
    return [int(x) for x in seeds] if seeds else [0]


def _and(items: list[str]) -> str:
    return " and ".join(items) if len(items) < 3 else f"{', '.join(items[:-1])} and {items[-1]}"


def report_title(
    cfg: dict, upstreams: list[str], names: Mapping[str, str], aliases: Iterable[str] = ()
) -> tuple[str, str | None]:
    """(title, note) of a report on an experiment whose table uses `upstreams`.

    `report.title` may hold `{upstreams}` (their display names, "A, B and C") and `{suite}`
    (data.suite), so a config that inherits the title through `base:` describes its own
    upstreams. A title without them that names an upstream (by its `report.names` display
    name) the table does not use (nor an alias of its rows, `aliases`) was written for another experiment (a `base:` config's):
    it is replaced by a generated one, and the note says so."""
    shown = [names.get(u, u) for u in upstreams]
    suite = str((cfg.get("data") or {}).get("suite", ""))
    template = str((cfg.get("report") or {}).get("title", "Results"))
    title = template.replace("{upstreams}", _and(shown)).replace("{suite}", suite)
    if title != template:
        return title, None
    used = set(upstreams) | set(aliases)
    foreign = [n for u, n in names.items() if u not in used and n not in shown
               and re.search(rf"(?<!\w){re.escape(n)}(?!\w)", title)]  # fmt: skip
    if not foreign:
        return title, None
    generated = f"Fusing {_and(shown)}" + (f" on the {suite} suite" if suite else "")
    note = (f"the config's report.title ({template!r}) names {_and(foreign)}, which this "
            "experiment does not use (a title inherited through `base:`?); the title above is "
            "generated from the experiment's upstreams: set report.title, or write "
            "{upstreams} in it")  # fmt: skip
    return generated, note


def layout_from_config(cfg: dict, runs: dict[str, RunResult]) -> Layout:
    """The plan's rows and columns, each cell filled with the run dirs whose config matches."""
    plan = make_plan(cfg)
    tasks = cfg.get("tasks") or {}
    rep = cfg.get("report") or {}
    cells_of: dict[str, list[tuple[int, str]]] = {}  # planned key -> cells listing it
    planned: dict[tuple[int, str], int] = {}
    # a plan that lists one run per seed counts them itself; an older one lists one per cell
    per_key = 1 if any(hasattr(r, "seed") for r in plan.runs.values()) else len(seeds_of(cfg))
    for i, row in enumerate(plan.rows):
        for col, keys in row.cells.items():
            planned[(i, col)] = len(keys) * per_key
            for k in keys:
                cells_of.setdefault(k, []).append((i, col))
    filled: dict[tuple[int, str], dict[tuple, str]] = {c: {} for c in planned}
    group_of: dict[str, str] = {}
    notes: list[str] = []
    exp = as_experiment(cfg)
    expected = {k: {n: v for n, v in train_settings(exp, p).items() if n != "train.seed"}
                for k, p in plan.runs.items()}  # fmt: skip
    for name, run in runs.items():
        hits = [p for p in plan.runs.values() if _matches(run, p)]
        unlike = {p.key: _unlike_plan(run, expected[p.key]) for p in hits}
        if hits and all(unlike.values()):  # the planned run, trained under other settings
            first = min(unlike.values(), key=len)
            notes.append(f"run dir `{name}` was trained with {', '.join(first)}: left out, "
                         "not averaged with the planned runs")  # fmt: skip
            continue
        hits = [p for p in hits if not unlike[p.key]]
        if len({p.column for p in hits}) > 1:  # two columns of one task: the dir name decides
            hits = [p for p in hits if name == p.key or name.startswith(p.key + "-")]
            if len({p.column for p in hits}) != 1:
                notes.append(f"run dir `{name}` fits several columns; left out")
                continue
        for p in hits:
            g = _expansion(p.group)
            if g is not None:
                group_of[name] = g
            for c in cells_of.get(p.key, []):
                slot = (g, run.seed)
                if slot not in filled[c] or name in cells_of:  # a planned name wins a duplicate
                    filled[c][slot] = name
    rows = []
    for i, row in enumerate(plan.rows):
        cells = {col: sorted(filled[(i, col)].values()) for col in row.cells}
        rows.append(Row(row.table, row.section, list(row.members), row.interface, cells))
    ups = list(dict.fromkeys(m for r in plan.runs.values() for m in r.models))
    names = dict(rep.get("names") or {})
    aliases = {m for r in plan.rows for m in r.members}
    title, title_note = report_title(cfg, ups, names, aliases)
    notes += [title_note] if title_note else []
    return Layout(
        rows, plan.columns,
        {c: (tasks[c] or {}).get("task", c) for c in plan.columns},
        {c: next(iter((tasks[c] or {})["expand"])) for c in plan.columns if (tasks[c] or {}).get("expand")},
        group_of, names, dict(rep.get("columns") or {}),
        title, str(rep.get("split", "test")), cfg, planned,
        dict(rep.get("splits") or {}), notes,
    )  # fmt: skip


def _differences(runs: dict[str, RunResult], keys: list[str]) -> dict[str, tuple]:
    """{run key: ((setting, value), ...)}: where each run's settings (RunResult.settings)
    differ from the most common value among `keys` (one task column and interface), in key
    order; () for the runs that share every most common value. A tie goes to the value of the
    first run by name."""
    settings = {k: runs[k].settings for k in keys}
    names = sorted({n for s in settings.values() for n in s})
    common: dict[str, object] = {}
    for n in names:
        counts: dict[str, tuple[int, int, object]] = {}  # repr -> (count, -first index, value)
        for i, k in enumerate(sorted(keys)):
            v = settings[k].get(n)
            c = counts.get(repr(v), (0, -i, v))
            counts[repr(v)] = (c[0] + 1, c[1], v)
        if len(counts) > 1:
            common[n] = max(counts.values(), key=lambda c: (c[0], c[1]))[2]
    return {
        k: tuple(
            (n, settings[k].get(n)) for n in common if not same_value(settings[k].get(n), common[n])
        )
        for k in keys
    }


def variant_label(diff: tuple) -> str:
    """ "train.steps=150, train.lr=0.003": the settings that set a row's runs apart."""
    return ", ".join(f"{n}={v}" for n, v in diff)


def layout_from_runs(runs: dict[str, RunResult], source: str = "") -> Layout:
    """Rows inferred from the runs' own configs: sections by the number of upstreams.

    Runs whose settings differ (anything in config.yaml but the seed, paths and the expansion)
    are never averaged into one cell: within a task column and interface, runs that differ from
    the most common settings get a row of their own, in a section named by what differs. `source`
    (the runs folder) is named in the note that says what the table compares."""
    rows: dict[tuple, Row] = {}
    columns: list[str] = []
    column_task: dict[str, str] = {}
    expanded: dict[str, str] = {}
    group_of: dict[str, str] = {}
    column_of: dict[str, str] = {}
    for key, r in runs.items():
        models, iface, task = r.models, r.interface, r.task
        if not models or not iface or not task:
            continue
        args = r.task_args
        col = f"{task}_mono" if args.get("mode") == "mono" else task
        by = "fold" if "fold" in args else "config" if "config" in args else "language"
        if col != task or "fold" in args:
            if by in args:
                expanded.setdefault(col, by)
                group_of[key] = str(args[by])
        if col not in columns:
            columns.append(col)
            column_task[col] = task
        column_of[key] = col
    diffs: dict[str, tuple] = {}  # compared within a column and interface (its own arguments)
    for group in {(c, runs[k].interface) for k, c in column_of.items()}:
        keys = [k for k, c in column_of.items() if (c, runs[k].interface) == group]
        diffs.update(_differences(runs, keys))
    for key, col in column_of.items():
        r = runs[key]
        n, diff = len(r.models), diffs[key]
        section = "Single model" if n == 1 else f"{n}-model fusion"
        if diff:
            section += f" ({variant_label(diff)})"
        rk = (n, diff, tuple(r.models), r.interface)
        rows.setdefault(rk, Row("I", section, r.models, r.interface, {}))
        rows[rk].cells.setdefault(col, []).append(key)
    order = {i: k for k, i in enumerate(INTERFACE_LABEL)}
    ordered = sorted(
        rows.items(),
        key=lambda kv: (kv[0][0], bool(kv[0][1]), repr(kv[0][1]), kv[0][2], order.get(kv[0][3], 9)),
    )
    notes = [
        f"no experiment config was given (`pipeline report --config`), so the rows are inferred "
        f"from the {len(column_of)} run directories{f' in `{source}`' if source else ''}: one row "
        "per upstream set and interface, each cell the mean over the seeds of the runs that share "
        "every other setting of their config.yaml"
    ]
    if any(diffs.values()):
        notes.append(
            "runs whose settings differ from the most common ones of their column and interface are in rows of "
            "their own, under a section that names the differing settings; they are never "
            "averaged with the others"
        )
    return Layout([r for _, r in ordered], columns, column_task, expanded, group_of, notes=notes)


def set_label(layout: Layout, members: Iterable[str]) -> str:
    return " & ".join(layout.names.get(m, m) for m in members)


def row_label(layout: Layout, row: Row) -> str:
    """ "Whisper tiny.en & Whisper base · HConv"."""
    return f"{set_label(layout, row.members)} · {INTERFACE_LABEL.get(row.interface, row.interface)}"


def members_resolved(row: Row, runs: dict[str, RunResult]) -> list[str]:
    """The row's upstream registry names (aliases resolved), from any of its runs."""
    for keys in row.cells.values():
        for k in keys:
            if k in runs and runs[k].models:
                return runs[k].models
    return list(row.members)


def metric_of(layout: Layout, col: str, runs: dict[str, RunResult]) -> tuple[str, str]:
    """(metric, direction) of a column: from any run's record, else the task's default."""
    for row in layout.rows:
        for k in row.cells.get(col, []):
            rec = runs[k].record(layout.split) if k in runs else None
            if rec and "metric" in rec:
                return str(rec["metric"]), str(rec.get("direction", "lower"))
    return task_metric(layout.column_task.get(col, col))


def extra_splits(layout: Layout, runs: dict[str, RunResult]) -> list[str]:
    """Scored splits besides the main one (e.g. test_unseen), in order of first appearance."""
    seen: dict[str, None] = {}
    for row in layout.rows:
        for keys in row.cells.values():
            for k in keys:
                for s in runs[k].splits if k in runs else []:
                    if s not in NOT_SCORED and s != layout.split:
                        seen.setdefault(s, None)
    return list(seen)


def split_label(layout: Layout, split: str) -> str:
    """`report.splits` of the config, else a built-in label ("unseen voices"), else the name."""
    return layout.split_labels.get(split) or SPLIT_LABEL.get(split) or split.replace("_", " ")
