"""The grid runner: slots pinned to cores or GPUs, lost jobs resubmitted (locally and on Dask),
and, in a temp git+DVC repo, `pipeline grid` leaving every train stage up to date for DVC.
Nothing trains twice: workers die with their grid (a SIGKILLed one too) and with an interrupted
one, one grid per checkout, a slot waits for a run another process trains; with two grids
started at once, a SIGKILLed grid and a killed worker, every log.jsonl holds each step once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from pipeline.grid.jobs import (
    Job,
    JobResult,
    Slot,
    local_slots,
    run_job,
    run_local,
    thread_env,
)
from pipeline.grid.runner import (
    GridLocked,
    GridOptions,
    claim_run,
    dvc_commit,
    grid_lock_path,
    run_grid,
)
from pipeline.plan import PlanError, make_plan, read_experiment_mapping
from pipeline.store.lock import FileLock
from pipeline.train.run_dir import run_lock_path
from tests.test_dvc import ROOT, _params_text, _repo, _small_experiment, dvc


def test_local_slots_share_the_cores_and_round_robin_the_gpus():
    cpu = local_slots(2, gpus=0, cores=[0, 1, 2, 3])
    assert [(s.cores, s.threads, s.gpu) for s in cpu] == [([0, 1], 2, None), ([2, 3], 2, None)]
    gpu = local_slots(3, gpus=2, cores=[0, 1, 2, 3, 4, 5])
    assert [s.gpu for s in gpu] == ["0", "1", "0"] and all(s.threads == 2 for s in gpu)
    more = local_slots(3, gpus=0, cores=[0, 1])  # more slots than cores: one core each, shared
    assert [s.cores for s in more] == [[0], [1], [0]]
    assert thread_env(2, "1") == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2",
                                  "OPENBLAS_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": "1"}  # fmt: skip


def test_run_local_resubmits_lost_jobs_and_keeps_failures():
    attempts: dict[str, int] = {}
    seen: list[tuple[str, int, int]] = []

    def launch(job: Job, slot: Slot) -> JobResult:
        k = job.keys[0]
        attempts[k] = attempts.get(k, 0) + 1
        if k == "lost-once" and attempts[k] == 1:
            return JobResult(job.keys, -9, 0.1, "log", lost=True)
        return JobResult(job.keys, 3 if k == "broken" else 0, 0.1, "log")

    def on_result(job: Job, res: JobResult) -> bool:
        seen.append((job.keys[0], res.rc, job.attempt))
        if res.lost and job.attempt < 2:
            job.attempt += 1
            return True
        return False

    jobs = [Job(["lost-once"]), Job(["broken"]), Job(["fine"])]
    run_local(jobs, local_slots(2, 0, [0, 1]), launch, on_result)
    assert attempts == {"lost-once": 2, "broken": 1, "fine": 1}  # an error exit is not retried
    assert ("lost-once", -9, 0) in seen and ("lost-once", 0, 1) in seen


def test_run_job_sees_a_process_killed_by_a_signal(tmp_path):
    kill = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
            "--params", "p", "k1"]  # fmt: skip
    res = run_job(str(tmp_path), kill, {}, str(tmp_path / "logs" / "k1.log"))
    assert res.lost and res.rc == -9 and res.keys == ["k1"]
    ok = [sys.executable, "-c", "import os; print(os.environ['OMP_NUM_THREADS'])", "--params", "p", "k2"]  # fmt: skip
    res = run_job(str(tmp_path), ok, thread_env(3), str(tmp_path / "logs" / "k2.log"))
    assert res.rc == 0 and not res.lost
    assert (tmp_path / "logs" / "k2.log").read_text().splitlines()[-1] == "3"


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie left for a reaper that never comes does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _still_alive(pids: list[int], seconds: float = 5.0) -> list[int]:
    """The pids still running after up to `seconds`."""
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _wait_for(path: Path, seconds: float = 30.0) -> str:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text()


# a worker that writes its pid and that of a child of its own, then sleeps
SLEEPER = """
import os, subprocess, sys, time
c = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open("pids.tmp", "w").write(f"{os.getpid()} {c.pid}")
os.replace("pids.tmp", "pids")
if sys.argv[1] == "sleep":
    time.sleep(60)
