"""Layer-wise linear probes from a store: how much of a task each hidden state holds linearly.

Legend: N utterances, L layers (hidden states), T frames, D width, F pooled width, C classes,
V vocabulary.

One probe per stored layer, each trained from scratch with the same seed on standardised
features (mean and standard deviation from the train split, per layer):

- er: masked mean pooling (precomputed once per layer) -> Linear(D -> C), cross-entropy,
  full-batch Adam. Metric: accuracy (task `er`'s scoring).
- sv: mean+std pooling (F = 2D) -> Linear(F -> N_train_speakers) trained to classify the
  train speakers. Its outputs without bias, L2-normalised, are the embeddings that task `sv`
  scores by cosine EER on dev (trials built from dev) and test (trials.tsv); the speaker-id
  accuracy on dev's held-out utterances of train speakers is recorded too.
- asr_en / ml_asr: a linear CTC head Linear(D -> V) on every frame (the task's vocabulary,
  blank 0), minibatch Adam, greedy decoding; WER (+ CER) or CER per language (task scoring).

The probes are deliberately weak (linear, a few hundred steps): they rank layers, they do not
estimate what a full head reaches.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.analysis.plots import probe_curve
from pipeline.data.manifest import Utterance
from pipeline.tasks import build_task, metrics_record
from pipeline.tasks.ctc import ctc_loss, greedy_ctc

CLASSIFIER_TASKS = ("er", "sv")
CTC_TASKS = ("asr", "asr_en", "ml_asr")
DEFAULT_STEPS = {"classifier": 300, "ctc": 600}
DEFAULT_LR = {"classifier": 1e-2, "ctc": 5e-3}
# What ranks layers and is plotted, where it differs from the task's metric: a linear CTC probe
# rarely spells whole words (WER ~ 1 for every layer), its CER still orders the layers.
PROBE_METRIC = {"asr": "cer", "asr_en": "cer"}


def probe_metric(task_name: str, task_metric: str) -> str:
    return PROBE_METRIC.get(task_name, task_metric)


def metric_value(rec: dict, key: str) -> float | None:
    """`key` of a metrics record: its `value` when `key` is its metric, else the extra field."""
    if rec.get("metric") == key:
        return rec["value"]
    return rec.get(key)


@dataclass
class ProbeConfig:
    """How each layer's probe is trained (one config for every layer and model)."""

    steps: int | None = None  # Adam steps; None: 300 (classifiers, full batch) / 600 (CTC)
    lr: float | None = None  # None: 1e-2 (classifiers) / 5e-3 (CTC)
    batch_size: int = 16  # CTC minibatch, utterances
    weight_decay: float = 1e-4  # L2 on the linear map: the probes see few utterances
    seed: int = 0

    def resolved(self, kind: str) -> ProbeConfig:
        return ProbeConfig(
            self.steps if self.steps is not None else DEFAULT_STEPS[kind],
            self.lr if self.lr is not None else DEFAULT_LR[kind],
            self.batch_size,
            self.weight_decay,
            self.seed,
        )


def _load(reader, utts: Sequence[Utterance], name: str) -> list[np.ndarray]:
    """[(T_i, L, D)] float16 arrays in memory (one read of the store per utterance)."""
    out = []
    for u in utts:
        if u.id not in reader:
            raise KeyError(
                f"probe: utterance {u.id!r} is not in the store of {name} "
                f"({getattr(reader, 'path', '?')}); extract the store on this data dir"
            )
        out.append(np.array(reader[u.id]))
    return out


def pooled(arrays: Sequence[np.ndarray], stats: bool = False) -> np.ndarray:
    """Per utterance, mean (and with `stats`, std) over frames: [(T, L, D)] -> (N, L, D or 2D)."""
    rows = []
    for a in arrays:
        x = a.astype(np.float32)  # (T, L, D)
        feats = [x.mean(axis=0)]
        if stats:
            feats.append(x.std(axis=0))
        rows.append(np.concatenate(feats, axis=-1))  # (L, F)
    return np.stack(rows)


