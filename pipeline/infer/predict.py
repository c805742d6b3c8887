"""`pipeline predict`: a trained run on new audio, end to end (upstreams live, interface, head).

    res = predict("runs/x", ["clips/", "more.wav"], out="preds.jsonl")
    res = predict("runs/x", ["data/tiny/er/test.jsonl"], score=True)   # + res.metric
    res = predict("runs/sv", trials="data/tiny/sv/trials.tsv", out="scores.jsonl")

Legend: B batch, L_i stored states of upstream i, T_i frames, D_i width, T output frames.

1. The run (pipeline/infer/run_model.py): config.yaml, best.pt, and from inputs.json the
   fingerprint of every store it trained on: upstream, weights hash, Whisper mode, stored
   states (`layers`), encoding (fp16 / int8 / fp8, whose scales are read from the store).
2. The upstreams (pipeline/infer/live.py): loaded by the name the fingerprint records (or
   given: `upstreams={model: Upstream | name | path}`), refused unless they reproduce that
   fingerprint in every field but manifest_hash (UpstreamMismatch names the fields).
3. Batches as `pipeline evaluate` makes them: the loader's order without shuffling (longest
   first), the run's batch size; processed in chunks of about `chunk_seconds` of audio, each
   chunk's audio through every upstream in stage one's batches, encoded as stored, decoded and
   padded as the loader does, then interface (N x (B, L_i, T_i, D_i) -> (B, T, D)) and head
   on the device (`pipeline.device.resolve_device`). On a manifest of a run's split, the
   outputs, and with `score=True` the metric, are those `pipeline evaluate` computes from the
   stores (tests/test_predict.py).
4. Output (`out`, JSONL, one line per utterance in input order): `id`, `path`, `duration` and
   the task's fields (pipeline/infer/outputs.py). With `trials` (sv): one line per trial,
   `enroll`, `test`, `label`, `score` (cosine), and the EER when the list has both labels.
   Unreadable audio is skipped and listed (`res.skipped`, `OUT.skipped.jsonl`); the metric
   record goes to `OUT.metrics.json`.

A rich progress bar shows audio seconds done and audio-seconds per second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pipeline.checkpoint import atomic_write_text, json_default
from pipeline.console import console
from pipeline.data.manifest import Utterance
from pipeline.errors import UserError
from pipeline.feed.loader import BucketBatchSampler, manifest_durations
from pipeline.infer.inputs import NoInputs, collect_inputs, trial_inputs
from pipeline.infer.live import LiveFeatures, collate, open_upstreams
from pipeline.infer.outputs import head_outputs, make_lid
from pipeline.infer.run_model import RunModel, load_run
from pipeline.tasks.base import metrics_record
from pipeline.tasks.metrics import eer
from pipeline.tasks.sv import SpeakerVerification


class PredictError(UserError, ValueError):
    """A prediction that cannot run as asked; the message says why and what to do."""


@dataclass
class PredictResult:
    out: Path | None  # the JSONL written (None: nothing written)
    records: list[dict]  # the lines: one per utterance, or one per trial
    outputs: dict[str, Any]  # id -> the task's own output (Task.predict's), for scoring
    skipped: list[dict] = field(default_factory=list)  # [{id, path, reason}]
    metric: dict | None = None  # a metrics record (score=True, or trials with both labels)
    audio_seconds: float = 0.0  # audio predicted
    wall_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Audio-seconds per second of wall time."""
        return self.audio_seconds / max(self.wall_seconds, 1e-9)


def _chunks(batches: list[list[int]], utts: Sequence[Utterance], seconds: float) -> list[list[list[int]]]:  # fmt: skip
    """Consecutive batches grouped into chunks of at least `seconds` of audio (the last: less)."""
    out: list[list[list[int]]] = []
    cur: list[list[int]] = []
    acc = 0.0
    for b in batches:
        cur.append(b)
        acc += sum(float(utts[i].duration) for i in b)
        if acc >= seconds:
            out.append(cur)
            cur, acc = [], 0.0
    return out + ([cur] if cur else [])


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]predict"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total:.1f} audio-s"),
        TextColumn("[cyan]{task.fields[rate]:.1f} audio-s/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )


def run_utterances(
    rm: RunModel,
    utts: Sequence[Utterance],
    live: LiveFeatures,
    batch_size: int,
    chunk_seconds: float = 300.0,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, dict], dict[str, str]]:
    """({id: task output}, {id: JSON fields}, {id: why skipped}) for `utts`."""
    sampler = BucketBatchSampler(manifest_durations(utts), batch_size, shuffle=False)
    lid = make_lid(rm)
    outputs: dict[str, Any] = {}
    fields: dict[str, dict] = {}
    failed: dict[str, str] = {}
    t0 = time.perf_counter()
    n_up = max(1, len(live.upstreams))
    with _progress(progress) as bar:
        job = bar.add_task("predict", total=sum(float(u.duration) for u in utts), rate=0.0)

        def advance(seconds: float) -> None:
            bar.advance(job, seconds / n_up)
            done = bar.tasks[0].completed
            bar.update(job, rate=done / max(time.perf_counter() - t0, 1e-9))

        for chunk in _chunks(sampler.batches(), utts, chunk_seconds):
            chunk_utts = [utts[i] for b in chunk for i in b]
            values, bad = live.compute(chunk_utts, on_batch=advance)
            failed.update(bad)
            for b in chunk:
                keep = [utts[i] for i in b if utts[i].id in values]
                if not keep:
                    continue
                feats, lengths = collate([values[u.id] for u in keep], rm.stores, rm.device)
                out, out_len = rm.forward(feats, lengths)  # (B, T, D), (B,)
                outs, flds = head_outputs(rm, out, out_len, lid)
                for u, o, f in zip(keep, outs, flds, strict=True):
                    outputs[u.id], fields[u.id] = o, f
    return outputs, fields, failed


