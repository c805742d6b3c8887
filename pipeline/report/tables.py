"""The markdown of results/table.md (Table I/II layout), results/languages.md (Table III layout)
and the flat dict of results/metrics.json.

Values are stored as fractions by the tasks and shown in %, as mean ± sd over seeds. A best
value is bolded only where its lead over its section's runner-up exceeds the spread
(pipeline/report/cells.py `best_marks`). Each extra scored split (e.g. test_unseen) gets its own
group of columns after the main split's.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.plan import make_plan
from pipeline.report.cells import Cell, best_marks, cell, fmt, seeds_in, steps_by_column
from pipeline.report.convergence import MARK as CONVERGENCE_MARK
from pipeline.report.convergence import legend as convergence_legend
from pipeline.report.convergence import unconverged
from pipeline.report.languages import column_data_note
from pipeline.report.layout import (
    ARROW,
    INTERFACE_LABEL,
    METRIC_LABEL,
    Layout,
    extra_splits,
    members_resolved,
    metric_of,
    set_label,
    split_label,
)
from pipeline.report.runs import RunResult, read_json

BOLD_RULE = (
    "A value is in **bold** when it is the best of its section and its lead over the runner-up "
    "exceeds the two cells' standard deviations added (their mean ± sd intervals do not overlap)"
)


def _seeds_sentence(seeds: list[int]) -> str:
    if len(seeds) <= 1:
        return (
            f"Each cell is one training run (seed {seeds[0] if seeds else 0}): no spread is "
            "known, so a small difference may be noise. A value is in **bold** when it is the "
            "best of its section by any margin (with one seed there is no spread to exceed)."
        )
    return (
        f"Each cell is the **mean ± sd over n = {len(seeds)} training seeds** (train.seed "
        f"{', '.join(map(str, seeds))}; sample sd, ddof 1) on the same cached features; a cell "
        f"with fewer seeds says (n=…). {BOLD_RULE}."
    )


def _header(layout: Layout, runs: dict[str, RunResult], found: int, expected: int) -> str:
    cfg, lines = layout.cfg, []
    data = cfg.get("data") or {}
    lines.append(
        f"Each number is the **{layout.split}-split** score of a task head trained on the cached "
        "hidden states of frozen speech foundation models (the upstreams), fused by the interface "
        "named in the row: WS = weighted sum of layers (SUPERB; with several upstreams, one per "
        "model, concatenated and projected), GumD = per-dimension Gumbel layer selection, HConv = "
        "hierarchical convolution over the layer axis (several upstreams aligned and added), "
        "CHConv = HConv over the concatenated upstreams. WER, CER and EER are in % (lower is "
        "better, ↓); accuracy is in % (higher is better, ↑). A cell averaged over folds or "
        "languages is the mean of its runs. " + _seeds_sentence(seeds_in(layout, runs))
    )
    extra = extra_splits(layout, runs)
    if extra:
        lines.append(
            "Columns headed '…, <split>' score the same runs (best dev checkpoint) on another "
            "test split: "
            + "; ".join(f"'{split_label(layout, s)}' = the `{s}` split" for s in extra)
            + "."
        )
    if data.get("synth"):
        suite = Path((cfg.get("paths") or {}).get("data_root", "data")) / str(data.get("suite"))
        info = read_json(suite / "suite.json", {})
        lines.append(
            f"\n**Data**: the built-in offline suite (`pipeline data synth --preset {data['synth']}`), "
            "synthesized speech: English sentences (asr_en), 8 languages (ml_asr), "
            "synthetic speakers (sv) and four prosody classes standing in for emotions (er). "
            "The numbers show the pipeline working end to end; they are not comparable to the paper's."
        )
        counts = _suite_counts(info)
        if counts:
            lines.append("Utterances (train/dev/test): " + "; ".join(counts) + ".")
        imported = [c for c in layout.columns if column_data_note(cfg, c).startswith("Data: ")
                    and "synthesized" not in column_data_note(cfg, c)]  # fmt: skip
        for c in imported:  # columns that read an imported corpus instead of the suite
            lines.append(
                f"Column {layout.column_labels.get(c, c)} instead: "
                + column_data_note(cfg, c)[len("Data: ") :]
            )
    elif data.get("import"):
        lines.append(
            "\n**Data**: "
            + ", ".join(f"{v.get('corpus')} (`{v.get('root')}`)" for v in data["import"].values())
            + "."
        )
    ups = list(dict.fromkeys(m for r in layout.rows for m in members_resolved(r, runs)))
    dims = _upstream_dims(cfg)
    if ups:
        desc = [f"{u} ({dims[u]})" if u in dims else u for u in ups]
        lines.append(
            "\n**Upstreams** (frozen; hidden states L × width D): " + ", ".join(desc) + "."
        )
    steps = _steps_by_column(layout, runs)
    if steps:
        lines.append(
            "**Training** (AdamW, best dev checkpoint tested): "
            + "; ".join(f"{c}: {s} steps" for c, s in steps.items())
            + "."
        )
    if found < expected:
        lines.append(
            f"\n*{expected - found} of {expected} planned runs have no {layout.split} result yet (–).*"
        )
    lines += [f"\n*Note: {n}.*" for n in layout.notes]
    return "\n".join(lines)


def _suite_counts(info: dict) -> list[str]:
    """suite.json -> ["asr_en 120/30/30 (6.1 min of train audio)", ...]."""
    out = []
    for task, d in (info.get("tasks") or {}).items():
        try:
            n = "/".join(str(d[s]["utterances"]) for s in ("train", "dev", "test"))
            out.append(f"{task} {n} ({d['train']['seconds'] / 60:.1f} min of training audio)")
        except (KeyError, TypeError):
            continue
    return out


def _upstream_dims(cfg: dict) -> dict[str, str]:
    """upstream -> "L × D" from the extract stamps' fingerprints (no model code imported)."""
    out: dict[str, str] = {}
    if not cfg:
        return out
    for s in make_plan(cfg).stores.values():
        fp = read_json(Path(s.stamp), {}).get("fingerprint") or {}
        if "num_layers" in fp and "dim" in fp:
            out.setdefault(s.upstream, f"{fp['num_layers']} × {fp['dim']}")
    return out


