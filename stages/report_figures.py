"""PNG figures of what each interface learned, from the runs' interface_summary.json.

    ws_layer_weights.png      WS: the softmax layer weights, bars per upstream
    gumd_layer_selection.png  GumD: which layer each output dimension selects (share of dims per layer)
    hconv_layer_norms.png     HConv / CHConv: first convolution's weight norm per (aligned) input layer

One subplot per table row (upstream set × interface) and task column; a cell that expands over
folds or languages shows the mean of its runs. Keys read (pipeline/interfaces/*.py
`learned_summary`): ws `weights` [(L_i,)], gumd `histogram` [(L_i,)] or `selected_layer`
[(D_i,)], hconv/chconv `layer_norms` (L,); a run without them is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from stages.report_layout import INTERFACE_LABEL, Layout, members_resolved, set_label
from stages.report_runs import RunResult

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
FUSED = "#666666"


def ws_weights(summary: dict) -> list[np.ndarray] | None:
    """(L_i,) softmax weights per upstream."""
    w = summary.get("weights", summary.get("ws_weights"))
    return [np.asarray(x, dtype=float) for x in w] if w else None


def gumd_shares(summary: dict) -> list[np.ndarray] | None:
    """(L_i,) share of output dimensions that select each layer, per upstream."""
    h = summary.get("histogram")
    if h is None and summary.get("selected_layer", summary.get("gumd_selected")) is not None:
        sel = summary.get("selected_layer", summary.get("gumd_selected"))
        h = [np.bincount(np.asarray(s, dtype=int)) for s in sel]
    if not h:
        return None
    return [np.asarray(x, dtype=float) / max(float(np.sum(x)), 1.0) for x in h]


def hconv_norms(summary: dict) -> list[np.ndarray] | None:
    """[(L,)]: the first convolution's weight norm per input layer (one group: fused input)."""
    n = summary.get("layer_norms", summary.get("hconv_first_norms"))
    return [np.asarray(n, dtype=float)] if n is not None and len(n) else None


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


def _grid(
    layout: Layout,
    runs: dict[str, RunResult],
    interfaces: tuple[str, ...],
    get: Callable[[dict], list[np.ndarray] | None],
) -> tuple[list, list[str], dict]:
    """(rows, columns, {(row index, column): per-upstream arrays}) for the rows of `interfaces`."""
    data: dict = {}
    rows = [r for r in layout.rows if r.interface in interfaces]
    for i, r in enumerate(rows):
        for col, keys in r.cells.items():
            arrays = [a for k in keys if k in runs and (a := get(runs[k].summary)) is not None]
            if arrays:
                data[(i, col)] = _cell_mean(arrays)
    keep_rows = sorted({i for i, _ in data})
    cols = [c for c in layout.columns if any((i, c) in data for i in keep_rows)]
    return [(i, rows[i]) for i in keep_rows], cols, data


def _plot(
    layout: Layout,
    runs: dict[str, RunResult],
    interfaces: tuple[str, ...],
    get: Callable[[dict], list[np.ndarray] | None],
    title: str,
    ylabel: str,
    xlabel: str,
    path: Path,
    fused_label: str = "",
) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols, data = _grid(layout, runs, interfaces, get)
    if not rows:
        path.unlink(missing_ok=True)
        return None
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(3.3 * len(cols) + 0.6, 2.5 * len(rows) + 1.2), squeeze=False
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
            ax.set_xticks(range(longest))
            ax.tick_params(labelsize=7)
            ax.grid(axis="y", alpha=0.3)
            if ri == 0:
                ax.set_title(layout.column_labels.get(col, col), fontsize=10)
            if ri == len(rows) - 1:
                ax.set_xlabel(xlabel, fontsize=8)
            if ci == 0:
                row_name = f"{set_label(layout, r.members)}\n{INTERFACE_LABEL.get(r.interface, r.interface)}"
                ax.set_ylabel(f"{row_name}\n{ylabel}", fontsize=8)
    fig.suptitle(title, fontsize=11)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    labels = list(colors)
    if used_fused:
        handles.append(plt.Rectangle((0, 0), 1, 1, color=FUSED))
        labels.append(fused_label)
    fig.legend(handles, labels, loc="upper right", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_figures(
    layout: Layout, runs: dict[str, RunResult], out_dir: str | Path, importance: bool = True
) -> dict[str, Path]:
    """Write the three figures (those with data) under `out_dir`; returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = {
        "ws_layer_weights": (
            ("ws",), ws_weights, "Weighted sum: softmax weight of each hidden state, per upstream",
            "weight", "hidden state (0 = input of the first block)", "",
        ),
        "gumd_layer_selection": (
            ("gumd",), gumd_shares, "GumD: share of output dimensions selecting each hidden state",
            "share of dims", "hidden state", "",
        ),
        "hconv_layer_norms": (
            ("hconv", "chconv"), hconv_norms,
            "HConv / CHConv: first convolution's weight norm per input hidden state",
            "weight norm", "hidden state (aligned to the deepest upstream)",
            "several upstreams (aligned, added or concatenated)",
        ),
    }  # fmt: skip
    written = {}
    for name, (ifaces, get, title, ylabel, xlabel, fused) in specs.items():
        p = _plot(layout, runs, ifaces, get, title, ylabel, xlabel, out / f"{name}.png", fused)
        if p is not None:
            written[name] = p
    return written
