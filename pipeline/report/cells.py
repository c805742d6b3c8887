"""One table cell over seeds: its runs' values grouped by seed (a seed's value is the mean over
the cell's folds or languages), summarized as mean ± sd over seeds; and the bold rule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.analysis.stats import Summary, clear_lead, summarize
from pipeline.plan import Row
from pipeline.report.layout import Layout
from pipeline.report.runs import RunResult


@dataclass
class Cell:
    """A cell's value over seeds (`stat` None when no run has a record)."""

    stat: Summary | None
    found: int  # runs with a record of the split
    expected: int  # runs the plan lists (or found, when more runs than planned exist)
    per_seed: dict[int, float] = field(default_factory=dict)

    @property
    def value(self) -> float | None:
        return None if self.stat is None else self.stat.mean


def per_seed_values(
    keys: Sequence[str], runs: dict[str, RunResult], split: str
) -> dict[int, float]:
    """{seed: mean over the seed's runs (folds/languages) of the split's value}."""
    by_seed: dict[int, list[float]] = {}
    for k in keys:
        rec = runs[k].record(split) if k in runs else None
        if rec is not None and rec.get("value") is not None:
            by_seed.setdefault(runs[k].seed, []).append(float(rec["value"]))
    return {s: sum(v) / len(v) for s, v in sorted(by_seed.items())}


def cell(layout: Layout, i: int, col: str, runs: dict[str, RunResult], split: str) -> Cell:
    """The cell of row `layout.rows[i]` and column `col` on `split`."""
    keys = layout.rows[i].cells.get(col, [])
    seeds = per_seed_values(keys, runs, split)
    found = sum(1 for k in keys if k in runs and runs[k].record(split) is not None)
    expected = max(layout.planned.get((i, col), len(keys)), found)
    stat = summarize(list(seeds.values())) if seeds else None
    return Cell(stat, found, expected, seeds)


def best_marks(rows: list[Row], stats: list[Summary | None], direction: str) -> list[bool]:
    """True where a cell is the best of its (table, section) group and its lead over the
    runner-up exceeds the spread (`clear_lead`: the mean ± sd intervals do not overlap; with
    one seed, any lead). A lone value, or a tie at the top, is not marked."""
    marks = [False] * len(rows)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r.table, r.section), []).append(i)
    sign = -1.0 if direction == "higher" else 1.0
    for idx in groups.values():
        have = sorted((i for i in idx if stats[i] is not None), key=lambda i: sign * stats[i].mean)  # type: ignore[union-attr]
        if len(have) < 2:
            continue
        best, runner = stats[have[0]], stats[have[1]]
        marks[have[0]] = clear_lead(best, runner)  # type: ignore[arg-type]
    return marks


def seeds_in(layout: Layout, runs: dict[str, RunResult]) -> list[int]:
    """Every seed among the layout's runs, sorted."""
    return sorted(
        {runs[k].seed for r in layout.rows for ks in r.cells.values() for k in ks if k in runs}
    )


def fmt(stat: Summary | None, nominal_n: int) -> str:
    """'21.00 ± 0.50' in %, '21.00' with one seed, '(n=2)' appended when n differs from the table's."""
    if stat is None:
        return "–"
    s = f"{100 * stat.mean:.2f}"
    if stat.sd is not None:
        s += f" ± {100 * stat.sd:.2f}"
    if stat.n != nominal_n:
        s += f" (n={stat.n})"
    return s


def steps_by_column(layout: Layout, runs: dict[str, RunResult]) -> dict[str, str]:
    """{column label: "20"} the training steps of the column's runs, each run's own count:
    "20 or 150" where its runs differ (such runs sit in rows of their own, named by it)."""
    out: dict[str, str] = {}
    for col in layout.columns:
        seen = sorted({s for r in layout.rows for k in r.cells.get(col, [])
                       if k in runs and (s := runs[k].steps) is not None})  # fmt: skip
        if seen:
            out[layout.column_labels.get(col, col)] = " or ".join(map(str, seen))
    return out
