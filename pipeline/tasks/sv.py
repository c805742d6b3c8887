"""Speaker verification: utterance embeddings trained with AM-softmax, cosine scoring, EER.

Two heads (cfg `head`):
- `simple` (default; the paper's simplified head after Aldeneh et al. 2024): statistics
  pooling (masked mean and standard deviation over valid frames) -> BatchNorm (optional,
  parameter-light; see SimpleSVHead) -> Linear(2·D -> emb_dim).
- `xvector` (SUPERB, s3prl downstream/sv_voxceleb1): Linear(D -> 512), 5 TDNN layers
  (context 5/3/3/1/1, dilation 1/2/3/1/1, widths 512 x 4 then 1500; ReLU + BatchNorm over
  valid frames only), mean+std pooling (3000) -> Linear(3000 -> 512).
Both train with AM-softmax (s = 30, m = 0.4) over the train split's speakers; utterances of
other speakers (target -1) do not enter the loss.

Scoring: cosine similarity of L2-normalised embeddings per trial, EER from scikit-learn's ROC
curve (`metrics.eer`). Trials: `DATA_DIR/trials_<split>.tsv`, else `DATA_DIR/trials.tsv` for
the test split; otherwise they are built from the split's own utterances (every same-speaker
pair and an equal number of different-speaker pairs, capped at `max_trials`, seeded), which
is how the dev split gets its early-stopping EER. A split with no same-speaker pair (e.g. one
held-out utterance per train speaker) is scored instead against the train speakers' AM-softmax
weight vectors: each utterance gives 1 target and N-1 non-target trials (`trials: prototypes`).

Legend: B batch, T frames, D feature width, E embedding width, N train speakers.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.data.manifest import Utterance, read_trials
from pipeline.masks import frame_mask
from pipeline.tasks import register
from pipeline.tasks.base import Task, metrics_record
from pipeline.tasks.metrics import eer


def stats_pool(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Masked mean and standard deviation over time: x (B, T, C) -> (B, 2·C)."""
    m = frame_mask(lengths.clamp(min=1), x.shape[1]).unsqueeze(-1).to(x.dtype)  # (B, T, 1)
    n = m.sum(dim=1).clamp(min=1.0)  # (B, 1)
    mean = (x * m).sum(dim=1) / n  # (B, C)
    var = (((x - mean[:, None]) * m) ** 2).sum(dim=1) / n
    return torch.cat([mean, var.clamp(min=1e-6).sqrt()], dim=-1)


