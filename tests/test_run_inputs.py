"""A run records every label it was trained and scored on: an edited label is found and named."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.data.manifest import read_manifest, write_manifest
from pipeline.feed.run_inputs import InputsChanged
from pipeline.train.config import resolve_config
from pipeline.train.evaluate import evaluate
from pipeline.train.loop import train
from tests.train_fixtures import make_er_suite


def _swap_emotions(path) -> list[str]:
    """Rotate the emotion labels of a manifest (ids, durations, files unchanged); the ids changed."""
    utts = read_manifest(path, check_files=False)
    labels = [u.emotion for u in utts]
    new = [
        dataclasses.replace(u, emotion=labels[(i + 1) % len(labels)]) for i, u in enumerate(utts)
    ]
    write_manifest(path, new)
    return sorted(u.id for u, n in zip(utts, new, strict=True) if u.emotion != n.emotion)


def test_an_edited_label_is_refused_by_resume_and_evaluate_naming_it(tmp_path):
    data, cache = make_er_suite(tmp_path, sizes={"train": 16, "dev": 8, "test": 8})
    cfg = resolve_config(
        interface="ws", models="up_a,up_b", task="er", data=data, cache=cache,
        out=tmp_path / "run", sets=["steps=2", "eval_every=2", "device=cpu"],
    )  # fmt: skip
    run = train(cfg, progress=False)
    before = (run / "metrics.json").read_text()
    changed = _swap_emotions(data / "test.jsonl")
    assert changed
    for attempt in (lambda: train(cfg, progress=False), lambda: evaluate(run, device="cpu")):
        with pytest.raises(InputsChanged, match="`emotion` changed for") as e:
            attempt()
        assert "test.jsonl" in str(e.value) and changed[0] in str(e.value)
    assert (run / "metrics.json").read_text() == before  # the finished run is not rewritten


def test_clips_that_failed_extraction_are_named_with_the_right_fix():
    """A store lacking utterances because their audio failed extraction: the advice is to drop
    them from the manifest (re-extracting fails the same way), not to re-extract."""
    from pipeline.data.manifest import Utterance
    from pipeline.feed.run_inputs import ManifestStoreMismatch, check_agreement

    class Store:
        path, frame_rate = "cache/up_a.zarr", 50.0
        failed = [{"id": "b", "reason": "NaN in the hidden states"}]

        def __contains__(self, uid: str) -> bool:
            return uid == "a"

        def length(self, uid: str) -> int:
            return 50

    utts = [Utterance(i, f"{i}.wav", 1.0, 16000, "train") for i in ("a", "b")]
    with pytest.raises(ManifestStoreMismatch, match=r"failed extraction.*b \(NaN.*drop them from train.jsonl") as e:  # fmt: skip
        check_agreement([Store()], utts, "train.jsonl")
    assert "lacks" not in str(e.value)
