"""PNG figures of what each interface learned.

    ws_layer_weights.png        WS: the softmax layer weights, bars per upstream
    gumd_layer_selection.png    GumD: share of output dimensions selecting each layer
    hconv_state_importance.png  HConv / CHConv: relative change of the interface output when one
                                input state is zeroed (best checkpoint, dev utterances from the
                                cache; pipeline/analysis/importance.py), bars per upstream
    hconv_tap_norms.png         the fallback when no run's checkpoint and stores are at hand:
                                first-convolution weight norm per input state / sqrt(taps)

One subplot per table row (upstream set × interface) and task column; a cell over seeds, folds
or languages shows the mean of its runs. Figures are 1,200 pixels wide (DPI 100) so that a
4-column grid fits a page. Keys read from interface_summary.json (pipeline/interfaces/*.py
`learned_summary`): ws `weights` [(L_i,)], gumd `histogram` [(L_i,)] or `selected_layer`
[(D_i,)], hconv/chconv `first_conv_norms` (L,).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.analysis.importance import tap_normalized_norms  # noqa: E402
from pipeline.report.importance import MAX_UTTS, run_importance  # noqa: E402
from pipeline.report.layout import INTERFACE_LABEL, Layout, members_resolved, set_label  # noqa: E402
from pipeline.report.runs import RunResult  # noqa: E402

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
FUSED = "#666666"
PAGE_PX, DPI = 1200, 100
Getter = Callable[[RunResult], list[np.ndarray] | None]


def ws_weights(run: RunResult) -> list[np.ndarray] | None:
    """(L_i,) softmax weights per upstream."""
    w = run.summary.get("weights", run.summary.get("ws_weights"))
    return [np.asarray(x, dtype=float) for x in w] if w else None


def gumd_shares(run: RunResult) -> list[np.ndarray] | None:
    """(L_i,) share of output dimensions that select each layer, per upstream."""
    s = run.summary
    h = s.get("histogram")
    if h is None and s.get("selected_layer", s.get("gumd_selected")) is not None:
        sel = s.get("selected_layer", s.get("gumd_selected"))
        h = [np.bincount(np.asarray(x, dtype=int)) for x in sel]
    if not h:
        return None
    return [np.asarray(x, dtype=float) / max(float(np.sum(x)), 1.0) for x in h]


def hconv_tap_norms(run: RunResult) -> list[np.ndarray] | None:
    """[(L,)]: first-conv weight norm per (aligned) input state / sqrt(kernel taps reading it)."""
    keys = ("first_conv_norms", "layer_norms", "hconv_first_norms")  # older run dirs: earlier keys
    n = next((run.summary[k] for k in keys if k in run.summary), None)
    return [tap_normalized_norms(n)] if n is not None and len(n) else None


@dataclass
class Spec:
    interfaces: tuple[str, ...]
    get: Getter
    title: str
    ylabel: str
    xlabel: str
    fused_label: str = ""


def _cell_mean(arrays: list[list[np.ndarray]]) -> list[np.ndarray] | None:
    """Mean over runs of per-upstream arrays (runs whose shapes differ from the first are skipped)."""
    if not arrays:
        return None
    ref = arrays[0]
    same = [
        a
        for a in arrays
        if len(a) == len(ref) and all(x.shape == y.shape for x, y in zip(a, ref, strict=True))
    ]
    return [np.mean([a[i] for a in same], axis=0) for i in range(len(ref))]


def _grid(layout: Layout, runs: dict[str, RunResult], spec: Spec) -> tuple[list, list[str], dict]:
    """(rows, columns, {(row index, column): per-upstream arrays}) for the rows of the spec."""
    data: dict = {}
    rows = [r for r in layout.rows if r.interface in spec.interfaces]
    for i, r in enumerate(rows):
        for col, keys in r.cells.items():
            arrays = [a for k in keys if k in runs and (a := spec.get(runs[k])) is not None]
            if arrays:
                data[(i, col)] = _cell_mean(arrays)
    keep_rows = sorted({i for i, _ in data})
    cols = [c for c in layout.columns if any((i, c) in data for i in keep_rows)]
    return [(i, rows[i]) for i in keep_rows], cols, data


def plot_grid(layout: Layout, runs: dict[str, RunResult], spec: Spec, path: Path) -> Path | None:
    """Bars per hidden state, one panel per (row, column), PAGE_PX wide; None without data."""
    rows, cols, data = _grid(layout, runs, spec)
    if not rows:
        path.unlink(missing_ok=True)
        return None
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(PAGE_PX / DPI, 2.1 * len(rows) + 1.3), squeeze=False
    )
    colors: dict[str, str] = {}  # one colour per upstream across the figure
    used_fused = False
    for ri, (i, r) in enumerate(rows):
        names = [layout.names.get(m, m) for m in members_resolved(r, runs)]
        for n in names:
            colors.setdefault(n, COLORS[len(colors) % len(COLORS)])
        for ci, col in enumerate(cols):
            ax = axes[ri][ci]
            arrays = data.get((i, col))
            if arrays is None:
                ax.axis("off")
                continue
            n = len(arrays)
            width = 0.8 / n
            for u, a in enumerate(arrays):
                x = np.arange(len(a)) + (u - (n - 1) / 2) * width
                color = colors[names[u]] if n == len(names) else FUSED  # fused input: grey
                used_fused = used_fused or color == FUSED
                ax.bar(x, a, width=width, color=color)
            longest = max(len(a) for a in arrays)
            ax.set_xticks(range(0, longest, 1 if longest <= 13 else 2))
            ax.tick_params(labelsize=7)
            ax.grid(axis="y", alpha=0.3)
            if ri == 0:
                ax.set_title(layout.column_labels.get(col, col), fontsize=10)
            if ri == len(rows) - 1:
                ax.set_xlabel(spec.xlabel, fontsize=8)
            if ci == 0:
                row_name = f"{set_label(layout, r.members)}\n{INTERFACE_LABEL.get(r.interface, r.interface)}"
                ax.set_ylabel(f"{row_name}\n{spec.ylabel}", fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    labels = list(colors)
    if used_fused:
        handles.append(plt.Rectangle((0, 0), 1, 1, color=FUSED))
        labels.append(spec.fused_label)
    fig.suptitle(spec.title, fontsize=10)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1 - 0.1 / fig.get_figheight()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


WS = Spec(("ws",), ws_weights, "Weighted sum: softmax weight of each hidden state, per upstream",
          "weight", "hidden state (0 = input of the first block)")  # fmt: skip
GUMD = Spec(("gumd",), gumd_shares, "GumD: share of output dimensions selecting each hidden state",
            "share of dims", "hidden state")  # fmt: skip
IMPORTANCE_TITLE = (
    "HConv / CHConv: how much each input hidden state matters. Bar = relative change of the "
    "interface output\n(||f(x) - f(x with that state zeroed)|| / ||f(x)||; best checkpoint of "
    f"the cell's first seed, up to {MAX_UTTS} dev utterances) per upstream; 0 = ignored"
)
TAP_TITLE = (
    "HConv / CHConv: first-convolution weight norm per input hidden state divided by sqrt(kernel "
    "taps reading it)\n(a weight-only proxy: checkpoints or stores were not available for the "
    "output-change measure)"
)


def write_figures(
    layout: Layout, runs: dict[str, RunResult], out_dir: str | Path, importance: bool = True
) -> dict[str, Path]:
    """Write the figures that have data under `out_dir`; returns {name: path}. `importance`
    False skips the zero-ablation (no checkpoints or stores read) for the tap-normalised norms."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, spec in (("ws_layer_weights", WS), ("gumd_layer_selection", GUMD)):
        if (p := plot_grid(layout, runs, spec, out / f"{name}.png")) is not None:
            written[name] = p
    for stale in ("hconv_layer_norms", "hconv_state_importance", "hconv_tap_norms"):
        (out / f"{stale}.png").unlink(missing_ok=True)
    if importance:
        # one run per cell (its lowest seed): the ablation costs (L + 1) interface passes a run
        chosen = {
            min(keys, key=lambda k: (runs[k].seed, k))
            for r in layout.rows
            if r.interface in ("hconv", "chconv")
            for keys in ([k for k in ks if k in runs] for ks in r.cells.values())
            if keys
        }
        cache: dict[str, list[np.ndarray] | None] = {}

        def get(run: RunResult) -> list[np.ndarray] | None:
            if run.key in chosen and run.key not in cache:
                cache[run.key] = run_importance(run)
            return cache.get(run.key)

        spec = Spec(("hconv", "chconv"), get, IMPORTANCE_TITLE, "output change",
                    "hidden state of each upstream (0 = input of the first block)")  # fmt: skip
        if (p := plot_grid(layout, runs, spec, out / "hconv_state_importance.png")) is not None:
            written["hconv_state_importance"] = p
            return written
    spec = Spec(("hconv", "chconv"), hconv_tap_norms, TAP_TITLE, "norm / sqrt(taps)",
                "hidden state (aligned to the deepest upstream)",
                "several upstreams (aligned, added or concatenated)")  # fmt: skip
    if (p := plot_grid(layout, runs, spec, out / "hconv_tap_norms.png")) is not None:
        written["hconv_tap_norms"] = p
    return written
