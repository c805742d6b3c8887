"""Layer-by-layer similarity of several upstreams from their stores: linear CKA on aligned frames.

Legend: M models, L_i layers (hidden states) of model i, T frames, D_i width.

Frames are aligned the way the interfaces align them (pipeline/interfaces/align.py): every
model's frames are resampled linearly in time to the highest frame rate among the stores; each
utterance is then cropped to the frames every model covers (no edge padding enters the
statistics). The statistics are streamed (`cka.StreamingCKA`), so memory depends on the
models' widths, never on the number of frames.

Summary of a pair (a, b): `a_to_b` = mean over the layers of a of the best CKA with any layer
of b; `b_to_a` the other way; `mean` their average. 1 means every layer of each model has an
exact linear-CKA twin in the other; low values mean the models hold different views.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.analysis.cka import StreamingCKA, group_passes
from pipeline.analysis.plots import cka_heatmap
from pipeline.interfaces.align import reference_index, resample_frames


def common_frames(lengths: Sequence[int], rates: Sequence[float]) -> int:
    """Frames at the highest rate that every model covers: min_i floor(T_i * r_ref / r_i)."""
    r_ref = max(rates)
    return max(1, min(int(n * r_ref / r + 1e-6) for n, r in zip(lengths, rates, strict=True)))


def align_utterance(arrays: Sequence[np.ndarray], rates: Sequence[float]) -> list[torch.Tensor]:
    """One utterance from M stores, [(T_i, L_i, D_i)] -> [(T, L_i, D_i)] float32 on one time grid.

    T = `common_frames`; model i is resampled with ratio r_i / r_ref (interfaces' rule).
    """
    ref = reference_index(list(rates), len(arrays))
    T = common_frames([a.shape[0] for a in arrays], rates)
    out = []
    for a, r in zip(arrays, rates, strict=True):
        x = torch.from_numpy(np.asarray(a, dtype=np.float32))[None]  # (1, T_i, L_i, D_i)
        n = torch.tensor([a.shape[0]])
        y = resample_frames(x, n, torch.tensor([T]), T, float(r) / float(rates[ref]))
        out.append(y[0])  # (T, L_i, D_i)
    return out


def aligned_chunks(
    readers: Sequence,
    ids: Sequence[str],
    chunk_frames: int = 4096,
    max_frames: int | None = None,
    position_means: Sequence[torch.Tensor] | None = None,
) -> Iterator[list[torch.Tensor]]:
    """Yield [(n, L_i, D_i)] chunks of aligned frames over `ids` (in order), at most `max_frames`.

    position_means: per model (T_max, L_i, D_i), subtracted from frame t of every utterance.
    """
    buf: list[list[torch.Tensor]] = [[] for _ in readers]
    have = 0
    for feats in _utterances(readers, ids, max_frames):
        if position_means is not None:
            feats = [f - pm[: f.shape[0]] for f, pm in zip(feats, position_means, strict=True)]
        for b, f in zip(buf, feats, strict=True):
            b.append(f)
        have += feats[0].shape[0]
        if have >= chunk_frames:
            yield [torch.cat(b) for b in buf]
            buf, have = [[] for _ in readers], 0
    if have:
        yield [torch.cat(b) for b in buf]


@dataclass
class SimilarityResult:
    """CKA matrices between every pair of models (i <= j): (L_i, L_j), rows = layers of i."""

    models: list[str]
    num_layers: list[int]
    matrices: dict[tuple[str, str], np.ndarray]
    frames: int
    utterances: int
    passes: int
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    remove_position: bool = False  # per-frame-index means were subtracted first


def position_means(
    readers: Sequence, ids: Sequence[str], max_frames: int | None = None
) -> list[torch.Tensor]:
    """Per model, the mean aligned feature at each frame index t over the utterances that reach
    t: [(T_max, L_i, D_i)]. Subtracting it removes what depends on position alone (e.g. the
    sinusoidal positional embedding every Whisper encoder adds, which makes any two Whisper
    models, random ones included, look alike frame by frame)."""
    sums: list[torch.Tensor | None] = [None] * len(readers)
    count = torch.zeros(0, dtype=torch.float64)
    for feats in _utterances(readers, ids, max_frames):
        T = feats[0].shape[0]
        if T > len(count):
            count = torch.cat([count, torch.zeros(T - len(count), dtype=torch.float64)])
        count[:T] += 1
        for i, f in enumerate(feats):
            s = sums[i]
            if s is None or s.shape[0] < T:
                grown = torch.zeros((T, *f.shape[1:]), dtype=torch.float64)
                if s is not None:
                    grown[: s.shape[0]] = s
                sums[i] = s = grown
            s[:T] += f
    return [(s / count[: s.shape[0], None, None]).float() for s in sums if s is not None]


def _utterances(
    readers: Sequence, ids: Sequence[str], max_frames: int | None
) -> Iterator[list[torch.Tensor]]:
    """Aligned [(T, L_i, D_i)] per utterance, stopping after `max_frames` frames in all."""
    rates = [float(r.frame_rate) for r in readers]
    total = 0
    for uid in ids:
        feats = align_utterance([r[uid] for r in readers], rates)
        if max_frames is not None:
            feats = [f[: max_frames - total] for f in feats]
        total += feats[0].shape[0]
        yield feats
        if max_frames is not None and total >= max_frames:
            break


def layer_similarity(
    readers: Sequence,
    names: Sequence[str],
    ids: Sequence[str],
    max_frames: int | None = None,
    chunk_frames: int = 4096,
    memory_bytes: float = 2e9,
    seed: int = 0,
    remove_position: bool = False,
) -> SimilarityResult:
    """Linear CKA between every layer of every store and every layer of every store.

    readers: StoreReader-like objects (`.num_layers`, `.dim`, `.frame_rate`, `reader[id] ->
    (T, L, D)`). ids: the utterances to use (each must be in every store). With `max_frames`,
    the utterances are taken in a seeded shuffled order until that many aligned frames. With
    `remove_position`, each frame first loses its model's mean at that frame index
    (`position_means`, one extra pass over the data).
    """
    for r, name in zip(readers, names, strict=True):
        missing = [u for u in ids if u not in r]
        if missing:
            raise KeyError(
                f"store of {name} ({getattr(r, 'path', '?')}) lacks {len(missing)} of the "
                f"{len(ids)} utterances (e.g. {missing[:3]}); extract it on the same data dir"
            )
    ids = list(ids)
    if max_frames is not None:
        random.Random(seed).shuffle(ids)
    units = [(i, layer) for i, r in enumerate(readers) for layer in range(r.num_layers)]
    widths = [int(readers[i].dim) for i, _ in units]
    passes = group_passes(widths, memory_bytes)
    full = np.full((len(units), len(units)), np.nan)
    pm = position_means(readers, ids, max_frames) if remove_position else None
    frames = 0
    for sel in passes:
        acc = StreamingCKA([widths[k] for k in sel])
        frames = 0
        for chunk in aligned_chunks(readers, ids, chunk_frames, max_frames, pm):
            acc.update([chunk[units[k][0]][:, units[k][1]] for k in sel])
            frames += chunk[0].shape[0]
        m = acc.matrix()
        full[np.ix_(sel, sel)] = m
    utts = len(ids) if max_frames is None else _utts_within(readers, ids, max_frames)
    starts = np.concatenate([[0], np.cumsum([r.num_layers for r in readers])])
    mats = {}
    for i in range(len(readers)):
        for j in range(i, len(readers)):
            mats[(names[i], names[j])] = full[starts[i] : starts[i + 1], starts[j] : starts[j + 1]]
    res = SimilarityResult(
        list(names),
        [r.num_layers for r in readers],
        mats,
        frames,
        utts,
        len(passes),
        remove_position=remove_position,
    )
    res.summary = summarize(res)
    return res


def _utts_within(readers: Sequence, ids: Sequence[str], max_frames: int) -> int:
    rates = [float(r.frame_rate) for r in readers]
    total = 0
    for k, uid in enumerate(ids):
        total += common_frames([r.length(uid) for r in readers], rates)
        if total >= max_frames:
            return k + 1
    return len(ids)


def best_match(m: np.ndarray) -> tuple[float, float]:
    """(mean over rows of the row max, mean over columns of the column max) of an (La, Lb) CKA matrix."""
    return float(m.max(axis=1).mean()), float(m.max(axis=0).mean())


def summarize(res: SimilarityResult) -> dict[str, dict[str, float]]:
    """Per model pair a != b: a_to_b, b_to_a and their mean (see the module docstring)."""
    out = {}
    for (a, b), m in res.matrices.items():
        if a == b:
            continue
        ab, ba = best_match(m)
        out[f"{a}|{b}"] = {"a": a, "b": b, "a_to_b": ab, "b_to_a": ba, "mean": (ab + ba) / 2}
    return out


def write_similarity(res: SimilarityResult, out: str | Path, plots: bool = True) -> dict:
    """OUT/similarity.json, OUT/similarity.npz (keys `A__B`) and OUT/cka_A__B.png per pair."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "similarity.npz", **{f"{a}__{b}": m for (a, b), m in res.matrices.items()})
    doc = {
        "measure": "linear CKA (centred, feature-space form), frames aligned to the highest frame rate",
        "remove_position": res.remove_position,
        "models": res.models,
        "num_layers": dict(zip(res.models, res.num_layers, strict=True)),
        "frames": res.frames,
        "utterances": res.utterances,
        "passes": res.passes,
        "matrices": {f"{a}|{b}": m.round(6).tolist() for (a, b), m in res.matrices.items()},
        "summary": res.summary,
        "summary_definition": "a_to_b: mean over layers of a of the max CKA with any layer of b; "
        "b_to_a: the reverse; mean: their average",
        "figures": [],
    }
    if plots:
        for (a, b), m in res.matrices.items():
            png = out / f"cka_{a}__{b}.png"
            cka_heatmap(m, a, b, png)
            doc["figures"].append(png.name)
    (out / "similarity.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc
