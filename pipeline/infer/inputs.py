"""What `pipeline predict` reads: audio files, folders of them and manifests, as utterances.

    utts, skipped = collect_inputs(["a.wav", "clips/", "data/tiny/er/test.jsonl"])

- a manifest (`.jsonl`, pipeline/data/manifest.py): its utterances as written (ids, durations,
  labels; relative paths resolve against its folder). A missing audio file is skipped later,
  when it is read, as any unreadable file is.
- an audio file: one utterance, id = the file name without its suffix (the path relative to
  the folder for files found in one; a clash gets the full path), duration from its header.
- a folder: every file in it and below whose suffix soundfile reads (wav, flac, ogg, ...).

A file whose header cannot be read is returned in `skipped` ({id, path, reason}), never raised;
only a request that names nothing usable at all is an error (`NoInputs`). Trial lists for
speaker verification (`trial_inputs`) name utterances by id: of the given inputs, or else of
the manifests beside the trial file, or audio paths relative to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import soundfile as sf

from pipeline.audio import AudioError, audio_info
from pipeline.data.manifest import ManifestError, Utterance, read_manifest, read_trials
from pipeline.errors import UserError

AUDIO_SUFFIXES = frozenset("." + f.lower() for f in sf.available_formats()) | {".mp3", ".opus"}


class NoInputs(UserError, FileNotFoundError):
    """A request with no audio to predict: nothing given, or nothing readable found."""


def _audio_utt(
    path: Path, uid: str, split: str = "predict"
) -> tuple[Utterance | None, dict | None]:
    try:
        frames, sr, _ = audio_info(path)
    except AudioError as e:
        return None, {"id": uid, "path": str(path), "reason": str(e)}
    if frames <= 0:
        return None, {"id": uid, "path": str(path), "reason": f"{path} holds 0 samples"}
    return Utterance(uid, str(path.resolve()), frames / sr, sr, split), None


def collect_inputs(paths: Sequence[str | Path]) -> tuple[list[Utterance], list[dict]]:
    """(utterances in the order given, skipped files) for audio files, folders and manifests."""
    if not paths:
        raise NoInputs("no input given: name audio files, a folder of them or a manifest (.jsonl)")
    found: list[tuple[Path, str]] = []  # (audio file, proposed id)
    utts: list[Utterance] = []
    skipped: list[dict] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
            )
            if not files:
                raise NoInputs(
                    f"{p} holds no audio file ({', '.join(sorted(AUDIO_SUFFIXES)[:6])}, ...)"
                )
            found += [(f, f.relative_to(p).with_suffix("").as_posix()) for f in files]
        elif p.suffix == ".jsonl":
            try:
                utts += read_manifest(p, check_files=False)
            except ManifestError as e:
                raise NoInputs(str(e)) from None
        elif p.exists():
            found.append((p, p.stem))
        else:
            skipped.append({"id": p.stem, "path": str(p), "reason": f"{p} does not exist"})
    taken = {u.id for u in utts}
    for f, uid in found:
        if uid in taken:
            uid = str(f.resolve())
        u, bad = _audio_utt(f, uid)
        if u is None:
            skipped.append(bad)
            continue
        taken.add(uid)
        utts.append(u)
    ids = [u.id for u in utts]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise NoInputs(
            f"utterance id(s) {dup[:5]} appear in more than one input; ids must be unique"
        )
    if not utts and not skipped:
        raise NoInputs("the inputs hold no utterance: name audio files, a folder or a manifest")
    return utts, skipped


def trial_inputs(
    trials_file: str | Path, given: Sequence[Utterance]
) -> tuple[list[tuple[int, str, str]], list[Utterance], list[dict]]:
    """(trials, the utterances they name, skipped) for `--trials FILE`.

    Ids are looked up in `given`, then in the manifests (*.jsonl) beside the trial file, then
    as audio files relative to it; an id found nowhere raises NoInputs naming it.
    """
    path = Path(trials_file)
    if not path.is_file():
        raise NoInputs(f"trial list {path} does not exist")
    trials = read_trials(path)
    if not trials:
        raise NoInputs(f"trial list {path} holds no trial (lines `label enroll_id test_id`)")
    wanted = list(dict.fromkeys(i for _, a, b in trials for i in (a, b)))
    pool = {u.id: u for u in given}
    if not given:
        for m in sorted(path.parent.glob("*.jsonl")):
            for u in read_manifest(m, check_files=False):
                pool.setdefault(u.id, u)
    utts, skipped, missing = [], [], []
    for uid in wanted:
        if uid in pool:
            utts.append(pool[uid])
            continue
        f = path.parent / uid
        if f.is_file():
            u, bad = _audio_utt(f, uid)
            utts.append(u) if u is not None else skipped.append(bad)
        else:
            missing.append(uid)
    if missing:
        where = "the inputs given" if given else f"the manifests beside {path}"
        raise NoInputs(
            f"trial list {path} names {len(missing)} utterance(s) found neither in {where} nor as "
            f"audio files beside it, e.g. {missing[:5]}; give the manifest or audio that holds them"
        )
    return trials, utts, skipped
