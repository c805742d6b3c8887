"""Crash trials of stage two: SIGKILL a real `pipeline train` at random moments, resume, compare.

    python bench/crash_train.py --trials 3 --kills 3 --steps 200

Builds the synthetic emotion suite of the tests (two stores written by the real StoreWriter),
trains one uninterrupted reference run, then for each trial starts the same command and kills
it (SIGKILL) `--kills` times: each kill picks a random step still ahead of the run, waits until
log.jsonl reaches it and kills 0-0.3 s later (between two checkpoints, or while one is being
written); the first kill of each trial instead lands at a random moment of start-up (before any
checkpoint). Then it runs the command once more to the end and compares the
outputs with the reference: metrics.json, log.jsonl (without its wall-clock `time`),
inputs.json and every tensor of checkpoints/best.pt and last.pt (bit-identical). Prints one
line per kill (delay, the step last.pt held when killed) and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.train_fixtures import make_er_suite  # noqa: E402

EVAL_EVERY = 10
CLI = "import sys; from pipeline.cli import main; sys.argv[0] = 'pipeline'; main()"


def command(data: Path, cache: Path, out: Path, steps: int) -> list[str]:
    sets = [
        f"train.steps={steps}",
        f"train.eval_every={EVAL_EVERY}",
        "train.lr=0.01",
        "train.threads=1",
    ]
    args = ["train", "--interface", "hconv", "--models", "up_a,up_b", "--task", "er"]
    args += ["--data", str(data), "--cache", str(cache), "--out", str(out), "--device", "cpu"]
    for s in sets:
        args += ["--set", s]
    return [sys.executable, "-c", CLI, *args]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def logged_step(run: Path) -> int:
    """The step of the last line of log.jsonl (0 when there is none yet)."""
    try:
        lines = (run / "log.jsonl").read_text().splitlines()
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (OSError, ValueError, KeyError):
        return 0


def kill_at(p: subprocess.Popen, run: Path, target: int | None, delay: float) -> bool:
    """SIGKILL `p` `delay` s after log.jsonl reaches step `target` (None: after `delay` s)."""
    while target is not None and logged_step(run) < target and p.poll() is None:
        time.sleep(0.02)
    time.sleep(delay)
    if p.poll() is not None:
        return False
    p.send_signal(signal.SIGKILL)
    p.wait()
    return True


def last_step(run: Path) -> int | None:
    p = run / "checkpoints" / "last.pt"
    if not p.exists():
        return None
    return int(torch.load(p, weights_only=True)["state"]["step"])


def outputs(run: Path) -> dict:
    """What must be identical: records, log without wall-clock time, inputs, checkpoint tensors."""
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    for x in log:
        x.pop("time", None)
    out = {
        "metrics": json.loads((run / "metrics.json").read_text()),
        "log": log,
        "inputs": json.loads((run / "inputs.json").read_text()),
    }
    for name in ("best.pt", "last.pt"):
        ck = torch.load(run / "checkpoints" / name, weights_only=True)
        out[name] = {f"{m}.{k}": v for m in ("interface", "head") for k, v in ck[m].items()}
    return out


def same(a: dict, b: dict) -> list[str]:
    """Names of the outputs that differ."""
    diff = [k for k in ("metrics", "log", "inputs") if a[k] != b[k]]
    for name in ("best.pt", "last.pt"):
        ta, tb = a[name], b[name]
        if set(ta) != set(tb) or any(not torch.equal(ta[k], tb[k]) for k in ta):
            diff.append(name)
    return diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--kills", type=int, default=3, help="SIGKILLs per trial")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    root = Path(tempfile.mkdtemp(prefix="crash_train_"))
    data, cache = make_er_suite(root / "suite")
    ref = root / "reference"
    t0 = time.perf_counter()
    subprocess.run(command(data, cache, ref, a.steps), env=env(), check=True, capture_output=True)
    ref_s = time.perf_counter() - t0
    expected = outputs(ref)
    print(f"reference run: {ref_s:.1f} s, {a.steps} steps -> {ref}")
    kills = resumed = identical = mid_training = 0
    for trial in range(a.trials):
        run = root / f"trial{trial}"
        for k in range(a.kills):
            evals = list(range(EVAL_EVERY, a.steps, EVAL_EVERY))
            ahead = [e for e in evals if e > (last_step(run) or 0)]
            target = None if k == 0 or not ahead else rng.choice(ahead)
            delay = rng.uniform(0.5, 4.0) if target is None else rng.uniform(0.0, 0.3)
            p = subprocess.Popen(
                command(data, cache, run, a.steps),
                env=env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            when = f"{delay:.2f} s after start" if target is None else f"step {target} + {delay:.2f} s"  # fmt: skip
            if kill_at(p, run, target, delay):
                kills += 1
                step = last_step(run)
                mid_training += step is not None and step < a.steps
                print(f"trial {trial}: killed at {when}; last.pt holds step {step}")
            else:
                print(f"trial {trial}: the run ended before the kill at {when}")
        r = subprocess.run(command(data, cache, run, a.steps), env=env(), capture_output=True)
        ok = r.returncode == 0
        resumed += ok
        diff = same(outputs(run), expected) if ok else ["(the final run failed)"]
        identical += not diff
        print(f"trial {trial}: final run rc {r.returncode}; differs in {diff or 'nothing'}")
        if not ok:
            print(r.stderr.decode()[-2000:])
    print(
        f"{a.trials} trials, {kills} kills ({mid_training} with a checkpoint mid-run), "
        f"{resumed} resumed to the end, {identical} identical to the uninterrupted run"
    )


if __name__ == "__main__":
    main()