def predict(
    run_dir: str | Path,
    inputs: Sequence[str | Path] = (),
    out: str | Path | None = None,
    *,
    trials: str | Path | None = None,
    upstreams: Mapping[str, Any] | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    batch_seconds: float | None = None,
    chunk_seconds: float = 300.0,
    score: bool = False,
    progress: bool = True,
) -> PredictResult:
    """Predict `inputs` (audio files, folders, manifests) with the run `run_dir`; see the module
    docstring. `upstreams`: {model: Upstream object | name | path} instead of the recorded names."""
    t0 = time.perf_counter()
    rm = load_run(run_dir, device)
    utts, skipped = collect_inputs(inputs) if inputs else ([], [])
    trial_list = None
    if trials is not None:
        if not isinstance(rm.task, SpeakerVerification):
            raise PredictError(
                f"--trials: the run {rm.run_dir} is a {rm.cfg.task} run; trial lists are scored "
                "by speaker-verification (sv) runs"
            )
        trial_list, utts, more = trial_inputs(trials, utts)
        skipped += more
    elif not inputs:
        raise NoInputs("no input given: name audio files, a folder of them or a manifest (.jsonl)")
    ups = open_upstreams(rm, upstreams, rm.device)
    live = LiveFeatures(ups, rm.stores, rm.device, batch_seconds)
    bs = int(batch_size or rm.cfg.train.batch_size)
    outputs, fields, failed = run_utterances(rm, utts, live, bs, chunk_seconds, progress)
    by_id = {u.id: u for u in utts}
    skipped += [{"id": i, "path": by_id[i].path, "reason": r} for i, r in failed.items()]
    done = [u for u in utts if u.id in outputs]
    res = PredictResult(None, [], outputs, skipped)
    res.audio_seconds = sum(float(u.duration) for u in done)
    if trial_list is not None:
        res.records, res.metric = score_trials(trial_list, outputs, str(trials))
    else:
        res.records = [
            {"id": u.id, "path": u.path, "duration": float(u.duration), **fields[u.id]}
            for u in done
        ]
        if score:
            res.metric = score_outputs(rm, done, outputs, inputs)
    res.wall_seconds = time.perf_counter() - t0
    if out is not None:
        res.out = write_results(Path(out), res)
    for s in skipped:
        console.print(f"[yellow]skipped {s['id']}: {s['reason']}", highlight=False)
    return res


def score_outputs(
    rm: RunModel, done: list[Utterance], outputs: dict[str, Any], inputs: Sequence[str | Path]
) -> dict:
    """The task's metric over the labelled utterances predicted, as `pipeline evaluate` scores a
    split: named after the one manifest given (its stem is the split, its folder the data dir,
    where sv finds trials_<split>.tsv / trials.tsv)."""
    manifests = [Path(p) for p in inputs if Path(p).suffix == ".jsonl"]
    if len(manifests) != 1 or len(manifests) != len(inputs):
        raise PredictError(
            "--score needs exactly one manifest (.jsonl) as input, whose labels it scores against"
        )
    try:
        scored = rm.task.select(done)
    except ValueError as e:
        raise PredictError(f"--score: {manifests[0]}: {e}") from None
    if not scored:
        raise PredictError(
            f"--score: {manifests[0]} has no utterance labelled for task {rm.cfg.task!r}"
        )
    try:
        return rm.task.score(
            [outputs[u.id] for u in scored], scored, manifests[0].stem, manifests[0].parent
        )
    except ValueError as e:
        raise PredictError(f"--score: {manifests[0]}: {e}") from None


def score_trials(
    trials: list[tuple[int, str, str]], emb: dict[str, Any], source: str
) -> tuple[list[dict], dict | None]:
    """One line per trial (cosine score, null where an utterance was skipped) and the EER (the
    same computation as the sv task's score) when the scored trials hold both labels."""
    ok = [(lab, a, b) for lab, a, b in trials if a in emb and b in emb]
    scores = []
    if ok:
        x = torch.stack([torch.as_tensor(emb[a]) for _, a, _ in ok])  # (N, E)
        y = torch.stack([torch.as_tensor(emb[b]) for _, _, b in ok])
        scores = F.cosine_similarity(x, y, dim=-1).numpy()
    it = iter(float(s) for s in scores)
    lines = [
        {"enroll": a, "test": b, "label": lab, "score": next(it) if a in emb and b in emb else None}
        for lab, a, b in trials
    ]
    labels = [lab for lab, _, _ in ok]
    if len(set(labels)) < 2:
        return lines, None
    rec = metrics_record("sv", "eer", eer(labels, scores), "lower", Path(source).stem)
    rec.update(num_trials=len(ok), trials=source, skipped_trials=len(trials) - len(ok))
    return lines, rec


def write_results(out: Path, res: PredictResult) -> Path:
    """OUT (JSONL), OUT.skipped.jsonl when anything was skipped, OUT.metrics.json with a metric."""
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False, default=json_default) + "\n" for r in res.records)  # fmt: skip
    atomic_write_text(out, text)
    side = out.with_name(out.stem + ".skipped.jsonl")
    if res.skipped:
        atomic_write_text(side, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in res.skipped))  # fmt: skip
    else:
        side.unlink(missing_ok=True)
    if res.metric is not None:
        doc = dict(res.metric, audio_seconds=res.audio_seconds, wall_seconds=res.wall_seconds)
        atomic_write_text(out.with_name(out.stem + ".metrics.json"), json.dumps(doc, indent=2, default=json_default))  # fmt: skip
    return out
