"""A task data dir's split manifests: which there are, reading them, and a hash of each.

A task data dir holds `train.jsonl`, `dev.jsonl`, `test.jsonl` and any further evaluation
split `<name>.jsonl` (e.g. `test_unseen.jsonl`); `split_names` lists them, train/dev/test
first. `split_hash` covers what is cheap to check and changes what a run learns from: each
utterance's id, duration and audio file size (so audio swapped under the same ids is caught).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from pipeline.data.manifest import SPLITS, ManifestError, Utterance, read_manifest


def split_names(data_dir: str | Path) -> list[str]:
    """The splits with a manifest in `data_dir`: train, dev, test (those present), then others sorted."""
    data_dir = Path(data_dir)
    found = {p.stem for p in data_dir.glob("*.jsonl") if p.is_file()}
    return [s for s in SPLITS if s in found] + sorted(found - set(SPLITS))


def read_splits(
    data_dir: str | Path,
    splits: Sequence[str] | None = None,
    check_files: bool = False,
    required: Sequence[str] = ("train",),
) -> dict[str, list[Utterance]]:
    """{split: utterances} for the `splits` (default: every split) whose manifest exists.

    A split in `required` that has no manifest raises ManifestError naming the file.
    """
    data_dir = Path(data_dir)
    wanted = split_names(data_dir) if splits is None else list(splits)
    out = {}
    for split in list(dict.fromkeys([*required, *wanted])):
        path = data_dir / f"{split}.jsonl"
        if path.is_file():
            if split in wanted:
                out[split] = read_manifest(path, check_files=check_files)
        elif split in required:
            raise ManifestError(
                f"{path} does not exist; --data must be a task data dir holding "
                f"{', '.join(s + '.jsonl' for s in SPLITS)} (see `pipeline data synth`)"
            )
    return out


def file_size(path: str | Path) -> int:
    """Bytes of an audio file, -1 when it cannot be read (stat)."""
    try:
        return Path(path).stat().st_size
    except OSError:
        return -1


def split_hash(utts: Sequence[Utterance]) -> str:
    """sha256 (16 hex) over sorted (id, duration to 0.1 ms, audio file size) of the utterances."""
    h = hashlib.sha256()
    for uid, dur, size in sorted(
        (u.id, round(float(u.duration), 4), file_size(u.path)) for u in utts
    ):
        h.update(f"{uid}\t{dur}\t{size}\n".encode())
    return h.hexdigest()[:16]
