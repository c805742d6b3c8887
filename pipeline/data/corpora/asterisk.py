"""Asterisk core sound prompts (Debian asterisk-core-sounds-<lang>) -> a multilingual ASR task dir.

Real recorded speech, offline: the telephone prompts of the Asterisk PBX, one professional
speaker per language, 8 kHz 16-bit mono wav (the manifests keep the file's rate; `load_audio`
resamples to 16 kHz when a stage reads it). Layout read (Debian's packages
`asterisk-core-sounds-<lang>` and `asterisk-core-sounds-<lang>-wav`):

    ROOT/<lang>/...                     e.g. /usr/share/asterisk/sounds/es -> es_MX_f_Allison
    ROOT/<lang>/<prompt>.wav            and subfolders: digits/, letters/, phonetic/, dictate/, ...
    DOCS/asterisk-core-sounds-<lang>/core-sounds-<lang>.txt.gz    `<prompt>: <text>` lines
    DOCS/asterisk-core-sounds-<lang>/copyright                    the licence (DEP-5 format)

ROOT is `/usr/share/asterisk/sounds`; DOCS defaults to ROOT/../../doc (`/usr/share/doc`). A
language folder is `ROOT/<lang>` (the voice Debian's alternatives select) or else the one
`ROOT/<lang>_*` folder; a transcript may also lie in that folder (`core-sounds-<lang>.txt`, as
in the upstream tarballs). A prompt's name is its path below the folder without `.wav`
(`digits/1`); names match the transcript exactly, else case-insensitively (`letters/O` names
`letters/o.wav`).

Written: `OUT/asterisk/{train,dev,test}.jsonl` with `language` (ISO 639-3: LANGUAGES), `text`
(`[...]`, `(...)` and `<...>` notes removed; punctuation removed and upper-cased as ML-SUPERB
and the ml_asr task do) and `speaker` (the voice folder's name), plus `OUT/asterisk/README.md`
with the licence of each language and the minutes per language and split. Left out, each
reported in `ImportResult.skipped` (and counted in the README):

- files of `silence/` and transcripts that are only a note (`[ascending tones]`, `(beep)`):
  not speech;
- transcripts with a note inside the text that holds letters (`Il [suo] messaggio`,
  `MGCP (in inglese)`): whether the note is spoken is unknown. A note of symbols only
  (`punto [.]`) is dropped and the prompt kept;
- transcripts that write a number in digits (`press 1`): the spoken form (words, gender,
  digit by digit) is not written down;
- `letters/` prompts whose transcript is one letter (`g` for the spoken letter name);
- a prompt name listed twice with different texts, names without a wav, wavs without a
  transcript, unreadable or empty files, and clips longer than `max_seconds`.

The split is by prompt and seeded: every prompt name of any language is shuffled with `seed`
and cut 80/10/10 into train/dev/test, so a prompt is in the same split in every language; then
prompts of one language with the same normalised text are moved together into the split of the
first of them by name, so no text is in two splits (the one exception to the first rule).
"""

from __future__ import annotations

import gzip
import random
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from pipeline.audio import AudioError, audio_info
from pipeline.data.corpora.common import CorpusError, ImportResult
from pipeline.data.corpora.mlsuperb import normalize
from pipeline.data.manifest import SPLITS, Utterance

LANGUAGES = {"es": "spa", "fr": "fra", "it": "ita", "ru": "rus"}  # Debian code -> ISO 639-3
FRACTIONS = (0.8, 0.1, 0.1)  # train, dev, test
MAX_SECONDS = 30.0  # Whisper's window; longer prompts are menus read in one go
NOT_SPEECH_DIRS = ("silence",)
EXPECTED = (
    "ROOT/<lang>/*.wav (e.g. /usr/share/asterisk/sounds; `apt-get install "
    "asterisk-core-sounds-<lang> asterisk-core-sounds-<lang>-wav`) and "
    "DOCS/asterisk-core-sounds-<lang>/core-sounds-<lang>.txt.gz"
)
_LINE = re.compile(r"^([^\s:]+):\s*(.*)$")
_NOTE = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")


