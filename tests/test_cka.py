"""Linear CKA: the streamed statistics equal the full-batch formula; identity, symmetry,
invariance to rotation and isotropic scaling; layer similarity over aligned stores."""

import json

import numpy as np
import pytest
from fakes import FakeStore

from pipeline.analysis.cka import StreamingCKA, group_passes, linear_cka
from pipeline.analysis.similarity import (
    align_utterance,
    common_frames,
    layer_similarity,
    write_similarity,
)

D_POS = 6  # width of the positional-signal stores


def layered_store(n_utts=12, L=4, D=8, seed=0, offset=5.0) -> FakeStore:
    """Layers that are noisy mixtures of one shared signal (so CKA between them is in (0, 1)),
    with a large mean offset (the centring must remove it)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    mix = [rng.standard_normal((D, D)) for _ in range(L)]
    for i in range(n_utts):
        T = int(rng.integers(20, 60))
        base = rng.standard_normal((T, D))
        layers = [
            base @ mix[k] + (k + 1) * 0.7 * rng.standard_normal((T, D)) + offset for k in range(L)
        ]
        arrays[f"u{i:02d}"] = np.stack(layers, axis=1).astype(np.float16)  # (T, L, D)
    return FakeStore(arrays)


def transformed(store: FakeStore, seed: int, scale: float) -> FakeStore:
    """Every layer rotated by one random orthogonal matrix and scaled by `scale`."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((store.dim, store.dim)))
    out = {k: (a.astype(np.float64) @ q * scale) for k, a in store.arrays.items()}  # (T, L, D)
    return FakeStore(out, store.frame_rate)


def test_full_batch_identity_symmetry_and_invariances():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 10)) + 3.0
    y = x @ rng.standard_normal((10, 6)) + rng.standard_normal((300, 6))
    q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x))
    assert 0.0 < linear_cka(x, y) < 1.0
    assert linear_cka(x @ q, y) == pytest.approx(linear_cka(x, y), rel=1e-10)
    assert linear_cka(7.5 * x, y) == pytest.approx(linear_cka(x, y), rel=1e-10)
    assert linear_cka(x + 100.0, y) == pytest.approx(linear_cka(x, y), rel=1e-10)  # centred


def test_streaming_equals_full_batch_whatever_the_chunks():
    rng = np.random.default_rng(2)
    n = 1000
    blocks = [
        rng.standard_normal((n, d)) * s + m
        for d, s, m in ((5, 1.0, 40.0), (7, 3.0, -2.0), (3, 0.1, 0.5))
    ]
    blocks[1][:, :5] += 2.0 * blocks[0]  # correlated blocks
    direct = np.array([[linear_cka(a, b) for b in blocks] for a in blocks])
    for cuts in ([n], [1, 999], [100, 250, 300, 350], [7] * 142 + [6]):
        acc = StreamingCKA([5, 7, 3], compute_dtype=__import__("torch").float64)
        start = 0
        for c in cuts:
            acc.update([b[start : start + c] for b in blocks])
            start += c
        assert acc.n == n
        np.testing.assert_allclose(acc.matrix(), direct, rtol=1e-9, atol=1e-12)
    acc32 = StreamingCKA([5, 7, 3])  # float32 products on shifted data stay close
    for s in range(0, n, 128):
        acc32.update([b[s : s + 128] for b in blocks])
    np.testing.assert_allclose(acc32.matrix(), direct, atol=1e-5)


def test_group_passes_cover_every_pair():
    widths = [8] * 10
    assert group_passes(widths, 1e9) == [list(range(10))]
    passes = group_passes(widths, (2 * 24) ** 2 * 8)  # groups of width <= 24: three blocks each
    assert all(sum(widths[k] for k in p) <= 48 for p in passes)
    covered = {(u, v) for p in passes for u in p for v in p}
    assert covered >= {(u, v) for u in range(10) for v in range(10)}