def _standardizer(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over rows of (n, F)."""
    return x.mean(dim=0), x.std(dim=0).clamp(min=1e-5)


def _seeded_linear(in_dim: int, out_dim: int, seed: int, bias: bool = True) -> nn.Linear:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(in_dim, out_dim, bias=bias)


def train_classifier(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: ProbeConfig
) -> nn.Linear:
    """Full-batch Adam on cross-entropy: x (N, F) standardised, y (N,) in [0, C) -> Linear(F, C)."""
    head = _seeded_linear(x.shape[1], num_classes, cfg.seed)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for _ in range(cfg.steps):
        opt.zero_grad()
        F.cross_entropy(head(x), y).backward()
        opt.step()
    return head.eval()


def probe_classifier(
    task_name: str,
    arrays: Mapping[str, list[np.ndarray]],
    splits: Mapping[str, list[Utterance]],
    data_dir: Path | None,
    cfg: ProbeConfig,
) -> list[dict]:
    """er / sv probes for every layer. arrays / splits: split -> per-utterance (T, L, D) / utterances."""
    task = build_task(task_name, {}, splits["train"])
    stats = task_name == "sv"
    feats = {s: torch.from_numpy(pooled(a, stats)) for s, a in arrays.items()}  # (N, L, F)
    y = torch.tensor([task.target(u) for u in splits["train"]])
    keep = y >= 0  # sv: every train utterance has a train speaker
    num_classes = len(task.labels if task_name == "er" else task.speakers)
    results = []
    for layer in range(feats["train"].shape[1]):
        mu, sd = _standardizer(feats["train"][keep, layer])
        norm = {s: (f[:, layer] - mu) / sd for s, f in feats.items()}  # (N, F)
        head = train_classifier(norm["train"][keep], y[keep], num_classes, cfg)
        rec: dict = {"layer": layer}
        with torch.no_grad():
            train_acc = float((head(norm["train"][keep]).argmax(-1) == y[keep]).float().mean())
            rec["train"] = {"accuracy": train_acc}
            for split in ("dev", "test"):
                if split not in norm or not splits[split]:
                    continue
                logits = head(norm[split])  # (N, C)
                if task_name == "er":
                    rec[split] = task.score(
                        logits.argmax(-1).tolist(), splits[split], split, data_dir
                    )
                    continue
                t = torch.tensor([task.target(u) for u in splits[split]])
                known = t >= 0  # utterances of train speakers: speaker-id accuracy
                acc = (
                    float((logits.argmax(-1)[known] == t[known]).float().mean())
                    if bool(known.any())
                    else None
                )
                emb = F.normalize(norm[split] @ head.weight.T, dim=-1)  # (N, C) no bias
                try:
                    rec[split] = task.score(list(emb), splits[split], split, data_dir)
                except ValueError as e:  # no trials (e.g. tiny dev: one utterance per speaker)
                    if acc is None:
                        raise
                    rec[split] = metrics_record(
                        "sv", "speaker_accuracy", acc, "higher", split, note=str(e)
                    )
                rec[split]["speaker_accuracy"] = acc
        results.append(rec)
    return results


def _pad(seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[(T_i, D)] -> (B, T, D) zero-padded, lengths (B,)."""
    lengths = torch.tensor([len(s) for s in seqs])
    return nn.utils.rnn.pad_sequence(list(seqs), batch_first=True), lengths


def probe_ctc(
    task_name: str,
    arrays: Mapping[str, list[np.ndarray]],
    splits: Mapping[str, list[Utterance]],
    data_dir: Path | None,
    cfg: ProbeConfig,
) -> list[dict]:
    """asr / ml_asr probes: a linear CTC head per layer, greedy decoding, the task's scoring."""
    task = build_task(task_name, {}, splits["train"])
    vocab = len(task.vocab)
    targets = [task.target(u) for u in splits["train"]]
    n_train = len(targets)
    L = arrays["train"][0].shape[1]
    results = []
    for layer in range(L):
        seqs = {
            s: [torch.from_numpy(a[:, layer].astype(np.float32)) for a in v]
            for s, v in arrays.items()
        }
        mu, sd = _standardizer(torch.cat(seqs["train"]))  # frame statistics of the train split
        seqs = {s: [(x - mu) / sd for x in v] for s, v in seqs.items()}
        head = _seeded_linear(seqs["train"][0].shape[1], vocab, cfg.seed)
        opt = torch.optim.Adam(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)
        for _ in range(cfg.steps):
            idx = torch.randperm(n_train, generator=gen)[: cfg.batch_size].tolist()
            x, lengths = _pad([seqs["train"][i] for i in idx])  # (B, T, D)
            loss = ctc_loss(
                head(x).log_softmax(-1), lengths, task.collate([targets[i] for i in idx])
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        rec: dict = {"layer": layer, "train": {"ctc_loss": float(loss.detach())}}
        with torch.no_grad():
            for split in ("dev", "test"):
                if split not in seqs or not seqs[split]:
                    continue
                hyps = []
                for b in range(0, len(seqs[split]), 32):
                    x, lengths = _pad(seqs[split][b : b + 32])
                    hyps += [task.decode(h) for h in greedy_ctc(head(x).log_softmax(-1), lengths)]
                rec[split] = task.score(hyps, splits[split], split, data_dir)
        results.append(rec)
    return results


def chance_level(task_name: str, splits: Mapping[str, list[Utterance]]) -> float | None:
    """er: 1 / classes; sv: EER 0.5; CTC tasks: None (no meaningful chance WER)."""
    if task_name == "er":
        return 1.0 / max(1, len({u.emotion for u in splits["train"] if u.emotion is not None}))
    if task_name == "sv":
        return 0.5
    return None


def probe_store(
    reader,
    name: str,
    task_name: str,
    splits: Mapping[str, list[Utterance]],
    data_dir: Path | None = None,
    cfg: ProbeConfig | None = None,
) -> dict:
    """All layers of one store on one task: {"num_layers", "layers": [per-layer records], ...}.

    splits: split -> utterances (train required; dev/test scored when present). Per layer:
    {"layer", "depth" (= layer / (L - 1)), "train": {...}, "dev": metrics record, "test": ...}.
    """
    if task_name not in CLASSIFIER_TASKS + CTC_TASKS:
        raise ValueError(f"probe: unknown task {task_name!r}; use er, sv, asr_en or ml_asr")
    cfg = cfg or ProbeConfig()
    kind = "classifier" if task_name in CLASSIFIER_TASKS else "ctc"
    rcfg = cfg.resolved(kind)
    task = build_task(task_name, {}, splits["train"])
    splits = {s: task.select(list(u)) for s, u in splits.items()}
    if not splits.get("train"):
        raise ValueError(f"probe: the train split has no utterance usable by task {task_name!r}")
    arrays = {s: _load(reader, u, name) for s, u in splits.items()}
    fn = probe_classifier if kind == "classifier" else probe_ctc
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the probes' ops are tiny: extra threads only add spin-waiting
    try:
        layers = fn(task_name, arrays, splits, data_dir, rcfg)
    finally:
        torch.set_num_threads(threads)
    L = len(layers)
    for rec in layers:
        rec["depth"] = rec["layer"] / max(1, L - 1)
    out = {"num_layers": L, "dim": int(reader.dim), "store": str(getattr(reader, "path", "")),
           "config": asdict(rcfg), "layers": layers}  # fmt: skip
    key = probe_metric(task_name, task.metric)
    for ref in ("dev", "test"):
        vals = [metric_value(r.get(ref, {}), key) for r in layers]
        if all(v is not None for v in vals):
            best = int(np.argmax(vals) if task.direction == "higher" else np.argmin(vals))
            out["best_layer"] = {"split": ref, "metric": key, "layer": best, "value": vals[best]}
            break
    return out


def run_probes(
    readers: Mapping[str, object],
    task_name: str,
    splits: Mapping[str, list[Utterance]],
    data_dir: Path | None = None,
    cfg: ProbeConfig | None = None,
) -> dict:
    """Probe every layer of every store (name -> reader) on one task; the document for probe_<task>.json."""
    task = build_task(task_name, {}, splits["train"])
    doc = {
        "task": task_name,
        "metric": task.metric,
        "probe_metric": probe_metric(task_name, task.metric),  # ranks layers; the PNG's y axis
        "direction": task.direction,
        "chance": chance_level(task_name, splits),
        "x_axis": "relative depth = layer index / (L - 1); layer 0 is the first hidden state",
        "probe": "linear: pooled classifier (er; sv speaker ids, embeddings scored by EER)"
        if task_name in CLASSIFIER_TASKS
        else "linear: frame-wise CTC head, greedy decoding",
        "data": str(data_dir) if data_dir else None,
        "models": {},
    }
    for name, reader in readers.items():
        doc["models"][name] = probe_store(reader, name, task_name, splits, data_dir, cfg)
    return doc


def write_probe(doc: dict, out: str | Path, split: str = "test") -> tuple[Path, Path]:
    """OUT/probe_<task>.json and OUT/probe_<task>.png (the `split` metric against relative depth)."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"probe_{doc['task']}"
    key = doc.get("probe_metric", doc["metric"])
    curves = {
        name: [(r["depth"], metric_value(r[split], key)) for r in m["layers"] if split in r]
        for name, m in doc["models"].items()
    }
    curves = {k: v for k, v in curves.items() if v}
    png = out / f"{stem}.png"
    title = f"linear probe per layer: {doc['task']} {key} on {split}"
    probe_curve(
        curves,
        f"{key} ({split}, {doc['direction']} is better)",
        title,
        png,
        doc["chance"],
    )
    doc = {**doc, "figure": png.name, "figure_split": split}
    js = out / f"{stem}.json"
    js.write_text(json.dumps(doc, indent=2, default=_jsonable) + "\n")
    return js, png


def _jsonable(o: object) -> object:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
