"""One trainer per run dir: `pipeline train`, `train-packed` and DDP's rank 0 hold
RUN_DIR.train.lock (pipeline/train/run_dir.py); a second trainer of the same run dir is refused
with one line naming the run dir and the holder, and the lock dies with its holder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.errors import user_message
from pipeline.store.lock import FileLock
from pipeline.train.config import resolve_config
from pipeline.train.loop import train
from pipeline.train.run_dir import RunLocked, hold_run, run_holder, run_lock_path
from tests.train_fixtures import make_er_suite

SETS = ["train.steps=2", "train.eval_every=2", "train.threads=1"]
HOLD = """
import fcntl, json, os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
print("held", flush=True)
time.sleep(60)
"""  # another process holding a lock as pipeline/store/lock.py's FileLock does (flock + its owner)


@pytest.fixture(scope="module")
def er_suite(tmp_path_factory):
    return make_er_suite(tmp_path_factory.mktemp("er"), sizes={"train": 16, "dev": 8, "test": 8})


def _cfg(er_suite, out: Path):
    data, cache = er_suite
    return resolve_config(interface="ws", models="up_a,up_b", task="er", data=data, cache=cache,
                          out=out, sets=SETS, device="cpu")  # fmt: skip


def _holder(lock: Path) -> subprocess.Popen:
    """Another process that holds `lock` until killed."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_the_lock_is_a_sibling_shared_by_every_spelling_of_the_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_lock_path("runs/a") == tmp_path / "runs" / "a.train.lock"
    assert run_lock_path(tmp_path / "runs" / "b" / ".." / "a") == run_lock_path("runs/a/")
    with hold_run("runs/a") as lock:
        assert (
            lock.exists() and run_holder("runs/a") == f"pid {os.getpid()} on {socket.gethostname()}"
        )
        with pytest.raises(RunLocked):  # not reentrant: a second hold in this process is refused
            with hold_run(tmp_path / "runs" / "a"):
                pass
    assert not lock.exists() and run_holder("runs/a") is None


def test_a_second_trainer_of_a_run_dir_is_refused_naming_the_holder(er_suite, tmp_path):
    out = tmp_path / "run"
    holder = _holder(run_lock_path(out))
    try:
        with pytest.raises(RunLocked) as e:
            train(_cfg(er_suite, out), progress=False)
        msg = user_message(e.value)
        assert msg is not None and "\n" not in msg
        assert str(out) in msg and f"pid {holder.pid} on {socket.gethostname()}" in msg
        assert not out.exists()  # refused before anything was written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel dropped the dead holder's lock: the run trains (the stale file is reused)
    assert run_lock_path(out).exists()
    run = train(_cfg(er_suite, out), progress=False)
    assert (run / "metrics.json").exists() and not run_lock_path(out).exists()


def test_the_lock_is_held_while_training(er_suite, tmp_path, monkeypatch):
    import pipeline.train.loop as loop

    seen = []
    real = loop.Trainer.fit

    def fit(self, progress=True):
        seen.append(run_holder(self.run_dir))
        return real(self, progress)

    monkeypatch.setattr(loop.Trainer, "fit", fit)
    train(_cfg(er_suite, tmp_path / "run"), progress=False)
    assert seen == [f"pid {os.getpid()} on {socket.gethostname()}"]


def test_train_packed_refuses_a_group_with_a_run_trained_elsewhere(er_suite, tmp_path):
    from pipeline.train.pack import train_packed

    cfgs = [_cfg(er_suite, tmp_path / "a"), _cfg(er_suite, tmp_path / "b")]
    other = FileLock(run_lock_path(tmp_path / "b"))  # another open file: excludes like a process
    assert other.acquire()
    try:
        with pytest.raises(RunLocked, match=f"{tmp_path / 'b'} is being trained by pid"):
            train_packed(cfgs, progress=False)
        assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
        assert run_holder(tmp_path / "a") is None  # the group's locks taken so far were released
    finally:
        other.release()


def test_ddp_rank_0_holds_the_run_before_the_process_group_forms(er_suite, tmp_path, monkeypatch):
    from pipeline.train.ddp import train_ddp

    out = tmp_path / "run"
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    other = FileLock(run_lock_path(out))
    assert other.acquire()
    try:
        t0 = time.monotonic()
        with pytest.raises(RunLocked, match="is being trained by"):
            train_ddp(_cfg(er_suite, out), progress=False)
        assert time.monotonic() - t0 < 5  # refused at once, no rendezvous waited for
    finally:
        other.release()
