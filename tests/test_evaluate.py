"""`pipeline evaluate`: reproduces the metric train wrote; scores another dataset; names missing stores."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.feed.run_inputs import StoreMissingError
from pipeline.train.evaluate import evaluate
from tests.train_fixtures import make_er_suite


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    data, cache = make_er_suite(root / "one")
    run = root / "run"
    result = CliRunner().invoke(
        app,
        ["train", "--interface", "hconv", "--models", "up_a,up_b", "--task", "er"]
        + ["--data", str(data), "--cache", str(cache), "--out", str(run), "--device", "cpu"]
        + ["--set", "train.steps=16", "--set", "train.eval_every=8", "--set", "lr=0.01"],
    )
    assert result.exit_code == 0, result.output
    return root, run


def test_evaluate_reproduces_the_metric_train_wrote(trained):
    _, run = trained
    written = {m["split"]: m for m in json.loads((run / "metrics.json").read_text())}
    for split in ("test", "dev"):
        out = evaluate(run, split=split)
        assert out.name == f"eval_{split}.json"
        (rec,) = json.loads(out.read_text())
        assert rec["metric"] == "accuracy" and rec["split"] == split
        assert rec["value"] == pytest.approx(written[split]["value"])


def test_evaluate_on_another_dataset_and_missing_store(trained):
    root, run = trained
    data2, cache2 = make_er_suite(root / "two", sizes={"train": 8, "test": 16}, seed=5)
    result = CliRunner().invoke(
        app, ["evaluate", str(run), "--data", str(data2), "--cache", str(cache2), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    (rec,) = json.loads((run / "eval_test_two-data.json").read_text())
    assert rec["split"] == "test" and rec["num_utts"] == 16 and 0.0 <= rec["value"] <= 1.0
    shutil.rmtree(cache2 / "up_b.zarr")
    with pytest.raises(StoreMissingError, match="up_b"):
        evaluate(run, data=data2, cache=cache2)
    result = CliRunner().invoke(
        app, ["evaluate", str(run), "--data", str(data2), "--cache", str(cache2)]
    )
    assert result.exit_code == 1 and "up_b" in result.output