def _steps_by_column(layout: Layout, runs: dict[str, RunResult]) -> dict[str, str]:
    return steps_by_column(layout, runs)  # every run's own count (cells.py)


def row_key(layout: Layout, i: int, runs: dict[str, RunResult], n_tables: int) -> str:
    """metrics.json's name of a row: "<models joined by +>-<interface>[-t<table>]"."""
    r = layout.rows[i]
    return f"{'+'.join(members_resolved(r, runs))}-{r.interface}" + (
        f"-t{r.table}" if n_tables > 1 else ""
    )


def _metric_entries(c: Cell, name: str) -> dict[str, float]:
    """{name: mean} (+ name_sd and name_s<seed> per seed with several seeds), in %."""
    out = {name: round(100 * c.stat.mean, 4)}  # type: ignore[union-attr]
    if c.stat is not None and c.stat.sd is not None:
        out[f"{name}_sd"] = round(100 * c.stat.sd, 4)
        out.update({f"{name}_s{s}": round(100 * v, 4) for s, v in c.per_seed.items()})
    return out


def table_markdown(layout: Layout, runs: dict[str, RunResult]) -> tuple[str, dict]:
    """The markdown of table.md and the flat metrics dict ({row: {column_metric: %}})."""
    metrics: dict[str, dict[str, float]] = {}
    parts, found, expected, marked = [], 0, 0, 0
    tables = list(dict.fromkeys(r.table for r in layout.rows))
    nominal = len(seeds_in(layout, runs)) or 1
    splits = [layout.split] + extra_splits(layout, runs)
    for t in tables:
        idx = [i for i, r in enumerate(layout.rows) if r.table == t]
        rows = [layout.rows[i] for i in idx]
        cols = [c for c in layout.columns if any(c in r.cells for r in rows)]
        head = ["Model", "Interface"]
        grid: list[list[str]] = []
        for split in splits:
            for c in cols:
                metric, direction = metric_of(layout, c, runs)
                cells = [
                    cell(layout, i, c, runs, split) if c in layout.rows[i].cells else None
                    for i in idx
                ]
                if split != layout.split and not any(x and x.stat for x in cells):
                    continue  # this column was not scored on the extra split
                label = f"{layout.column_labels.get(c, c)} {METRIC_LABEL.get(metric, metric)} {ARROW.get(direction, '')}"
                head.append(
                    label if split == layout.split else f"{label}, {split_label(layout, split)}"
                )
                marks = best_marks(rows, [x.stat if x else None for x in cells], direction)
                column = []
                for i, x, m in zip(idx, cells, marks, strict=True):
                    if x is None:
                        column.append("")
                        continue
                    if split == layout.split:
                        found, expected = found + x.found, expected + x.expected
                    s = fmt(x.stat, nominal)
                    if x.stat is not None and 0 < x.found < x.expected:
                        s += f" ({x.found}/{x.expected} runs)"
                    s = f"**{s}**" if m else s
                    if x.stat is not None and unconverged(layout.rows[i].cells[c], runs, direction):
                        s += f" {CONVERGENCE_MARK}"
                        marked += split == layout.split
                    column.append(s)
                    if x.stat is not None:
                        name = f"{c}_{metric}" if split == layout.split else f"{c}_{split}_{metric}"
                        rk = row_key(layout, i, runs, len(tables))
                        metrics.setdefault(rk, {}).update(_metric_entries(x, name))
                grid.append(column)
        lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(grid)]
        prev = (None, None)
        for j, r in enumerate(rows):
            if r.section != prev[0]:
                lines.append(f"| **{r.section}** |" + " |" * (len(grid) + 1))
            label = set_label(layout, r.members) if (r.section, tuple(r.members)) != prev else ""
            prev = (r.section, tuple(r.members))
            lines.append(
                f"| {label} | {INTERFACE_LABEL.get(r.interface, r.interface)} | "
                + " | ".join(g[j] for g in grid)
                + " |"
            )
        parts.append((f"## Table {t}\n\n" if len(tables) > 1 else "") + "\n".join(lines))
    text = (
        f"# {layout.title}\n\n{_header(layout, runs, found, expected)}\n\n"
        + "\n\n".join(parts)
        + "\n"
    )
    if marked:
        text += f"\n{convergence_legend()}\n"
    return text, metrics
