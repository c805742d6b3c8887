"""Corpus importers on small fake trees that copy each corpus's layout file for file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.data.corpora import IMPORTERS, CorpusError, import_corpus
from pipeline.data.manifest import read_manifest, read_manifests, read_trials


def tone(path: Path, seconds: float = 0.05, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, subtype="PCM_16")
    return path


def ids(path: Path) -> list[str]:
    return [u.id for u in read_manifest(path)]


def test_registry_names():
    assert set(IMPORTERS) == {"librispeech", "mlsuperb", "voxceleb1", "iemocap", "asterisk"}
    with pytest.raises(CorpusError, match="unknown corpus 'timit'"):
        import_corpus("timit", ".", ".")


# --- LibriSpeech -------------------------------------------------------------------------


def make_librispeech(root: Path) -> Path:
    speakers = {
        "train-clean-100": ["103", "1034", "1040"],
        "dev-clean": ["84", "174"],
        "test-clean": ["61", "121"],
    }
    for subset, spks in speakers.items():
        for spk in spks:
            chapter = root / "LibriSpeech" / subset / spk / "1240"
            lines = []
            for u in range(2):
                utt = f"{spk}-1240-{u:04d}"
                tone(chapter / f"{utt}.flac", 0.05 + 0.01 * u)
                lines.append(f"{utt} CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED {u}")
            (chapter / f"{spk}-1240.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_librispeech(tmp_path):
    root = make_librispeech(tmp_path / "corpus")
    result = import_corpus("librispeech", root, tmp_path / "out")
    task = tmp_path / "out" / "librispeech"
    assert {p.name: n for p, n in result.written.items()} == {
        "train.jsonl": 6,
        "dev.jsonl": 4,
        "test.jsonl": 4,
    }
    train = read_manifest(task / "train.jsonl")
    u = train[0]
    assert (u.id, u.speaker, u.split, u.sample_rate) == ("103-1240-0000", "103", "train", 16000)
    assert u.text == "CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED 0"
    assert u.duration == pytest.approx(0.05) and train[1].duration == pytest.approx(0.06)
    assert (
        Path(u.path) == (root / "LibriSpeech/train-clean-100/103/1240/103-1240-0000.flac").resolve()
    )
    assert {u.split for u in read_manifest(task / "test.jsonl")} == {"test"}
    # the LibriSpeech folder itself is accepted as root
    import_corpus("librispeech", root / "LibriSpeech", tmp_path / "out2")
    assert ids(tmp_path / "out2/librispeech/dev.jsonl") == ids(task / "dev.jsonl")


def test_librispeech_errors(tmp_path):
    root = make_librispeech(tmp_path / "corpus")
    (root / "LibriSpeech/test-clean/61/1240/61-1240-0001.flac").unlink()
    with pytest.raises(CorpusError, match="61-1240-0001.flac"):
        import_corpus("librispeech", root, tmp_path / "out")
    import shutil

    shutil.rmtree(root / "LibriSpeech/dev-clean")
    with pytest.raises(
        CorpusError, match=r"(?s)lacks subset folder\(s\) \['dev-clean'\].*train-clean-100"
    ):
        import_corpus("librispeech", root, tmp_path / "out")
    with pytest.raises(CorpusError, match="holds no LibriSpeech"):
        import_corpus("librispeech", tmp_path, tmp_path / "out")


# --- ML-SUPERB ---------------------------------------------------------------------------


def make_mlsuperb(root: Path) -> Path:
    """Sources/languages with (train, dev, test) utterance counts; ids as ML-SUPERB spells them."""
    layout = {
        ("mls", "eng", "mls"): (3, 1, 1),
        ("nchlt", "eng", "nchlt"): (2, 1, 1),
        ("voxforge", "fra", "voxforge"): (2, 1, 1),
        ("fleurs", "cmn", "fleurs"): (2, 1, 1),
        ("fleurs", "lit", "fleurs"): (0, 1, 1),
    }
    for (source, lang, prefix), counts in layout.items():
        d = root / source / lang
        d.mkdir(parents=True, exist_ok=True)
        n = 0
        for split, count in zip(("1h_train", "10min_dev", "10min_test"), counts, strict=True):
            lines = []
            for _ in range(count):
                n += 1
                utt = f"{prefix}_{lang}_{n:06d}"
                tone(d / "wav" / f"{utt}.wav")
                lines.append(f"{utt}\toriginal_{n}\tHello, world [laughter] {lang} {n}!")
            (d / f"transcript_{split}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        (d / "transcript_10min_train.txt").write_text("")
    # one over-long training clip (kept for mono, dropped for multi); 1 kHz keeps the file small
    tone(root / "mls/eng/wav/mls_eng_000003.wav", seconds=21.0, sr=1000)
    # a reserved (few-shot) language: only the selected utterance enters multilingual training
    lit = root / "fleurs/lit"
    for utt in ("fleurs_lit_000097", "fleurs_lit_000098"):
        tone(lit / "wav" / f"{utt}.wav")
    (lit / "transcript_1h_train.txt").write_text(
        "fleurs_lit_000097 x labas\nfleurs_lit_000098 y rytas\n"
    )
    return root


def test_mlsuperb(tmp_path):
    root = make_mlsuperb(tmp_path / "ml_superb")
    result = import_corpus("mlsuperb", tmp_path, tmp_path / "out")  # one level above works too
    out = tmp_path / "out" / "mlsuperb"
    multi = {s: read_manifest(out / f"multi/{s}.jsonl") for s in ("train", "dev", "test")}
    assert [u.id for u in multi["train"]] == [
        "fleurs_cmn_000001", "fleurs_cmn_000002", "fleurs_lit_000097", "mls_eng_000001",
        "mls_eng_000002", "nchlt_eng_000001", "nchlt_eng_000002", "voxforge_fra_000001", "voxforge_fra_000002",
    ]  # fmt: skip
    assert len(multi["dev"]) == len(multi["test"]) == 5
    u = next(u for u in multi["dev"] if u.id == "mls_eng_000004")
    assert (u.language, u.text, u.split) == ("eng", "HELLO WORLD ENG 4", "dev")
    assert Path(u.path) == (root / "mls/eng/wav/mls_eng_000004.wav").resolve()
    assert {u.language for u in multi["test"]} == {"eng", "fra", "cmn", "lit"}
    assert any("mls_eng_000003" in s and "> 20 s" in s for s in result.skipped)

    eng1 = {s: read_manifest(out / f"mono/eng1/{s}.jsonl") for s in ("train", "dev", "test")}
    assert [u.id for u in eng1["train"]] == ["mls_eng_000001", "mls_eng_000002", "mls_eng_000003"]
    assert eng1["train"][2].duration == pytest.approx(21.0) and eng1["train"][2].sample_rate == 1000
    assert [u.id for u in eng1["dev"]] == ["mls_eng_000004"]
    assert sorted(u.id for u in eng1["test"]) == [
        "mls_eng_000005",
        "nchlt_eng_000004",
    ]  # every eng source
    assert eng1["train"][0].text == "HELLO WORLD LAUGHTER ENG 1"  # mono keeps tags, as espnet does
    assert [u.id for u in read_manifest(out / "mono/eng2/train.jsonl")] == [
        "nchlt_eng_000001",
        "nchlt_eng_000002",
    ]
    assert {u.language for u in read_manifest(out / "mono/cmn/test.jsonl")} == {"cmn"}
    assert {p.parent.name for p in (out / "mono").glob("*/train.jsonl")} == {
        "eng1",
        "eng2",
        "fra1",
        "cmn",
    }
    assert any("mono eng3" in s for s in result.skipped)


def test_mlsuperb_errors(tmp_path):
    with pytest.raises(CorpusError, match="none of the ML-SUPERB source folders"):
        import_corpus("mlsuperb", tmp_path, tmp_path / "out")
    root = make_mlsuperb(tmp_path / "ml")
    (root / "nchlt/eng/transcript_10min_dev.txt").unlink()
    with pytest.raises(CorpusError, match="transcript_10min_dev.txt is missing"):
        import_corpus("mlsuperb", root, tmp_path / "out")


# --- VoxCeleb1 ---------------------------------------------------------------------------


def make_voxceleb1(root: Path) -> Path:
    for spk in ("id10001", "id10002", "id10003", "id10004", "id10270", "id10271"):
        for video in ("1zcIwhmdeo4", "7gWzIy6yIIk"):
            for utt in range(1, 4):
                tone(root / "wav" / spk / video / f"{utt:05d}.wav")
    (root / "veri_test2.txt").write_text(
        "1 id10270/1zcIwhmdeo4/00001.wav id10270/7gWzIy6yIIk/00002.wav\n"
        "0 id10270/1zcIwhmdeo4/00001.wav id10271/1zcIwhmdeo4/00003.wav\n"
        "1 id10271/7gWzIy6yIIk/00001.wav id10271/1zcIwhmdeo4/00003.wav\n"
        "0 id10271/7gWzIy6yIIk/00001.wav id10270/7gWzIy6yIIk/00002.wav\n"
    )
    return root


def test_voxceleb1(tmp_path):
    root = make_voxceleb1(tmp_path / "vox1")
    import_corpus("voxceleb1", root, tmp_path / "out", seed=0)
    task = tmp_path / "out" / "voxceleb1"
    train, dev, test = (read_manifest(task / f"{s}.jsonl") for s in ("train", "dev", "test"))
    assert len(train) + len(dev) == 24 and len(dev) == 1  # 2% of 24, at least one
    assert {u.speaker for u in train + dev} == {"id10001", "id10002", "id10003", "id10004"}
    assert sorted(u.id for u in test) == [
        "id10270/1zcIwhmdeo4/00001", "id10270/7gWzIy6yIIk/00002",
        "id10271/1zcIwhmdeo4/00003", "id10271/7gWzIy6yIIk/00001",
    ]  # fmt: skip
    assert test[0].speaker == test[0].id.split("/")[0]
    assert Path(test[0].path) == (root / "wav" / f"{test[0].id}.wav").resolve()
    trials = read_trials(task / "trials.tsv")
    assert trials[0] == (1, "id10270/1zcIwhmdeo4/00001", "id10270/7gWzIy6yIIk/00002")
    assert [t[0] for t in trials] == [1, 0, 1, 0]
    assert {i for _, a, b in trials for i in (a, b)} == {u.id for u in test}
    # seeded: the same seed gives the same dev utterance, another seed may not
    import_corpus("voxceleb1", root, tmp_path / "again", seed=0)
    assert ids(tmp_path / "again/voxceleb1/dev.jsonl") == [u.id for u in dev]


def test_voxceleb1_errors(tmp_path):
    root = make_voxceleb1(tmp_path / "vox1")
    (root / "wav/id10271/1zcIwhmdeo4/00003.wav").unlink()
    with pytest.raises(
        CorpusError, match=r"(?s)1 utterance\(s\) of the trial list.*id10271/1zcIwhmdeo4/00003.wav"
    ):
        import_corpus("voxceleb1", root, tmp_path / "out")
    (root / "veri_test2.txt").unlink()
    with pytest.raises(CorpusError, match="no VoxCeleb1 trial list"):
        import_corpus("voxceleb1", root, tmp_path / "out")


# --- IEMOCAP -----------------------------------------------------------------------------

UTTS = [
    ("F000", "neu"),
    ("F001", "exc"),
    ("M000", "ang"),
    ("M001", "sad"),
    ("M002", "fru"),
    ("F002", "hap"),
    ("M003", "xxx"),
]


def make_iemocap(root: Path) -> Path:
    base = root / "IEMOCAP_full_release"
    for k in range(1, 6):
        dialog = f"Ses0{k}F_impro01"
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        for i, (part, label) in enumerate(UTTS):
            utt = f"{dialog}_{part}"
            tone(base / f"Session{k}/sentences/wav/{dialog}/{utt}.wav")
            lines += [
                f"[{6.2901 + 3 * i:.4f} - {8.2357 + 3 * i:.4f}]\t{utt}\t{label}\t[2.5000, 2.5000, 2.5000]",
                "C-E2:\tNeutral state;\t()",
                "C-E3:\tNeutral state;\t()",
                "A-E3:\tval 3; act 2; dom  2;\t()",
                "",
            ]
        emo = base / f"Session{k}/dialog/EmoEvaluation"
        emo.mkdir(parents=True)
        (emo / f"{dialog}.txt").write_text("\n".join(lines))
        (emo / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
        (emo / "Categorical").mkdir()
    return root


def test_iemocap(tmp_path):
    root = make_iemocap(tmp_path / "corpus")
    import_corpus("iemocap", root, tmp_path / "out", seed=0)
    out = tmp_path / "out" / "iemocap"
    for k in range(1, 6):
        fold = {s: read_manifest(out / f"fold{k}/{s}.jsonl") for s in ("train", "dev", "test")}
        assert [len(fold[s]) for s in ("train", "dev", "test")] == [16, 4, 5]
        assert {u.id[:5] for u in fold["test"]} == {f"Ses0{k}"}
        assert all(u.id[:5] != f"Ses0{k}" for u in fold["train"] + fold["dev"])
        assert {u.fold for s in fold.values() for u in s} == {k}
        assert {u.split for u in fold["dev"]} == {"dev"}
        assert len(read_manifests(out / f"fold{k}")) == 25  # no id in two splits
    test1 = {u.id: u for u in read_manifest(out / "fold1/test.jsonl")}
    assert {u.emotion for u in test1.values()} == {"neu", "hap", "ang", "sad"}
    assert test1["Ses01F_impro01_F001"].emotion == "hap"  # exc merged into hap
    assert "Ses01F_impro01_M002" not in test1 and "Ses01F_impro01_M003" not in test1
    assert test1["Ses01F_impro01_M000"].speaker == "Ses01M"
    assert test1["Ses01F_impro01_F000"].speaker == "Ses01F"
    # dev sets differ between folds but are reproducible for one seed
    import_corpus("iemocap", root / "IEMOCAP_full_release", tmp_path / "again", seed=0)
    assert ids(tmp_path / "again/iemocap/fold2/dev.jsonl") == ids(out / "fold2/dev.jsonl")


def test_iemocap_missing_session(tmp_path):
    root = make_iemocap(tmp_path / "corpus")
    import shutil

    shutil.rmtree(root / "IEMOCAP_full_release/Session4")
    with pytest.raises(CorpusError, match=r"lacks \['Session4'\]"):
        import_corpus("iemocap", root, tmp_path / "out")
