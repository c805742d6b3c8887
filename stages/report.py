"""Collect run directories into results/: the comparison table, per-language CERs, metrics, curves, figures.

    write_report("runs", "results", config="params.yaml")

Writes `table.md` (rows grouped like the paper's Table I: sections of upstream sets × interfaces,
one column per task with its metric and direction, the best value of each section in bold),
`languages.md` (ml_asr CER per language, laid out like the paper's Table III), `metrics.json`
(flat, for `dvc metrics show`), `curves/<column>.csv` (step, run, dev %, train_loss; `dvc plots show`)
and `figures/*.png` (what each interface learned; stages/report_figures.py).

With a config (params.yaml or configs/*.yaml) the rows, their order and the labels come from
its plan (stages/plan.py), and a cell that expands over folds or mono-1h languages is the mean
of its runs. Without one, rows are inferred from each run's config.yaml.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stages.plan import Row, load_config, make_plan

TASK_METRIC = {"asr_en": ("wer", "lower"), "asr": ("wer", "lower"), "ml_asr": ("cer", "lower")}
TASK_METRIC.update({"sv": ("eer", "lower"), "er": ("accuracy", "higher")})
METRIC_LABEL = {"wer": "WER", "cer": "CER", "eer": "EER", "accuracy": "Acc"}
INTERFACE_LABEL = {"ws": "WS", "hconv": "HConv", "chconv": "CHConv", "gumd": "GumD"}
ARROW = {"lower": "↓", "higher": "↑"}


@dataclass
class RunResult:
    """One run directory as written by `pipeline train`."""

    key: str
    path: Path
    config: dict  # config.yaml (resolved)
    records: list[dict]  # metrics.json
    log: list[dict]  # log.jsonl, one line per dev evaluation
    summary: dict  # interface_summary.json

    def record(self, split: str) -> dict | None:
        return next((r for r in self.records if r.get("split") == split), None)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return default


def load_runs(runs_dir: str | Path) -> dict[str, RunResult]:
    """Every run directory (one holding config.yaml or metrics.json) under `runs_dir`, by name."""
    out: dict[str, RunResult] = {}
    root = Path(runs_dir)
    for d in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if not (d / "metrics.json").exists() and not (d / "config.yaml").exists():
            continue
        try:
            cfg = yaml.safe_load((d / "config.yaml").read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            cfg = {}
        log = []
        if (d / "log.jsonl").exists():
            for line in (d / "log.jsonl").read_text(encoding="utf-8").splitlines():
                try:
                    log.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        records = _read_json(d / "metrics.json", [])
        summary = _read_json(d / "interface_summary.json", {})
        out[d.name] = RunResult(
            d.name, d, cfg, records if isinstance(records, list) else [], log, summary
        )
    return out


@dataclass
class Layout:
    """What the tables show: rows (sections × sets × interfaces), columns, labels."""

    rows: list[Row]
    columns: list[str]
    column_task: dict[str, str]  # column -> pipeline task
    expanded: dict[str, str]  # column -> the expand key (fold, config) when it has one
    group_of: dict[str, str]  # run key -> its expansion value (a fold, a mono-1h config)
    names: dict[str, str] = field(default_factory=dict)  # upstream/alias -> display name
    column_labels: dict[str, str] = field(default_factory=dict)
    title: str = "Results"
    split: str = "test"
    cfg: dict = field(default_factory=dict)


def layout_from_config(cfg: dict) -> Layout:
    plan = make_plan(cfg)
    tasks = cfg.get("tasks") or {}
    rep = cfg.get("report") or {}
    return Layout(
        plan.rows, plan.columns,
        {c: (tasks[c] or {}).get("task", c) for c in plan.columns},
        {c: next(iter((tasks[c] or {})["expand"])) for c in plan.columns if (tasks[c] or {}).get("expand")},
        {k: str(next(iter(r.group.values()))) for k, r in plan.runs.items() if r.group},
        dict(rep.get("names") or {}), dict(rep.get("columns") or {}),
        str(rep.get("title", "Results")), str(rep.get("split", "test")), cfg,
    )  # fmt: skip


def layout_from_runs(runs: dict[str, RunResult]) -> Layout:
    """Rows inferred from the runs' own configs: sections by the number of upstreams."""
    rows: dict[tuple, Row] = {}
    columns: list[str] = []
    column_task: dict[str, str] = {}
    expanded: dict[str, str] = {}
    group_of: dict[str, str] = {}
    for key, r in runs.items():
        c = r.config
        models, iface, task = list(c.get("models") or []), c.get("interface"), c.get("task")
        if not models or not iface or not task:
            continue
        args = c.get("task_args") or {}
        col = f"{task}_mono" if args.get("mode") == "mono" else task
        by = (
            "fold"
            if "fold" in args
            else ("config" if "config" in args else "language")
            if col != task
            else None
        )
        if by and by in args:
            expanded.setdefault(col, by)
            group_of[key] = str(args[by])
        if col not in columns:
            columns.append(col)
            column_task[col] = task
        n = len(models)
        section = "Single model" if n == 1 else f"{n}-model fusion"
        rk = (n, tuple(models), iface)
        rows.setdefault(rk, Row("I", section, models, iface, {}))
        rows[rk].cells.setdefault(col, []).append(key)
    order = {i: k for k, i in enumerate(INTERFACE_LABEL)}
    ordered = sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1], order.get(kv[0][2], 9)))
    return Layout([r for _, r in ordered], columns, column_task, expanded, group_of)


