"""The CLI's help texts list the registered interfaces, tasks and upstreams: a registration
made in code shows up in `--help` without editing the CLI."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from pipeline.analysis.probe import CLASSIFIER_TASKS, CTC_TASKS
from pipeline.cli import app
from pipeline.cli.names import fill
from pipeline.interfaces import REGISTRY, register
from pipeline.tasks import TASKS, task_class
from pipeline.tasks import register as register_task
from pipeline.upstreams.registry import REGISTRY as UPSTREAMS
from tests.test_extending import OneLayer


def _help(*argv: str) -> str:
    res = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})  # fmt: skip
    assert res.exit_code == 0, res.output
    return res.output


def _words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z0-9_]+", text))


@pytest.fixture
def toys():
    register(OneLayer)
    register_task(task_class("er"), "toy_task")
    yield
    REGISTRY.pop(OneLayer.name, None)
    TASKS.pop("toy_task", None)


def test_train_help_lists_every_registration(toys):
    words = _words(_help("train"))
    assert {"toy_one", "ws", "hconv", "chconv", "gumd"} <= words
    assert {"asr", "asr_en", "ml_asr", "sv", "er"} <= words and "toy_task" in words
    assert set(UPSTREAMS) <= words
    assert "{interfaces}" not in _help("train")


def test_extract_and_probe_help_list_their_names():
    assert set(UPSTREAMS) <= _words(_help("extract"))
    assert set(CLASSIFIER_TASKS + CTC_TASKS) <= _words(_help("analyze", "probe"))


def test_fill_leaves_unknown_braces():
    assert fill("a {tasks} b {other} {}", {"tasks": "er, sv"}) == "a er, sv b {other} {}"
