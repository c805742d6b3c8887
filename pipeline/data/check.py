"""Check manifests before extraction: every problem of every manifest, in one run.

`check_manifests(target)` reads each manifest line by line (every malformed line is reported,
with its number), finds ids repeated within a manifest or across the splits of one task dir
(extract refuses both), utterances whose audio is missing or cannot be decoded, a duration
that disagrees with the decoded audio for *every* utterance of a file (two utterances may
share one), empty manifests and trial lists naming unknown ids. Anything extract or train
refuses about a manifest is reported here first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.audio import AudioError, load_audio
from pipeline.data.manifest import (
    ManifestError,
    Utterance,
    cross_split_duplicates,
    read_trials,
    scan_manifest,
)

TARGET_SR = 16000
DURATION_TOLERANCE = 0.05  # seconds between the manifest and the decoded audio


@dataclass
class CheckReport:
    """What `check_manifests` found: counts and one line per problem."""

    manifests: list[Path] = field(default_factory=list)
    utterances: int = 0
    files: int = 0
    seconds: float = 0.0  # of decoded audio
    problems: list[str] = field(default_factory=list)


def find_manifests(target: Path) -> list[Path]:
    """A manifest file, or every *.jsonl under a folder (sorted)."""
    if target.is_file():
        return [target]
    return sorted(target.rglob("*.jsonl")) if target.is_dir() else []


def check_manifests(
    target: str | Path, track: Callable[[Iterable], Iterable] = lambda x: x
) -> CheckReport:
    """Check `target` (a manifest or a folder of them); `track` wraps the decode loop (progress)."""
    target = Path(target)
    rep = CheckReport(manifests=find_manifests(target))
    if not rep.manifests:
        raise ManifestError(f"{target} is not a manifest nor a folder holding *.jsonl manifests")
    by_dir: dict[Path, dict[Path, list[Utterance]]] = {}
    users: dict[Path, list[tuple[Path, Utterance]]] = {}  # audio file -> (manifest, utt)
    for m in rep.manifests:
        utts, problems = scan_manifest(m)
        rep.problems += problems
        if not utts and not problems:
            rep.problems.append(f"{m}: holds no utterance (training and extraction refuse it)")
        rep.utterances += len(utts)
        by_dir.setdefault(m.parent, {})[m] = utts
        for u in utts:
            users.setdefault(Path(u.path), []).append((m, u))
    for d, manifests in by_dir.items():
        rep.problems += [
            f"{d}: utterance id {line} (extract refuses an id in two splits)"
            for line in cross_split_duplicates(manifests)
        ]
    rep.problems += _check_trials(by_dir)
    rep.files = len(users)
    for p, used in users.items():
        if not p.is_file():
            rep.problems += [f"{m}: {u.id}: {p} does not exist" for m, u in used]
    present = [p for p in users if p.is_file()]
    for p in track(present):
        try:
            n = len(load_audio(p))
        except AudioError as e:
            rep.problems += [f"{m}: {u.id}: {e}" for m, u in users[p]]
            continue
        rep.seconds += n / TARGET_SR
        for m, u in users[p]:
            if abs(n / TARGET_SR - u.duration) > DURATION_TOLERANCE:
                rep.problems.append(
                    f"{m}: {u.id}: manifest says {u.duration:.3f} s, {p} holds {n / TARGET_SR:.3f} s"
                )
    return rep


def _check_trials(by_dir: dict[Path, dict[Path, list[Utterance]]]) -> list[str]:
    problems = []
    for d, manifests in sorted(by_dir.items()):
        t = d / "trials.tsv"
        if not t.is_file():
            continue
        ids = {u.id for utts in manifests.values() for u in utts}
        try:
            unknown = sorted({i for _, a, b in read_trials(t) for i in (a, b)} - ids)
        except ManifestError as e:
            problems.append(str(e))
            continue
        if unknown:
            problems.append(
                f"{t}: {len(unknown)} id(s) not in the manifests beside it, e.g. {unknown[:5]}"
            )
    return problems