@dataclass
class Cell:
    value: float | None  # mean over the cell's runs that have a record, in the metric's unit
    found: int  # runs with a record
    expected: int  # runs the plan lists


def metric_of(layout: Layout, col: str, runs: dict[str, RunResult]) -> tuple[str, str]:
    """(metric, direction) of a column: from any run's record, else the task's default."""
    for row in layout.rows:
        for k in row.cells.get(col, []):
            rec = runs[k].record(layout.split) if k in runs else None
            if rec and "metric" in rec:
                return str(rec["metric"]), str(rec.get("direction", "lower"))
    return TASK_METRIC.get(layout.column_task.get(col, col), ("score", "lower"))


def cell(row: Row, col: str, runs: dict[str, RunResult], split: str) -> Cell:
    keys = row.cells.get(col, [])
    vals = [
        float(rec["value"])
        for k in keys
        if k in runs and (rec := runs[k].record(split)) is not None
    ]
    return Cell(sum(vals) / len(vals) if vals else None, len(vals), len(keys))


def best_marks(rows: list[Row], values: list[float | None], direction: str) -> list[bool]:
    """True where a value is the best of its (table, section) group (ties all marked, unless all tie)."""
    marks = [False] * len(rows)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r.table, r.section), []).append(i)
    for idx in groups.values():
        vals = [values[i] for i in idx if values[i] is not None]
        if not vals:
            continue
        best = max(vals) if direction == "higher" else min(vals)
        if len(vals) > 1 and all(round(v, 6) == round(best, 6) for v in vals):
            continue  # every row ties: nothing to mark
        for i in idx:
            marks[i] = values[i] is not None and round(values[i], 6) == round(best, 6)
    return marks


def set_label(layout: Layout, members: Iterable[str]) -> str:
    return " & ".join(layout.names.get(m, m) for m in members)


def _members_resolved(row: Row, runs: dict[str, RunResult]) -> list[str]:
    for keys in row.cells.values():
        for k in keys:
            if k in runs and runs[k].config.get("models"):
                return list(runs[k].config["models"])
    return list(row.members)


def write_curves(layout: Layout, runs: dict[str, RunResult], out_dir: Path) -> list[Path]:
    """One CSV per task column, long format: step, run (row label), dev (the dev metric in %),
    train_loss. dvc.yaml plots each file with .dvc/plots/runs.json (one line per run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.csv"):
        old.unlink()
    written = []
    for col in layout.columns:
        lines = []
        for row in layout.rows:
            for k in row.cells.get(col, []):
                if k not in runs or not runs[k].log:
                    continue
                label = f"{set_label(layout, row.members)} · {INTERFACE_LABEL.get(row.interface, row.interface)}"
                if k in layout.group_of:
                    label += f" · {layout.group_of[k]}"
                for line in runs[k].log:
                    dev = next(
                        (v for n, v in line.items() if n.startswith("dev_")), line.get("dev")
                    )
                    dev = None if dev is None else round(100 * float(dev), 4)
                    lines.append([line.get("step"), label, dev, line.get("train_loss")])
        if lines:
            path = out_dir / f"{col}.csv"
            with open(path, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["step", "run", "dev", "train_loss"])
                w.writerows(lines)
            written.append(path)
    return written


def write_report(
    runs_dir: str | Path, out_dir: str | Path, config: str | Path | None = None
) -> dict[str, Path]:
    """Write everything under `out_dir`; returns {name: path}."""
    from stages.report_figures import write_figures
    from stages.report_tables import languages_markdown, table_markdown

    runs = load_runs(runs_dir)
    layout = layout_from_config(load_config(config)) if config else layout_from_runs(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table, metrics = table_markdown(layout, runs)
    paths = {
        "table": out / "table.md",
        "languages": out / "languages.md",
        "metrics": out / "metrics.json",
    }
    paths["table"].write_text(table, encoding="utf-8")
    paths["languages"].write_text(languages_markdown(layout, runs), encoding="utf-8")
    paths["metrics"].write_text(
        json.dumps(metrics, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    write_curves(layout, runs, out / "curves")
    paths.update(write_figures(layout, runs, out / "figures"))
    return paths
