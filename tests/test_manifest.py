"""pipeline.data.manifest: JSONL round trip and errors that list every problem at once."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.audio import write_wav
from pipeline.data.manifest import (
    ManifestError,
    Utterance,
    manifest_paths,
    read_manifest,
    read_manifests,
    read_trials,
    write_manifest,
    write_trials,
)


def utt(i: int, split: str = "train", **kw) -> Utterance:
    return Utterance(
        id=f"u{i}", path=f"wav/u{i}.wav", duration=0.1, sample_rate=16000, split=split, **kw
    )


@pytest.fixture
def task_dir(tmp_path):
    for i in range(6):
        write_wav(tmp_path / f"wav/u{i}.wav", np.zeros(1600, dtype=np.float32))
    write_manifest(
        tmp_path / "train.jsonl", [utt(0, text="HELLO", speaker="s1"), utt(1, language="eng")]
    )
    write_manifest(tmp_path / "dev.jsonl", [utt(2, "dev", emotion="neu", fold=3)])
    write_manifest(tmp_path / "test.jsonl", [utt(3, "test"), utt(4, "test"), utt(5, "test")])
    return tmp_path


def test_round_trip_keeps_fields_and_resolves_relative_paths(task_dir):
    train = read_manifest(task_dir / "train.jsonl")
    assert [u.id for u in train] == ["u0", "u1"]
    assert train[0].text == "HELLO" and train[0].speaker == "s1" and train[0].language is None
    assert train[1].language == "eng"
    assert train[0].path == str((task_dir / "wav/u0.wav").resolve())
    raw = read_manifest(task_dir / "train.jsonl", absolute=False)
    assert raw[0].path == "wav/u0.wav"
    dev = read_manifest(task_dir / "dev.jsonl")[0]
    assert (dev.emotion, dev.fold, dev.split) == ("neu", 3, "dev")
    # None fields are not written
    line = json.loads((task_dir / "test.jsonl").read_text().splitlines()[0])
    assert set(line) == {"id", "path", "duration", "sample_rate", "split"}


def test_read_manifests_of_a_task_dir(task_dir):
    assert [p.name for p in manifest_paths(task_dir)] == ["train.jsonl", "dev.jsonl", "test.jsonl"]
    assert len(read_manifests(task_dir)) == 6
    assert len(read_manifests(task_dir / "dev.jsonl")) == 1


def test_duplicate_ids_are_refused(tmp_path, task_dir):
    with pytest.raises(ManifestError, match=r"duplicate utterance id\(s\) \['u1'\]"):
        write_manifest(tmp_path / "x.jsonl", [utt(1), utt(2), utt(1)])
    # across the splits of one task dir
    write_manifest(task_dir / "dev.jsonl", [utt(0, "dev")])
    with pytest.raises(ManifestError, match=r"(?s)duplicate.*u0.*train.jsonl and dev.jsonl"):
        read_manifests(task_dir)


def test_every_missing_file_is_listed_at_once(task_dir):
    for i in (3, 5):
        (task_dir / f"wav/u{i}.wav").unlink()
    with pytest.raises(ManifestError) as e:
        read_manifest(task_dir / "test.jsonl")
    msg = str(e.value)
    assert (
        "2 missing audio file(s)" in msg
        and "u3.wav" in msg
        and "u5.wav" in msg
        and "u4.wav" not in msg
    )
    assert len(read_manifest(task_dir / "test.jsonl", check_files=False)) == 3


def test_malformed_lines_name_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(utt(0).to_json() + "\n{not json\n")
    with pytest.raises(ManifestError, match=r"bad.jsonl:2: not valid JSON"):
        read_manifest(p, check_files=False)
    p.write_text(
        json.dumps(
            {"id": "a", "path": "a.wav", "duration": 1, "sample_rate": 1, "split": "x", "colour": 1}
        )
    )
    with pytest.raises(ManifestError, match=r"bad.jsonl:1: unknown field.*colour"):
        read_manifest(p, check_files=False)
    p.write_text(json.dumps({"id": "a", "path": "a.wav"}))
    with pytest.raises(ManifestError, match=r"missing required field.*duration"):
        read_manifest(p, check_files=False)
    p.write_text("[1, 2]\n")
    with pytest.raises(ManifestError, match="expected a JSON object"):
        read_manifest(p, check_files=False)
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "absent.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="holds no manifest"):
        manifest_paths(tmp_path / "empty")


def test_trials_round_trip_and_errors(tmp_path):
    trials = [(1, "a/b/1", "a/c/2"), (0, "a/b/1", "d/e/3")]
    p = write_trials(tmp_path / "trials.tsv", trials)
    assert read_trials(p) == trials
    p.write_text("2\ta\tb\n")
    with pytest.raises(ManifestError, match="trials.tsv:1"):
        read_trials(p)


@pytest.mark.parametrize("duration", ["Infinity", "NaN", "-1", "0", '"abc"'])
def test_a_duration_that_is_not_seconds_names_the_line(tmp_path, duration):
    path = tmp_path / "train.jsonl"
    path.write_text(
        '{"id": "a", "path": "a.wav", "duration": 1.0, "sample_rate": 16000, "split": "train"}\n'
        f'{{"id": "b", "path": "b.wav", "duration": {duration}, "sample_rate": 16000, "split": "train"}}\n'
    )
    with pytest.raises(ManifestError, match=r"train\.jsonl.*2.*duration"):
        read_manifest(path, check_files=False)
