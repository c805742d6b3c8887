"""Layer subsets: the --layers syntax, extraction of a subset, every interface trains on 1-4 states."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.layers import LayerSpecError, format_layers, parse_layers
from pipeline.store import FingerprintMismatch, StoreWriter, open_store

sys.path.insert(0, str(Path(__file__).parent))
from test_extract import FakeUpstream, cfg_for, make_data  # noqa: E402


def test_layer_spec_syntax():
    assert parse_layers(None, 5) == [0, 1, 2, 3, 4] == parse_layers("all", 5)
    assert parse_layers("0,4,8,12", 13) == [0, 4, 8, 12] == parse_layers("0-12:4", 13)
    assert parse_layers("12, 0-2", 13) == [0, 1, 2, 12]
    assert parse_layers("3-5,4", 13) == [3, 4, 5]
    assert parse_layers([2, 0, 2], 3) == [0, 2]
    for bad, msg in (("0-13", "out of range"), ("a", "cannot read"), ("5-3", "empty"), ("", "no state"), ("0-4:0", "empty")):  # fmt: skip
        with pytest.raises(LayerSpecError, match=msg):
            parse_layers(bad, 13)
    assert format_layers([0, 4, 8, 12]) == "0-12:4"
    assert format_layers(list(range(13))) == "0-12"
    assert format_layers([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    for layers in ([0, 4, 8, 12], [1], [0, 1, 2, 5, 7, 8], [3, 9]):
        assert parse_layers(format_layers(layers), 13) == layers


def test_extract_a_subset_keeps_those_states(tmp_path):
    from pipeline.extract.engine import run

    data = make_data(tmp_path / "d", n=8)
    full = tmp_path / "full.zarr"
    run(cfg_for(data, full), upstream=FakeUpstream())
    sub = tmp_path / "sub.zarr"
    run(cfg_for(data, sub, layers="0,2"), upstream=FakeUpstream())
    rf, rs = open_store(full), open_store(sub)
    assert rs.num_layers == 2 and rs.layers == [0, 2] and rf.layers == [0, 1, 2]
    assert rs.fingerprint["layers"] == [0, 2] and rs.fingerprint["num_layers"] == 2
    for uid in rf.ids:
        np.testing.assert_array_equal(rs[uid], rf[uid][:, [0, 2]])
    with pytest.raises(FingerprintMismatch, match="layers"):
        run(cfg_for(data, sub, layers="0-2"), upstream=FakeUpstream())
    # int8 of a subset: the scales cover the kept states only
    q = tmp_path / "q.zarr"
    run(cfg_for(data, q, layers="1", encoding="int8"), upstream=FakeUpstream())
    rq = open_store(q)
    assert rq.scales.shape == (1, 8) and rq.layers == [1]
    for uid in rf.ids:
        err = np.abs(rq.decode(rq.raw(uid)) - rf[uid][:, [1]].astype(np.float32))
        assert (err <= rq.scales / 2 + 1e-3).all()


@pytest.fixture(scope="module")
def subset_suite(tmp_path_factory):
    """The synthetic ER data dir, and stores of 1, 2 and 4 states (class signal in state 1)."""
    from tests.train_fixtures import make_er_suite

    root = tmp_path_factory.mktemp("layers")
    data, cache = make_er_suite(root, sizes={"train": 40, "dev": 12, "test": 12})
    src = open_store(cache / "up_b.zarr")  # L = 4, D = 6, noise
    sig = open_store(cache / "up_a.zarr")  # state 1 carries the class in dims 0..3
    stores = {}
    for name, layers in (("one", [1]), ("two", [0, 1]), ("four", [0, 1, 2, 3])):
        fp = dict(src.fingerprint, upstream=f"sub_{name}", num_layers=len(layers), layers=layers)
        path = root / "subsets" / f"sub_{name}.zarr"
        with StoreWriter(path, fp) as w:
            for uid in src.ids:
                x = src[uid][:, layers].copy()
                x[:, layers.index(1), :4] = sig[uid][:, 1, :4]  # the signal lives in state 1
                w.append(uid, x)
        stores[name] = path
    return data, root / "subsets", stores


@pytest.mark.parametrize("interface", ["ws", "hconv", "chconv", "gumd"])
def test_every_interface_trains_on_1_2_and_4_states(subset_suite, tmp_path, interface):
    from pipeline.train.config import resolve_config
    from pipeline.train.loop import train

    data, cache, stores = subset_suite
    stores_layers = {"one": [1], "two": [0, 1], "four": [0, 1, 2, 3]}
    for name in stores:
        cfg = resolve_config(
            interface=interface, models=f"sub_{name}", task="er", data=data, cache=cache,
            out=tmp_path / f"{interface}-{name}",
            sets=["train.steps=6", "train.eval_every=6", "train.batch_size=8"],
        )  # fmt: skip
        run = train(cfg, progress=False)
        metrics = json.loads((run / "metrics.json").read_text())
        assert [m["split"] for m in metrics] == ["dev", "test"]
        assert metrics[0]["stores"][0]["layers"] == stores_layers[name]  # what it trained on
        summary = json.loads((run / "interface_summary.json").read_text())
        n_states = len(stores_layers[name])
        per_state = {
            "ws": lambda s: s["weights"][0],  # softmax weight per stored state
            "gumd": lambda s: s["histogram"][0],  # dimensions that picked each state
        }.get(interface)
        if per_state is not None:  # the summary speaks of exactly the states in the store
            assert len(per_state(summary)) == n_states, summary
        if interface == "ws":
            assert abs(sum(summary["weights"][0]) - 1.0) < 1e-5
        if interface == "gumd":
            assert sum(summary["histogram"][0]) == 6  # every dimension picks one state


def test_loader_says_which_states(subset_suite):
    from pipeline.data.manifest import read_manifest
    from pipeline.feed.loader import FeatureDataset, make_loader, stores_info

    data, _, stores = subset_suite
    r = open_store(stores["two"])
    ds = FeatureDataset([r], read_manifest(data / "dev.jsonl", check_files=False))
    loader = make_loader(ds, 4, tier="pinned", device="cpu")
    assert "layers 0-1" in loader.describe() and "fp16" in loader.describe()
    assert ds.layers == [[0, 1]] and ds.shapes == [(2, 6)]
    info = stores_info([r])
    assert info[0]["layers"] == [0, 1] and info[0]["encoding"] == "fp16"
    assert info[0]["upstream"] == "sub_two"