"""
# a grid process of one slot running SLEEPER
GRID = """
import sys
sys.path.insert(0, sys.argv[1])
from pipeline.grid.jobs import run_job
run_job(sys.argv[2], [sys.executable, "-c", sys.argv[3], "sleep", "--params", "p", "k"], {}, "w.log")
"""
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG)")


@linux
def test_a_worker_dies_with_its_killed_grid(tmp_path):
    grid = subprocess.Popen([sys.executable, "-c", GRID, str(ROOT), str(tmp_path), SLEEPER], cwd=tmp_path)  # fmt: skip
    worker, child = map(int, _wait_for(tmp_path / "pids").split())
    assert os.getpgid(worker) == worker == os.getpgid(child)  # its own process group
    grid.send_signal(signal.SIGKILL)
    grid.wait()
    try:
        assert not _still_alive([worker])  # the parent-death signal
    finally:  # (the worker's own child is left to the worker: a trainer's DataLoader workers
        if _alive(child):  # watch their parent themselves)
            os.killpg(worker, signal.SIGKILL)


@linux
def test_an_interrupted_grid_kills_its_workers_and_what_they_started(tmp_path):
    def launch(job: Job, slot: Slot) -> JobResult:
        code = SLEEPER if job.keys == ["slow"] else "import os, time\nwhile not os.path.exists('pids'): time.sleep(0.02)"  # fmt: skip
        return run_job(str(tmp_path), [sys.executable, "-c", code, "sleep", "--params", "p", *job.keys], {}, str(tmp_path / "w.log"))  # fmt: skip

    def on_result(job: Job, res: JobResult) -> bool:
        raise KeyboardInterrupt  # Ctrl-C while the slow job runs

    with pytest.raises(KeyboardInterrupt):
        run_local([Job(["slow"]), Job(["fast"])], local_slots(2, 0, [0, 1]), launch, on_result)
    assert not _still_alive([int(p) for p in (tmp_path / "pids").read_text().split()], 3.0)
    # a worker that exits leaves nothing running in its group either
    (tmp_path / "pids").unlink()
    res = run_job(str(tmp_path), [sys.executable, "-c", SLEEPER, "exit", "--params", "p", "k"], {}, str(tmp_path / "w.log"))  # fmt: skip
    assert res.rc == 0
    assert not _still_alive([int(p) for p in (tmp_path / "pids").read_text().split()], 3.0)


def test_a_slot_waits_for_a_run_another_process_trains(tmp_path):
    run = tmp_path / "runs" / "k"
    run.mkdir(parents=True)
    (run / "old").write_text("a stale finished run")
    other = FileLock(run_lock_path(run))  # another open file: excludes like another process
    assert other.acquire()
    said: list[str] = []
    t = threading.Thread(target=claim_run, args=(run, True, said.append, 0.02))
    t.start()
    time.sleep(0.3)
    assert t.is_alive() and run.exists() and f"{run} is being trained by pid {os.getpid()}" in said[0]  # fmt: skip
    other.release()
    t.join(5)
    assert not t.is_alive() and not run.exists()  # then removed (fresh), holding the lock
    assert not run_lock_path(run).exists()  # and released: the worker takes it


# A job whose process kills the Dask worker that runs it on its first attempt.
KILL_WORKER_ONCE = """
import os, signal, sys
from pathlib import Path
mark = Path(sys.argv[1])
if not mark.exists():
    mark.write_text("1")
    os.kill(os.getppid(), signal.SIGKILL)
    raise SystemExit(9)
