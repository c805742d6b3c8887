"""How much each input hidden state matters to a trained interface.

`state_importance` (the measure): zero one hidden state of one upstream in every input batch and
measure the relative change of the interface's output over the real frames,

    importance[i][l] = ||f(x) - f(x with state l of upstream i zeroed)||_F / ||f(x)||_F,

summed over the batches given. It is comparable across states and interfaces: 0 means the
output ignores the state; 1 means zeroing it changes the output as much as the output's own
size. (A zeroed state stays zero through the interfaces' optional layer norm.)

`tap_normalized_norms` (the cheap fallback, no data): HConv's first-convolution weight norm per
input state divided by the square root of the number of kernel taps that reach the state, i.e.
the RMS weight norm of one tap. With kernel 5, stride 3, padding 2 some states are read by two
taps and others by one, so the raw norm shows that geometry rather than what was learned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

Batch = tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]  # N x (B, L_i, T_i, D_i), N x (B,)


@torch.no_grad()
def state_importance(interface: nn.Module, batches: Iterable[Batch]) -> list[np.ndarray]:
    """[(L_i,) relative output change when state l of upstream i is zeroed] for each upstream.

    `interface(feats, lengths) -> ((B, T, D_out), (B,))` as every interface here; the output is
    zero past each length, so padding frames add nothing."""
    was_training = interface.training
    interface.eval()
    diff: list[np.ndarray] | None = None
    total = 0.0
    for feats, lengths in batches:
        feats, lengths = list(feats), list(lengths)
        ref, _ = interface(feats, lengths)
        total += float((ref.double() ** 2).sum())
        if diff is None:
            diff = [np.zeros(int(x.shape[1])) for x in feats]
        for i, x in enumerate(feats):
            for layer in range(int(x.shape[1])):
                z = x.clone()
                z[:, layer] = 0
                out, _ = interface(feats[:i] + [z] + feats[i + 1 :], lengths)
                diff[i][layer] += float(((out - ref).double() ** 2).sum())
    interface.train(was_training)
    if diff is None:
        raise ValueError("state_importance: no batches (an empty dev split?)")
    if total == 0.0:
        raise ValueError("state_importance: the interface's output is zero on every batch")
    return [np.sqrt(d / total) for d in diff]


def tap_counts(num_layers: int, kernel: int = 5, stride: int = 3, padding: int = 2) -> np.ndarray:
    """(L,) how many (output position, kernel tap) pairs of a Conv1d read each input state."""
    counts = np.zeros(num_layers, dtype=int)
    n_out = (num_layers + 2 * padding - kernel) // stride + 1
    for p in range(n_out):
        for k in range(kernel):
            layer = p * stride - padding + k
            if 0 <= layer < num_layers:
                counts[layer] += 1
    return counts


def tap_normalized_norms(
    norms: Sequence[float], kernel: int = 5, stride: int = 3, padding: int = 2
) -> np.ndarray:
    """(L,) first-conv weight norm per state / sqrt(taps reading it); 0 where no tap reads it."""
    n = np.asarray(norms, dtype=float)
    c = tap_counts(len(n), kernel, stride, padding)
    return np.divide(n, np.sqrt(c), out=np.zeros_like(n), where=c > 0)
