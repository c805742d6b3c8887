"""IEMOCAP -> `OUT/iemocap/fold<k>/{train,dev,test}.jsonl`, five leave-one-session-out folds.

Layout read (IEMOCAP_full_release as distributed):

    ROOT/IEMOCAP_full_release/Session<k>/sentences/wav/<dialog>/<utt>.wav
    ROOT/IEMOCAP_full_release/Session<k>/dialog/EmoEvaluation/<dialog>.txt

An EmoEvaluation file holds one summary line per utterance,
`[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]`, followed by
the individual annotators' lines (ignored). ROOT may also be IEMOCAP_full_release itself;
macOS `._*` files are ignored.

As in SUPERB ER: labels neu, hap, ang, sad are kept, exc is merged into hap, the rest
dropped (5,531 utterances). Fold k tests on Session k; a seeded random 20% of the other
sessions' utterances is its dev set and the rest its training set. Fields: `emotion`,
`speaker` (`Ses01F`: session and the speaking actor's gender, from the utterance id's last
part), `fold` = k.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from pipeline.data.corpora.common import CorpusError, ImportResult, find_root, probe, seeded_holdout
from pipeline.data.manifest import Utterance

SESSIONS = (1, 2, 3, 4, 5)
LABELS = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}
DEV_FRACTION = 0.2
EXPECTED = (
    "ROOT/IEMOCAP_full_release/Session{1..5}/ with sentences/wav/<dialog>/<utt>.wav and "
    "dialog/EmoEvaluation/<dialog>.txt"
)
_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)\s+\[")


def speaker_of(utt_id: str) -> str:
    """`Ses01F_impro01_M000` -> `Ses01M`: the session and the gender of the actor speaking."""
    return utt_id[:5] + utt_id.rsplit("_", 1)[-1][0]


def read_labels(session_dir: Path) -> list[tuple[str, str, str]]:
    """(dialog, utt_id, raw label) for every utterance summary line of one session."""
    emo_dir = session_dir / "dialog" / "EmoEvaluation"
    files = sorted(p for p in emo_dir.glob("*.txt") if not p.name.startswith("."))
    if not files:
        raise CorpusError(f"{emo_dir} holds no <dialog>.txt label files; expected {EXPECTED}")
    out = []
    for f in files:
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _LINE.match(line)
            if m:
                out.append((f.stem, m.group(1), m.group(2)))
    return out


def import_iemocap(root: Path, out: Path, seed: int = 0) -> ImportResult:
    """Write `out/iemocap/fold{1..5}/{train,dev,test}.jsonl`; `seed` picks the dev utterances."""
    base = find_root(Path(root), "IEMOCAP_full_release", EXPECTED)
    missing = [f"Session{k}" for k in SESSIONS if not (base / f"Session{k}").is_dir()]
    if missing:
        raise CorpusError(f"{base} lacks {missing}; expected {EXPECTED}")
    result = ImportResult()
    by_session: dict[int, list[Utterance]] = {}
    for k in SESSIONS:
        session = base / f"Session{k}"
        entries = []
        for dialog, utt_id, label in read_labels(session):
            if label not in LABELS:
                continue
            wav = session / "sentences" / "wav" / dialog / f"{utt_id}.wav"
            fields = {"id": utt_id, "emotion": LABELS[label], "speaker": speaker_of(utt_id)}
            entries.append((wav, fields))
        # probe with a placeholder split; each fold sets its own
        by_session[k] = probe(
            [(w, {**f, "split": "test"}) for w, f in entries], result, f"IEMOCAP Session{k}"
        )
    for k in SESSIONS:
        others = [u for j in SESSIONS if j != k for u in by_session[j]]
        train, dev = seeded_holdout(others, DEV_FRACTION, seed + k)
        task = Path(out) / "iemocap" / f"fold{k}"
        for split, utts in (("train", train), ("dev", dev), ("test", by_session[k])):
            copies = [replace(u, split=split, fold=k) for u in utts]
            result.write(task / f"{split}.jsonl", copies)
    return result