mark.write_text("2")
"""


@pytest.mark.slow
def test_dask_job_survives_the_loss_of_its_worker(tmp_path):
    from distributed import Client, LocalCluster

    from pipeline.grid.dask_runner import run_dask

    mark = tmp_path / "attempts"
    script = tmp_path / "job.py"
    script.write_text(KILL_WORKER_ONCE)
    results: list[JobResult] = []

    def task(job: Job):
        argv = [sys.executable, str(script), str(mark), "--params", "p", *job.keys]
        return str(tmp_path), argv, {}, str(tmp_path / "job.log")

    def on_result(job: Job, res: JobResult) -> bool:
        results.append(res)
        if res.lost and job.attempt < 2:
            job.attempt += 1
            return True
        return False

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as c, Client(c) as client:  # fmt: skip
        run_dask([Job(["k"])], client, task, on_result)
    assert mark.read_text() == "2"  # ran again after its worker died
    assert results[-1].rc == 0


def _grid_repo(tmp_path: Path) -> tuple[Path, dict]:
    cfg = _small_experiment()
    repo = _repo(tmp_path, _params_text(cfg))
    dvc(repo, "repro", "extract")  # synth + extract (fakes): the stores the runs need
    return repo, cfg


def test_grid_trains_what_is_pending_and_dvc_agrees(tmp_path, monkeypatch):
    repo, cfg = _grid_repo(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin")
    dry = run_grid(GridOptions(jobs=2, dry_run=True), root=repo, echo=lambda s: None)
    runs = sorted(make_plan(cfg).runs)
    assert sorted(dry.pending) == runs and not dry.done and not (repo / "runs").exists()
    rep = run_grid(GridOptions(jobs=2), root=repo, echo=lambda s: None)
    assert sorted(rep.done) == runs and not rep.failed
    status = json.loads(subprocess.run([str(Path(sys.executable).with_name("dvc")), "status", "--json"],
                                       cwd=repo, capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert [s for s in status if s.startswith("train@")] == []  # every train stage up to date
    out = dvc(repo, "repro")  # only what is left: the layer analysis and the report
    assert [ln.split("'")[1] for ln in out.splitlines() if ln.startswith("Running stage")] == [
        "analyze",
        "report",
    ]
    # nothing pending: the grid trains nothing; a changed interface setting: only its runs
    assert run_grid(GridOptions(jobs=2), root=repo, echo=lambda s: None).pending == []
    cfg["interfaces"]["gumd"]["linear_steps"] = 61
    (repo / "params.yaml").write_text(_params_text(cfg))
    rep = run_grid(GridOptions(jobs=2), root=repo, echo=lambda s: None)
    assert sorted(rep.done) == sorted(k for k in runs if "-gumd-" in k)
    run_cfg = json.loads((repo / "runs" / rep.done[0] / "config.yaml").read_text())
    assert run_cfg["interface_args"]["linear_steps"] == 61


def test_recording_runs_writes_the_lock_dvc_commit_writes(tmp_path, monkeypatch):
    """The grid records finished runs at most every `record_every` seconds and at the end, each
    time in one pass (DVC's Repo: one read and one write of dvc.lock); the lock it leaves has the
    entries `dvc commit -f train@KEY ...` writes."""
    import pipeline.grid.runner as grid

    repo, cfg = _grid_repo(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin")
    before = (repo / "dvc.lock").read_text()
    calls: list[list[str]] = []

    def counted(root: Path, keys: list[str]) -> None:
        calls.append(keys)
        dvc_commit(root, keys)

    monkeypatch.setattr(grid, "dvc_commit", counted)
    cwd = Path.cwd()
    rep = run_grid(GridOptions(jobs=2, record_every=1e9), root=repo, echo=lambda s: None)
    assert Path.cwd() == cwd != repo  # DVC ran in the repo; the caller's directory is restored
    keys = sorted(rep.done)
    assert len(keys) >= 3 and not rep.failed
    assert [sorted(c) for c in calls] == [keys]  # one recording, at the end
    by_grid = yaml.safe_load((repo / "dvc.lock").read_text())
    (repo / "dvc.lock").write_text(before)
    dvc(repo, "commit", "-f", *(f"train@{k}" for k in keys))
    assert yaml.safe_load((repo / "dvc.lock").read_text()) == by_grid  # the same entries
    with pytest.raises(PlanError, match="no stage"):
        dvc_commit(repo, ["not-a-run"])


def test_grid_blocks_runs_whose_stores_are_missing(tmp_path, monkeypatch):
    cfg = _small_experiment()
    repo = _repo(tmp_path, _params_text(cfg))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin")
    rep = run_grid(GridOptions(jobs=2), root=repo, echo=lambda s: None)
    assert rep.pending == [] and sorted(rep.blocked) == sorted(make_plan(cfg).runs)
    assert "dvc repro extract" in next(iter(rep.blocked.values()))


@pytest.mark.slow
def test_grid_on_the_tiny_config_with_the_real_trainer(tmp_path):
    """configs/tiny.yaml (two runs of 20 steps on real Whisper tiny.en stores): `pipeline grid
    --jobs 2`, then `dvc status` lists no train stage."""
    repo = tmp_path / "repo"
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    for f in files.stdout.split():
        if (ROOT / f).is_file():
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            (repo / f).write_bytes((ROOT / f).read_bytes())
    (repo / "configs" / "grid_test.yaml").write_text(
        "base: tiny.yaml\ntasks: {er: {task: er}}\n"
        "table: [{section: Single model, sets: [[whisper_tiny_en]], interfaces: [ws, hconv]}]\n"
    )
    cfg = read_experiment_mapping(repo / "configs" / "grid_test.yaml")
    cfg["tasks"] = {"er": {"task": "er"}}
    (repo / "params.yaml").write_text(_params_text(cfg))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    dvc_exe = str(Path(sys.executable).with_name("dvc"))
    subprocess.run(
        [dvc_exe, "repro", "extract"], cwd=repo, env=env, check=True, capture_output=True
    )
    cli = [sys.executable, "-c", "from pipeline.cli import app; app()", "grid", "--jobs", "2"]
    p = subprocess.run(cli, cwd=repo, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "trained 2 run(s)" in p.stdout
    status = subprocess.run([dvc_exe, "status", "--json"], cwd=repo, env=env, capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert [s for s in json.loads(status.stdout) if s.startswith("train@")] == []
    metrics = json.loads((repo / "runs" / "whisper_tiny_en-hconv-er" / "metrics.json").read_text())
    assert {m["split"] for m in metrics} >= {"dev", "test"}


def test_pipeline_grid_command(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app

    repo = _repo(tmp_path, _params_text(_small_experiment()))
    monkeypatch.chdir(repo)
    r = CliRunner().invoke(app, ["grid", "--jobs", "2", "--cluster", "local:2"])
    assert r.exit_code != 0 and "not both" in r.output
    r = CliRunner().invoke(app, ["grid", "--jobs", "2", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "6 runs: 0 up to date, 6 blocked, 0 to train on 2 local slot(s)" in r.output
    assert "dvc repro extract" in r.output


def test_one_grid_per_checkout(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app

    repo = _repo(tmp_path, _params_text(_small_experiment()))
    other = FileLock(grid_lock_path(repo, repo / "runs", use_dvc=True))  # another grid's
    assert other.acquire() and other.path == repo / ".dvc" / "tmp" / "grid.lock"
    try:
        with pytest.raises(GridLocked, match=f"another `pipeline grid` \\(pid {os.getpid()} on "):
            run_grid(GridOptions(jobs=2), root=repo, echo=lambda s: None)
        monkeypatch.chdir(repo)
        r = CliRunner().invoke(app, ["grid", "--jobs", "2"])
        assert r.exit_code == 1 and r.output.count("error:") == 1 and "grid.lock" in r.output
        assert run_grid(GridOptions(jobs=2, dry_run=True), root=repo, echo=lambda s: None).blocked  # fmt: skip
    finally:
        other.release()


# A trainer that takes a while: STEPS steps, a log line and a "checkpoint" (last_step) each,
# resuming as the real one does (the log cut back to the checkpoint); it records its pid, and
# kills itself after a step when kill-once/<run> exists (removing it).
STEPPING_TRAIN = """
import json, os, signal, time
from dataclasses import asdict
from pathlib import Path

STEPS = 4

def train(cfg, *, force=False, progress=True):
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "pids", "a") as f:
        f.write(f"{os.getpid()}\\n")
    (run / "config.yaml").write_text(json.dumps(asdict(cfg)))
    ckpt, log = run / "last_step", run / "log.jsonl"
    done = int(ckpt.read_text()) if ckpt.exists() else 0
    lines = log.read_text().splitlines() if log.exists() else []
    log.write_text("".join(ln + "\\n" for ln in lines if json.loads(ln)["step"] <= done))
    kill = Path("kill-once") / run.name
    for step in range(done + 1, STEPS + 1):
        time.sleep(0.3)
        with open(log, "a") as f:
            f.write(json.dumps({"step": step, "pid": os.getpid()}) + "\\n")
        ckpt.write_text(str(step))
        if kill.exists():
            kill.unlink()
            os.kill(os.getpid(), signal.SIGKILL)
    recs = [{"task": cfg.task, "metric": "accuracy", "value": 0.5, "direction": "higher",
             "split": s} for s in ("dev", "test")]
    (run / "metrics.json").write_text(json.dumps(recs))
    return run