def test_store_with_itself_and_rotated_scaled_copy():
    a = layered_store()
    b = transformed(a, seed=3, scale=4.0)
    ids = sorted(a.ids)
    res = layer_similarity([a, a], ["a", "a2"], ids)
    m = res.matrices[("a", "a2")]
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-5)
    np.testing.assert_allclose(m, m.T, atol=1e-6)
    within = res.matrices[("a", "a")]
    assert (within[~np.eye(4, dtype=bool)] < 0.99).all()  # the layers do differ
    res_b = layer_similarity([a, b], ["a", "b"], ids)
    np.testing.assert_allclose(res_b.matrices[("a", "b")], within, atol=1e-4)
    assert res_b.summary["a|b"]["mean"] == pytest.approx(1.0, abs=1e-5)


def test_streamed_store_similarity_equals_direct_and_multi_pass():
    a, b = layered_store(seed=4), layered_store(seed=5, L=3, D=6)
    b = FakeStore({k: b.arrays[k2] for k, k2 in zip(sorted(a.ids), sorted(b.ids), strict=True)})
    ids = sorted(a.ids)
    res = layer_similarity([a, b], ["a", "b"], ids, chunk_frames=50)
    x = np.concatenate([align_utterance([a[u], b[u]], [50.0, 50.0])[0].numpy() for u in ids])
    y = np.concatenate([align_utterance([a[u], b[u]], [50.0, 50.0])[1].numpy() for u in ids])
    direct = np.array([[linear_cka(x[:, i], y[:, j]) for j in range(3)] for i in range(4)])
    np.testing.assert_allclose(res.matrices[("a", "b")], direct, atol=1e-5)
    small = layer_similarity([a, b], ["a", "b"], ids, memory_bytes=(2 * 16) ** 2 * 8)
    assert small.passes > 1
    for key in res.matrices:
        np.testing.assert_allclose(small.matrices[key], res.matrices[key], atol=1e-5)


def test_alignment_to_the_highest_rate_and_common_crop():
    assert common_frames([100, 49], [50.0, 25.0]) == 98
    slow = np.arange(10, dtype=np.float32).reshape(10, 1, 1)  # 25 Hz ramp
    fast = np.zeros((21, 1, 1), np.float32)
    ys = align_utterance([fast, slow], [50.0, 25.0])
    assert [y.shape[0] for y in ys] == [20, 20]
    # output frame j reads source position (j + 0.5) / 2 - 0.5 (the interfaces. rule)
    expected = np.clip((np.arange(20) + 0.5) / 2 - 0.5, 0, 9)  # edge-clamped to the last frame
    np.testing.assert_allclose(ys[1][:, 0, 0].numpy(), expected, atol=1e-6)


def test_write_similarity_outputs(tmp_path):
    a = layered_store(n_utts=4)
    res = layer_similarity([a, transformed(a, 1, 2.0)], ["a", "b"], sorted(a.ids), max_frames=100)
    assert res.frames == 100
    doc = write_similarity(res, tmp_path)
    assert set(doc["figures"]) == {"cka_a__a.png", "cka_a__b.png", "cka_b__b.png"}
    assert all((tmp_path / f).stat().st_size > 1000 for f in doc["figures"])
    on_disk = json.loads((tmp_path / "similarity.json").read_text())
    assert on_disk["summary"]["a|b"]["a_to_b"] == pytest.approx(1.0, abs=1e-4)
    npz = np.load(tmp_path / "similarity.npz")
    assert npz["a__b"].shape == (4, 4)


def test_remove_position_drops_a_shared_positional_signal():
    """Two unrelated models that both add the same function of the frame index (Whisper's
    sinusoidal positional embedding) look alike frame by frame until it is removed."""
    rng = np.random.default_rng(6)
    pos = rng.standard_normal((80, D_POS)) * 3.0  # one vector per frame index
    a, b = {}, {}
    for i in range(40):
        T = int(rng.integers(40, 80))
        a[f"u{i}"] = (pos[:T, None] + rng.standard_normal((T, 2, D_POS))).astype(np.float32)
        b[f"u{i}"] = (
            pos[:T, None] @ np.eye(D_POS)[::-1] + rng.standard_normal((T, 2, D_POS))
        ).astype(np.float32)
    sa, sb = FakeStore(a), FakeStore(b)
    plain = layer_similarity([sa, sb], ["a", "b"], sorted(a))
    centred = layer_similarity([sa, sb], ["a", "b"], sorted(a), remove_position=True)
    assert plain.summary["a|b"]["mean"] > 0.7
    assert centred.summary["a|b"]["mean"] < 0.2
    assert centred.remove_position and not plain.remove_position
