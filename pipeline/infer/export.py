"""`pipeline export RUN OUT_DIR`: a run's interface + head as one TorchScript file and its card.

    res = export_run("runs/x", "exported/x")
    # exported/x/model.torchscript.pt   torch.jit.load(...) with torch alone (pipeline/infer/traced.py)
    # exported/x/card.json              what it is and how to feed it

Legend: N upstreams, B batch, L_i stored states of upstream i, T_i frames, D_i width.

The module takes the features a run's stores hold, decoded to float32: N x (B, L_i, T_i, D_i)
and N x (B,) int64 frame counts (`pipeline.infer.live` makes them from audio, or read a store:
`reader[id]` is (T, L, D), so `x.permute(1, 0, 2)` per utterance, zero-padded). The upstreams
are not in the file: the card names them with their store fingerprints, so they can be run
alike elsewhere.

The card (`card.json`; the same without `file` and `bytes` rides inside the file as the extra
file `card.json`): `format`, `task`, `interface`, `models`, `inputs` (per upstream: the store's
fingerprint, `layers` = the upstream's states used, in input order, the encoding and, for 8-bit
stores, the (L, D) `scales` that turn the upstream's float16 states into the stored values),
`outputs` (names and shapes), `vocab` (CTC tasks) or `labels` (er), `task_state`, `metrics` (RUN_DIR/metrics.json), `best_step`, `config` (the resolved training
config), `check` (how the file was verified), `torch`, `file` and `bytes`.

Verification at export: the module and the run's eager modules (`traced.reference`) are run on
random inputs of several shapes and, when the run's stores are still there, on up to
`check_batches` batches of cached features of its test split as `pipeline evaluate` batches
them; any output differing by more than TOLERANCE (absolute, float32) refuses the export.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.checkpoint import atomic_write_text, json_default, plain
from pipeline.data.splits import read_splits
from pipeline.encoding import is_8bit
from pipeline.feed.loader import FeatureDataset, make_loader
from pipeline.infer.run_model import RunModel, load_run
from pipeline.infer.traced import (
    ClassifierExport,
    CTCExport,
    ExportError,
    build_module,
    example_inputs,
    max_difference,
    reference,
    wrapper_class,
)
from pipeline.store import StoreError, open_store
from pipeline.train.config import to_dict

FORMAT = "sfm-pipeline-export"
VERSION = 1
MODEL_FILE = "model.torchscript.pt"
CARD_FILE = "card.json"
TOLERANCE = 1e-4  # largest |exported - eager| accepted on any output value (float32)


@dataclass
class ExportResult:
    model: Path
    card: Path
    bytes: int
    max_abs_diff: float  # over every check
    checked_on: list[str]  # "random (B, T)" and "cached <split>" entries


def _outputs(rm: RunModel) -> dict:
    cls = wrapper_class(rm)
    if cls is CTCExport:
        return {"log_probs": "(B, T', V) float32", "lengths": "(B,) int64"}
    if cls is ClassifierExport:
        return {"logits": "(B, C) float32", "probs": "(B, C) float32"}
    return {"embedding": "(B, E) float32, L2-normalised"}


def _scales(path: str, encoding: str) -> list | None:
    if not is_8bit(encoding):
        return None
    try:
        return np.asarray(open_store(path).scales, np.float32).tolist()
    except (StoreError, OSError, KeyError, ValueError):
        return None  # the card says so: scales unknown, the store is gone


def make_card(rm: RunModel) -> dict:
    """The card of a run's export (everything but the file's name and size)."""
    state = plain(rm.task.state())
    inputs = []
    for s, (L, D), rate in zip(rm.stores, rm.shapes, rm.frame_rates, strict=True):
        fp = s.fingerprint
        inputs.append({
            "model": s.model,
            "upstream": fp.get("upstream"),
            "store": s.path,
            "fingerprint": fp,
            "layers": s.layers,
            "encoding": s.encoding,
            "scales": _scales(s.path, s.encoding),
            "frame_rate": rate,
            "shape": f"(B, {L}, T, {D}) float32",
        })  # fmt: skip
    card = {
        "format": FORMAT,
        "version": VERSION,
        "task": rm.cfg.task,
        "interface": rm.cfg.interface,
        "models": list(rm.cfg.models),
        "inputs": inputs,
        "outputs": _outputs(rm),
        "task_state": state,
        "metrics": rm.metrics(),
        "best_step": rm.step,
        "config": plain(to_dict(rm.cfg)),
        "torch": torch.__version__,
        "usage": (
            "import torch; m = torch.jit.load('model.torchscript.pt'); "
            "out = m([x_1, ...], [n_1, ...])  # x_i (B, L_i, T_i, D_i) float32, n_i (B,) int64"
        ),
    }
    for key in ("vocab", "labels"):
        if key in state:
            card[key] = state[key]
    return card


def cached_batches(rm: RunModel, split: str, limit: int) -> list[tuple[list, list]]:
    """Up to `limit` batches of the run's `split` from its stores, as `pipeline evaluate`
    batches them ([] when the stores or the split are gone)."""
    try:
        utts = rm.task.select(read_splits(rm.cfg.data, [split], required=())[split])
        readers = [open_store(s.path) for s in rm.stores]
        ds = FeatureDataset(readers, utts)
    except (KeyError, OSError, StoreError, ValueError):
        return []
    loader = make_loader(ds, rm.cfg.train.batch_size, tier="mmap", device=torch.device("cpu"), prefetch=0)  # fmt: skip
    out = []
    for batch in loader:
        out.append(([f.float() for f in batch["feats"]], list(batch["lengths"])))
        if len(out) >= limit:
            break
    return out


def verify(module: torch.jit.ScriptModule, rm: RunModel, check_batches: int = 4) -> tuple[float, list[str]]:  # fmt: skip
    """(largest |exported - eager| over every check, the checks) — see the module docstring."""
    cases: list[tuple[str, tuple[list, list]]] = []
    shapes = [(1, 1, True), (2, 9, False), (3, 14, True), (5, 62, True), (4, 41, False)]
    for seed, (b, t, equal) in enumerate(shapes):
        cases.append((f"random (B={b}, T={t})", example_inputs(rm, b, t, equal, seed + 1)))
    cases += [(f"cached test batch {i}", c) for i, c in enumerate(cached_batches(rm, "test", check_batches))]  # fmt: skip
    worst = 0.0
    for name, (feats, lengths) in cases:
        with torch.no_grad():
            got = module(feats, lengths)
        d = max_difference(reference(rm, feats, lengths), got)
        if not d <= TOLERANCE:
            raise ExportError(
                f"the traced module of {rm.run_dir} differs from the run's model on {name} "
                f"(max |diff| {d:.3g} > {TOLERANCE:g}): TorchScript tracing cannot express this "
                "interface or head; use `pipeline predict` with the run instead"
            )
        worst = max(worst, d)
    return worst, [n for n, _ in cases]


def export_run(
    run_dir: str | Path, out_dir: str | Path, force: bool = False, check_batches: int = 4
) -> ExportResult:
    """Write OUT_DIR/model.torchscript.pt and OUT_DIR/card.json for the run; see the docstring."""
    out_dir = Path(out_dir)
    model_path, card_path = out_dir / MODEL_FILE, out_dir / CARD_FILE
    if not force and (model_path.exists() or card_path.exists()):
        raise ExportError(f"{out_dir} already holds an export ({MODEL_FILE}); pass --force to overwrite it")  # fmt: skip
    rm = load_run(run_dir, device="cpu", read_scales=False)
    module = build_module(rm)
    worst, checks = verify(module, rm, check_batches)
    card = make_card(rm)
    card["check"] = {"max_abs_diff": worst, "tolerance": TOLERANCE, "on": checks}
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_path.with_name(model_path.name + ".tmp")
    inner = json.dumps(card, indent=2, default=json_default)
    torch.jit.save(module, str(tmp), _extra_files={CARD_FILE: inner})
    tmp.replace(model_path)
    data = model_path.read_bytes()
    card.update(file=MODEL_FILE, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    atomic_write_text(card_path, json.dumps(card, indent=2, default=json_default))
    return ExportResult(model_path, card_path, len(data), worst, checks)
