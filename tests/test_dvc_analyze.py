"""dvc.yaml's analyze stage (`python -m stages.analyze`) on real stores of the
tiny suite (written by two stand-in upstreams of different frame rates and widths): it writes
the probe and CKA files for the experiment's upstreams, and the report shows them with captions
(and says how to make them when they are absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from pipeline.analysis import suite as dvc_analyze
from pipeline.data.manifest import Utterance
from pipeline.extract.engine import ExtractConfig, run
from pipeline.plan import MARKER, make_plan, read_experiment_mapping
from pipeline.report import write_report
from pipeline.upstreams.base import UpstreamSpec
from stages import analyze as analyze_stage
from tests.report_fakes import fabricate

ROOT = Path(__file__).resolve().parents[1]
UPSTREAMS = ("whisper_tiny_en", "whisper_base")


class _Upstream:
    """A deterministic stand-in: L states of width D at `hop` samples per frame."""

    def __init__(self, name: str, layers: int, dim: int, hop: int) -> None:
        self.spec = UpstreamSpec(name, "fake", f"fake://{name}", 16000, 16000 / hop, layers, dim)
        self.hop, self.pad_sensitive = hop, False

    def weights_hash(self) -> str:
        return self.spec.name

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop

    def forward(self, waveforms, lengths):
        L, D, h = self.spec.num_layers, self.spec.dim, self.hop
        out = []
        for x, n in zip(waveforms, lengths.tolist(), strict=True):
            frames = x[: n // h * h].reshape(-1, h)[:, :D]  # (T, D)
            out.append(torch.stack([torch.tanh(frames * (k + 1) * 20) for k in range(L)]))
        return out  # [(L, T, D)]


def _experiment(suite: Path, cache: Path) -> dict:
    cfg = read_experiment_mapping(ROOT / "configs" / "tiny.yaml")
    cfg["paths"] = {"data_root": str(suite.parent), "cache_root": str(cache), "runs_root": "runs"}
    cfg["data"]["suite"] = suite.name
    cfg["tasks"] = {"sv": {"task": "sv"}, "er": {"task": "er"}}
    cfg["table"] = [{"section": "Single model", "sets": [[u] for u in UPSTREAMS], "interfaces": ["ws"]}]  # fmt: skip
    return cfg


def _params(cfg: dict, path: Path) -> Path:
    gen = make_plan(cfg).generated()
    path.write_text(yaml.safe_dump(cfg, sort_keys=False) + "\n" + MARKER + "\n" + yaml.safe_dump(gen, sort_keys=False))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def analyzed(tiny_suite, tmp_path_factory):
    """The tiny suite's er and sv stores of both upstreams, and the stage run on them."""
    tmp = tmp_path_factory.mktemp("analyze")
    cfg = _experiment(tiny_suite, tmp / "cache")
    ups = {"whisper_tiny_en": _Upstream("whisper_tiny_en", 3, 8, 320),
           "whisper_base": _Upstream("whisper_base", 4, 6, 384)}  # fmt: skip
    for s in make_plan(cfg).stores.values():
        run(ExtractConfig(s.upstream, s.data, s.store, device="cpu", progress=False), ups[s.upstream])  # fmt: skip
    params = _params(cfg, tmp / "params.yaml")
    out = tmp / "results" / "analysis"
    assert analyze_stage.main(["--params", str(params), "--out", str(out)]) == 0
    return tmp, cfg, out


