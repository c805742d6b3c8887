"""LibriSpeech (openslr.org/12) -> `OUT/librispeech/{train,dev,test}.jsonl` for English ASR.

Layout read (as the archives extract):

    ROOT/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
    ROOT/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt   (`<utt id> <TEXT>` lines)

with train-clean-100 -> train, dev-clean -> dev, test-clean -> test (the SUPERB ASR setting).
ROOT may also be the LibriSpeech folder itself. Utterance ids are LibriSpeech's own
(`103-1240-0000`); `text` is the upper-case transcript; `speaker` the speaker id.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.data.corpora.common import CorpusError, ImportResult, find_root, probe

SUBSETS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
EXPECTED = (
    "ROOT/LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/<chapter>/ "
    "(extract train-clean-100.tar.gz, dev-clean.tar.gz and test-clean.tar.gz from openslr.org/12 into ROOT)"
)


def import_librispeech(root: Path, out: Path, seed: int = 0) -> ImportResult:
    """Write `out/librispeech/{train,dev,test}.jsonl` from a LibriSpeech tree. `seed` is unused."""
    base = find_root(Path(root), "LibriSpeech", EXPECTED)
    missing = [s for s in SUBSETS.values() if not (base / s).is_dir()]
    if missing:
        raise CorpusError(f"{base} lacks subset folder(s) {missing}; expected {EXPECTED}")
    result = ImportResult()
    for split, subset in SUBSETS.items():
        entries = []
        transcripts = sorted((base / subset).glob("*/*/*.trans.txt"))
        if not transcripts:
            raise CorpusError(
                f"{base / subset} holds no <spk>/<chapter>/*.trans.txt files; expected {EXPECTED}"
            )
        for trans in transcripts:
            for i, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
                parts = line.strip().split(maxsplit=1)
                if not parts:
                    continue
                if len(parts) == 1:
                    result.skipped.append(f"{trans}:{i}: {parts[0]} has an empty transcript")
                    continue
                utt_id, text = parts
                fields = {
                    "id": utt_id,
                    "split": split,
                    "text": text,
                    "speaker": utt_id.split("-")[0],
                }
                entries.append((trans.parent / f"{utt_id}.flac", fields))
        utts = probe(entries, result, f"LibriSpeech {subset}")
        result.write(Path(out) / "librispeech" / f"{split}.jsonl", utts)
    return result
