"""The commands guide a newcomer: every missing option in one message, `--store` in place of
`--cache`, the CLI's defaults equal to the analyze stage's and the extractor's, `pipeline
upstreams` saying what extracts here, and an offline hub miss as one line without retries."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from pipeline.analysis import settings as defaults
from pipeline.cli import app
from pipeline.extract.engine import ExtractConfig
from pipeline.upstreams import hub
from pipeline.upstreams.base import UpstreamUnavailable
from pipeline.upstreams.registry import OFFLINE_NAMES, REGISTRY
from tests.train_fixtures import make_er_suite


def _errors(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error:")]


def _command(*path: str):
    cmd = get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    return cmd


def _default(cmd, name: str):
    return next(p for p in cmd.params if p.name == name).default


@pytest.mark.parametrize(
    "argv, want",
    [
        (
            ["train", "--interface", "chconv"],
            "--models, --task, --data, --out, --cache (or --store)",
        ),
        (["train"], "--interface, --models, --task, --data, --out, --cache (or --store)"),
        (["extract"], "--model, --data, --out"),
        (["analyze", "probe", "--task", "er"], "--model, --data, --out, --cache (or --store)"),
        (["analyze", "similarity"], "--models, --data, --out, --cache (or --store)"),
    ],
)
def test_every_missing_option_is_named_in_one_message(argv, want):
    r = CliRunner().invoke(app, argv)
    lines = _errors(r.output)
    assert r.exit_code == 1 and len(lines) == 1, r.output
    assert want in lines[0] and "--help" in lines[0] and "Traceback" not in r.output


def test_store_alone_is_enough_for_train_and_analyze(tmp_path):
    """--store for every model replaces --cache; a --store that leaves a model out names it."""
    data, cache = make_er_suite(tmp_path, sizes={"train": 8, "dev": 4, "test": 4})
    stores = ["--store", f"up_a={cache / 'up_a.zarr'}", "--store", f"up_b={cache / 'up_b.zarr'}"]
    args = ["train", "--interface", "ws", "--models", "up_a,up_b", "--task", "er",
            "--data", str(data), "--out", str(tmp_path / "run"), "--device", "cpu",
            "--set", "train.steps=2", "--set", "train.eval_every=2"]  # fmt: skip
    r = CliRunner().invoke(app, args + stores)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "metrics.json").is_file()
    r = CliRunner().invoke(app, [*args[:-5], str(tmp_path / "run2"), *args[-4:], *stores[:2]])
    lines = _errors(r.output)
    assert r.exit_code == 1 and len(lines) == 1 and "no store for up_b" in lines[0], r.output
    assert "--cache" in lines[0] and not (tmp_path / "run2").exists()
    sim = ["analyze", "similarity", "--models", "up_a,up_b", "--data", str(data),
           "--out", str(tmp_path / "sim"), *stores]  # fmt: skip
    r = CliRunner().invoke(app, sim)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "sim" / "similarity.json").read_text())["remove_position"]


def test_the_cli_defaults_are_the_analyze_stages_and_the_extractors():
    """On the same stores, `pipeline analyze` without options computes what the analyze stage
    computes for a config that leaves the keys out (remove_position included)."""
    sim = _command("analyze", "similarity")
    assert _default(sim, "remove_position") is defaults.SIMILARITY["remove_position"] is True
    assert _default(sim, "splits").split(",") == list(defaults.SIMILARITY["splits"])
    assert _default(sim, "max_frames") == defaults.SIMILARITY["max_frames"]
    assert _default(sim, "memory_gb") == defaults.SIMILARITY["memory_gb"]
    assert _default(sim, "seed") == defaults.SEED
    probe = _command("analyze", "probe")
    for cli, key in (("steps", "steps"), ("lr", "lr"), ("split", "split"),
                     ("max_train", "max_train_utterances")):  # fmt: skip
        assert _default(probe, cli) == defaults.PROBE[key], cli
    assert _default(probe, "seed") == defaults.SEED
    ext = _command("extract")
    fields = {f.name: f.default for f in dataclasses.fields(ExtractConfig)}
    for name in ("device", "whisper_mode", "encoding", "calib_seconds", "batch_seconds"):
        assert _default(ext, name) == fields[name], name


def test_the_analyze_stage_reads_the_same_defaults(monkeypatch):
    """A config's `analysis.similarity` without remove_position gets the shared default."""
    import pipeline.analysis.suite as suite

    seen = {}

    def fake(readers, names, ids, max_frames, **kw):
        seen.update(kw, max_frames=max_frames)
        raise RuntimeError("stop")

    monkeypatch.setattr(suite, "layer_similarity", fake)
    monkeypatch.setattr(suite, "column_stores", lambda p, c: ("d", {"a": "a", "b": "b"}))
    monkeypatch.setattr(suite, "open_stores", lambda s, c: {"a": 1, "b": 2})
    monkeypatch.setattr(suite, "read_splits", lambda *a, **k: {})
    with pytest.raises(RuntimeError, match="stop"):
        suite.run_similarity({}, {"column": "er"}, None, 0)  # type: ignore[arg-type]
    assert seen["remove_position"] is True and seen["max_frames"] is None
    assert seen["memory_bytes"] == defaults.SIMILARITY["memory_gb"] * 1e9


