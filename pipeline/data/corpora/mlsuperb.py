"""ML-SUPERB 1-hour data -> multilingual and monolingual ASR task dirs.

Layout read (the released ML-SUPERB data folder, `$MLSUPERB` in espnet's egs2/ml_superb/asr1):

    ROOT/<source>/<lang>/transcript_1h_train.txt      1-hour training set
    ROOT/<source>/<lang>/transcript_10min_dev.txt     dev set
    ROOT/<source>/<lang>/transcript_10min_test.txt    test set
    ROOT/<source>/<lang>/wav/<utt_id>.wav

`<source>` is one of SOURCES, `<lang>` an ISO 639-3 code; transcript lines are
`<utt_id> <original id> <text>` (whitespace separated, text may hold spaces), utterance ids
look like `mls_eng_000123`. ROOT may also be a folder holding exactly one such data folder.

Written (following espnet's local/data_prep.py and local/single_lang_data_prep.py):

- `OUT/mlsuperb/multi/{train,dev,test}.jsonl`: every source and language; training keeps
  only clips of at most 20 s, and for the 20 reserved (few-shot) languages only the five
  selected utterances of FEW_SHOT; text has `[...]` tags and ASCII punctuation removed and is
  upper-cased.
- `OUT/mlsuperb/mono/<config>/{train,dev,test}.jsonl` for the 13 mono-1h configs of MONO:
  train and dev come from the one source the config names, test from every source holding
  the language; text has ASCII punctuation removed and is upper-cased (no tag removal, no
  20 s limit, as in espnet's single-language preparation).

Every utterance carries `language` (the `<lang>` folder, ISO 639-3) and `text`. Sources or
languages absent from ROOT are skipped and reported (partial downloads import what exists).
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from pipeline.data.corpora.common import CorpusError, ImportResult, probe
from pipeline.data.manifest import Utterance

SOURCES = (
    "ALFFA", "LAD", "M-AILABS", "NST", "commonvoice", "fleurs", "googlei18n_asr",
    "googlei18n_tts", "mls", "nchlt", "swc", "voxforge", "mexico-el", "voxpopuli",
)  # fmt: skip

# mono-1h config -> the source its training and dev data come from (espnet LANG_TO_SELECTED_DATASET)
MONO = {
    "eng1": "mls", "eng2": "nchlt", "eng3": "voxpopuli", "fra1": "voxforge", "fra2": "voxpopuli",
    "deu1": "swc", "deu2": "voxpopuli", "rus": "M-AILABS", "swa": "ALFFA", "swe": "NST",
    "jpn": "commonvoice", "cmn": "fleurs", "xty": "mexico-el",
}  # fmt: skip

# Reserved languages: in multilingual training only these five utterances each are used.
FEW_SHOT = {
    lang: frozenset(ids.split())
    for lang, ids in {
        "lit": "cv_lit_000026 cv_lit_000105 fleurs_lit_000097 mls_lit_000040 voxpopuli_lit_001707",
        "dan": "NST_dan_000007 NST_dan_000072 cv_dan_000158 fleurs_dan_000058 fleurs_dan_000071",
        "tur": "cv_tur_000095 cv_tur_000101 fleurs_tur_000060 fleurs_tur_000069 fleurs_tur_000095",
        "srp": "cv_srp_000078 cv_srp_000145 fleurs_srp_000068 fleurs_srp_000093 fleurs_srp_000105",
        "vie": "cv_vie_000105 cv_vie_000128 fleurs_vie_000067 fleurs_vie_000068 fleurs_vie_000077",
        "kaz": "cv_kaz_000080 cv_kaz_000097 cv_kaz_000111 fleurs_kaz_000036 fleurs_kaz_000066",
        "zul": "fleurs_zul_000049 fleurs_zul_000057 nchlt_zul_000027 nchlt_zul_000090 nchlt_zul_000104",
        "tsn": "googlei18n-tts_tsn_000026 googlei18n-tts_tsn_000044 googlei18n-tts_tsn_000108 nchlt_tsn_000001 nchlt_tsn_000032",
        "epo": "cv_epo_000006 cv_epo_000039 cv_epo_000063 cv_epo_000066 cv_epo_000076",
        "frr": "cv_frr_000023 cv_frr_000086 cv_frr_000095 cv_frr_000102 cv_frr_000104",
        "tok": "cv_tok_000004 cv_tok_000011 cv_tok_000030 cv_tok_000084 cv_tok_000101",
        "umb": "fleurs_umb_000028 fleurs_umb_000029 fleurs_umb_000033 fleurs_umb_000040 fleurs_umb_000047",
        "bos": "fleurs_bos_000067 fleurs_bos_000078 fleurs_bos_000080 fleurs_bos_000088 fleurs_bos_000090",
        "ful": "fleurs_ful_000055 fleurs_ful_000059 fleurs_ful_000067 fleurs_ful_000076 fleurs_ful_000081",
        "ceb": "fleurs_ceb_000054 fleurs_ceb_000064 fleurs_ceb_000069 fleurs_ceb_000071 fleurs_ceb_000080",
        "luo": "fleurs_luo_000056 fleurs_luo_000062 fleurs_luo_000067 fleurs_luo_000073 fleurs_luo_000077",
        "kea": "fleurs_kea_000052 fleurs_kea_000070 fleurs_kea_000078 fleurs_kea_000083 fleurs_kea_000085",
        "sun": "googlei18n-asr_sun_000001 googlei18n-asr_sun_000007 googlei18n-asr_sun_000041 googlei18n-asr_sun_000099 googlei18n-asr_sun_000106",
        "tso": "nchlt_tso_000035 nchlt_tso_000040 nchlt_tso_000089 nchlt_tso_000104 nchlt_tso_000125",
        "tos": "mexico-el_tos_000006 mexico-el_tos_000122 mexico-el_tos_000152 mexico-el_tos_000496 mexico-el_tos_000563",
    }.items()
}

TRANSCRIPTS = {
    "train": "transcript_1h_train.txt",
    "dev": "transcript_10min_dev.txt",
    "test": "transcript_10min_test.txt",
}
MAX_TRAIN_SECONDS = 20.0
EXPECTED = "ROOT/<source>/<lang>/{transcript_1h_train.txt,transcript_10min_dev.txt,transcript_10min_test.txt,wav/}"
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str, drop_tags: bool) -> str:
    """ML-SUPERB text: optionally drop `[...]` tags, remove ASCII punctuation, upper-case;
    runs of whitespace become one space (espnet's scripts leave them to the tokenizer)."""
    if drop_tags:
        text = re.sub(r"\[[^()]*\]", "", text)
    return " ".join(text.translate(_PUNCT).upper().split())


def _data_root(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"ML-SUPERB root {root} is not a folder; expected {EXPECTED}")
    if any((root / s).is_dir() for s in SOURCES):
        return root
    inner = [d for d in root.iterdir() if d.is_dir() and any((d / s).is_dir() for s in SOURCES)]
    if len(inner) == 1:
        return inner[0]
    raise CorpusError(
        f"{root} holds none of the ML-SUPERB source folders {list(SOURCES)}; expected {EXPECTED}"
    )


def _read_split(lang_dir: Path, split: str, result: ImportResult) -> list[tuple[Path, dict]]:
    """(wav path, fields with raw text) for one transcript of one source/language folder."""
    trans = lang_dir / TRANSCRIPTS[split]
    if not trans.is_file():
        raise CorpusError(
            f"{trans} is missing; every ML-SUPERB language folder holds {sorted(TRANSCRIPTS.values())}"
        )
    entries = []
    for i, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.strip().split(maxsplit=2)
        if not parts:
            continue
        if len(parts) < 3:
            result.skipped.append(
                f"{trans}:{i}: expected `utt_id original_id text`, got {line.strip()!r}"
            )
            continue
        utt_id, _, text = parts
        fields = {"id": utt_id, "split": split, "text": text, "language": lang_dir.name}
        entries.append((lang_dir / "wav" / f"{utt_id}.wav", fields))
    return entries


def _finish(utts: list[Utterance], drop_tags: bool, result: ImportResult) -> list[Utterance]:
    out = []
    for u in utts:
        u.text = normalize(u.text or "", drop_tags)
        if u.text.strip():
            out.append(u)
        else:
            result.skipped.append(f"{u.id}: transcript is empty after normalisation")
    return out


def import_mlsuperb(root: Path, out: Path, seed: int = 0) -> ImportResult:
    """Write `out/mlsuperb/multi/` and `out/mlsuperb/mono/<config>/`. `seed` is unused."""
    base = _data_root(Path(root))
    result = ImportResult()
    present = [s for s in SOURCES if (base / s).is_dir()]
    result.skipped += [f"{base / s}: source not present" for s in SOURCES if s not in present]
    lang_dirs = {s: sorted(d for d in (base / s).iterdir() if d.is_dir()) for s in present}
    cache: dict[tuple[str, str, str], list[Utterance]] = {}

    def split_utts(source: str, lang: str, split: str) -> list[Utterance]:
        key = (source, lang, split)
        if key not in cache:
            lang_dir = base / source / lang
            cache[key] = probe(
                _read_split(lang_dir, split, result), result, f"ML-SUPERB {lang_dir} {split}"
            )
        return [Utterance(**vars(u)) for u in cache[key]]  # copies: text is normalised per setting

    multi: dict[str, list[Utterance]] = {s: [] for s in TRANSCRIPTS}
    for source in present:
        for lang_dir in lang_dirs[source]:
            lang = lang_dir.name
            for split in TRANSCRIPTS:
                utts = split_utts(source, lang, split)
                if split == "train":
                    if lang in FEW_SHOT:
                        utts = [u for u in utts if u.id in FEW_SHOT[lang]]
                    long = [u for u in utts if u.duration > MAX_TRAIN_SECONDS]
                    result.skipped += [
                        f"{u.id}: {u.duration:.1f} s > {MAX_TRAIN_SECONDS:.0f} s (multi train)"
                        for u in long
                    ]
                    utts = [u for u in utts if u.duration <= MAX_TRAIN_SECONDS]
                multi[split] += _finish(utts, drop_tags=True, result=result)
    for split, utts in multi.items():
        result.write(Path(out) / "mlsuperb" / "multi" / f"{split}.jsonl", utts)

    for config, source in MONO.items():
        lang = config[:3]
        if not (base / source / lang).is_dir():
            result.skipped.append(f"mono {config}: {base / source / lang} not present")
            continue
        mono = {
            "train": split_utts(source, lang, "train"),
            "dev": split_utts(source, lang, "dev"),
            "test": [
                u
                for s in present
                if (base / s / lang).is_dir()
                for u in split_utts(s, lang, "test")
            ],
        }
        for split, utts in mono.items():
            result.write(
                Path(out) / "mlsuperb" / "mono" / config / f"{split}.jsonl",
                _finish(utts, False, result),
            )
    return result
