"""The layer-analysis section of results/report.md: the probe curves and CKA heatmaps that
dvc.yaml's analyze stage (pipeline/analysis/suite.py) writes to results/analysis/.

The section is built from results/analysis/analysis.json (the stage's index) and the JSON
beside each figure; every figure gets a caption that says what is measured, on which split
and how many utterances, and how to read it. The figures are drawn again from that JSON into
the report's figures/ folder (`draw_figures`): with the report's display names (`report.names`),
at the width and in the colours of its other figures, and with 95 % Wilson intervals on the
probe points whose metric is a proportion of counted test utterances (ER accuracy). Without the
index (e.g. `pipeline report` run by hand before the stage) the section says how to produce it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.analysis.plots import Style, cka_heatmap, probe_curve, wilson
from pipeline.report.figures import COLORS, DPI, PAGE_PX
from pipeline.report.layout import METRIC_LABEL

ANALYSIS_DIR = "analysis"  # under the report's folder
FIGURES_DIR = "figures"  # where the report draws them again (its other figures' folder)
PROPORTIONS = ("accuracy",)  # probe metrics that are a share of counted utterances: intervals
STYLE = Style(width_px=PAGE_PX, dpi=DPI, colors=tuple(COLORS))
INDEX = "analysis.json"
HOW_TO = (
    "The layer analysis (linear probes per layer, CKA between the upstreams' layers) has not "
    "been run for this report. `dvc repro analyze` runs it with the `analysis` section of "
    "params.yaml (or `python -m stages.analyze --params params.yaml --out "
    "{out}`, after the extract stages); then run `pipeline report` again."
)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def metric_value(rec: dict, key: str) -> float | None:
    """`key` of a metrics record: its `value` when `key` is its metric, else the extra field
    (as pipeline.analysis.probe reads it)."""
    return rec.get("value") if rec.get("metric") == key else rec.get(key)


def probe_points(doc: dict, split: str, names: dict[str, str]) -> tuple[dict, dict]:
    """({display name: [(depth, value)]}, {display name: [(low, high)]}) of a probe document;
    the intervals (95 % Wilson, over the split's `num_utts`) only for a proportion metric."""
    key = doc.get("probe_metric", doc.get("metric", "metric"))
    curves, intervals = {}, {}
    for name, m in doc["models"].items():
        recs = [r for r in m["layers"] if split in r and metric_value(r[split], key) is not None]
        if not recs:
            continue
        shown = names.get(name, name)
        curves[shown] = [(r["depth"], float(metric_value(r[split], key))) for r in recs]
        counts = [r[split].get("num_utts") for r in recs]
        if key in PROPORTIONS and all(isinstance(n, int) and n > 0 for n in counts):
            intervals[shown] = [wilson(v, n) for (_, v), n in zip(curves[shown], counts, strict=True)]  # fmt: skip
    return curves, intervals


def draw_figures(out_dir: str | Path, index: dict, names: dict[str, str],
                 columns: dict[str, str]) -> dict[str, str]:  # fmt: skip
    """Draw the analysis figures again under OUT/figures/ from the stage's JSON, with display
    names and the report's style; returns {the stage's figure name: the report's path, relative
    to OUT}. A figure whose JSON is missing is left out (its caption says so)."""
    out, folder = Path(out_dir), Path(out_dir) / ANALYSIS_DIR
    figures = out / FIGURES_DIR
    figures.mkdir(parents=True, exist_ok=True)
    for stale in figures.glob("layer_*.png"):
        stale.unlink()
    drawn: dict[str, str] = {}
    for entry in index.get("probes") or []:
        doc = _read(folder / entry["json"])
        if doc is None:
            continue
        split = entry.get("split", doc.get("figure_split", "test"))
        curves, intervals = probe_points(doc, split, names)
        if not curves:
            continue
        key = doc.get("probe_metric", doc.get("metric", "metric"))
        label = columns.get(entry["column"], entry["column"])
        name = f"layer_probe_{entry['column']}.png"
        probe_curve(curves, f"{METRIC_LABEL.get(key, key)} ({split}; {doc.get('direction', 'higher')} is better)",
                    f"Linear probe per layer: {label}", figures / name, doc.get("chance"),
                    intervals, STYLE)  # fmt: skip
        drawn[entry["figure"]] = f"{FIGURES_DIR}/{name}"
    sim = index.get("similarity")
    doc = _read(folder / sim["json"]) if sim else None
    for fig in (sim.get("figures") or []) if sim and doc is not None else []:
        a, _, b = fig.removeprefix("cka_").removesuffix(".png").partition("__")
        m = (doc.get("matrices") or {}).get(f"{a}|{b}")  # type: ignore[union-attr]
        if m is None:
            continue
        name = f"layer_cka_{a}__{b}.png"
        cka_heatmap(np.asarray(m, dtype=float), names.get(a, a), names.get(b, b), figures / name, STYLE)  # fmt: skip
        drawn[fig] = f"{FIGURES_DIR}/{name}"
    return drawn


def _interval_note(doc: dict) -> str:
    key = doc.get("probe_metric", doc.get("metric", "metric"))
    if key in PROPORTIONS:
        return (" Bars: the 95 % Wilson interval of each point over the split's utterances "
                "(one seed; a seed's spread would add to it).")  # fmt: skip
    return (" No bars: the probe keeps no per-utterance or per-trial results to bootstrap, and "
            "it runs one seed.")  # fmt: skip


def probe_caption(entry: dict, doc: dict, names: dict[str, str], label: str) -> str:
    """What a probe figure measures, on which split, and how to read it."""
    metric = doc.get("probe_metric", doc.get("metric", "metric"))
    direction = doc.get("direction", "higher")
    n = entry.get("utterances") or {}
    split = entry.get("split", doc.get("figure_split", "test"))
    steps = next((m.get("config", {}).get("steps") for m in doc["models"].values()), None)
    pooled = "mean- and std-pooled" if doc.get("task") == "sv" else "mean-pooled"
    what = (
        "a linear CTC head on each frame of one hidden state, greedy decoding"
        if "CTC" in str(doc.get("probe", ""))
        else f"a linear classifier on one hidden state ({pooled} over frames, standardised)"
    )
    sv = (
        " For SV the classifier learns to tell the train speakers apart; its weights (no bias) "
        "embed the unseen test speakers' clips, scored by EER on the test trials."
        if doc.get("task") == "sv"
        else ""
    )
    chance = doc.get("chance")
    best = []
    for name, m in doc["models"].items():
        b = m.get("best_layer")
        if b:
            best.append(f"{names.get(name, name)} state {b['layer']} of 0-{m['num_layers'] - 1} "
                        f"({b['split']} {b['metric']} {_fmt(b['value'])})")  # fmt: skip
    return (
        f"**Linear probe per layer, {label}.** For every stored hidden state of every upstream, "
        f"{what}, trained alone for {steps} Adam steps on {n.get('train', '?')} train utterances "
        f"(same seed for every layer).{sv} y: {METRIC_LABEL.get(metric, metric)} on the {split} split "
        f"({n.get(split, '?')} utterances; {direction} is better); x: relative depth, state index "
        f"/ (L - 1), so models of different depths share the axis (0 = the first hidden state, "
        f"1 = the last)."
        + (f" Dashed line: chance ({_fmt(chance)})." if chance is not None else "")
        + _interval_note(doc)
        + f" How to read it: a curve's best point (its {'highest' if direction == 'higher' else 'lowest'}) "
        "is the state where the task is most linearly readable in that model; a flat curve means "
        "the states hold it alike. The probes are deliberately weak, so compare the shapes and "
        "the best states, not the levels with the trained table."
        + (" Best state per model: " + "; ".join(best) + "." if best else "")
    )


def similarity_intro(entry: dict, label: str) -> str:
    """What every CKA heatmap measures, on which frames, and how to read it (said once)."""
    splits = "/".join(entry.get("splits") or ["train"])
    position = (
        " Each model's mean frame at every frame index was subtracted first, so what depends "
        "on position alone (Whisper's positional embedding) does not count as shared."
        if entry.get("remove_position")
        else ""
    )
    return (
        f"**Linear CKA between the upstreams' layers.** Cell (i, j) of a heatmap: linear "
        f"centred kernel alignment between hidden state i of the row model and hidden state j "
        f"of the column model, over {entry.get('frames', '?')} frames of "
        f"{entry.get('utterances', '?')} {label} {splits} utterances (a seeded sample), the "
        f"frames of every model aligned in time to the highest frame rate as the fusion "
        f"interfaces align them.{position} How to read it: 1 = the two states hold the same "
        f"information up to rotation and scale, 0 = linearly unrelated; a bright diagonal means "
        f"both models build their representations in the same order, a bright row or column a "
        f"state that resembles the whole of the other model. The table's best-match score a -> "
        f"b is the mean over a's states of its highest CKA with any state of b: the less two "
        f"models resemble each other, the more a fusion of them can add."
    )


def similarity_caption(doc: dict, a: str, b: str, names: dict[str, str]) -> str:
    """One heatmap's caption: the pair and its best-match scores."""
    s = (doc.get("summary") or {}).get(f"{a}|{b}", {})
    na, nb = names.get(a, a), names.get(b, b)
    return (
        f"**{na} (rows) vs {nb} (columns).** Best match {_fmt(s.get('a_to_b'))} "
        f"({na} -> {nb}) and {_fmt(s.get('b_to_a'))} ({nb} -> {na})."
    )


def summary_table(doc: dict, names: dict[str, str]) -> list[str]:
    """A markdown table of every pair's best-match scores."""
    lines = ["| Pair (a / b) | a -> b | b -> a | mean |", "|---|---:|---:|---:|"]
    for s in (doc.get("summary") or {}).values():
        pair = f"{names.get(s['a'], s['a'])} / {names.get(s['b'], s['b'])}"
        lines.append(f"| {pair} | {s['a_to_b']:.3f} | {s['b_to_a']:.3f} | {s['mean']:.3f} |")
    return lines


def analysis_markdown(out_dir: str | Path, names: dict[str, str] | None = None,
                      columns: dict[str, str] | None = None) -> str:  # fmt: skip
    """The `## Layer analysis` section of report.md for the results folder `out_dir` (figure
    links relative to it); `names`/`columns`: display names of upstreams / task columns."""
    names, columns = names or {}, columns or {}
    folder = Path(out_dir) / ANALYSIS_DIR
    index = _read(folder / INDEX)
    lines = ["## Layer analysis", ""]
    if index is None:
        return "\n".join([*lines, HOW_TO.format(out=folder.as_posix()), ""])
    drawn = draw_figures(out_dir, index, names, columns)
    for entry in index.get("probes") or []:
        doc = _read(folder / entry["json"])
        if doc is None:
            lines += [f"(probe of column {entry['column']}: {entry['json']} is missing)", ""]
            continue
        label = columns.get(entry["column"], entry["column"])
        label += f" (task {entry['task']})" if label != entry["task"] else ""
        link = drawn.get(entry["figure"], f"{ANALYSIS_DIR}/{entry['figure']}")
        lines += [f"![probe {entry['column']}]({link})", "",
                  probe_caption(entry, doc, names, label), ""]  # fmt: skip
    sim = index.get("similarity")
    doc = _read(folder / sim["json"]) if sim else None
    if sim and doc is not None:
        label = columns.get(sim["column"], sim["column"])
        lines += [similarity_intro(sim, label), "", *summary_table(doc, names), ""]
        for fig in sim.get("figures") or []:
            a, _, b = fig.removeprefix("cka_").removesuffix(".png").partition("__")
            link = drawn.get(fig, f"{ANALYSIS_DIR}/{fig}")
            lines += [f"![CKA {names.get(a, a)} vs {names.get(b, b)}]({link})", "",
                      similarity_caption(doc, a, b, names), ""]  # fmt: skip
    elif sim:
        lines += [f"(similarity: {sim['json']} is missing)", ""]
    if not index.get("probes") and not sim:
        lines += ["The `analysis` section of the experiment asks for no probe and no similarity.", ""]  # fmt: skip
    took = index.get("seconds")
    if took is not None:
        lines += [f"The analyze stage took {took:.0f} s.", ""]
    return "\n".join(lines)
