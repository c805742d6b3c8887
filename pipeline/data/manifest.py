"""Manifests: one utterance a JSONL line, read and written through the `Utterance` dataclass.

A manifest is the contract between data preparation and everything after it: every stage
reads audio only through the paths a manifest names. Trial lists for speaker verification
are plain TSV files beside the manifests (see `read_trials`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UserError

SPLITS = ("train", "dev", "test")  # every task dir has these; more evaluation splits may follow
MAX_LISTED = 20


class ManifestError(UserError, ValueError):
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

    Raises ManifestError naming the file and line of every malformed line, every duplicate id
    and (with `check_files`) every audio path that does not exist, all at once, before any work
    starts. With `absolute`, relative paths are rewritten to absolute ones.
    """
    path = Path(path)
    utts, problems = scan_manifest(path, absolute=absolute)
    if problems:
        raise ManifestError(_listing(f"manifest {path} has {len(problems)} problem(s):", problems, "Fix these lines or re-create the manifest."))  # fmt: skip
    if check_files:
        root = path.parent.resolve()
        missing = [
            u.path if absolute else str(u.resolve(root))
            for u in utts
            if not u.resolve(root).is_file()
        ]
        if missing:
            raise ManifestError(_listing(f"manifest {path} points at {len(missing)} missing audio file(s):", missing, "Fix the paths or re-create the manifest."))  # fmt: skip
    return utts


def scan_manifest(path: str | Path, absolute: bool = True) -> tuple[list[Utterance], list[str]]:
    """(the valid utterances, one message per problem): every bad line and duplicate id, by line.

    A missing file is one problem. Types are checked: id and path non-empty strings, duration
    a positive number, sample_rate a positive integer, split a string.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"manifest {path} does not exist; create it with `pipeline data synth` or `pipeline data import`"  # fmt: skip
        return [], [msg]
    root = path.parent.resolve()
    utts: list[Utterance] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        return [], [f"{path}: cannot be read as UTF-8 text ({e})"]
    for i, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        where = f"{path}:{i}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{where}: not valid JSON ({e})")
            continue
        try:
            u = Utterance.from_dict(d, where=where)
            _check_types(u, where)
        except ManifestError as e:
            problems.append(str(e))
            continue
        if u.id in first_line:
            problems.append(f"{where}: duplicate utterance id {u.id!r} (first on line {first_line[u.id]}); ids must be unique")  # fmt: skip
            continue
        first_line[u.id] = i
        if absolute:
            u.path = str(u.resolve(root))
        utts.append(u)
    return utts, problems


def _check_types(u: Utterance, where: str) -> None:
    bad = []
    for name in ("id", "path", "split"):
        v = getattr(u, name)
        if not isinstance(v, str) or not v:
            bad.append(f"{name} must be a non-empty string, got {v!r}")
    if (isinstance(u.duration, bool) or not isinstance(u.duration, (int, float))
            or not math.isfinite(u.duration) or not u.duration > 0):  # fmt: skip
        bad.append(f"duration must be a positive number of seconds, got {u.duration!r}")
    if isinstance(u.sample_rate, bool) or not isinstance(u.sample_rate, int) or u.sample_rate <= 0:  # fmt: skip
        bad.append(f"sample_rate must be a positive integer, got {u.sample_rate!r}")
    if bad:
        raise ManifestError(f"{where}: " + "; ".join(bad))


def _listing(head: str, items: Sequence[str], advice: str) -> str:
    shown = "\n  ".join(items[:MAX_LISTED])
    more = f"\n  ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return f"{head}\n  {shown}{more}\n{advice}"


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


def manifest_paths(data: str | Path, splits: Sequence[str] | None = None) -> list[Path]:
    """A manifest file, or a task folder's `<split>.jsonl` files, as a list of manifest paths.

    `splits` None: every `*.jsonl` of the folder, train/dev/test first (so an extra evaluation
    split such as `test_unseen.jsonl` is extracted and scored with the others).
    """
    data = Path(data)
    if data.is_file():
        return [data]
    if data.is_dir():
        if splits is None:
            names = {p.stem for p in data.glob("*.jsonl") if p.is_file()}
            splits = [s for s in SPLITS if s in names] + sorted(names - set(SPLITS))
        found = [data / f"{s}.jsonl" for s in splits if (data / f"{s}.jsonl").is_file()]
        if found:
            return found
        raise ManifestError(
            f"{data} holds no manifest (<split>.jsonl, e.g. {[s + '.jsonl' for s in SPLITS]})"
        )
    raise ManifestError(f"{data} is neither a manifest file nor a folder of manifests")


def read_manifests(
    data: str | Path, splits: Sequence[str] | None = None, check_files: bool = True
) -> list[Utterance]:
    """All utterances of a manifest file or a task folder (every split together; ids unique)."""
    out: list[Utterance] = []
    by_path = {p: read_manifest(p, check_files=check_files) for p in manifest_paths(data, splits)}
    for utts in by_path.values():
        out.extend(utts)
    shared = cross_split_duplicates(by_path)
    if shared:
        raise ManifestError(_listing(f"{data}: {len(shared)} duplicate utterance id(s) across manifests:", shared, "An utterance belongs to one split; remove it from all but one manifest."))  # fmt: skip
    return out


def cross_split_duplicates(by_path: dict[Path, Sequence[Utterance]]) -> list[str]:
    """One line per id found in more than one manifest: `id: in a.jsonl and b.jsonl`."""
    where: dict[str, list[str]] = {}
    for p, utts in by_path.items():
        for u in utts:
            where.setdefault(u.id, []).append(Path(p).name)
    return [f"{uid!r}: in {' and '.join(ps)}" for uid, ps in where.items() if len(ps) > 1]


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
