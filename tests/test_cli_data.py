"""`pipeline data import|synth|check` through the real typer app."""

from __future__ import annotations

import sys
import types
from pathlib import Path

from test_corpora import make_iemocap, make_librispeech, make_voxceleb1
from typer.testing import CliRunner

from pipeline.cli import app

runner = CliRunner()


def test_import_librispeech_then_check(tmp_path):
    root = make_librispeech(tmp_path / "corpus")
    r = runner.invoke(
        app, ["data", "import", "librispeech", str(root), "--out", str(tmp_path / "data")]
    )
    assert r.exit_code == 0, r.output
    assert "train.jsonl" in r.stdout and "6" in r.stdout
    task = tmp_path / "data" / "librispeech"
    assert sorted(p.name for p in task.iterdir()) == ["dev.jsonl", "test.jsonl", "train.jsonl"]

    r = runner.invoke(app, ["data", "check", str(task)])
    assert r.exit_code == 0, r.output
    assert (
        "3 manifest(s), 14 utterance(s)" in r.stdout
        and "all manifests and audio files are usable" in r.stdout
    )
    r = runner.invoke(app, ["data", "check", str(task / "dev.jsonl")])
    assert r.exit_code == 0 and "1 manifest(s), 4 utterance(s)" in r.stdout

    # break two files in different ways: both are reported, exit code 1
    gone = root / "LibriSpeech/dev-clean/84/1240/84-1240-0001.flac"
    gone.unlink()
    bad = root / "LibriSpeech/train-clean-100/1034/1240/1034-1240-0000.flac"
    bad.write_text("not audio")
    r = runner.invoke(app, ["data", "check", str(tmp_path / "data")])
    assert r.exit_code == 1
    assert "2 problem(s)" in r.stderr
    assert "84-1240-0001.flac does not exist" in r.stderr
    assert "1034-1240-0000" in r.stderr and "cannot decode" in r.stderr


