"""What a run was trained on: its stores and split manifests, recorded and checked.

`RUN_DIR/inputs.json` (written when a run starts, copied into each metrics.json record) is

    {"stores": {upstream: {"path": str, "fingerprint": {...}}},   # the store's group attrs
     "splits": {split: {"path": str, "utterances": int, "hash": str}}}

with `hash` = `pipeline.data.splits.split_hash` (ids, durations, audio file sizes). Resuming
a run or evaluating it compares the current inputs with the record (`compare_inputs`) and
refuses a changed store or manifest, naming the field and the file. Before training starts,
`check_agreement` refuses a manifest whose utterances a store does not hold or whose
durations disagree with the store's frame counts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pipeline.data.manifest import Utterance
from pipeline.data.splits import split_hash
from pipeline.errors import UserError
from pipeline.paths import run_stores

INPUTS_FILE = "inputs.json"
SHOWN = 5  # utterances named in a refusal (then a count)
FRAME_TOLERANCE = 2  # frames, plus FRAME_TOLERANCE_REL of the expected count
FRAME_TOLERANCE_REL = 0.01


class StoreMissingError(UserError, FileNotFoundError):
    """A feature store a run needs is not there; the message names it and how to make it."""


class InputsChanged(UserError, RuntimeError):
    """A store or manifest differs from the one the run was trained on."""


class ManifestStoreMismatch(UserError, ValueError):
    """A manifest whose utterances a store lacks or whose durations disagree with its frames."""


def find_stores(models: Sequence[str], cache: str | Path, stores: Sequence[str] = ()) -> list[Path]:
    """One store path per model: `--store` entries (positional or NAME=PATH), else CACHE_DIR/<name>.zarr."""
    paths = []
    for m, p in zip(models, run_stores(models, cache, stores), strict=True):
        if not p.exists():
            raise StoreMissingError(
                f"feature store for upstream {m!r} not found at {p}; extract it first "
                f"(`pipeline extract` with --model {m} and --out {p}), or point --cache/--store at it"
            )
        paths.append(p)
    return paths


def describe_inputs(
    models: Sequence[str], stores: Sequence[Any], splits: dict[str, list[Utterance]], data_dir: Path
) -> dict:
    """The inputs record of a run: each store's path and fingerprint, each split's hash."""
    return {
        "stores": {
            m: {"path": str(getattr(s, "path", "")), "fingerprint": dict(s.fingerprint)}
            for m, s in zip(models, stores, strict=True)
        },
        "splits": {
            k: {
                "path": str(data_dir / f"{k}.jsonl"),
                "utterances": len(v),
                "hash": split_hash(v),
                "labels": label_digests(v),
            }  # fmt: skip
            for k, v in splits.items()
        },
        "lists": {p.name: _file_digest(p) for p in sorted(Path(data_dir).glob("*.tsv"))},
    }


LABEL_FIELDS = ("text", "language", "speaker", "emotion", "fold")  # what tasks read of an utterance


def label_digests(utts: Sequence[Utterance]) -> dict[str, dict[str, str]]:
    """{field: {utterance id: 8-hex digest of its value}} for every label field the split sets:
    a changed transcript, language, speaker, emotion or fold is found and named on resume."""
    out: dict[str, dict[str, str]] = {}
    for f in LABEL_FIELDS:
        values = {u.id: getattr(u, f) for u in utts if getattr(u, f) is not None}
        if values:
            out[f] = {i: hashlib.sha1(str(v).encode()).hexdigest()[:8] for i, v in values.items()}
    return out


def inputs_summary(inputs: dict) -> dict:
    """`inputs` with each split's per-utterance label digests folded into one digest per field:
    what a metrics.json record carries (inputs.json keeps the whole record, for naming what
    changed)."""
    out = {**inputs, "splits": {}}
    for k, s in inputs.get("splits", {}).items():
        labels = {
            f: hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()[:16]
            for f, v in (s.get("labels") or {}).items()
        }
        out["splits"][k] = {**s, "labels": labels}
    return out


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def write_inputs(run_dir: Path, inputs: dict) -> Path:
    path = Path(run_dir) / INPUTS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(inputs, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    return path


def read_inputs(run_dir: Path) -> dict | None:
    """The recorded inputs of a run, None for a run written before they were recorded."""
    path = Path(run_dir) / INPUTS_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def compare_inputs(
    recorded: dict,
    current: dict,
    what_to_do: str,
    ignore_fields: Iterable[str] = (),
    splits: bool = True,
) -> None:
    """Raise InputsChanged naming every store field and split that differs from the record.

    `ignore_fields`: fingerprint fields not compared (e.g. manifest_hash when evaluating on
    another dataset); `splits`: compare the split hashes too.
    """
    ignore = set(ignore_fields)
    problems = []
    for m, cur in current["stores"].items():
        old = recorded.get("stores", {}).get(m)
        if old is None:
            continue  # a model the record does not know: the config check refuses it
        a, b = old["fingerprint"], cur["fingerprint"]
        for k in sorted((set(a) | set(b)) - ignore):
            if a.get(k) != b.get(k):
                problems.append(
                    f"store {cur['path']} ({m}): {k} was {a.get(k)!r} when the run was trained, now {b.get(k)!r}"  # fmt: skip
                )
    if splits:
        for k, cur in current["splits"].items():
            old = recorded.get("splits", {}).get(k)
            if old is not None and old["hash"] != cur["hash"]:
                problems.append(
                    f"manifest {cur['path']}: its utterances (ids, durations or audio file sizes) "
                    f"changed since the run was trained ({old['utterances']} -> {cur['utterances']} utterances)"  # fmt: skip
                )
            if old is None or "labels" not in old:
                continue  # recorded before labels were: nothing to compare
            for field in sorted(set(old["labels"]) | set(cur["labels"])):
                a, b = old["labels"].get(field, {}), cur["labels"].get(field, {})
                changed = sorted(i for i in set(a) | set(b) if a.get(i) != b.get(i))
                if changed:
                    problems.append(
                        f"manifest {cur['path']}: `{field}` changed for {len(changed)} "
                        f"utterance(s) since the run was trained: {_some(changed)}"
                    )
        for name in sorted(set(recorded.get("lists", {})) | set(current.get("lists", {}))):
            if "lists" in recorded and recorded["lists"].get(name) != current.get("lists", {}).get(
                name
            ):
                problems.append(
                    f"the list {name} of the data dir changed since the run was trained"
                )
    if problems:
        raise InputsChanged(
            "the run's inputs changed since it was trained:\n  "
            + "\n  ".join(problems)
            + f"\n{what_to_do}"
        )


def check_agreement(stores: Sequence[Any], utts: Sequence[Utterance], manifest: str) -> None:
    """Refuse utterances of `manifest` that a store lacks or whose duration disagrees with its frames.

    Expected frames: duration * the store's frame rate (its fingerprint), within
    FRAME_TOLERANCE + FRAME_TOLERANCE_REL of it.
    """
    problems = []
    for s in stores:
        name = str(getattr(s, "path", s))
        missing = [u.id for u in utts if u.id not in s]
        failed = {f["id"]: f.get("reason", "") for f in getattr(s, "failed", []) or []}
        unusable = [i for i in missing if i in failed]
        if unusable:  # extraction could not use their audio: re-extracting fails the same way
            shown = _some([f"{i} ({failed[i][:60]})" for i in unusable])
            problems.append(
                f"{len(unusable)} utterance(s) of {manifest} failed extraction into store "
                f"{name}: {shown}. Their audio cannot be used (unreadable, empty or NaN states): "
                f"drop them from {manifest} (or fix their audio and re-extract with --force)"
            )
            missing = [i for i in missing if i not in failed]
        if missing:
            problems.append(
                f"store {name} lacks {len(missing)} of the {len(utts)} utterances of {manifest}: "
                f"{_some(missing)}. The ids are missing from the store: re-extract it with "
                "`pipeline extract ... --force` on this data dir, or check that --data is the "
                "manifest the store was extracted from"
            )
        if unusable or missing:
            continue
        rate = float(s.frame_rate)
        bad = []
        for u in utts:
            frames, expected = int(s.length(u.id)), float(u.duration) * rate
            if abs(frames - expected) > FRAME_TOLERANCE + FRAME_TOLERANCE_REL * expected:
                bad.append(f"{u.id} ({u.duration:g} s, {frames} frames = {frames / rate:.2f} s)")
        if bad:
            problems.append(
                f"{len(bad)} utterance(s) of {manifest} have a duration that disagrees with "
                f"their frames in store {name} at {rate:g} Hz: {_some(bad)}. The manifest or the "
                "audio changed after extraction: re-extract with `pipeline extract ... --force`, "
                "or restore the manifest the store was built from"
            )
    if problems:
        raise ManifestStoreMismatch(";\n".join(problems))


def _some(items: Sequence[str]) -> str:
    more = f" ... and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more