def test_the_stage_writes_probes_and_cka_for_every_upstream(analyzed):
    _, cfg, out = analyzed
    index = json.loads((out / "analysis.json").read_text())
    assert [p["column"] for p in index["probes"]] == ["er", "sv"]
    for task in ("er", "sv"):
        doc = json.loads((out / f"probe_{task}.json").read_text())
        assert list(doc["models"]) == list(UPSTREAMS)
        assert [m["num_layers"] for m in doc["models"].values()] == [3, 4]
        assert doc["models"]["whisper_base"]["config"]["steps"] == cfg["analysis"]["probe"]["steps"]  # fmt: skip
        assert (out / f"probe_{task}.png").stat().st_size > 1000
    er = index["probes"][0]
    assert er["utterances"] == {"train": 16, "dev": 12, "test": 12} and er["split"] == "test"
    sim = json.loads((out / "similarity.json").read_text())
    assert sim["models"] == list(UPSTREAMS) and sim["remove_position"] is True
    assert 0 < sim["frames"] <= cfg["analysis"]["similarity"]["max_frames"]
    assert index["similarity"]["figures"] == ["cka_whisper_tiny_en__whisper_base.png"]
    assert (out / "cka_whisper_tiny_en__whisper_base.png").is_file()
    m = sim["matrices"]["whisper_tiny_en|whisper_base"]
    assert len(m) == 3 and len(m[0]) == 4 and all(0 <= v <= 1 + 1e-6 for r in m for v in r)


def test_the_report_shows_the_analysis_with_captions(analyzed):
    tmp, cfg, _ = analyzed
    cfg = {**cfg, "train": {**cfg["train"], "steps": 50}}  # what the fabricated runs record
    fabricate(cfg, tmp / "runs", lambda models, iface, task, seed: 0.5)
    cfg_path = tmp / "exp.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    paths = write_report(tmp / "runs", tmp / "results", cfg_path, importance=False)
    md = paths["report"].read_text()
    # drawn again by the report: display names, its figures' width (1,200 px), ER with intervals
    assert "![probe er](figures/layer_probe_er.png)" in md and "![probe sv](figures/layer_probe_sv.png)" in md  # fmt: skip
    assert "![CKA Whisper tiny.en vs Whisper base](figures/layer_cka_whisper_tiny_en__whisper_base.png)" in md  # fmt: skip
    for name in ("layer_probe_er", "layer_probe_sv", "layer_cka_whisper_tiny_en__whisper_base"):
        assert Image.open(tmp / "results" / "figures" / f"{name}.png").size[0] == 1200, name
    assert "Bars: the 95 % Wilson interval" in md and "No bars:" in md  # ER accuracy; SV EER
    assert "on the test split (12 utterances" in md  # which split, how many
    assert "Whisper tiny.en (rows) vs Whisper base (columns)" in md and "CKA" in md  # display names
    assert "| Whisper tiny.en / Whisper base |" in md  # the pair's best-match scores
    assert "![curves_dev](figures/curves_dev.png)" in md  # and the report's own figures


def test_without_the_analysis_the_report_says_how_to_make_it(analyzed, tmp_path):
    tmp, cfg, _ = analyzed
    cfg_path = tmp_path / "exp.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    paths = write_report(tmp / "runs", tmp_path / "results", cfg_path, importance=False)
    md = paths["report"].read_text()
    assert "## Layer analysis" in md and "dvc repro analyze" in md
    assert "python -m stages.analyze" in md and "analysis/probe" not in md


def test_errors_name_the_column_or_the_store(analyzed, tmp_path, capsys):
    _, cfg, _ = analyzed
    bad = {**cfg, "analysis": {"probe": {"columns": ["asr_en"]}}}
    assert analyze_stage.main(["--params", str(_params(bad, tmp_path / "p.yaml"))]) == 1
    err = capsys.readouterr().err
    assert "'asr_en'" in err and "['er', 'sv']" in err
    moved = {**cfg, "paths": {**cfg["paths"], "cache_root": str(tmp_path / "nowhere")}}
    assert analyze_stage.main(["--params", str(_params(moved, tmp_path / "q.yaml"))]) == 1
    err = capsys.readouterr().err
    assert "nowhere" in err and "does not exist" in err and "extract" in err


def test_limit_is_a_seeded_sample_in_manifest_order():
    utts = [Utterance(f"u{i:02d}", f"u{i}.wav", 1.0, 16000, "train") for i in range(30)]
    a = dvc_analyze.limit(utts, 10, seed=0)
    assert len(a) == 10 and a == sorted(a, key=lambda u: u.id)
    assert a == dvc_analyze.limit(utts, 10, seed=0) and a != dvc_analyze.limit(utts, 10, seed=1)
    assert dvc_analyze.limit(utts, None, 0) == utts and dvc_analyze.limit(utts, 50, 0) == utts
