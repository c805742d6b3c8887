"""The speaker-verification task: trials, AM-softmax heads, and EER on unseen synthetic speakers."""

from __future__ import annotations

import pytest
import torch

from pipeline.data.manifest import Utterance, write_trials
from pipeline.tasks import build_task
from pipeline.tasks.sv import SpeakerVerification, build_trials, stats_pool


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny heads train faster on one thread, and far faster when other processes share the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


D = 16


def _speakers(n: int, prefix: str, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {f"{prefix}{i}": torch.randn(D, generator=g) for i in range(n)}


def _utts(spk: dict[str, torch.Tensor], per: int, split: str, g: torch.Generator):
    """Utterances as frames: speaker centre + utterance offset + frame noise -> (Utterance, (T, D))."""
    out = []
    for s, centre in spk.items():
        for j in range(per):
            T = int(torch.randint(20, 40, (1,), generator=g))
            x = centre + 0.3 * torch.randn(D, generator=g) + 1.0 * torch.randn(T, D, generator=g)
            u = Utterance(
                id=f"{split}-{s}-{j}",
                path="x.wav",
                duration=1.0,
                sample_rate=16000,
                split=split,
                speaker=s,
            )
            out.append((u, x))
    return out


def _batch(items):
    feats = torch.nn.utils.rnn.pad_sequence([x for _, x in items], batch_first=True)
    return feats, torch.tensor([len(x) for _, x in items])


def _train_and_score(cfg: dict, steps: int, tmp_path, bs: int = 32, n_train: int = 30):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train_spk = _speakers(n_train, "tr", g)
    train = _utts(train_spk, 8, "train", g)
    dev = _utts(train_spk, 2, "dev", g)
    test = _utts(_speakers(10, "te", g), 6, "test", g)  # unseen speakers
    task = build_task("sv", cfg, [u for u, _ in train])
    head = task.build_head(D)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    order = torch.randperm(len(train), generator=g).tolist()
    for step in range(steps):
        items = [train[order[(step * bs + i) % len(train)]] for i in range(bs)]
        feats, lengths = _batch(items)
        loss = task.loss(head, feats, lengths, task.collate([task.target(u) for u, _ in items]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    test_utts = [u for u, _ in test]
    write_trials(tmp_path / "trials.tsv", build_trials(test_utts, 2000, seed=1))
    recs = {}
    for split, items in (("dev", dev), ("test", test)):
        emb = task.predict(head, *_batch(items))
        recs[split] = task.score(emb, [u for u, _ in items], split, tmp_path)
    one_each = [(u, x) for u, x in dev if u.id.endswith("-0")]  # no same-speaker pair
    emb = task.predict(head, *_batch(one_each))
    recs["dev_one_each"] = task.score(emb, [u for u, _ in one_each], "dev", tmp_path)
    return task, recs


def test_simple_head_separates_unseen_speakers(tmp_path):
    task, recs = _train_and_score({}, 60, tmp_path)
    test = recs["test"]
    assert test["metric"] == "eer" and test["direction"] == "lower" and test["split"] == "test"
    assert test["trials"].endswith("trials.tsv") and test["num_trials"] > 100
    assert test["value"] < 0.1, recs
    assert recs["dev"]["trials"] == "built" and recs["dev"]["value"] < 0.1
    proto = recs["dev_one_each"]
    assert proto["trials"] == "prototypes" and proto["num_trials"] == 30 * 30
    assert proto["value"] < 0.1, recs
    assert task.state()["speakers"][:2] == ["tr0", "tr1"]


@pytest.mark.slow
def test_xvector_head_learns(tmp_path):
    _, recs = _train_and_score({"head": "xvector"}, 40, tmp_path, bs=16)
    assert recs["test"]["value"] < 0.2, recs


def test_unseen_speakers_do_not_enter_the_loss():
    task = SpeakerVerification(
        {"emb_dim": 8}, [Utterance("a", "x", 1, 16000, "train", speaker="s1")]
    )
    u = Utterance("b", "x", 1, 16000, "dev", speaker="other")
    assert task.target(u) == -1
    head = task.build_head(4)
    loss = task.loss(head, torch.randn(2, 5, 4), torch.tensor([5, 3]), task.collate([-1, -1]))
    assert loss.item() == 0.0


def test_embeddings_are_unit_length_and_padding_free():
    task = build_task(
        "sv", {"head": "xvector"}, [Utterance("a", "x", 1, 16000, "train", speaker="s1")]
    )
    head = task.build_head(6).eval()
    x = torch.randn(1, 30, 6)
    padded = torch.cat([x, 5 * torch.randn(1, 10, 6)], dim=1)
    a = task.predict(head, x, torch.tensor([30]))[0]
    b = task.predict(head, padded, torch.tensor([30]))[0]
    assert a.shape == (512,) and torch.allclose(a.norm(), torch.tensor(1.0))
    assert torch.allclose(a, b, atol=1e-5)
    pooled = stats_pool(padded, torch.tensor([30]))
    assert torch.allclose(pooled[0, :6], x[0].mean(0), atol=1e-5)


def test_build_trials_balanced_capped_seeded():
    utts = [Utterance(f"{s}{j}", "x", 1, 16000, "dev", speaker=s) for s in "abcd" for j in range(5)]
    t = build_trials(utts, max_trials=20, seed=0)
    assert sum(lab for lab, _, _ in t) == 10 and len(t) == 20
    assert t == build_trials(utts, max_trials=20, seed=0)
    assert all((a[0] == b[0]) == bool(lab) for lab, a, b in t)


def test_trial_with_unknown_id_names_it(tmp_path):
    task = build_task("sv", {}, [Utterance("a", "x", 1, 16000, "train", speaker="s1")])
    write_trials(tmp_path / "trials.tsv", [(1, "a", "ghost")])
    with pytest.raises(ValueError, match="ghost"):
        task.score(
            [torch.ones(4)], [Utterance("a", "x", 1, 16000, "test", speaker="s1")], "test", tmp_path
        )


def test_simple_head_trains_on_a_batch_of_one():
    task = build_task("sv", {"emb_dim": 8}, [Utterance("a", "x", 1, 16000, "train", speaker="s1")])
    head = task.build_head(4)
    loss = task.loss(head, torch.randn(1, 5, 4), torch.tensor([5]), task.collate([0]))
    loss.backward()
    assert torch.isfinite(loss)