def normalize_text(text: str) -> str:
    """ML-SUPERB's normalisation (ASCII punctuation removed, upper case), then NFKC and every
    other Unicode punctuation mark or symbol removed (`«»`, `¿`, `’`): a fixed point of the
    ml_asr task's `normalize_ml`, so the manifest text is what the task scores."""
    text = unicodedata.normalize("NFKC", normalize(text, drop_tags=False))
    kept = "".join(ch for ch in text if unicodedata.category(ch)[0] not in ("P", "S", "C"))
    return " ".join(kept.split())


def clean(text: str) -> tuple[str, str | None]:
    """(transcript with its notes removed, why to skip it or None).

    A note is `[...]`, `(...)` or `<...>`. Only notes -> not speech; a note with letters beside
    other text -> unknown whether spoken; a note of symbols (`[@]`) is dropped."""
    notes = _NOTE.findall(text)
    rest = _NOTE.sub(" ", text)
    if not normalize_text(rest):
        return "", "not speech (the transcript is only a note)" if notes else "empty transcript"
    if any(any(ch.isalpha() for ch in n) for n in notes):
        return rest, "the transcript holds a note beside the text; whether it is spoken is unknown"
    if re.search(r"\d", rest):
        return rest, "the transcript writes a number in digits; its spoken form is not written"
    return rest, None


