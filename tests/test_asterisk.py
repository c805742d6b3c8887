"""The Asterisk prompts importer (real recorded speech for ml_asr) and the synth + import plan."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from pipeline.audio import load_audio
from pipeline.data.corpora import IMPORTERS, CorpusError, import_corpus
from pipeline.data.corpora.asterisk import clean, import_asterisk, licence, normalize_text
from pipeline.data.manifest import read_manifests
from pipeline.plan import PlanError, make_plan
from pipeline.plan.params_file import read_experiment_mapping
from pipeline.report.languages import column_data_note, language_name

ROOT = Path(__file__).resolve().parents[1]
REAL = Path("/usr/share/asterisk/sounds")

COPYRIGHT = """Format: http://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2003-2010, Speaker One
License: CC-BY-SA-3.0

Files: fr-*
Copyright: 2006, Speaker Two
License: CC-BY-SA-3.0

Files: it-*
Copyright: 2012, Speaker Three
License: CC-BY-3.0
"""

SPEECH = {  # prompt -> (es text, fr text); kept by the importer
    "agent-loginok": ("Agente conectado.", "Vous êtes en ligne."),
    "auth-thankyou": ("Gracias", "Merci."),
    "vm-goodbye": ("¡Adiós!", "Au revoir"),
    "vm-intro": ("Deje un mensaje", "Laissez un message"),
    "vm-no": ("No", "Non"),
    "vm-yes": ("Sí", "Oui"),
    "vm-again": ("Otra vez", "Encore"),
    "vm-login": ("Entrar", "Connexion"),
    "pbx-invalid": ("Extensión inválida", "Poste invalide"),
    "invalid": ("Extensión inválida", "Invalide"),  # same es text as pbx-invalid
    "digits/2": ("dos", "deux"),
    "letters/dot": ("punto [.]", "point [.]"),
}


def _wav(path: Path, seconds: float, sr: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, "PCM_16")


def fake_asterisk(base: Path) -> Path:
    """share/asterisk/sounds/{es -> es_MX_f_Test, fr_CA_f_Test} + share/doc/asterisk-core-sounds-*."""
    sounds = base / "share" / "asterisk" / "sounds"
    doc = base / "share" / "doc"
    for code, i, voice in (("es", 0, "es_MX_f_Test"), ("fr", 1, "fr_CA_f_Test")):
        vdir = sounds / voice
        lines = [f"; Core Asterisk Sounds in {code}", ""]
        for name, texts in SPEECH.items():
            _wav(vdir / f"{name}.wav", 0.5 + 0.1 * len(texts[i]) / 10)
            lines.append(f"{name}: {texts[i]}")
        _wav(vdir / "silence" / "1.wav", 1.0)
        lines.append("silence/1: (1 second of silence)")
        _wav(vdir / "beep.wav", 0.3)
        lines.append("beep: [tono simple]")
        _wav(vdir / "dir-instr.wav", 1.0)
        lines.append("dir-instr: Marque 1 para continuar")
        _wav(vdir / "vm-msgsaved.wav", 1.0)
        lines.append("vm-msgsaved: Su [nuevo] mensaje")
        _wav(vdir / "letters" / "g.wav", 0.4)
        lines.append("letters/g: g")
        _wav(vdir / "letters" / "a.wav", 0.4)
        lines.append("LETTERS/A: a bis")  # matched case-insensitively
        _wav(vdir / "no-text.wav", 0.4)  # no transcript line
        lines.append("no-wav: Sin archivo")  # no wav
        _wav(vdir / "twice.wav", 0.4)
        lines += ["twice: uno", "twice: otro"]  # conflicting texts
        (vdir / "broken.wav").write_bytes(b"not a wav file")
        lines.append("broken: Roto")
        _wav(vdir / "empty.wav", 0.0)
        lines.append("empty: Vacío")
        _wav(vdir / "long-menu.wav", 3.0)
        lines.append("long-menu: Un menú muy largo")
        d = doc / f"asterisk-core-sounds-{code}"
        d.mkdir(parents=True)
        (d / f"core-sounds-{code}.txt.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
        (d / "copyright").write_text(COPYRIGHT)
    (sounds / "es").symlink_to(sounds / "es_MX_f_Test")
    return sounds


@pytest.fixture
def imported(tmp_path):
    sounds = fake_asterisk(tmp_path / "corpus")
    out = tmp_path / "out"
    result = import_asterisk(sounds, out, seed=0, languages="es,fr", max_seconds=2.5)
    return sounds, out / "asterisk", result


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_registered_and_writes_three_manifests(imported):
    sounds, task_dir, result = imported
    assert IMPORTERS["asterisk"] is import_asterisk
    assert sorted(p.name for p in result.written) == ["dev.jsonl", "test.jsonl", "train.jsonl"]
    utts = read_manifests(task_dir)
    assert {u.language for u in utts} == {"spa", "fra"}
    assert {u.sample_rate for u in utts} == {8000}
    assert {u.speaker for u in utts} == {"es_MX_f_Test", "fr_CA_f_Test"}
    by_id = {u.id: u for u in utts}
    assert by_id["spa/vm-goodbye"].text == "ADIÓS"  # ¡! removed, upper case, accents kept
    assert by_id["fra/agent-loginok"].text == "VOUS ÊTES EN LIGNE"
    assert by_id["spa/letters/dot"].text == "PUNTO"  # a symbol note is dropped
    assert by_id["spa/letters/a"].text == "A BIS"  # `LETTERS/A` names letters/a.wav
    assert by_id["spa/digits/2"].path == str(sounds / "es_MX_f_Test" / "digits" / "2.wav")
    kept = {f"{lang}/{n}" for lang in ("spa", "fra") for n in SPEECH} | {"spa/letters/a", "fra/letters/a"}  # fmt: skip
    assert set(by_id) == kept
    assert sum(result.written.values()) == len(kept)


def test_left_out_prompts_are_reported_with_reasons(imported):
    _, _, result = imported
    skipped = "\n".join(result.skipped)
    for fragment in (
        "silence/1.wav: silence, not speech",
        "beep.wav: not speech",
        "dir-instr.wav: the transcript writes a number in digits",
        "vm-msgsaved.wav: the transcript holds a note beside the text",
        "letters/g.wav: a single letter",
        "no-text.wav: no transcript line `no-text:`",
        "no-wav: no no-wav.wav",
        "twice: listed twice with different texts",
        "broken.wav: unreadable",
        "empty.wav: 0 samples",
        "long-menu.wav: 3.0 s > 2.5 s",
    ):
        assert fragment in skipped, fragment
    assert sum("broken.wav" in s for s in result.skipped) == 2  # one per language, never fatal


def test_split_is_seeded_by_prompt_and_never_shares_a_text(tmp_path, imported):
    sounds, task_dir, _ = imported
    splits = {p: _lines(task_dir / f"{p}.jsonl") for p in ("train", "dev", "test")}
    assert all(splits.values()), {k: len(v) for k, v in splits.items()}
    where: dict[tuple[str, str], str] = {}
    for split, utts in splits.items():
        for u in utts:
            key = (u["language"], u["text"])
            assert where.setdefault(key, split) == split, f"{key} in {where[key]} and {split}"
    spa = {u["id"]: s for s, us in splits.items() for u in us if u["language"] == "spa"}
    assert spa["spa/invalid"] == spa["spa/pbx-invalid"]  # one text, one split
    fra = {u["id"][4:]: s for s, us in splits.items() for u in us if u["language"] == "fra"}
    # a prompt without a same-text sibling is in the same split in every language
    assert all(fra[n] == spa[f"spa/{n}"] for n in fra if n not in ("invalid", "pbx-invalid"))
    again = import_asterisk(sounds, tmp_path / "again", seed=0, languages=["es", "fr"], max_seconds=2.5)  # fmt: skip
    for p in again.written:
        assert p.read_text() == (task_dir / p.name).read_text()
    other = import_asterisk(sounds, tmp_path / "other", seed=5, languages="es,fr", max_seconds=2.5)
    assert any(p.read_text() != (task_dir / p.name).read_text() for p in other.written)


def test_readme_records_licences_and_minutes(imported):
    _, task_dir, _ = imported
    md = (task_dir / "README.md").read_text()
    assert "| spa (es) |" in md and "CC-BY-SA-3.0 (2003-2010, Speaker One)" in md
    assert "| fra (fr) |" in md and "CC-BY-SA-3.0 (2006, Speaker Two)" in md
    assert "train (utts / min)" in md and "Left out:" in md


def test_licence_picks_the_language_stanza(tmp_path):
    d = tmp_path / "asterisk-core-sounds-it"
    d.mkdir()
    (d / "copyright").write_text(COPYRIGHT)
    assert licence(tmp_path, "it") == "CC-BY-3.0 (2012, Speaker Three)"
    assert licence(tmp_path, "ru").startswith("unknown")


def test_clean_and_normalize():
    assert clean("[ascending tones]")[1].startswith("not speech")
    assert clean("Pour (emphase)")[1].startswith("the transcript holds a note")
    assert clean("trattino [-]") == ("trattino  ", None)
    assert normalize_text("Нажмите «важно», d'accord?") == "НАЖМИТЕ ВАЖНО DACCORD"


def test_user_errors_name_what_to_do(tmp_path):
    with pytest.raises(CorpusError, match="is not a folder"):
        import_corpus("asterisk", tmp_path / "nope", tmp_path / "out")
    sounds = fake_asterisk(tmp_path / "c")
    with pytest.raises(CorpusError, match="not supported; choose from"):
        import_asterisk(sounds, tmp_path / "out", languages="xx")
    with pytest.raises(CorpusError, match="no folder for language `it`"):
        import_asterisk(sounds, tmp_path / "out", languages="it")
    with pytest.raises(CorpusError, match="no transcript core-sounds-fr.txt"):
        import_asterisk(sounds, tmp_path / "out", languages="fr", docs=tmp_path / "elsewhere")


def test_8khz_audio_is_read_at_16khz(imported):
    sounds, _, _ = imported
    path = sounds / "es" / "vm-no.wav"
    assert sf.info(str(path)).samplerate == 8000
    assert len(load_audio(path)) == 2 * sf.info(str(path)).frames


def _default() -> dict:
    """configs/real_speech.yaml resolved over its base, the default experiment."""
    return read_experiment_mapping(ROOT / "configs" / "real_speech.yaml")


def test_plan_takes_synth_and_an_import():
    cfg = _default()
    assert cfg["data"]["synth"] and cfg["data"]["import"]["asterisk"]["corpus"] == "asterisk"
    plan = make_plan(cfg)
    assert plan.synth == {"demo": {"out": "data/demo"}}
    assert plan.imports["asterisk"]["out"] == "data/demo-import/asterisk"
    assert plan.imports["asterisk"]["parent"] == "data/demo-import"  # not inside synth's output
    ml = {r.data for r in plan.runs.values() if r.column == "ml_asr"}
    assert ml == {"data/demo-import/asterisk"}
    others = {r.data.split("/")[1] for r in plan.runs.values() if r.column != "ml_asr"}
    assert others == {"demo"}
    assert {s.data for s in plan.stores.values() if s.dataset == "asterisk"} == ml


def test_plan_refuses_data_from_neither_synth_nor_an_import():
    cfg = _default()
    cfg["data"]["synth"] = None
    with pytest.raises(PlanError, match="tasks.asr_en: task data `asr_en` comes from no corpus"):
        make_plan(cfg)
    cfg = _default()
    cfg["data"]["synth"] = None
    cfg["tasks"] = {"ml_asr": cfg["tasks"]["ml_asr"]}
    plan = make_plan(cfg)  # import only: the corpus goes under data/<suite>/ as before
    assert {r.data for r in plan.runs.values()} == {"data/demo/asterisk"}


def test_languages_report_labels_real_speech():
    cfg = _default()
    assert "real recorded speech" in column_data_note(cfg, "ml_asr")
    assert "8 kHz telephone band, one professional speaker" in column_data_note(cfg, "ml_asr")
    assert "synthesized" in column_data_note(cfg, "sv")
    assert [language_name(c) for c in ("spa", "fra", "ita", "rus", "xyz")] == [
        "Spanish", "French", "Italian", "Russian", "xyz",
    ]  # fmt: skip


@pytest.mark.skipif(
    not (REAL / "it").is_dir() or not Path("/usr/share/doc/asterisk-core-sounds-it").is_dir(),
    reason="asterisk-core-sounds-it(-wav) not installed (scripts/setup.sh installs them)",
)
def test_real_italian_prompts(tmp_path):
    result = import_asterisk(REAL, tmp_path, languages="it")
    utts = read_manifests(tmp_path / "asterisk")
    assert len(utts) > 300 and {u.language for u in utts} == {"ita"}
    assert "CC-BY-3.0" in (tmp_path / "asterisk" / "README.md").read_text()
    minutes = sum(u.duration for u in utts) / 60
    assert 10 < minutes < 30
    u = next(u for u in utts if u.id == "ita/auth-thankyou")
    assert u.text == "GRAZIE" and u.sample_rate == 8000
    audio = load_audio(u.path)
    assert abs(len(audio) / 16000 - u.duration) < 0.01
    assert any("silence" in s for s in result.skipped)


def test_table_header_says_which_column_reads_real_speech(tmp_path):
    from pipeline.report import write_report
    from tests.report_fakes import fabricate

    cfg = _default()
    cfg["tasks"] = {"ml_asr": cfg["tasks"]["ml_asr"], "sv": cfg["tasks"]["sv"]}
    cfg["seeds"] = [0]
    cfg_path = tmp_path / "exp.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    fabricate(cfg, tmp_path / "runs", lambda m, i, t, s: 0.3)
    paths = write_report(tmp_path / "runs", tmp_path / "results", cfg_path, importance=False)
    text = Path(paths["table"]).read_text()
    assert "Column ML-ASR multi instead: **real recorded speech**" in text
    assert "Column SV instead" not in text
