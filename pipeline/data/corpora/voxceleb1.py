"""VoxCeleb1 -> `OUT/voxceleb1/{train,dev,test}.jsonl` and `trials.tsv` for speaker verification.

Layout read (vox1_dev_wav.zip and vox1_test_wav.zip extracted, both unpack to `wav/`):

    ROOT/wav/<spk>/<video>/<utt>.wav           e.g. wav/id10270/x6uYqmx31kE/00001.wav
    ROOT/veri_test2.txt or ROOT/veri_test.txt  `label enroll_path test_path` lines, e.g.
                                               `1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav`

ROOT may instead hold several `*/wav/` folders (e.g. vox1_dev_wav/wav and vox1_test_wav/wav);
they are merged. The trial list is looked for in ROOT, ROOT/meta and ROOT's parent, preferring
the cleaned veri_test2.txt; pass `trials=` to name another file.

Written: test = every utterance the trial list names; train = every utterance of the speakers
the trial list does not name; dev = a seeded random 2% of those training utterances.
Utterance ids are `<spk>/<video>/<utt>` (the path without `.wav`), `speaker` = `<spk>`;
`trials.tsv` holds `label<TAB>enroll_id<TAB>test_id` with those ids.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.data.corpora.common import CorpusError, ImportResult, listing, probe, seeded_holdout
from pipeline.data.manifest import write_trials

TRIAL_NAMES = ("veri_test2.txt", "veri_test.txt")
DEV_FRACTION = 0.02
EXPECTED = (
    "ROOT/wav/<spk>/<video>/<utt>.wav and the trial list ROOT/veri_test2.txt (or veri_test.txt)"
)


def _wav_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise CorpusError(f"VoxCeleb1 root {root} is not a folder; expected {EXPECTED}")
    if (root / "wav").is_dir():
        return [root / "wav"]
    dirs = sorted(d / "wav" for d in root.iterdir() if (d / "wav").is_dir())
    if not dirs:
        raise CorpusError(f"{root} holds no wav/ folder; expected {EXPECTED}")
    return dirs


def _find_trials(root: Path) -> Path:
    for name in TRIAL_NAMES:
        for folder in (root, root / "meta", root.parent):
            if (folder / name).is_file():
                return folder / name
    raise CorpusError(
        f"no VoxCeleb1 trial list ({' or '.join(TRIAL_NAMES)}) in {root}, {root / 'meta'} or {root.parent}; "
        "download veri_test2.txt from the VoxCeleb site into ROOT or pass its path with --trials"
    )


def read_official_trials(path: Path) -> list[tuple[int, str, str]]:
    """The official list as (label, enroll_id, test_id) with ids `<spk>/<video>/<utt>`."""
    trials = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise CorpusError(
                f"{path}:{i}: expected `label enroll_path test_path` with label 0 or 1, got {line!r}"
            )
        trials.append((int(parts[0]), _utt_id(parts[1]), _utt_id(parts[2])))
    if not trials:
        raise CorpusError(f"trial list {path} is empty")
    return trials


def _utt_id(rel: str) -> str:
    return rel.strip().replace("\\", "/").removesuffix(".wav")


def import_voxceleb1(
    root: Path, out: Path, seed: int = 0, trials: Path | None = None
) -> ImportResult:
    """Write `out/voxceleb1/{train,dev,test}.jsonl` and `out/voxceleb1/trials.tsv`."""
    root = Path(root)
    wav_dirs = _wav_dirs(root)
    trial_path = Path(trials) if trials else _find_trials(root)
    if not trial_path.is_file():
        raise CorpusError(f"trial list {trial_path} does not exist")
    trial_list = read_official_trials(trial_path)

    files: dict[str, Path] = {}  # utt id -> wav
    for wav_dir in wav_dirs:
        for p in sorted(wav_dir.glob("*/*/*.wav")):
            files.setdefault(p.relative_to(wav_dir).with_suffix("").as_posix(), p)
    if not files:
        raise CorpusError(
            f"no <spk>/<video>/<utt>.wav files under {[str(d) for d in wav_dirs]}; expected {EXPECTED}"
        )

    test_ids = sorted({i for _, a, b in trial_list for i in (a, b)})
    absent = [i + ".wav" for i in test_ids if i not in files]
    if absent:
        raise CorpusError(
            f"{len(absent)} utterance(s) of the trial list {trial_path} are not under "
            f"{[str(d) for d in wav_dirs]}:\n{listing(absent)}\nExtract vox1_test_wav.zip there as well."
        )
    test_speakers = {i.split("/")[0] for i in test_ids}
    train_ids = [i for i in sorted(files) if i.split("/")[0] not in test_speakers]
    train_ids, dev_ids = seeded_holdout(train_ids, DEV_FRACTION, seed)

    result = ImportResult()
    task = Path(out) / "voxceleb1"
    written: set[str] = set()
    for split, ids in (("train", train_ids), ("dev", dev_ids), ("test", test_ids)):
        entries = [(files[i], {"id": i, "split": split, "speaker": i.split("/")[0]}) for i in ids]
        utts = probe(entries, result, f"VoxCeleb1 {split}")
        result.write(task / f"{split}.jsonl", utts)
        written.update(u.id for u in utts)
    usable = [t for t in trial_list if t[1] in written and t[2] in written]
    if len(usable) < len(trial_list):
        result.skipped.append(
            f"{trial_path}: {len(trial_list) - len(usable)} trial(s) dropped (empty audio)"
        )
    write_trials(task / "trials.tsv", usable)
    result.written[task / "trials.tsv"] = len(usable)
    return result
