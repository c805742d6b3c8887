"""transformers 4.x and 5.x load the HF (WavLM/HuBERT/Data2Vec) and Moonshine models alike.

The venv holds one major (4.x: scripts/setup.sh pins it); scripts/setup.sh also installs 5.x into
the overlay directory ``.venv/overlays/transformers5`` (only the packages whose 5.x needs differ
from the venv's), which shadows the venv's transformers when it comes first on PYTHONPATH
(``SFM_TRANSFORMERS5_OVERLAY`` names another directory). Each major runs this file as a script,
in a subprocess:

  build OUT      tiny random WavLM/HuBERT/Data2Vec (base and large style) and a tiny random
                 Moonshine encoder, built with the project's helpers, saved with
                 ``save_pretrained`` and loaded back through ``load_upstream``; the packaged
                 Moonshine base converted at first use (its cache under OUT). Checks, in that
                 major: state and frame counts, finite values, states 0 .. N-1 = transformers'
                 ``hidden_states`` and state N = its encoder output, the round trip, the same
                 seed giving the same weights. Writes OUT/states.npz and OUT/info.json.
  load SRC OUT   loads every model that SRC's build saved (and SRC's Moonshine cache) through
                 ``load_upstream`` and writes the same states to OUT.

The tests then compare: a model saved under one major loads under the other with the same
weights hash and the same states, and the Moonshine base converts to the same weights and states
under both. Random initialisations are not compared across majors: 5.x rewrote ``_init_weights``,
so one seed gives other weights there (``weights_hash`` tells them apart).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
OVERLAY = Path(
    os.environ.get("SFM_TRANSFORMERS5_OVERLAY", ROOT / ".venv" / "overlays" / "transformers5")
)
FAMILIES = [("wavlm", False), ("hubert", False), ("data2vec", False), ("wavlm", True), ("hubert", True)]  # fmt: skip
LENGTHS = [16000, 9000, 4321]  # samples; all above Moonshine's 895-sample minimum
# tiny Moonshine: head_dim 16, rotary on int(16 * 0.5) = 8 dims -> 4 frequencies (4.x's default
# partial_rotary_factor 0.9 would give 7: a config read wrongly shows)
TINY_MOONSHINE = dict(
    hidden_size=32, intermediate_size=64, encoder_num_hidden_layers=2,
    encoder_num_attention_heads=2, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
    partial_rotary_factor=0.5, rope_theta=10000.0, encoder_hidden_act="gelu", vocab_size=32,
)  # fmt: skip
TINY_ROTARY = 4
BASE = "moonshine_base_en"
BASE_SAMPLES = 32000  # 2 s of the recording moonshine-cpp ships
TOL = 1e-5  # max |a - b| / max |a| between majors (same weights, same torch)


# ---- the worker (runs under one major, in a subprocess) ------------------------------------


def _batch():
    import torch

    g = torch.Generator().manual_seed(0)
    w = torch.zeros(len(LENGTHS), max(LENGTHS))
    for i, n in enumerate(LENGTHS):
        w[i, :n] = 0.1 * torch.randn(n, generator=g)
    return w, torch.tensor(LENGTHS)


def _speech():
    import torch

    from pipeline.audio import load_audio
    from pipeline.upstreams.moonshine import offline_ort

    wav = Path(offline_ort(BASE)).parents[2] / "test-data" / "beckett.wav"
    return torch.from_numpy(load_audio(wav))[None, :BASE_SAMPLES]


def _check_states(out: list, L: int, D: int, frames: list[int], what: str) -> None:
    assert len(out) == len(frames), what
    for x, t in zip(out, frames, strict=True):
        assert tuple(x.shape) == (L, t, D), (what, tuple(x.shape), (L, t, D))
        assert bool(x.isfinite().all()), f"{what}: non-finite states"


def _hf_reference(up, w) -> None:
    """Unpadded: states 0 .. N-1 are the model's hidden_states, state N its encoder output."""
    import torch
    import torch.nn.functional as F

    n = LENGTHS[0]
    (ours,) = up.forward(w[:1, :n], torch.tensor([n]))
    x = F.layer_norm(w[:1, :n], (n,)) if up.normalize else w[:1, :n]
    with torch.inference_mode():
        ref = up.model(x, output_hidden_states=True)
    assert len(ref.hidden_states) == up.spec.num_layers
    for i, h in enumerate(ref.hidden_states[:-1]):
        torch.testing.assert_close(ours[i], h[0], msg=f"state {i}")
    torch.testing.assert_close(ours[-1], ref.last_hidden_state[0], msg="last state")