def test_import_voxceleb1_with_trials_option_and_check(tmp_path):
    root = make_voxceleb1(tmp_path / "vox1")
    trials = tmp_path / "lists" / "my_trials.txt"
    trials.parent.mkdir()
    (root / "veri_test2.txt").rename(trials)
    args = [
        "data",
        "import",
        "voxceleb1",
        str(root),
        "--out",
        str(tmp_path / "data"),
        "--seed",
        "3",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "no VoxCeleb1 trial list" in r.stderr
    r = runner.invoke(app, [*args, "--trials", str(trials)])
    assert r.exit_code == 0, r.output
    task = tmp_path / "data" / "voxceleb1"
    assert runner.invoke(app, ["data", "check", str(task)]).exit_code == 0
    # a trial naming an utterance the manifests lack is a problem
    with open(task / "trials.tsv", "a") as f:
        f.write("1\tid99999/abc/00001\tid10270/1zcIwhmdeo4/00001\n")
    r = runner.invoke(app, ["data", "check", str(task)])
    assert r.exit_code == 1 and "id99999/abc/00001" in r.stderr


def test_import_errors(tmp_path):
    r = runner.invoke(app, ["data", "import", "timit", str(tmp_path)])
    assert r.exit_code == 2 and "unknown corpus 'timit'" in r.stderr
    r = runner.invoke(
        app, ["data", "import", "iemocap", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 1 and "IEMOCAP_full_release" in r.stderr
    r = runner.invoke(app, ["data", "import", "iemocap", str(tmp_path), "--trials", "x.txt"])
    assert r.exit_code == 2 and "voxceleb1 only" in r.stderr


def test_import_iemocap_reports_counts(tmp_path):
    root = make_iemocap(tmp_path / "corpus")
    r = runner.invoke(
        app, ["data", "import", "iemocap", str(root), "--out", str(tmp_path / "data")]
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.count("jsonl") == 15
    r = runner.invoke(app, ["data", "check", str(tmp_path / "data" / "iemocap")])
    assert r.exit_code == 0, r.output
    assert "15 manifest(s), 125 utterance(s), 25 audio file(s)" in r.stdout  # files decoded once


def test_check_reports_malformed_manifest_and_missing_target(tmp_path):
    (tmp_path / "train.jsonl").write_text("{broken\n")
    r = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert r.exit_code == 1 and "train.jsonl:1: not valid JSON" in r.stderr
    r = runner.invoke(app, ["data", "check", str(tmp_path / "nothing")])
    assert r.exit_code == 1 and "not a manifest" in r.stderr


def test_synth_calls_synthesize(tmp_path, monkeypatch):
    calls = []

    def synthesize(out: Path, preset: str = "demo", seed: int = 0) -> Path:
        if preset not in ("tiny", "demo"):
            raise ValueError(f"unknown preset {preset!r}")
        calls.append((Path(out), preset, seed))
        return Path(out)

    fake = types.ModuleType("pipeline.data.synth")
    fake.synthesize = synthesize
    monkeypatch.setitem(sys.modules, "pipeline.data.synth", fake)
    r = runner.invoke(
        app, ["data", "synth", "--out", str(tmp_path / "s"), "--preset", "tiny", "--seed", "7"]
    )
    assert r.exit_code == 0, r.output
    assert calls == [(tmp_path / "s", "tiny", 7)]
    monkeypatch.chdir(tmp_path)  # without --out: data/<preset>, where configs/tiny.yaml reads it
    assert runner.invoke(app, ["data", "synth", "--preset", "tiny"]).exit_code == 0
    assert calls[-1] == (Path("data/tiny"), "tiny", 0)
    r = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "s"), "--preset", "huge"])
    assert r.exit_code == 1 and "unknown preset 'huge'" in r.stderr


def test_check_reports_every_problem_of_every_manifest(tmp_path):
    import json

    import numpy as np

    from pipeline.audio import write_wav
    from pipeline.data.manifest import Utterance, write_manifest

    task = tmp_path / "task"
    write_wav(task / "shared.wav", np.zeros(16000, np.float32))  # 1.0 s
    write_wav(task / "ok.wav", np.zeros(8000, np.float32))  # 0.5 s
    (task / "broken.wav").write_text("not audio")
    write_manifest(
        task / "train.jsonl",
        [
            Utterance("a", "shared.wav", 1.0, 16000, "train"),
            Utterance("b", "shared.wav", 2.0, 16000, "train"),  # same file, wrong duration
            Utterance("c", "ok.wav", 0.5, 16000, "train"),
        ],
    )
    write_manifest(task / "test.jsonl", [Utterance("c", "ok.wav", 0.5, 16000, "test")])
    good = Utterance("d", "gone.wav", 0.5, 16000, "dev").to_json()
    bad_type = json.dumps({"id": "e", "path": "ok.wav", "duration": "long", "sample_rate": 16000, "split": "dev"})  # fmt: skip
    (task / "dev.jsonl").write_text(
        "\n".join(
            [
                good,
                "{oops",
                bad_type,
                "[1]",
                Utterance("f", "broken.wav", 0.5, 16000, "dev").to_json(),
                good,
                "{again",
            ]
        )  # fmt: skip
    )
    r = runner.invoke(app, ["data", "check", str(task)])
    assert r.exit_code == 1
    err = r.stderr
    assert "dev.jsonl:2: not valid JSON" in err and "dev.jsonl:7: not valid JSON" in err
    assert "dev.jsonl:3: duration must be a positive number" in err
    assert "dev.jsonl:4: expected a JSON object" in err
    assert "dev.jsonl:6: duplicate utterance id 'd' (first on line 1)" in err
    assert "'c': in test.jsonl and train.jsonl" in err
    assert "b: manifest says 2.000 s" in err and "a: manifest says" not in err
    assert "d: " in err and "gone.wav does not exist" in err
    assert "f: " in err and "cannot decode" in err
    assert "9 problem(s)" in err


def test_check_flags_what_extract_refuses(tmp_path):
    """Anything `read_manifests` (what extract reads) refuses, check reports too."""
    import pytest

    from pipeline.data.check import check_manifests
    from pipeline.data.manifest import ManifestError, Utterance, read_manifests, write_manifest

    task = tmp_path / "t"
    write_manifest(task / "train.jsonl", [Utterance("x", "x.wav", 1.0, 16000, "train")])
    write_manifest(task / "test_unseen.jsonl", [Utterance("x", "x.wav", 1.0, 16000, "test")])
    with pytest.raises(ManifestError):
        read_manifests(task, check_files=False)
    assert any("test_unseen.jsonl" in p for p in check_manifests(task).problems)
