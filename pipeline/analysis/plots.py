"""Figures of the analysis commands: CKA heatmaps and probe curves (matplotlib, Agg, PNG).

`pipeline analyze` and the analyze stage draw them with the names they are given (registry
names); the report draws them again from the stage's JSON with its display names, at the size
and in the colours of its other figures (`Style`; pipeline/report/analysis.py), with a 95 %
interval on every probe point whose metric is a proportion over counted test utterances
(`wilson`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Style:
    """Figure size and colours. The default is the analysis commands' own; the report passes
    its figures' width (pixels at `dpi`) and palette."""

    width_px: int | None = None  # None: sized by the content
    dpi: int = 120
    colors: tuple[str, ...] = ()  # one per curve, in order; () = matplotlib's cycle


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % with z = 1.96) of a proportion `p` observed on `n` items."""
    if n <= 0:
        return (p, p)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def cka_heatmap(
    m: np.ndarray, a: str, b: str, path: str | Path, style: Style | None = None
) -> Path:
    """Heatmap of an (L_a, L_b) CKA matrix: rows = layers of a (state 0 at the bottom), columns = b."""
    plt = _plt()
    style = style or Style()
    La, Lb = m.shape
    width = style.width_px / style.dpi if style.width_px else 1.6 + 0.45 * Lb
    height = 1.3 + 0.45 * La
    if style.width_px:  # at a page's width, keep cells no flatter than 3:1
        height = max(height, 1.3 + La * (width - 2.5) / (3 * Lb))
    fig, ax = plt.subplots(figsize=(width, height))
    im = ax.imshow(m, origin="lower", vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    if La * Lb <= 400:
        for i in range(La):
            for j in range(Lb):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] < 0.6 else "black")  # fmt: skip
    ax.set_xlabel(f"{b}: layer (hidden state) index")
    ax.set_ylabel(f"{a}: layer index")
    ax.set_xticks(range(Lb))
    ax.set_yticks(range(La))
    ax.set_title(f"linear CKA: {a} vs {b}" if a != b else f"linear CKA within {a}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=style.dpi)
    plt.close(fig)
    return Path(path)


def probe_curve(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    metric: str,
    title: str,
    path: str | Path,
    chance: float | None = None,
    intervals: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    style: Style | None = None,
) -> Path:
    """One line per model of (relative depth, metric) points; a dashed line at chance level.

    intervals: {model: [(low, high)] per point} drawn as error bars (the caption says what they
    are); a model without them is drawn without bars."""
    plt = _plt()
    style = style or Style()
    width = style.width_px / style.dpi if style.width_px else 5.2
    fig, ax = plt.subplots(figsize=(width, 3.6 if not style.width_px else 4.2))
    for k, (name, pts) in enumerate(curves.items()):
        xs, ys = zip(*pts, strict=True)
        color = style.colors[k % len(style.colors)] if style.colors else None
        label = f"{name} (L={len(xs)})"
        bounds = (intervals or {}).get(name)
        if bounds and len(bounds) == len(ys):
            lo = [y - b[0] for y, b in zip(ys, bounds, strict=True)]
            hi = [b[1] - y for y, b in zip(ys, bounds, strict=True)]
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=label, color=color)
        else:
            ax.plot(xs, ys, marker="o", label=label, color=color)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xlabel("relative depth: layer index / (L - 1)  (0 = first hidden state)")
    ax.set_ylabel(metric)
    ax.set_xlim(-0.03, 1.03)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=style.dpi)
    plt.close(fig)
    return Path(path)