def read_transcript(path: Path, result: ImportResult) -> dict[str, str]:
    """{prompt name: raw text} of one core-sounds file; a name listed twice with different
    texts is dropped (noted in `result.skipped`), a repeated `name:` prefix removed."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines = raw.decode("utf-8-sig", errors="replace").splitlines()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise CorpusError(
            f"cannot read transcript {path} ({e}); reinstall its package "
            "(`apt-get install --reinstall asterisk-core-sounds-<lang>`)"
        ) from e
    texts: dict[str, str] = {}
    bad: set[str] = set()
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith(";"):
            continue
        m = _LINE.match(s)
        if not m:
            result.skipped.append(f"{path}:{i}: expected `name: text`, got {s[:60]!r}")
            continue
        name, text = m[1], m[2].strip()
        if text.startswith(f"{name}:"):  # `conf-adminmenu: conf-adminmenu: ...`
            text = text[len(name) + 1 :].strip()
        if name in texts and texts[name] != text:
            bad.add(name)
        texts.setdefault(name, text)
    for name in sorted(bad):
        result.skipped.append(f"{path}: {name}: listed twice with different texts")
        del texts[name]
    return texts


def _voice_dir(root: Path, code: str) -> Path:
    if (root / code).is_dir():
        return (root / code).resolve()
    found = sorted({p.resolve() for p in root.glob(f"{code}_*") if p.is_dir()})
    if len(found) == 1:
        return found[0]
    what = f"several folders {[p.name for p in found]}" if found else "no folder"
    raise CorpusError(
        f"{root}: {what} for language `{code}`; expected ROOT/{code}/ or one ROOT/{code}_*/ "
        f"({EXPECTED})"
    )


def _transcript_path(docs: Path, voice: Path, code: str) -> Path:
    doc = docs / f"asterisk-core-sounds-{code}"
    for p in (doc / f"core-sounds-{code}.txt.gz", doc / f"core-sounds-{code}.txt",
              voice / f"core-sounds-{code}.txt"):  # fmt: skip
        if p.is_file():
            return p
    raise CorpusError(
        f"no transcript core-sounds-{code}.txt(.gz) in {doc} or {voice}; install "
        f"asterisk-core-sounds-{code} or pass `--docs` (the folder holding "
        f"asterisk-core-sounds-{code}/)"
    )


def licence(docs: Path, code: str) -> str:
    """`License (Copyright)` of the stanza of DOCS/asterisk-core-sounds-<code>/copyright whose
    `Files:` names `<code>-*`, else of `Files: *`; "unknown (...)" when the file is absent."""
    path = docs / f"asterisk-core-sounds-{code}" / "copyright"
    if not path.is_file():
        return f"unknown ({path} is missing)"
    stanzas: dict[str, dict[str, str]] = {}
    files = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^(Files|Copyright|License):\s*(.*)$", line)
        if not m:
            continue
        if m[1] == "Files":
            files = m[2].strip()
            stanzas.setdefault(files, {})
        elif files is not None:
            stanzas[files].setdefault(m[1], m[2].strip())
    for files, s in stanzas.items():
        if f"{code}-*" in files.split():
            return f"{s.get('License', '?')} ({s.get('Copyright', '?')})"
    s = stanzas.get("*", {})
    return f"{s.get('License', '?')} ({s.get('Copyright', '?')})" if s else f"unknown ({path})"


def split_of(names: Sequence[str], seed: int) -> dict[str, str]:
    """Prompt name -> train/dev/test: the sorted names shuffled with `seed`, cut by FRACTIONS."""
    order = sorted(set(names))
    random.Random(seed).shuffle(order)
    n_train = round(len(order) * FRACTIONS[0])
    n_dev = round(len(order) * FRACTIONS[1])
    return {n: "train" if i < n_train else "dev" if i < n_train + n_dev else "test"
            for i, n in enumerate(order)}  # fmt: skip


def import_asterisk(
    root: Path,
    out: Path,
    seed: int = 0,
    languages: str | Sequence[str] = tuple(LANGUAGES),
    docs: str | Path | None = None,
    max_seconds: float | str = MAX_SECONDS,
) -> ImportResult:
    """Write `out/asterisk/{train,dev,test}.jsonl` and `out/asterisk/README.md` (licences,
    minutes). `languages`: Debian codes (a list or `es,fr`), of LANGUAGES."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"Asterisk sounds root {root} is not a folder; expected {EXPECTED}")
    codes = languages.split(",") if isinstance(languages, str) else list(languages)
    codes = [c.strip() for c in codes if c.strip()]
    unknown = [c for c in codes if c not in LANGUAGES]
    if unknown or not codes:
        raise CorpusError(
            f"asterisk: languages {unknown or codes} not supported; choose from {sorted(LANGUAGES)}"
        )
    docs = Path(docs) if docs else root.parent.parent / "doc"
    limit = float(max_seconds)
    result = ImportResult()
    prompts: dict[str, list[Utterance]] = {}
    sources: dict[str, tuple[Path, Path, str]] = {}
    for code in codes:
        voice = _voice_dir(root, code)
        trans = _transcript_path(docs, voice, code)
        sources[code] = (voice, trans, licence(docs, code))
        prompts[code] = _read_language(code, voice, trans, limit, result)
    splits = split_of([u.id.split("/", 1)[1] for us in prompts.values() for u in us], seed)
    by_split: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    for utts in prompts.values():
        first_of_text: dict[str, str] = {}
        for u in sorted(utts, key=lambda u: u.id):
            name = u.id.split("/", 1)[1]
            u.split = first_of_text.setdefault(u.text or "", splits[name])
            by_split[u.split].append(u)
    target = Path(out) / "asterisk"
    for split, utts in by_split.items():
        result.write(target / f"{split}.jsonl", sorted(utts, key=lambda u: u.id))
    _write_readme(target / "README.md", sources, by_split, result, seed)
    return result


