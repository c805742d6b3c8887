"""`pipeline export`: the TorchScript file loads with torch alone and computes what the run does.

Runs are trained a few steps on synthetic stores (StoreWriter) of two upstreams at different
frame rates (up_a: L=3, D=8, 50 Hz; up_b: L=4, D=6, 25 Hz), with every label. The exported
file is run in a fresh `python -c` that imports torch only, on the run's cached test features
batched as `pipeline evaluate` batches them; its outputs must equal the eager run's to an
absolute 1e-5 (float32; measured differences are 0 to 1e-6) and give the same predictions.
Legend: B batch, L states, T frames, D width.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.data.manifest import Utterance, write_manifest
from pipeline.infer import ExportError, export_run, load_run
from pipeline.infer.export import CARD_FILE, MODEL_FILE, cached_batches
from pipeline.infer.traced import reference
from pipeline.store import StoreWriter, make_fingerprint, manifest_hash
from pipeline.tasks.ctc import greedy_ctc
from pipeline.train.config import resolve_config
from pipeline.train.loop import train
from pipeline.upstreams.base import UpstreamSpec

ATOL = 1e-5
EMOTIONS = ["neu", "hap", "ang", "sad"]
UPSTREAMS = {"up_a": (3, 8, 50.0), "up_b": (4, 6, 25.0)}  # L, D, Hz
CASES = {  # name: (interface, models, task, task_args sets)
    "ws-er": ("ws", "up_a,up_b", "er", ["task_args.hidden=16"]),
    "hconv-asr": ("hconv", "up_a,up_b", "asr", ["task_args.proj=16", "task_args.hidden=16"]),
    "gumd-ml_asr": (
        "gumd",
        "up_a",
        "ml_asr",
        ["task_args.d_model=16", "task_args.heads=2", "task_args.ffn=32"],
    ),  # fmt: skip
    "chconv-sv": ("chconv", "up_a,up_b", "sv", ["task_args.emb_dim=16"]),
    "ws-sv_xvector": (
        "ws",
        "up_b",
        "sv",
        ["task_args.head=xvector", "task_args.xvector_proj=16"],
    ),  # fmt: skip
}


def make_suite(root: Path) -> tuple[Path, Path]:
    """data/{train,dev,test}.jsonl with every label and cache/{up_a,up_b}.zarr."""
    rng = np.random.default_rng(0)
    data, cache = root / "data", root / "cache"
    utts, feats = [], {m: {} for m in UPSTREAMS}
    for split, n in (("train", 32), ("dev", 8), ("test", 12)):
        part = []
        for i in range(n):
            c, t = i % 4, int(rng.integers(24, 60))  # t frames at 50 Hz
            uid = f"{split}-{i:02d}"
            part.append(Utterance(uid, f"{uid}.wav", t / 50, 16000, split, text="AB BA"[: 2 + c],
                                  language=["eng", "fra"][i % 2], speaker=f"s{i % 3}",
                                  emotion=EMOTIONS[c]))  # fmt: skip
            for m, (L, D, hz) in UPSTREAMS.items():
                x = rng.normal(size=(int(t * hz / 50), L, D)).astype(np.float16)  # (T, L, D)
                x[:, 1, c % D] += 2.0
                feats[m][uid] = x
        write_manifest(data / f"{split}.jsonl", part)
        utts += part
    for m, (L, D, hz) in UPSTREAMS.items():
        spec = UpstreamSpec(m, "hf", f"synthetic:{m}", 16000, hz, L, D)
        with StoreWriter(cache / f"{m}.zarr", make_fingerprint(spec, "0", None, manifest_hash(utts))) as w:  # fmt: skip
            for u in utts:
                w.append(u.id, feats[m][u.id])
    return data, cache


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{case: (run dir, export dir, inputs, torch-only outputs)}: every case trained and
    exported, then all files run in one torch-only subprocess."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    data, cache = make_suite(root)
    out: dict = {}
    jobs = []
    for name, (interface, models, task, sets) in CASES.items():
        cfg = resolve_config(interface=interface, models=models, task=task, data=data,
                             cache=cache, out=root / "runs" / name, device="cpu",
                             sets=["train.steps=4", "train.eval_every=2", "train.batch_size=4",
                                   "train.lr=0.01", *sets])  # fmt: skip
        run_dir = train(cfg, progress=False)
        res = export_run(run_dir, root / "exp" / name, check_batches=2)
        batches = cached_batches(load_run(run_dir, "cpu"), "test", 100)
        torch.save(batches, root / "exp" / name / "inputs.pt")
        jobs.append([str(res.model), str(root / "exp" / name / "inputs.pt"),
                     str(root / "exp" / name / "outputs.pt")])  # fmt: skip
        out[name] = (run_dir, res, batches)
    code = (
        "import json, sys, torch\n"
        "for model, inp, dst in json.loads(sys.argv[1]):\n"
        "    extra = {'card.json': ''}\n"
        "    m = torch.jit.load(model, _extra_files=extra)\n"
        "    assert json.loads(extra['card.json'])['format'] == 'sfm-pipeline-export'\n"
        "    with torch.no_grad():\n"
        "        outs = [m(f, n) for f, n in torch.load(inp, weights_only=True)]\n"
        "    torch.save(outs, dst)\n"
        "assert not [k for k in sys.modules if k.split('.')[0] in ('pipeline', 'tests')]\n"
        "print('torch only')\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", code, json.dumps(jobs)], cwd=root,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0 and "torch only" in proc.stdout, proc.stderr[-2000:]
    return {k: (*v, torch.load(root / "exp" / k / "outputs.pt", weights_only=True)) for k, v in out.items()}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_exported_outputs_equal_the_runs(exported, case):
    run_dir, res, batches, got = exported[case]
    rm = load_run(run_dir, "cpu")
    assert len(batches) == 3 and res.max_abs_diff <= 1e-4
    for (feats, lengths), g in zip(batches, got, strict=True):
        want = reference(rm, feats, lengths)
        assert set(g) == set(want)
        for k in want:
            assert g[k].shape == want[k].shape
            assert torch.allclose(g[k], want[k], rtol=0.0, atol=ATOL), (k, (g[k] - want[k]).abs().max())  # fmt: skip
        if "probs" in want:
            assert torch.equal(g["logits"].argmax(-1), want["logits"].argmax(-1))
        if "log_probs" in want:
            assert greedy_ctc(g["log_probs"], g["lengths"]) == greedy_ctc(want["log_probs"], want["lengths"])  # fmt: skip


def test_card_says_what_the_file_is(exported):
    run_dir, res, _, _ = exported["hconv-asr"]
    card = json.loads(res.card.read_text())
    assert card["bytes"] == res.model.stat().st_size == res.bytes and card["file"] == MODEL_FILE
    assert card["task"] == "asr" and card["interface"] == "hconv"
    assert [i["model"] for i in card["inputs"]] == ["up_a", "up_b"]
    a, b = card["inputs"]
    assert a["layers"] == [0, 1, 2] and b["layers"] == [0, 1, 2, 3] and b["frame_rate"] == 25.0
    assert a["fingerprint"]["weights_hash"] == "0" and a["encoding"] == "fp16" and a["scales"] is None  # fmt: skip
    assert card["vocab"][:2] == ["<blank>", "<eos>"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert card["metrics"] == metrics and card["config"]["train"]["steps"] == 4
    assert card["check"]["tolerance"] == 1e-4 and any("cached" in c for c in card["check"]["on"])
    er = json.loads(exported["ws-er"][1].card.read_text())
    assert er["labels"] == EMOTIONS and set(er["outputs"]) == {"logits", "probs"}


def test_short_inputs_keep_the_heads_branches(exported):
    """Heads are scripted: inputs shorter than x-vector's TDNN context (15 frames), asr's frame
    stacking (2) or ml_asr's convolutions (7) take the same branches as the eager heads."""
    for case in ("ws-sv_xvector", "hconv-asr", "gumd-ml_asr"):
        run_dir, res, _, _ = exported[case]
        rm = load_run(run_dir, "cpu")
        m = torch.jit.load(str(res.model))
        for t in (1, 5, 10, 14):
            feats = [torch.randn(2, L, max(1, t * int(hz) // 50), D) for L, D, hz in
                     (UPSTREAMS[u] for u in rm.cfg.models)]  # fmt: skip
            lengths = [torch.tensor([f.shape[2], max(1, f.shape[2] - 1)]) for f in feats]
            with torch.no_grad():
                got = m(feats, lengths)
            want = reference(rm, feats, lengths)
            for k in want:
                assert torch.allclose(got[k], want[k], rtol=0.0, atol=ATOL), (case, t, k)


def test_cli_export_and_overwrite(exported, tmp_path):
    run_dir, _, _, _ = exported["ws-er"]
    dst = tmp_path / "x"
    cli = CliRunner().invoke(app, ["export", str(run_dir), str(dst), "--check-batches", "1"])
    assert cli.exit_code == 0, cli.output
    assert (dst / MODEL_FILE).is_file() and (dst / CARD_FILE).is_file()
    cli = CliRunner().invoke(app, ["export", str(run_dir), str(dst)])
    assert cli.exit_code == 1 and "--force" in cli.output
    with pytest.raises(ExportError, match="--force"):
        export_run(run_dir, dst)
    assert export_run(run_dir, dst, force=True, check_batches=0).bytes > 0
