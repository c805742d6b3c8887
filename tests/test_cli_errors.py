"""The `pipeline` command's error handler: one message for user errors, tracebacks with --debug."""

from __future__ import annotations

import errno
import shutil

from typer.testing import CliRunner

import pipeline.train.loop as train_mod
from pipeline.cli import app
from pipeline.data.manifest import read_manifest, write_manifest
from pipeline.feed.run_inputs import StoreMissingError
from tests.train_fixtures import make_er_suite


def _train_args(data, cache, out):
    return ["train", "--interface", "ws", "--models", "up_a,up_b", "--task", "er"] + [
        "--data", str(data), "--cache", str(cache), "--out", str(out), "--device", "cpu",
        "--set", "train.steps=2", "--set", "train.eval_every=2",
    ]  # fmt: skip


def test_user_errors_are_one_message_and_debug_shows_the_exception(tmp_path):
    data, cache = make_er_suite(tmp_path, sizes={"train": 8, "dev": 4, "test": 4})
    shutil.rmtree(cache / "up_b.zarr")
    args = _train_args(data, cache, tmp_path / "run")
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit)
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "up_b" in lines[0] and "pipeline extract" in lines[0]
    assert "Traceback" not in r.output
    r = CliRunner().invoke(app, ["--debug", *args])
    assert isinstance(r.exception, StoreMissingError)
    r = CliRunner().invoke(app, args, env={"PIPELINE_DEBUG": "1"})
    assert isinstance(r.exception, StoreMissingError)


def test_a_store_missing_utterances_gives_the_right_advice(tmp_path):
    data, cache = make_er_suite(tmp_path, sizes={"train": 8, "dev": 4, "test": 4})
    test = read_manifest(data / "test.jsonl", check_files=False)
    test.append(test[0].__class__("test-new", "n.wav", 0.3, 16000, "test", emotion="neu"))
    write_manifest(data / "test.jsonl", test)
    r = CliRunner().invoke(app, _train_args(data, cache, tmp_path / "run"))
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "lacks 1 of the 5 utterances" in r.output and "test-new" in r.output
    assert "--force" in r.output and "resumes and adds" not in r.output


def test_a_full_disk_names_the_output_and_says_a_rerun_resumes(tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train_mod, "train", full)
    r = CliRunner().invoke(app, _train_args(tmp_path, tmp_path, tmp_path / "myrun"))
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "no space left" in r.output and "myrun" in r.output and "resume" in r.output


def test_bugs_keep_their_traceback(tmp_path, monkeypatch):
    def bug(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(train_mod, "train", bug)
    r = CliRunner().invoke(app, _train_args(tmp_path, tmp_path, tmp_path / "run"))
    assert isinstance(r.exception, ZeroDivisionError)


def test_a_config_error_is_one_message(tmp_path):
    args = _train_args(tmp_path, tmp_path, tmp_path / "run") + ["--set", "train.nope=1"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output.startswith("error:") and "nope" in r.output
