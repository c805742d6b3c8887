"""Crash trials: SIGKILL real `pipeline extract` processes at random moments, resume, and
compare every store file by sha256 with an uninterrupted run.

    python bench/crash_trials.py [--trials 12] [--kills 3] [--seed 0] [--work DIR]

Setup (in --work, default a temp folder): the built-in synthetic suite at preset `tiny` (every
split of the er, asr_en and ml_asr tasks: 128 clips of 1-3 s), a tiny random WavLM (3 layers, width 64) saved as a local
model folder, and one uninterrupted reference store. Each trial extracts into a new store and
kills the process `--kills` times: the first kill lands within the first 2 s after the store
folder appears (a new store), the later ones at random moments of a resumed run; then the same
command runs to the end. Prints trials, kills, kills within the first 2 s, resumes completed,
stores identical (and `pipeline cache verify` clean). Exit 1 when any store differs.

Other processes: the `KINDS` table maps a trial kind to its function; a train-side trial
(kill `pipeline train`, resume, compare its outputs) is added there with `--kind train`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.data.manifest import read_manifests, write_manifest  # noqa: E402
from pipeline.data.synth import synthesize  # noqa: E402
from pipeline.store import verify_store  # noqa: E402
from pipeline.upstreams.hf import tiny_random_hf  # noqa: E402


def digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}  # fmt: skip


def setup(work: Path) -> tuple[list[str], Path]:
    """The extract command (without --out) and the reference store."""
    suite = synthesize(work / "suite", preset="tiny", seed=0)
    utts = [u for t in ("er", "asr_en", "ml_asr") for u in read_manifests(suite / t)]
    data = write_manifest(work / "data" / "train.jsonl", utts)
    model = work / "tiny_wavlm"
    if not (model / "config.json").exists():
        tiny_random_hf("wavlm", num_layers=3, hidden=64, seed=0).save_pretrained(model)
    cmd = [sys.executable, "-c", "from pipeline.cli import app; app(prog_name='pipeline')", "extract", "--model", str(model), "--data", str(data),
           "--device", "cpu", "--batch-seconds", "2", "--no-progress"]  # fmt: skip
    return cmd, work / "reference.zarr"


def run_to_end(cmd: list[str], out: Path, env: dict) -> tuple[int, float]:
    """(exit code, seconds from the store's appearance to the end)."""
    p = subprocess.Popen([*cmd, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    while p.poll() is None and not out.exists():
        time.sleep(0.005)
    t0 = time.monotonic()
    return p.wait(), time.monotonic() - t0


def extract_trial(cmd: list[str], out: Path, kills: int, span: float, rng: random.Random, env: dict) -> dict:  # fmt: skip
    """Kill one extract `kills` times (the first within 2 s of the new store), then finish."""
    got = {"kills": 0, "early": 0, "resumed": 0, "identical": 0}
    for k in range(kills):
        p = subprocess.Popen([*cmd, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        lock = out / "part-00000-of-00001.lock"
        while p.poll() is None and not (out.exists() if k == 0 else lock.exists()):
            time.sleep(0.005)  # the store appears (first run) / the writer holds its part
        t_new = time.monotonic()
        delay = rng.uniform(0.0, 2.0) if k == 0 else rng.uniform(0.0, 0.9 * span)
        while p.poll() is None and time.monotonic() - t_new < delay:
            time.sleep(0.005)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            got["kills"] += 1
            got["early"] += k == 0 and time.monotonic() - t_new < 2.0
        p.wait()
    return got


KINDS = {"extract": extract_trial}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--kills", type=int, default=3, help="kills per trial")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kind", choices=sorted(KINDS), default="extract")
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="crash_trials_"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}  # fmt: skip
    cmd, ref = setup(work)
    if not ref.exists():
        rc, wall = run_to_end(cmd, ref, env)
        assert rc == 0, "the reference extraction failed"
    t0 = time.monotonic()
    rc, span = run_to_end(cmd, work / "timing.zarr", env)  # how long a run writes
    print(f"work {work}; an uninterrupted run writes for {span:.1f} s (after its imports); reference {ref}")  # fmt: skip
    want = digest(ref)
    rng = random.Random(a.seed)
    tot = {"trials": 0, "kills": 0, "early": 0, "resumed": 0, "identical": 0, "verified": 0}
    for t in range(a.trials):
        out = work / f"trial{t:03d}.zarr"
        got = KINDS[a.kind](cmd, out, a.kills, span, rng, env)
        rc, _ = run_to_end(cmd, out, env)
        same = rc == 0 and digest(out) == want
        clean = rc == 0 and verify_store(str(out)) == []
        tot["trials"] += 1
        tot["kills"] += got["kills"]
        tot["early"] += got["early"]
        tot["resumed"] += rc == 0
        tot["identical"] += same
        tot["verified"] += clean
        print(f"trial {t}: {got['kills']} kill(s) ({got['early']} within 2 s of the new store), resume rc {rc}, identical {same}, verify clean {clean}", flush=True)  # fmt: skip
    print(
        f"trials {tot['trials']}, kills {tot['kills']} ({tot['early']} within the first 2 s of a new store), "
        f"resumes completed {tot['resumed']}/{tot['trials']}, stores identical {tot['identical']}/{tot['trials']}, "
        f"verify clean {tot['verified']}/{tot['trials']} ({time.monotonic() - t0:.0f} s)"
    )
    return 0 if tot["identical"] == tot["trials"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
