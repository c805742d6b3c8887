"""CTC helpers shared by the CTC tasks (asr, ml_asr) and the layer-wise probes: the loss with
blank 0 and best-path decoding.

Legend: B batch, T frames, V vocabulary size, S target tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BLANK = 0  # the CTC blank; also the target padding of collate_tokens


def ctc_loss(log_probs: torch.Tensor, out_lengths: torch.Tensor, targets: dict) -> torch.Tensor:
    """CTC (blank 0, zero_infinity) of log_probs (B, T, V) against targets {"tokens" (B, S), "lengths" (B,)}."""
    tokens, tlens = targets["tokens"], targets["lengths"]
    return F.ctc_loss(
        log_probs.transpose(0, 1).float(),  # (T, B, V)
        tokens.to(log_probs.device),
        out_lengths.to(log_probs.device),
        tlens.to(log_probs.device),
        blank=BLANK,
        reduction="mean",
        zero_infinity=True,
    )


def greedy_ctc(log_probs: torch.Tensor, out_lengths: torch.Tensor) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks. (B, T, V) -> B lists of token ids."""
    best = log_probs.argmax(dim=-1).cpu()  # (B, T)
    hyps = []
    for b, n in enumerate(out_lengths.cpu().tolist()):
        seq = best[b, :n].tolist()
        hyps.append([t for i, t in enumerate(seq) if t != BLANK and (i == 0 or t != seq[i - 1])])
    return hyps
