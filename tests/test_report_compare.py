"""What a report compares: runs trained under other settings are never averaged into a cell,
each run's own step count is what the header states, and the title describes the experiment's
own upstreams (a title inherited through `base:` names the default's)."""

from __future__ import annotations

import yaml

from pipeline.report import build_layout, load_runs, write_report
from pipeline.report.layout import report_title
from tests.report_fakes import experiment, fabricate, fake_run


def _rows(md: str) -> list[list[str]]:
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in md.splitlines() if ln.startswith("| ")]  # fmt: skip


def _set_steps(run_dir, steps: int) -> None:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["train"]["steps"] = steps
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_without_a_config_runs_with_other_settings_get_their_own_row(tmp_path):
    """Two seed-0 WS runs of Whisper base on ER, one of 50 steps and one of 150: two rows, the
    150-step one under a section naming `train.steps=150`; the header states both counts and
    that the rows were inferred from the run directories."""
    runs = tmp_path / "runs"
    fake_run(runs / "a", ["whisper_base"], "ws", "er", 0.60)
    fake_run(runs / "b", ["whisper_tiny_en"], "ws", "er", 0.55)
    fake_run(runs / "c", ["whisper_base"], "ws", "er", 0.90)
    _set_steps(runs / "c", 150)
    md = write_report(runs, tmp_path / "results", importance=False)["table"].read_text()
    rows = _rows(md)
    sections = [r[0] for r in rows if r[0].startswith("**")]
    assert sections == ["**Single model**", "**Single model (train.steps=150)**"], md
    values = [r[2].strip("*") for r in rows[1:] if r[1] == "WS"]
    assert values == ["60.00", "55.00", "90.00"], md  # never (60 + 90) / 2 = 75
    assert "75.00" not in md
    assert "er: 50 or 150 steps" in md
    assert "no experiment config was given" in md and "3 run directories" in md
    assert "never averaged" in md


def test_without_a_config_one_setting_everywhere_keeps_one_section(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        fake_run(runs / f"a{seed}", ["whisper_base"], "ws", "er", 0.6 + 0.1 * seed, seed=seed)
    layout = build_layout(load_runs(runs))
    assert [r.section for r in layout.rows] == ["Single model"]
    assert sorted(layout.rows[0].cells["er"]) == ["a0", "a1"]
    assert not any("never averaged" in n for n in layout.notes)


def test_interface_arguments_are_compared_within_one_interface_only(tmp_path):
    """HConv runs carry their own interface_args: that does not set the WS runs apart."""
    runs = tmp_path / "runs"
    fake_run(runs / "w", ["whisper_base"], "ws", "er", 0.6)
    fake_run(runs / "h", ["whisper_base"], "hconv", "er", 0.5)
    cfg = yaml.safe_load((runs / "h" / "config.yaml").read_text())
    cfg["interface_args"] = {"channels": 32}
    (runs / "h" / "config.yaml").write_text(yaml.safe_dump(cfg))
    layout = build_layout(load_runs(runs))
    assert [r.section for r in layout.rows] == ["Single model", "Single model"]


def test_with_a_config_a_run_trained_under_other_settings_is_left_out_and_named(tmp_path):
    """A run dir that matches a planned run but was trained for 150 steps where the plan says
    50 is not averaged with (nor swapped for) the planned run; a note names it."""
    cfg = experiment({"Single model": [["whisper_base"]]})
    cfg["train"] = {"steps": 50}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    runs = tmp_path / "runs"
    fabricate(cfg, runs, lambda m, i, t, s: 0.6 if t == "er" else 0.3, name=lambda k, s: k)
    fake_run(runs / "zz-by-hand", ["whisper_base"], "ws", "er", 0.95)
    _set_steps(runs / "zz-by-hand", 150)
    md = write_report(runs, tmp_path / "results", path, importance=False)["table"].read_text()
    ws = next(r for r in _rows(md) if r[1] == "WS")
    assert ws[-1] == "60.00", md
    assert "`zz-by-hand` was trained with train.steps=150 (plan: 50)" in md
    assert "ER: 50 steps" in md


def test_a_title_template_names_the_experiments_own_upstreams():
    names = {"whisper_tiny_en": "Whisper tiny.en", "whisper_base": "Whisper base",
             "moonshine_base_en": "Moonshine base"}  # fmt: skip
    cfg = {"data": {"suite": "tiny"}, "report": {"title": "Fusing {upstreams} ({suite})"}}
    title, note = report_title(cfg, ["whisper_tiny_en", "whisper_base", "moonshine_base_en"], names)
    assert (
        title == "Fusing Whisper tiny.en, Whisper base and Moonshine base (tiny)" and note is None
    )
    title, note = report_title(cfg, ["whisper_base"], names)
    assert title == "Fusing Whisper base (tiny)" and note is None


def test_an_inherited_title_that_names_other_upstreams_is_replaced_and_said(tmp_path):
    """configs/*.yaml with `base: default.yaml` and other upstreams keep the default's title
    text; the report then titles the page from its own upstreams and says why."""
    cfg = experiment({"Single model": [["whisper_base"], ["wavlm_base_plus"]]})
    cfg["report"]["title"] = "Fusing Whisper tiny.en and Whisper base on the built-in suite"
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    runs = tmp_path / "runs"
    fabricate(cfg, runs, lambda m, i, t, s: 0.4, name=lambda k, s: k)
    md = write_report(runs, tmp_path / "results", path, importance=False)["table"].read_text()
    first = md.splitlines()[0]
    assert first == "# Fusing Whisper base and WavLM Base+ on the demo suite", first
    assert "names Whisper tiny.en, which this experiment does not use" in md
    cfg["report"]["title"] = "My own title"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    md = write_report(runs, tmp_path / "results", path, importance=False)["table"].read_text()
    assert md.splitlines()[0] == "# My own title"
