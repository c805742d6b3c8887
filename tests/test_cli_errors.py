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


def test_an_unknown_name_is_refused_before_anything_is_written(tmp_path):
    """A typo in --interface or --task: one `error:` line naming the closest names, exit 1, no
    run directory left behind (so the corrected command needs no --force)."""
    data, cache = make_er_suite(tmp_path, sizes={"train": 8, "dev": 4, "test": 4})
    for flag, bad, near in (("--interface", "chconvv", "`chconv`"), ("--task", "err", "`er`")):
        args = _train_args(data, cache, tmp_path / "run")
        args[args.index(flag) + 1] = bad
        r = CliRunner().invoke(app, args)
        lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
        assert r.exit_code == 1 and len(lines) == 1, r.output
        assert f"unknown {flag[2:]} `{bad}`; did you mean {near}" in lines[0], lines[0]
        assert "Traceback" not in r.output and not (tmp_path / "run").exists()
    r = CliRunner().invoke(app, _train_args(data, cache, tmp_path / "run"))
    assert r.exit_code == 0, r.output


def test_stages_and_workers_follow_the_same_policy(capsys):
    """pipeline.errors.run_reporting (the DVC stages, the grid worker): a user error is one
    `error:` line and status 1; a bug is never dressed as one and keeps its traceback."""
    import pytest

    from pipeline.errors import UserError, run_reporting
    from pipeline.plan import PlanError
    from pipeline.store import StoreError

    for err in (UserError("fix the key"), PlanError("fix the key"), StoreError("fix the key")):

        def fail(err=err):
            raise err

        assert run_reporting(fail, "train k") == 1
        assert capsys.readouterr().err == "error: train k: fix the key\n"

    def bug():
        raise ValueError("an internal invariant broke")

    with pytest.raises(ValueError, match="invariant"):
        run_reporting(bug, "train k")


def test_bad_settings_are_one_line_that_names_the_key(tmp_path):
    """Out-of-range or unknown training settings: one `error:` line naming the key and the fix,
    before a run directory exists."""
    data, cache = make_er_suite(tmp_path, sizes={"train": 8, "dev": 4, "test": 4})
    cases = {
        "interface_args.bogus=1": "interface_args.bogus: interface `ws` takes no such argument",
        "train.lr=-1": "train.lr=-1.0 must be a finite number, 0 or more",
        "train.lr=.nan": "train.lr=nan must be a finite number, 0 or more",
        "train.tier=bogus": "train.tier='bogus': use one of auto, gpu, pinned, mmap",
        "train.steps=abc": "train.steps='abc' is not a valid int",
        "task_args.hidden=abc": "task_args.hidden='abc': task `er` takes a number",
    }
    for setting, want in cases.items():
        args = [*_train_args(data, cache, tmp_path / "run"), "--set", setting]
        r = CliRunner().invoke(app, args)
        lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
        assert r.exit_code == 1 and len(lines) == 1 and want in lines[0], (setting, r.output)
        assert "Traceback" not in r.output and not (tmp_path / "run").exists()


def test_an_upstream_that_cannot_be_had_offline_is_one_line(tmp_path, monkeypatch):
    """Offline, a typo'd or a hub-only --model: one `error:` line naming the closest names, the
    cause and the upstreams that ship offline; no traceback."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data, _ = make_er_suite(tmp_path, sizes={"train": 2})
    for model, want in (("wavlm_bse_plus", "did you mean `wavlm_base_plus`"),
                        ("wavlm_base_plus", "HF_HUB_OFFLINE is set, so the hub is not asked")):  # fmt: skip
        args = ["extract", "--model", model, "--data", str(data), "--out", str(tmp_path / "s.zarr")]
        r = CliRunner().invoke(app, args)
        lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
        assert r.exit_code == 1 and len(lines) == 1, r.output
        assert want in lines[0] and "whisper_tiny_en, whisper_base, moonshine_base_en" in lines[0]
        assert "Traceback" not in r.output


def test_ctrl_c_says_what_is_kept_and_exits_130(tmp_path, monkeypatch):
    import pipeline.train.loop

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.train.loop, "train", interrupted)
    data, cache = make_er_suite(tmp_path, sizes={"train": 8, "dev": 4, "test": 4})
    r = CliRunner().invoke(app, _train_args(data, cache, tmp_path / "run"))
    assert r.exit_code == 130 and "rerun the same command to resume" in r.output, r.output
