"""The report on fabricated run directories: the table's layout, mean ± sd over seeds and the
bold rule, extra splits, languages.md, metrics.json, curves and the PNG figures; fold and
mono-language averaging; cells found by the runs' configs whatever their directory names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from pipeline.plan import make_plan
from pipeline.report import load_runs, write_report
from tests.report_fakes import LANGS, experiment, fabricate, fake_run


def _default_value(models: list[str], iface: str, task: str, seed: int) -> float:
    base = {"ws": 0.30, "gumd": 0.35, "hconv": 0.20, "chconv": 0.25}
    v = base[iface] + 0.01 * len(models) + (0.05 if models == ["whisper_tiny_en"] else 0)
    return 1 - v if task == "er" else v


@pytest.fixture(scope="module")
def default_report(tmp_path_factory):
    """Every run of the two-Whisper experiment fabricated, one seed; value = f(interface, task)."""
    tmp = tmp_path_factory.mktemp("rep")
    cfg_path = tmp / "exp.yaml"
    cfg_path.write_text(yaml.safe_dump(experiment(), sort_keys=False))
    fabricate(experiment(), tmp / "runs", _default_value, name=lambda k, s: k)
    paths = write_report(tmp / "runs", tmp / "results", cfg_path, importance=False)
    return tmp, paths


def _rows(md: str) -> list[list[str]]:
    return [
        [c.strip() for c in ln.strip("|").split("|")]
        for ln in md.splitlines()
        if ln.startswith("| ")
    ]


def test_table_has_8_rows_4_tasks_and_best_marks(default_report):
    tmp, paths = default_report
    md = paths["table"].read_text()
    rows = _rows(md)
    header, body = rows[0], rows[1:]
    assert header[2:] == ["ASR en WER ↓", "ML-ASR multi CER ↓", "SV EER ↓", "ER Acc ↑"]
    data = [r for r in body if r[1]]
    assert len(data) == 8 and [r[1] for r in data] == [
        "WS",
        "HConv",
        "WS",
        "HConv",
        "WS",
        "GumD",
        "HConv",
        "CHConv",
    ]
    sections = [r[0] for r in body if not r[1]]
    assert sections == ["**Single model**", "**2-model fusion**"]
    # single model: HConv on whisper_base is best (0.21) in every column, ER too (1 - 0.21)
    single = data[:4]
    for r in single:
        assert all(c.startswith("**") == (r is single[3]) for c in r[2:]), r
    assert single[3][2] == "**21.00**" and single[3][5] == "**79.00**"
    fusion = data[4:]
    assert [c.startswith("**") for c in (r[2] for r in fusion)] == [False, False, True, False]
    assert "Whisper tiny.en & Whisper base" in md and "built-in offline suite" in md
    assert all(c not in ("–", "") for r in data for c in r[2:])


def test_metrics_json_flat_for_dvc(default_report):
    _, paths = default_report
    m = json.loads(paths["metrics"].read_text())
    assert len(m) == 8
    assert m["whisper_base-hconv"] == {
        "asr_en_wer": 21.0,
        "ml_asr_cer": 21.0,
        "sv_eer": 21.0,
        "er_accuracy": 79.0,
    }
    assert set(m["whisper_tiny_en+whisper_base-gumd"]) == {
        "asr_en_wer",
        "ml_asr_cer",
        "sv_eer",
        "er_accuracy",
    }


def test_languages_md_per_language(default_report):
    _, paths = default_report
    rows = _rows(paths["languages"].read_text())
    assert rows[0][2:] == ["Avg.", *LANGS]
    hconv_base = [r for r in rows if r[1] == "HConv"][1]
    assert hconv_base[2:] == ["**22.50**", "**21.00**", "**22.00**", "**23.00**", "**24.00**"]


def test_curves_and_figures(default_report):
    tmp, paths = default_report
    curves = sorted(p.name for p in (tmp / "results" / "curves").glob("*.csv"))
    assert curves == ["asr_en.csv", "er.csv", "ml_asr.csv", "sv.csv"]
    lines = (tmp / "results" / "curves" / "sv.csv").read_text().splitlines()
    assert (
        lines[0] == "step,run,dev,train_loss" and len(lines) == 1 + 8 * 5
    )  # 8 runs x 5 evaluations
    assert lines[1].startswith("10,Whisper tiny.en · WS,")
    for name in ("ws_layer_weights", "gumd_layer_selection", "hconv_tap_norms", "curves_dev",
                 "curves_train_loss"):  # fmt: skip
        p = paths[name]
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
        assert Image.open(p).size[0] == 1200  # fits a 1,200-pixel page
    assert not (tmp / "results" / "figures" / "hconv_state_importance.png").exists()


def test_folds_and_mono_languages_are_averaged(tmp_path):
    """A config whose er column expands over 2 folds and ml_asr over 2 mono configs."""
    cfg = experiment()
    cfg["tasks"] = {
        "mono": {"task": "ml_asr", "data": "ml_asr", "set": {"mode": "mono"},
                 "expand": {"config": {"eng1": {"language": "eng"}, "fra1": {"language": "fra"}}}},
        "er": {"task": "er", "data": "er/fold{fold}", "store_data": "er/fold1", "expand": {"fold": [1, 2]}},
    }  # fmt: skip
    cfg["report"]["columns"] = {"mono": "Mono", "er": "ER"}
    cfg["table"] = [
        {"section": "Single model", "sets": [["whisper_base"]], "interfaces": ["ws", "hconv"]}
    ]
    cfg_path = tmp_path / "exp.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    plan = make_plan(cfg)
    assert sorted(plan.runs) == sorted(
        f"whisper_base-{i}-{c}"
        for i in ("ws", "hconv")
        for c in ("mono-eng1", "mono-fra1", "er-fold1", "er-fold2")
    )
    vals = {"mono-eng1": 0.10, "mono-fra1": 0.30, "er-fold1": 0.60, "er-fold2": 0.80}
    for key, r in plan.runs.items():
        if key.endswith("er-fold2") and r.interface == "hconv":
            continue  # a missing fold: the cell averages what exists and says so
        v = vals[key.split("-", 2)[2]] + (0.01 if r.interface == "ws" else 0)
        fake_run(tmp_path / "runs" / key, r.models, r.interface, r.task, v, r.settings)
    paths = write_report(tmp_path / "runs", tmp_path / "out", cfg_path, importance=False)
    rows = [r for r in _rows(paths["table"].read_text()) if r[1]]
    assert rows[0][2:] == ["Mono CER ↓", "ER Acc ↑"]
    assert rows[1][1:] == ["WS", "21.00", "**71.00**"]  # means of (11, 31) and (61, 81)
    assert rows[2][1:] == ["HConv", "**20.00**", "60.00 (1/2 runs)"]
    lang = _rows(paths["languages"].read_text())
    assert lang[0][2:] == ["Avg.", "eng1", "fra1"]
    assert [r for r in lang if r[1] == "HConv"][0][2:] == ["**20.00**", "**10.00**", "**30.00**"]


def test_inferred_layout_without_config(tmp_path):
    fake_run(tmp_path / "a", ["whisper_base"], "ws", "sv", 0.2)
    fake_run(tmp_path / "b", ["whisper_base"], "hconv", "sv", 0.1)
    fake_run(tmp_path / "c", ["whisper_tiny_en", "whisper_base"], "hconv", "sv", 0.15)
    assert sorted(load_runs(tmp_path)) == ["a", "b", "c"]
    paths = write_report(tmp_path, tmp_path / "out", importance=False)
    rows = _rows(paths["table"].read_text())
    assert [r[0] for r in rows if not r[1]] == ["**Single model**", "**2-model fusion**"]
    # a lone row in its section has no runner-up to lead: not bold
    assert [r[2] for r in rows if r[1]][1:] == ["20.00", "**10.00**", "15.00"]


def _seeded_value(models: list[str], iface: str, task: str, seed: int) -> float:
    """_default_value plus a per-seed offset: sd 0.1 points on asr_en, 5 points on sv."""
    sd = {"asr_en": 0.001, "sv": 0.05}.get(task, 0.002)
    return _default_value(models, iface, task, seed) + sd * (seed - 1)


@pytest.fixture(scope="module")
def seeded_report(tmp_path_factory):
    """Three seeds, run dirs with names unrelated to the plan's keys, one seed of one cell
    missing, and a test_unseen split scored on the asr_en runs only."""
    tmp = tmp_path_factory.mktemp("seeded")
    cfg = experiment(seeds=[0, 1, 2])
    cfg_path = tmp / "exp.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    names = iter(range(10_000))
    n = fabricate(
        cfg, tmp / "runs", _seeded_value, seeds=[0, 1, 2],
        name=lambda k, s: f"run{next(names):03d}",
        extra=lambda m, i, t, s: {"test_unseen": _seeded_value(m, i, t, s) + 0.3} if t == "asr_en" else {},
    )  # fmt: skip
    assert n == 8 * 4 * 3
    runs = load_runs(tmp / "runs")
    gone = next(
        k for k, r in runs.items() if r.task == "er" and r.interface == "gumd" and r.seed == 2
    )
    (tmp / "runs" / gone / "metrics.json").unlink()
    fake_run(tmp / "runs" / "stale", ["wavlm_base_plus"], "ws", "er", 0.5)  # not in the plan
    paths = write_report(tmp / "runs", tmp / "results", cfg_path, importance=False)
    return tmp, paths


def test_cells_are_mean_sd_over_seeds_found_by_config(seeded_report):
    _, paths = seeded_report
    md = paths["table"].read_text()
    assert "mean ± sd over n = 3 training seeds" in md and "do not overlap" in md
    rows = _rows(md)
    header, data = rows[0], [r for r in rows[1:] if r[1]]
    assert header[2:] == ["ASR en WER ↓", "ML-ASR multi CER ↓", "SV EER ↓", "ER Acc ↑",
                          "ASR en WER ↓, unseen voices"]  # fmt: skip
    base_hconv = data[3]
    assert base_hconv[:2] == ["", "HConv"]
    # asr_en: 21 ± 0.1 leads tiny.en HConv (26 ± 0.1) by 5 > 0.2 points: bold
    assert base_hconv[2] == "**21.00 ± 0.10**"
    # sv: the same 5-point lead is inside the spread (5 + 5 points): not bold
    assert base_hconv[4] == "21.00 ± 5.00" and not any(r[4].startswith("**") for r in data[:4])
    assert base_hconv[6] == "**51.00 ± 0.10**"  # the unseen-voice column
    gumd = data[5]
    assert gumd[1] == "GumD" and gumd[5] == "62.90 ± 0.14 (n=2) (2/3 runs)"
    assert "1 of 96 planned runs have no test result" in md


def test_metrics_json_keeps_every_seed(seeded_report):
    _, paths = seeded_report
    m = json.loads(paths["metrics"].read_text())
    assert len(m) == 8
    row = m["whisper_base-hconv"]
    assert row["asr_en_wer"] == 21.0 and row["asr_en_wer_sd"] == 0.1
    assert [row[f"asr_en_wer_s{s}"] for s in (0, 1, 2)] == [20.9, 21.0, 21.1]
    assert row["asr_en_test_unseen_wer"] == 51.0 and "sv_test_unseen_eer" not in row


def test_languages_md_over_seeds(seeded_report):
    _, paths = seeded_report
    md = paths["languages"].read_text()
    assert "mean ± sd over 3 seeds" in md
    hconv_base = [r for r in _rows(md) if r[1] == "HConv"][1]
    assert hconv_base[2:4] == ["**22.50 ± 0.20**", "**21.00 ± 0.20**"]


def test_one_column_never_mixes_seeds_of_two_tasks(tmp_path):
    """Run dirs found by config: an sv run never lands in the er column, whatever its name."""
    cfg = experiment({"Single model": [["whisper_base"]]}, seeds=[0, 1])
    cfg_path = tmp_path / "exp.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    key = next(k for k, r in make_plan(cfg).runs.items() if r.task == "sv" and r.interface == "ws")
    fake_run(tmp_path / "runs" / f"{key}-s0", ["whisper_base"], "ws", "sv", 0.1, seed=0)
    fake_run(tmp_path / "runs" / "whatever", ["whisper_base"], "ws", "sv", 0.3, seed=1)
    fake_run(tmp_path / "runs" / f"{key}-s9", ["whisper_base"], "ws", "er", 0.9, seed=1)
    paths = write_report(tmp_path / "runs", tmp_path / "out", cfg_path, importance=False)
    ws = [r for r in _rows(paths["table"].read_text()) if r[1] == "WS"][0]
    assert ws[2:] == ["–", "–", "20.00 ± 14.14", "90.00 (n=1) (1/2 runs)"]


def test_cells_still_improving_at_their_last_step_are_marked(tmp_path):
    """A cell whose run gained > 2 % over its last fifth of steps gets the mark and the legend;
    a run that plateaued, or stopped early on patience, does not."""
    from pipeline.report.convergence import MARK, still_improving

    fake_run(tmp_path / "flat", ["whisper_base"], "ws", "sv", 0.2)
    fake_run(tmp_path / "rising", ["whisper_base"], "ws", "sv", 0.2, learning=True)
    fake_run(tmp_path / "acc", ["whisper_base"], "ws", "er", 0.6, learning=True)
    got = load_runs(tmp_path)
    flat, rising, acc = (got[n] for n in ("flat", "rising", "acc"))
    assert not still_improving(flat, "lower")
    assert still_improving(rising, "lower") and still_improving(acc, "higher")
    rising.config["train"]["patience"], rising.config["train"]["steps"] = 2, 400
    assert not still_improving(rising, "lower")  # stopped early on patience

    cfg = experiment({"Single model": [["whisper_base"]]})
    cfg["tasks"] = {"sv": {"task": "sv"}}
    runs = tmp_path / "runs"
    fabricate(cfg, runs, lambda m, i, t, s: 0.2, name=lambda k, s: k)
    cfg_path = tmp_path / "exp.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def table() -> str:
        paths = write_report(runs, tmp_path / "results", cfg_path, importance=False)
        return Path(paths["table"]).read_text()

    text = table()
    assert MARK not in text
    key = next(p.name for p in runs.iterdir() if "-hconv-" in p.name)
    shutil.rmtree(runs / key)
    fake_run(runs / key, ["whisper_base"], "hconv", "sv", 0.2, learning=True)
    text = table()
    rows = [line for line in text.splitlines() if line.startswith("|  | HConv")]
    assert rows and MARK in rows[0] and "not converged" in text