class AMSoftmax(nn.Module):
    """Additive-margin softmax: logits s·(cos θ - m·1[target]) over N classes."""

    def __init__(self, emb_dim: int, num_classes: int, s: float = 30.0, m: float = 0.4):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(emb_dim, num_classes) * 0.01)
        self.s, self.m = s, m

    def forward(self, emb: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """emb (B, E), targets (B,) speaker index or -1 -> mean loss over labelled rows (0 if none)."""
        keep = targets >= 0
        if not bool(keep.any()):
            return emb.sum() * 0.0 + self.weight.sum() * 0.0
        emb, targets = emb[keep], targets[keep]
        cos = F.normalize(emb, dim=-1) @ F.normalize(self.weight, dim=0)  # (B', N)
        logits = self.s * (cos - self.m * F.one_hot(targets, cos.shape[1]).to(cos.dtype))
        return F.cross_entropy(logits, targets)


class SimpleSVHead(nn.Module):
    """Statistics pooling, BatchNorm over the pooled statistics (optional), Linear(2·D -> E).

    The normalisation standardises every statistic over the batch: upstreams such as Whisper
    have a few dimensions with huge, nearly constant activations that otherwise dominate every
    embedding (measured on the tiny suite with whisper_tiny_en: AM-softmax loss 17.7 -> 14.6 in
    100 steps without it, -> 0.04 with it).
    """

    def __init__(self, in_dim: int, emb_dim: int, stats_norm: bool = True):
        super().__init__()
        self.norm = nn.BatchNorm1d(2 * in_dim) if stats_norm else None
        self.embed = nn.Linear(2 * in_dim, emb_dim)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """feats (B, T, D), lengths (B,) -> embeddings (B, E)."""
        x = stats_pool(feats, lengths)  # (B, 2·D)
        if self.norm is not None:
            x = _batch_norm(self.norm, x)
        return self.embed(x)


def _batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm that falls back to the running statistics for a training batch of one row."""
    if bn.training and x.shape[0] < 2:
        return F.batch_norm(
            x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
        )
    return bn(x)


class TDNN(nn.Module):
    """Dilated Conv1d over time ('valid', no padding) + ReLU + BatchNorm over the valid frames only."""

    def __init__(self, in_dim: int, out_dim: int, context: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, context, dilation=dilation)
        self.bn = nn.BatchNorm1d(out_dim)
        self.shrink = (context - 1) * dilation

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, C), lengths (B,) -> (B, T - shrink, C'), lengths - shrink (at least 1)."""
        if x.shape[1] <= self.shrink:  # too short for the context: pad with zeros
            x = F.pad(x, (0, 0, 0, self.shrink + 1 - x.shape[1]))
        y = F.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # (B, T', C')
        lengths = (lengths - self.shrink).clamp(min=1, max=y.shape[1])
        valid = frame_mask(lengths, y.shape[1])  # (B, T')
        out = torch.zeros_like(y)
        out[valid] = _batch_norm(self.bn, y[valid])  # statistics of real frames only
        return out, lengths


class XVectorHead(nn.Module):
    """SUPERB x-vector: Linear(D -> 512), 5 TDNN, mean+std pooling, Linear(3000 -> 512)."""

    LAYERS = (
        (512, 5, 1),
        (512, 3, 2),
        (512, 3, 3),
        (512, 1, 1),
        (1500, 1, 1),
    )  # (width, context, dilation)

    def __init__(self, in_dim: int, proj: int = 512, emb_dim: int = 512):
        super().__init__()
        self.proj = nn.Linear(in_dim, proj)
        dims = [proj] + [w for w, _, _ in self.LAYERS]
        self.tdnn = nn.ModuleList(TDNN(dims[i], w, c, d) for i, (w, c, d) in enumerate(self.LAYERS))
        self.embed = nn.Linear(2 * dims[-1], emb_dim)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """feats (B, T, D), lengths (B,) -> embeddings (B, E)."""
        x = self.proj(feats)  # (B, T, 512)
        lengths = lengths.clamp(min=1)
        for layer in self.tdnn:
            x, lengths = layer(x, lengths)  # (B, T', C)
        return self.embed(stats_pool(x, lengths))  # (B, E)


class SVModel(nn.Module):
    """An embedding head plus its AM-softmax classifier (one module, so one state dict)."""

    def __init__(self, embedder: nn.Module, emb_dim: int, num_speakers: int, s: float, m: float):
        super().__init__()
        self.embedder = embedder
        self.amsoftmax = AMSoftmax(emb_dim, max(1, num_speakers), s, m)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.embedder(feats, lengths)


@register
class SpeakerVerification(Task):
    """Speaker verification scored by EER on cosine similarities of utterance embeddings.

    cfg keys (defaults):
        head: simple        "simple" (the paper's) or "xvector" (SUPERB)
        emb_dim: 256        embedding width of the simple head (the x-vector's is 512, SUPERB)
        stats_norm: true    BatchNorm on the simple head's pooled statistics (see SimpleSVHead)
        xvector_proj: 512   the x-vector's input projection
        am_s: 30.0, am_m: 0.4   AM-softmax scale and margin
        max_trials: 20000   cap on trials built from a split that has no trial file
        trial_seed: 0

    predict() gives L2-normalised embeddings (E,) on CPU; score() gives metric "eer" (a
    fraction, lower is better) with `num_trials` and `trials` (a trial file's path, "built" or "prototypes").
    """

    name = "sv"
    metric = "eer"
    direction = "lower"
    demo = {
        "train": {"steps": 200, "batch_size": 8, "lr": 1e-3, "eval_every": 50},
        "task_args": {"head": "simple", "emb_dim": 128},  # the paper's simplified pooling head
    }
    recipe = {  # AdamW 1e-4 (s3prl amsoftmax.yaml); the recipe states no step count
        "train": {"lr": 1e-4},
        "task_args": {"head": "simple"},
    }

    def __init__(self, cfg: dict, train_utts: list[Utterance]):
        super().__init__(cfg, train_utts)
        self.head_kind = str(self.cfg.get("head", "simple"))
        if self.head_kind not in ("simple", "xvector"):
            raise ValueError(f"sv: head must be 'simple' or 'xvector', got {self.head_kind!r}")
        self.speakers: list[str] = sorted({u.speaker for u in train_utts if u.speaker is not None})
        self._index = {s: i for i, s in enumerate(self.speakers)}
        self._prototypes: torch.Tensor | None = None  # (N, E), set by predict()

    def build_head(self, in_dim: int) -> nn.Module:
        c = self.cfg
        if not self.speakers:
            raise ValueError(
                "sv: the train split holds no utterance with a `speaker`; check the data dir's train.jsonl"
            )
        if self.head_kind == "simple":
            emb = int(c.get("emb_dim", 256))
            embedder: nn.Module = SimpleSVHead(in_dim, emb, bool(c.get("stats_norm", True)))
        else:
            emb = 512
            embedder = XVectorHead(in_dim, int(c.get("xvector_proj", 512)), emb)
        return SVModel(
            embedder, emb, len(self.speakers), float(c.get("am_s", 30.0)), float(c.get("am_m", 0.4))
        )

    def target(self, utt: Utterance) -> int:
        """The train-speaker index, or -1 for a speaker the train split does not hold."""
        return self._index.get(utt.speaker, -1) if utt.speaker is not None else -1

    def collate(self, targets: list[int]) -> torch.Tensor:
        return torch.tensor(targets, dtype=torch.long)  # (B,)

    def loss(
        self, head: nn.Module, feats: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        return head.amsoftmax(head(feats, lengths), targets.to(feats.device))

    @torch.no_grad()
    def predict(
        self, head: nn.Module, feats: torch.Tensor, lengths: torch.Tensor
    ) -> list[torch.Tensor]:
        emb = F.normalize(head(feats, lengths).float(), dim=-1).cpu()  # (B, E)
        # the speakers' AM-softmax weights, for splits without same-speaker pairs (see score)
        self._prototypes = F.normalize(
            head.amsoftmax.weight.detach().float(), dim=0
        ).T.cpu()  # (N, E)
        return list(emb)

    def trials_for(
        self, utts: list[Utterance], split: str, data_dir: Path | None
    ) -> tuple[list[tuple[int, str, str]], str]:
        """The trial list for a split and where it came from (a file, or 'built')."""
        if data_dir is not None:
            for name in (f"trials_{split}.tsv", "trials.tsv" if split == "test" else None):
                if name and (Path(data_dir) / name).is_file():
                    return read_trials(Path(data_dir) / name), str(Path(data_dir) / name)
        return build_trials(
            utts, int(self.cfg.get("max_trials", 20000)), int(self.cfg.get("trial_seed", 0))
        ), "built"

    def score(
        self, outputs: list[Any], utts: list[Utterance], split: str, data_dir: Path | None = None
    ) -> dict:
        emb = {u.id: torch.as_tensor(o) for u, o in zip(utts, outputs, strict=True)}
        trials, source = self.trials_for(utts, split, data_dir)
        missing = sorted({i for _, a, b in trials for i in (a, b) if i not in emb})
        if missing:
            raise ValueError(
                f"sv: trial list {source} names {len(missing)} utterance(s) not in the {split} split "
                f"(e.g. {missing[:5]}); add them to {split}.jsonl or fix the trial list"
            )
        if not trials:
            return self._score_prototypes(emb, utts, split)
        a = torch.stack([emb[x] for _, x, _ in trials])  # (N, E)
        b = torch.stack([emb[y] for _, _, y in trials])
        scores = F.cosine_similarity(a, b, dim=-1).numpy()
        labels = [lab for lab, _, _ in trials]
        return metrics_record(
            self.name,
            "eer",
            eer(labels, scores),
            "lower",
            split,
            num_trials=len(trials),
            trials=source,
        )

    def _score_prototypes(
        self, emb: dict[str, torch.Tensor], utts: list[Utterance], split: str
    ) -> dict:
        """EER of utterances of train speakers against every train speaker's AM-softmax weight vector
        (1 target and N-1 non-target trials each): the fallback for a split with no same-speaker pair."""
        known = [u for u in utts if self.target(u) >= 0]
        if self._prototypes is None or not known or len(self.speakers) < 2:
            raise ValueError(
                f"sv: no trials for the {split} split: it has no trial file, no two utterances of one "
                f"speaker, and no utterance of a train speaker; add trials_{split}.tsv to the data dir"
            )
        x = torch.stack([emb[u.id] for u in known])  # (U, E)
        scores = x @ self._prototypes.T  # (U, N) cosine: both sides unit length
        labels = F.one_hot(torch.tensor([self.target(u) for u in known]), scores.shape[1])
        return metrics_record(
            self.name,
            "eer",
            eer(labels.flatten().numpy(), scores.flatten().numpy()),
            "lower",
            split,
            num_trials=int(labels.numel()),
            trials="prototypes",
        )

    def state(self) -> dict:
        return {"speakers": list(self.speakers), "head": self.head_kind}

    def load_state(self, state: dict) -> None:
        if "speakers" in state:
            self.speakers = list(state["speakers"])
            self._index = {s: i for i, s in enumerate(self.speakers)}
        self.head_kind = state.get("head", self.head_kind)


def build_trials(
    utts: list[Utterance], max_trials: int = 20000, seed: int = 0
) -> list[tuple[int, str, str]]:
    """Trials from a split's own utterances: same-speaker pairs (label 1) and as many
    different-speaker pairs (label 0), together at most `max_trials`, chosen with `seed`."""
    rng = random.Random(seed)
    by_spk: dict[str, list[str]] = {}
    for u in utts:
        if u.speaker is not None:
            by_spk.setdefault(u.speaker, []).append(u.id)
    spks = sorted(by_spk)
    targets = [(1, a, b) for s in spks for a, b in itertools.combinations(by_spk[s], 2)]
    half = max_trials // 2
    if len(targets) > half:
        targets = rng.sample(targets, half)
    if len(spks) < 2 or not targets:
        return []
    nontargets: set[tuple[int, str, str]] = set()
    total = sum(len(v) for v in by_spk.values())
    possible = (total * total - sum(len(v) ** 2 for v in by_spk.values())) // 2
    want = min(len(targets), possible)
    while len(nontargets) < want:
        s1, s2 = rng.sample(spks, 2)
        a, b = rng.choice(by_spk[s1]), rng.choice(by_spk[s2])
        nontargets.add((0, min(a, b), max(a, b)))
    return sorted(targets) + sorted(nontargets)