def _read_language(
    code: str, voice: Path, trans: Path, limit: float, result: ImportResult
) -> list[Utterance]:
    """The kept prompts of one language (split unset), every left-out one noted in `result`."""
    lang = LANGUAGES[code]
    texts = read_transcript(trans, result)
    wavs = {
        p.relative_to(voice).with_suffix("").as_posix(): p for p in sorted(voice.rglob("*.wav"))
    }
    folded: dict[str, list[str]] = {}
    for name in wavs:
        folded.setdefault(name.casefold(), []).append(name)
    matched: dict[str, str] = {}  # wav name -> transcript name
    for name in texts:
        if name in wavs:
            matched[name] = name
        elif len(folded.get(name.casefold(), [])) == 1:
            matched.setdefault(folded[name.casefold()][0], name)
        else:
            result.skipped.append(f"{trans}: {name}: no {name}.wav in {voice}")
    utts = []
    for name, path in wavs.items():
        where = f"{path}"
        if name.split("/")[0] in NOT_SPEECH_DIRS:
            result.skipped.append(f"{where}: silence, not speech")
            continue
        if name not in matched:
            result.skipped.append(f"{where}: no transcript line `{name}:` in {trans}")
            continue
        text, why = clean(texts[matched[name]])
        norm = normalize_text(text)
        if why is None and name.startswith("letters/") and len(norm) == 1:
            why = "a single letter: the transcript names the letter, not how it is spoken"
        if why:
            result.skipped.append(f"{where}: {why}: {texts[matched[name]][:60]!r}")
            continue
        try:
            frames, sr, _ = audio_info(path)
        except AudioError as e:
            result.skipped.append(f"{where}: unreadable ({e})")
            continue
        seconds = frames / sr if sr else 0.0
        if frames == 0:
            result.skipped.append(f"{where}: 0 samples")
            continue
        if seconds > limit:
            result.skipped.append(f"{where}: {seconds:.1f} s > {limit:g} s")
            continue
        utts.append(Utterance(id=f"{lang}/{name}", path=str(path), duration=round(seconds, 4),
                              sample_rate=sr, split="", text=norm, language=lang,
                              speaker=voice.name))  # fmt: skip
    return utts


def minutes_table(by_split: dict[str, list[Utterance]]) -> list[str]:
    """Markdown rows: language | utterances and minutes per split | total minutes."""
    langs = sorted({u.language or "" for us in by_split.values() for u in us})
    rows = ["| Language | " + " | ".join(f"{s} (utts / min)" for s in by_split) + " | Total min |",
            "|---|" + "---:|" * (len(by_split) + 1)]  # fmt: skip
    for lang in langs:
        cells, total = [], 0.0
        for utts in by_split.values():
            mine = [u for u in utts if u.language == lang]
            minutes = sum(u.duration for u in mine) / 60
            total += minutes
            cells.append(f"{len(mine)} / {minutes:.1f}")
        rows.append(f"| {lang} | " + " | ".join(cells) + f" | {total:.1f} |")
    return rows


def _write_readme(path: Path, sources: dict[str, tuple[Path, Path, str]],
                  by_split: dict[str, list[Utterance]], result: ImportResult, seed: int) -> None:  # fmt: skip
    lines = [
        "# Asterisk core sound prompts (real recorded speech)\n",
        "Written by `pipeline data import asterisk` (pipeline/data/corpora/asterisk.py). "
        "Telephone prompts of the Asterisk PBX, one professional speaker per language, 8 kHz "
        "telephone band (resampled to 16 kHz when read). The audio stays where the Debian "
        f"packages installed it. Split by prompt, seed {seed}.\n",
        "| Language | Voice folder | Transcript | Licence |",
        "|---|---|---|---|",
    ]
    for code, (voice, trans, lic) in sources.items():
        lines.append(f"| {LANGUAGES[code]} ({code}) | `{voice}` | `{trans}` | {lic} |")
    lines += ["", *minutes_table(by_split), "",
              f"Left out: {len(result.skipped)} prompt(s) or transcript line(s) "
              "(silence, notes, numbers in digits, single letters, missing files, over-long "
              "clips); `pipeline data import` lists them.", ""]  # fmt: skip
    path.write_text("\n".join(lines), encoding="utf-8")