"""
GRID_CLI = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from pipeline.cli import main; sys.argv[0] = 'pipeline'; main()", "grid"]  # fmt: skip


def _steps(run: Path) -> list[int]:
    text = (run / "log.jsonl").read_text() if (run / "log.jsonl").exists() else ""
    return [json.loads(ln)["step"] for ln in text.splitlines()]


@linux
def test_two_grids_a_killed_grid_and_a_killed_worker_train_each_run_once(tmp_path, monkeypatch):
    """Two `pipeline grid` started at once: one is refused. The other is SIGKILLed mid-way: its
    workers are gone within seconds. The rerun, with one worker killed mid-run (resubmitted),
    trains every run to the end, each step once, and DVC finds every train stage up to date."""
    cfg = _small_experiment()
    cfg["tasks"] = {"er": {"task": "er"}}  # three runs
    repo = _repo(tmp_path, _params_text(cfg))
    (repo / "pipeline" / "train" / "loop.py").write_text(STEPPING_TRAIN)
    dvc(repo, "repro", "extract")
    path = f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin"
    monkeypatch.setenv("PATH", path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    keys = sorted(make_plan(cfg).runs)
    runs = [repo / "runs" / k for k in keys]
    grids = [subprocess.Popen([*GRID_CLI, "--jobs", "3"], cwd=repo, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while all(g.poll() is None for g in grids):
            assert time.monotonic() < deadline, "neither grid was refused"
            time.sleep(0.05)
        refused = next(g for g in grids if g.poll() is not None)
        winner = next(g for g in grids if g is not refused)
        out, err = refused.communicate()
        assert refused.returncode == 1, out + err
        assert err.count("error:") == 1 and "another `pipeline grid` (pid " in err and "grid.lock" in err  # fmt: skip
        while not all(_steps(r) for r in runs):  # every run has trained a step
            assert winner.poll() is None, winner.communicate()
            assert time.monotonic() < deadline, "the runs never started"
            time.sleep(0.05)
        winner.send_signal(signal.SIGKILL)
        winner.wait()
    finally:
        for g in grids:
            g.kill() if g.poll() is None else None
    workers = [int(p) for r in runs for p in (r / "pids").read_text().split()]
    assert not _still_alive(workers), "workers outlived their SIGKILLed grid"
    assert any(len(_steps(r)) < 4 for r in runs)  # killed mid-way
    (repo / "kill-once").mkdir()
    (repo / "kill-once" / keys[0]).write_text("")
    said: list[str] = []
    rep = run_grid(GridOptions(jobs=3), root=repo, echo=said.append)
    assert sorted(rep.done) == keys and not rep.failed and rep.resubmitted == 1, said
    for r in runs:
        assert _steps(r) == [1, 2, 3, 4], (r.name, (r / "log.jsonl").read_text())
    status = json.loads(subprocess.run([str(Path(sys.executable).with_name("dvc")), "status", "--json"],
                                       cwd=repo, capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert [s for s in status if s.startswith("train@")] == []
    assert not list((repo / "runs").glob("*.lock"))


def test_dry_run_refuses_what_a_worker_would(tmp_path):
    """The grid resolves every pending run's config before it starts (and so does --dry-run):
    a bad interface argument in the experiment is one error naming its key path, not a FAILED
    job whose reason is in a worker's log."""
    from pipeline.grid.runner import make_jobs
    from pipeline.plan import parse_experiment
    from pipeline.train.config import ConfigError

    raw = read_experiment_mapping(ROOT / "configs" / "tiny.yaml")
    raw["interfaces"]["hconv"]["bogus"] = 1
    exp = parse_experiment(raw, "params.yaml")
    plan = make_plan(exp)
    with pytest.raises(ConfigError, match=r"params.yaml: interfaces.hconv.bogus: .*takes no such"):
        make_jobs(exp, plan, sorted(plan.runs))
