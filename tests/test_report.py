"""The report on fabricated run directories: the table's layout and best marks, languages.md,
metrics.json, curves and the PNG figures; fold and mono-language averaging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages.plan import load_config, make_plan
from stages.report import load_runs, write_report

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"whisper_tiny_en": (5, 384), "whisper_base": (7, 512)}
LANGS = ["cmn", "deu", "eng", "fra"]


def fake_run(
    run_dir: Path,
    models: list[str],
    interface: str,
    task: str,
    value: float,
    task_args: dict | None = None,
    per_language: dict | None = None,
) -> None:
    """A run directory as `pipeline train` writes it (config, metrics, log, interface summary)."""
    run_dir.mkdir(parents=True)
    metric, direction = {"asr_en": ("wer", "lower"), "ml_asr": ("cer", "lower"),
                         "sv": ("eer", "lower"), "er": ("accuracy", "higher")}[task]  # fmt: skip
    cfg = {"interface": interface, "models": models, "task": task, "data": "", "cache": "",
           "train": {"steps": 100}, "interface_args": {}, "task_args": task_args or {}}  # fmt: skip
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    recs = []
    for split, v in (("dev", value + 0.01), ("test", value)):
        rec = {"task": task, "metric": metric, "value": v, "direction": direction, "split": split}
        if per_language:
            rec["per_language"] = per_language
        recs.append(rec)
    (run_dir / "metrics.json").write_text(json.dumps(recs))
    log = [
        {"step": s, "train_loss": 2.0 / s, f"dev_{metric}": value + 1.0 / s} for s in (10, 20, 30)
    ]
    (run_dir / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in log))
    rng = np.random.default_rng(len(run_dir.name))
    shapes = [SHAPES[m] for m in models]
    if interface == "ws":
        summ = {"weights": [(w := rng.random(L)) / w.sum() for L, _ in shapes]}
    elif interface == "gumd":
        sel = [rng.integers(0, L, D) for L, D in shapes]
        summ = {
            "selected_layer": sel,
            "histogram": [
                np.bincount(s, minlength=L) for s, (L, _) in zip(sel, shapes, strict=True)
            ],
        }
    else:
        summ = {"layer_norms": rng.random(max(L for L, _ in shapes))}
    (run_dir / "interface_summary.json").write_text(json.dumps(summ, default=lambda a: a.tolist()))


@pytest.fixture(scope="module")
def default_report(tmp_path_factory):
    """Every run of params.yaml fabricated; value = a fixed function of (interface, task)."""
    tmp = tmp_path_factory.mktemp("rep")
    cfg = load_config(ROOT / "params.yaml")
    plan = make_plan(cfg)
    base = {"ws": 0.30, "gumd": 0.35, "hconv": 0.20, "chconv": 0.25}
    for key, r in plan.runs.items():
        v = (
            base[r.interface]
            + 0.01 * len(r.models)
            + (0.05 if r.models == ["whisper_tiny_en"] else 0)
        )
        if r.task == "er":
            v = 1 - v
        pl = {lang: v + 0.01 * i for i, lang in enumerate(LANGS)} if r.task == "ml_asr" else None
        fake_run(tmp / "runs" / key, r.models, r.interface, r.task, v, r.settings, pl)
    paths = write_report(tmp / "runs", tmp / "results", ROOT / "params.yaml")
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
        lines[0] == "step,run,dev,train_loss" and len(lines) == 1 + 8 * 3
    )  # 8 runs x 3 evaluations
    assert lines[1].startswith("10,Whisper tiny.en · WS,")
    for name in ("ws_layer_weights", "gumd_layer_selection", "hconv_layer_norms"):
        p = paths[name]
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_folds_and_mono_languages_are_averaged(tmp_path):
    """A config whose er column expands over 2 folds and ml_asr over 2 mono configs."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
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
    paths = write_report(tmp_path / "runs", tmp_path / "out", cfg_path)
    rows = [r for r in _rows(paths["table"].read_text()) if r[1]]
    assert rows[0][2:] == ["Mono CER ↓", "ER Acc ↑"]
    assert rows[1][1:] == ["WS", "21.00", "**71.00**"]  # means of (11, 31) and (61, 81)
    assert rows[2][1:] == ["HConv", "**20.00**", "60.00 (1/2)"]
    lang = _rows(paths["languages"].read_text())
    assert lang[0][2:] == ["Avg.", "eng1", "fra1"]
    assert [r for r in lang if r[1] == "HConv"][0][2:] == ["**20.00**", "**10.00**", "**30.00**"]


def test_inferred_layout_without_config(tmp_path):
    fake_run(tmp_path / "a", ["whisper_base"], "ws", "sv", 0.2)
    fake_run(tmp_path / "b", ["whisper_base"], "hconv", "sv", 0.1)
    fake_run(tmp_path / "c", ["whisper_tiny_en", "whisper_base"], "hconv", "sv", 0.15)
    assert sorted(load_runs(tmp_path)) == ["a", "b", "c"]
    paths = write_report(tmp_path, tmp_path / "out")
    rows = _rows(paths["table"].read_text())
    assert [r[0] for r in rows if not r[1]] == ["**Single model**", "**2-model fusion**"]
    assert [r[2] for r in rows if r[1]][1:] == ["20.00", "**10.00**", "**15.00**"]
