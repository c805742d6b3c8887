"""Manifests: one utterance a JSONL line, read and written through the `Utterance` dataclass.

A manifest is the contract between data preparation and everything after it: every stage
reads audio only through the paths a manifest names. Trial lists for speaker verification
are plain TSV files beside the manifests (see `read_trials`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "dev", "test")


class ManifestError(ValueError):
    """A manifest that cannot be used as it is; the message names the file and what to fix."""


@dataclass
class Utterance:
    """One utterance. Paths are stored as written; relative paths resolve against the manifest's folder."""

    id: str  # unique within a manifest; the key of every feature store
    path: str  # audio file (wav/flac), absolute or relative to the manifest
    duration: float  # seconds
    sample_rate: int  # of the file on disk (audio is resampled to 16 kHz when read)
    split: str  # train | dev | test
    text: str | None = None  # transcript (asr_en, ml_asr)
    language: str | None = None  # ISO 639-3 code (ml_asr), e.g. "eng", "cmn"
    speaker: str | None = None  # speaker id (sv, and wherever known)
    emotion: str | None = None  # neu | hap | ang | sad (er)
    fold: int | None = None  # cross-validation fold / session (IEMOCAP: 1..5)

    def to_json(self) -> str:
        d = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> Utterance:
        if not isinstance(d, dict):
            raise ManifestError(f"{where}: expected a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ManifestError(
                f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(names)}"
            )
        missing = [k for k in ("id", "path", "duration", "sample_rate", "split") if k not in d]
        if missing:
            raise ManifestError(f"{where}: missing required field(s) {missing}")
        return cls(**d)

    def resolve(self, root: Path) -> Path:
        """The audio path, resolved against the manifest's folder when relative."""
        p = Path(self.path)
        return p if p.is_absolute() else (root / p)


def write_manifest(path: str | Path, utts: Iterable[Utterance]) -> Path:
    """Write utterances as JSONL (atomically: a temp file renamed into place). Ids must be unique."""
    path = Path(path)
    utts = list(utts)
    _check_unique(utts, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for u in utts:
            f.write(u.to_json() + "\n")
    tmp.replace(path)
    return path


def read_manifest(
    path: str | Path, check_files: bool = True, absolute: bool = True
) -> list[Utterance]:
    """Read a JSONL manifest.

    Raises ManifestError naming the file and line for malformed lines, duplicate ids, and (with
    `check_files`) every audio path that does not exist, all at once, before any work starts.
    With `absolute`, relative paths are rewritten to absolute ones.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(
            f"manifest {path} does not exist; create it with `pipeline data synth` or `pipeline data import`"
        )
    root = path.parent.resolve()
    utts: list[Utterance] = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{i}: not valid JSON ({e})") from e
            u = Utterance.from_dict(d, where=f"{path}:{i}")
            if absolute:
                u.path = str(u.resolve(root))
            utts.append(u)
    _check_unique(utts, path)
    if check_files:
        missing = [
            u.path if absolute else str(u.resolve(root))
            for u in utts
            if not u.resolve(root).is_file()
        ]
        if missing:
            shown = "\n  ".join(missing[:50])
            more = f"\n  ... and {len(missing) - 50} more" if len(missing) > 50 else ""
            raise ManifestError(
                f"manifest {path} points at {len(missing)} missing audio file(s):\n  {shown}{more}\n"
                "Fix the paths or re-create the manifest."
            )
    return utts


def _check_unique(utts: Sequence[Utterance], where: Path) -> None:
    seen: set[str] = set()
    dups: list[str] = []
    for u in utts:
        if u.id in seen:
            dups.append(u.id)
        seen.add(u.id)
    if dups:
        raise ManifestError(
            f"{where}: duplicate utterance id(s) {sorted(set(dups))[:20]}; ids must be unique"
        )


def manifest_paths(data: str | Path, splits: Sequence[str] = SPLITS) -> list[Path]:
    """A manifest file, or a task folder holding `<split>.jsonl` files, as a list of manifest paths."""
    data = Path(data)
    if data.is_file():
        return [data]
    if data.is_dir():
        found = [data / f"{s}.jsonl" for s in splits if (data / f"{s}.jsonl").is_file()]
        if found:
            return found
        raise ManifestError(f"{data} holds none of {[s + '.jsonl' for s in splits]}")
    raise ManifestError(f"{data} is neither a manifest file nor a folder of manifests")


def read_manifests(
    data: str | Path, splits: Sequence[str] = SPLITS, check_files: bool = True
) -> list[Utterance]:
    """All utterances of a manifest file or a task folder (train, dev and test together)."""
    out: list[Utterance] = []
    for p in manifest_paths(data, splits):
        out.extend(read_manifest(p, check_files=check_files))
    _check_unique(out, Path(data))
    return out


def read_trials(path: str | Path) -> list[tuple[int, str, str]]:
    """A speaker-verification trial list: TSV lines `label<TAB>enroll_id<TAB>test_id`, label 1 = same speaker."""
    path = Path(path)
    trials = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or parts[0] not in ("0", "1"):
                raise ManifestError(
                    f"{path}:{i}: expected `label enroll_id test_id` with label 0 or 1"
                )
            trials.append((int(parts[0]), parts[1], parts[2]))
    return trials


def write_trials(path: str | Path, trials: Iterable[tuple[int, str, str]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for label, a, b in trials:
            f.write(f"{label}\t{a}\t{b}\n")
    return path