def _moonshine_reference(up, w) -> None:
    """Unpadded: layer_norm(last state) is the stock MoonshineEncoder output of this major."""
    import torch

    from pipeline.upstreams.moonshine import encoder_states

    n = LENGTHS[0]
    with torch.no_grad():
        states = encoder_states(up.encoder, w[:1, :n], torch.tensor([n]))
        stock = up.encoder(w[:1, :n]).last_hidden_state
    torch.testing.assert_close(up.encoder.layer_norm(states[-1]), stock)


def _versions() -> dict:
    import torch
    import transformers

    return {"transformers": transformers.__version__, "torch": torch.__version__}


def worker_build(out: Path) -> None:
    import torch
    from transformers import MoonshineConfig
    from transformers.models.moonshine.modeling_moonshine import MoonshineEncoder

    from pipeline.upstreams import load_upstream, tiny_random_hf
    from pipeline.upstreams.moonshine import MoonshineUpstream, moonshine_num_frames

    os.environ["SFM_PIPELINE_HOME"] = str(out / "home")  # the Moonshine base converts here
    w, lengths = _batch()
    arrays, hashes = {}, {}
    for family, large in FAMILIES:
        key = f"{family}_{'large' if large else 'base'}"
        up = tiny_random_hf(family, large_style=large, seed=0)
        assert up.weights_hash() == tiny_random_hf(family, large_style=large).weights_hash()
        assert (up.spec.num_layers, up.spec.dim) == (3, 32)
        states = up.forward(w, lengths)
        _check_states(states, 3, 32, [up.num_frames(n) for n in LENGTHS], key)
        _hf_reference(up, w)
        up.save_pretrained(out / "models" / key)
        again = load_upstream(str(out / "models" / key))
        assert again.weights_hash() == up.weights_hash(), key
        for a, b in zip(again.forward(w, lengths), states, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        hashes[key] = up.weights_hash()
        arrays.update({f"{key}/{b}": x.numpy() for b, x in enumerate(states)})

    config = MoonshineConfig(**TINY_MOONSHINE)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = MoonshineEncoder(config).eval()
    assert encoder.rotary_emb.inv_freq.numel() == TINY_ROTARY
    encoder.save_pretrained(out / "models" / "moonshine_tiny")  # as a user would: no fix-up
    up = load_upstream(str(out / "models" / "moonshine_tiny"))
    assert isinstance(up, MoonshineUpstream) and (up.spec.num_layers, up.spec.dim) == (3, 32)
    assert up.encoder.rotary_emb.inv_freq.numel() == TINY_ROTARY
    states = up.forward(w, lengths)
    _check_states(states, 3, 32, [moonshine_num_frames(n) for n in LENGTHS], "moonshine_tiny")
    _moonshine_reference(up, w)
    hashes["moonshine_tiny"] = up.weights_hash()
    arrays.update({f"moonshine_tiny/{b}": x.numpy() for b, x in enumerate(states)})

    base = load_upstream(BASE)  # converts the packaged .ort into out/home at first use
    (states,) = base.forward(_speech(), torch.tensor([BASE_SAMPLES]))
    _check_states([states], 9, 416, [moonshine_num_frames(BASE_SAMPLES)], BASE)
    hashes[BASE] = base.weights_hash()
    arrays[f"{BASE}/0"] = states.numpy()

    np.savez(out / "states.npz", **arrays)
    (out / "info.json").write_text(json.dumps({**_versions(), "hashes": hashes}, indent=1))


def worker_load(src: Path, out: Path) -> None:
    import torch

    from pipeline.upstreams import load_upstream

    os.environ["SFM_PIPELINE_HOME"] = str(src / "home")  # SRC's converted Moonshine base
    w, lengths = _batch()
    arrays, hashes, rotary = {}, {}, {}
    for d in sorted((src / "models").iterdir()):
        up = load_upstream(str(d))
        if d.name == "moonshine_tiny":
            rotary[d.name] = up.encoder.rotary_emb.inv_freq.numel()
        hashes[d.name] = up.weights_hash()
        arrays.update({f"{d.name}/{b}": x.numpy() for b, x in enumerate(up.forward(w, lengths))})
    base = load_upstream(BASE)
    (states,) = base.forward(_speech(), torch.tensor([BASE_SAMPLES]))
    hashes[BASE] = base.weights_hash()
    rotary[BASE] = base.encoder.rotary_emb.inv_freq.numel()
    arrays[f"{BASE}/0"] = states.numpy()
    np.savez(out / "states.npz", **arrays)
    info = {**_versions(), "hashes": hashes, "rotary": rotary}
    (out / "info.json").write_text(json.dumps(info, indent=1))


# ---- the tests (run the worker under each major) -------------------------------------------


def _run(major: str, *args: str) -> None:
    """This file as a script under `major` ("venv": the venv's transformers; "overlay": 5.x)."""
    paths = ([str(OVERLAY)] if major == "overlay" else []) + [str(ROOT)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("SFM_PIPELINE_HOME", None)
    res = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        env=env, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, (
        f"{major} {args[0]} failed:\n{res.stdout[-3000:]}{res.stderr[-6000:]}"
    )


def _need(major: str) -> None:
    if major == "overlay" and not OVERLAY.is_dir():
        pytest.skip(f"no transformers 5 overlay at {OVERLAY}: run scripts/setup.sh to create it")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """major -> its build directory, built on first use."""
    root, dirs, failed = tmp_path_factory.mktemp("majors"), {}, set()

    def get(major: str) -> Path:
        _need(major)
        if major in failed:
            pytest.fail(
                f"the {major} build failed (see test_each_major_builds_saves_and_loads_back)"
            )
        if major not in dirs:
            out = root / f"build-{major}"
            out.mkdir()
            failed.add(major)
            _run(major, "build", str(out))
            failed.discard(major)
            dirs[major] = out
        return dirs[major]

    return get


def _info(d: Path) -> dict:
    return json.loads((d / "info.json").read_text())


def _major(d: Path) -> int:
    return int(_info(d)["transformers"].split(".")[0])


def _assert_same_states(a: Path, b: Path, keys: list[str]) -> None:
    x, y = np.load(a / "states.npz"), np.load(b / "states.npz")
    for key in keys:
        names = sorted(k for k in x.files if k.split("/")[0] == key)
        assert names and names == sorted(k for k in y.files if k.split("/")[0] == key), key
        for k in names:
            assert x[k].shape == y[k].shape, k
            err = np.abs(x[k] - y[k]).max() / np.abs(x[k]).max()
            assert err <= TOL, f"{k}: max |diff| / max |ref| = {err:.2e}"


@pytest.mark.parametrize("major", ["venv", "overlay"])
def test_each_major_builds_saves_and_loads_back(built, major):
    """Shapes, counts, finite values, hidden-state definition and round trip, in that major."""
    info = _info(built(major))
    assert len(info["hashes"]) == len(FAMILIES) + 2
    if major == "overlay":
        assert _major(built(major)) == 5, info


def test_the_overlay_is_the_other_major(built):
    assert _major(built("venv")) != _major(built("overlay")), "the overlay shadows nothing new"


@pytest.mark.parametrize("src,dst", [("venv", "overlay"), ("overlay", "venv")])
def test_saved_under_one_major_loads_alike_under_the_other(built, tmp_path, src, dst):
    """Same weights hash, same states, and Moonshine's rotary settings survive the config."""
    source = built(src)
    _need(dst)
    _run(dst, "load", str(source), str(tmp_path))
    loaded, saved = _info(tmp_path), _info(source)
    assert _major(tmp_path) == _major(built(dst))
    assert loaded["hashes"] == saved["hashes"]
    assert loaded["rotary"] == {"moonshine_tiny": TINY_ROTARY, BASE: 16}  # int(52 * 0.62) / 2
    _assert_same_states(source, tmp_path, sorted(saved["hashes"]))


def test_moonshine_base_converts_alike_under_both_majors(built):
    """The .ort -> MoonshineEncoder conversion gives the same weights and states in 4.x and 5.x."""
    a, b = built("venv"), built("overlay")
    assert _info(a)["hashes"][BASE] == _info(b)["hashes"][BASE]
    _assert_same_states(a, b, [BASE])


if __name__ == "__main__":
    if sys.argv[1] == "build":
        worker_build(Path(sys.argv[2]))
    elif sys.argv[1] == "load":
        worker_load(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        raise SystemExit(f"usage: {sys.argv[0]} build OUT | load SRC OUT")
