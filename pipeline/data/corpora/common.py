"""What every corpus importer shares: probing files into `Utterance`s, seeded splits, results."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pipeline.audio import AudioError, audio_info
from pipeline.data.manifest import Utterance, write_manifest
from pipeline.errors import UserError

T = TypeVar("T")
MAX_LISTED = 50


class CorpusError(UserError, ValueError):
    """A corpus folder that does not have the expected layout; the message says what is expected."""


@dataclass
class ImportResult:
    """What an importer wrote (manifest -> utterance count) and what it left out, with reasons."""

    written: dict[Path, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # "file or id: reason"

    def write(self, path: Path, utts: Sequence[Utterance]) -> None:
        write_manifest(path, utts)
        self.written[path] = len(utts)


def listing(items: Sequence[str], limit: int = MAX_LISTED) -> str:
    """Items one a line (indented), at most `limit` of them plus a count of the rest."""
    shown = "\n  ".join(str(x) for x in items[:limit])
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"  {shown}{more}"


def probe(
    entries: Iterable[tuple[Path, dict[str, Any]]], result: ImportResult, what: str
) -> list[Utterance]:
    """Turn (audio path, Utterance fields) pairs into Utterances, reading only file headers.

    `fields` must hold id and split (and any labels). Files with 0 samples are skipped and
    noted in `result.skipped`; missing or unreadable files are collected and raised together
    as one CorpusError naming every file, so one run shows everything that is wrong.
    """
    utts: list[Utterance] = []
    errors: list[str] = []
    for path, fields in entries:
        try:
            frames, sr, _ = audio_info(path)
        except AudioError as e:
            errors.append(str(e))
            continue
        if frames == 0:
            result.skipped.append(f"{path}: 0 samples")
            continue
        utts.append(
            Utterance(
                path=str(path.resolve()), duration=round(frames / sr, 4), sample_rate=sr, **fields
            )
        )
    if errors:
        raise CorpusError(
            f"{what}: {len(errors)} audio file(s) are missing or unreadable:\n{listing(errors)}\n"
            "Re-extract the corpus archives (or remove the broken entries) and import again."
        )
    return utts


def seeded_holdout(items: Sequence[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Split `items` into (kept, held_out) with a seeded random `fraction` held out (at least one
    when there are two or more items). The order within each part follows `items`."""
    n_held = round(len(items) * fraction)
    if len(items) >= 2:
        n_held = min(max(n_held, 1), len(items) - 1)
    held = set(random.Random(seed).sample(range(len(items)), n_held))
    kept = [x for i, x in enumerate(items) if i not in held]
    return kept, [x for i, x in enumerate(items) if i in held]


def find_root(root: Path, marker: str, expected: str) -> Path:
    """`root/marker` if it exists, else `root` itself when its name is `marker`; otherwise a
    CorpusError that names what was expected."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"corpus root {root} is not a folder; expected {expected}")
    if (root / marker).is_dir():
        return root / marker
    if root.name == marker:
        return root
    raise CorpusError(f"{root} holds no {marker}/ folder; expected {expected}")
