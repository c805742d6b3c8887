"""Figures of the analysis commands: CKA heatmaps and probe curves (matplotlib, Agg, PNG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cka_heatmap(m: np.ndarray, a: str, b: str, path: str | Path) -> Path:
    """Heatmap of an (L_a, L_b) CKA matrix: rows = layers of a (state 0 at the bottom), columns = b."""
    plt = _plt()
    La, Lb = m.shape
    fig, ax = plt.subplots(figsize=(1.6 + 0.45 * Lb, 1.3 + 0.45 * La))
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def probe_curve(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    metric: str,
    title: str,
    path: str | Path,
    chance: float | None = None,
) -> Path:
    """One line per model of (relative depth, metric) points; a dashed line at chance level."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for name, pts in curves.items():
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="o", label=f"{name} (L={len(xs)})")
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xlabel("relative depth: layer index / (L - 1)  (0 = first hidden state)")
    ax.set_ylabel(metric)
    ax.set_xlim(-0.03, 1.03)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