def test_upstreams_lists_shapes_and_what_extracts_here(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = CliRunner().invoke(app, ["upstreams", "--json"])
    assert r.exit_code == 0, r.output
    rows = {x["name"]: x for x in json.loads(r.output)}
    assert list(rows) == list(REGISTRY)
    assert rows["moonshine_base_en"]["frame_rate"] == 41.67 and rows["whisper_base"]["states"] == 7
    assert all(rows[n]["offline"] for n in OFFLINE_NAMES)
    hub_only = rows["wavlm_base_plus"]
    assert not hub_only["offline"] and hub_only["source"] == "microsoft/wavlm-base-plus"
    if not hub_only["available"]:
        assert "HF_HUB_OFFLINE is set" in hub_only["where"]
    r = CliRunner().invoke(app, ["upstreams"], env={"COLUMNS": "250"})
    assert r.exit_code == 0 and "states × dim" in r.output and "can be extracted here" in r.output


def test_an_offline_package_that_is_missing_is_not_available(monkeypatch):
    import pipeline.upstreams.listing as listing

    def missing(name):
        raise FileNotFoundError(
            f"{name}: the PyPI package 'moonshine-cpp' is not installed; run pip"
        )

    monkeypatch.setattr(listing, "offline_ort", missing)
    row = next(r for r in listing.upstream_table(probe=False) if r.name == "moonshine_base_en")
    assert not row.available and "not installed" in row.where


def test_a_hub_miss_asks_the_network_only_when_the_hub_answers(monkeypatch):
    calls = []

    def load(source, **kw):
        calls.append(kw.get("local_files_only", False))
        if kw.get("local_files_only"):
            raise OSError("not in the cache")
        return "weights"

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for v in hub.PROXY_ENV:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.PROBE_TIMEOUT_S: False)
    with pytest.raises(hub.HubMiss, match="cannot be reached"):
        hub.from_hub(load, "org/model")
    assert calls == [True]  # no second, retrying request
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.PROBE_TIMEOUT_S: True)
    calls.clear()
    assert hub.from_hub(load, "org/model") == "weights" and calls == [True, False]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls.clear()
    with pytest.raises(hub.HubMiss, match="HF_HUB_OFFLINE is set"):
        hub.from_hub(load, "org/model")
    assert calls == [True]


def test_an_unreachable_hub_gives_one_line_naming_the_offline_upstreams(monkeypatch):
    """Without HF_HUB_OFFLINE and without network: the message at once, no retries."""
    import pipeline.upstreams.hf as hf
    from pipeline.upstreams.registry import load_upstream

    def miss(load, source, **kw):
        raise hub.HubMiss("huggingface.co:443 cannot be reached")

    monkeypatch.setattr(hf, "from_hub", miss)
    with pytest.raises(UpstreamUnavailable) as e:
        load_upstream("wavlm_base_plus")
    msg = str(e.value)
    assert "\n" not in msg and "cannot be reached" in msg and "HF_HUB_OFFLINE" in msg
    assert ", ".join(OFFLINE_NAMES) in msg and "pipeline upstreams" in msg
