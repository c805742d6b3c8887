"""dvc.yaml in a temp copy of the repo (git init + dvc init): it resolves for params.yaml and the
paper config, and on a small experiment with a fake `pipeline` it runs end to end, a second
`dvc repro` does nothing, a changed interface parameter reruns only that interface's runs, and
`dvc exp run -S` passes the new value to `pipeline train`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.plan import load_config, make_plan, render

ROOT = Path(__file__).resolve().parents[1]
DVC = Path(sys.executable).with_name("dvc")

# A stand-in for the real package: the stage commands import `pipeline.cli.app` and
# `pipeline.store.open_store` from the repo copy (the working directory comes first on sys.path).
FAKE_CLI = """
import json, os, sys
from pathlib import Path

def _opts(argv):
    out, sets, i = {}, [], 0
    while i < len(argv):
        if argv[i] == "--set":
            sets.append(argv[i + 1]); i += 2
        elif argv[i].startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[argv[i][2:]] = argv[i + 1]; i += 2
        else:
            out[argv[i].lstrip("-")] = True; i += 1
    return out, sets

def app(argv=None, prog_name=None, standalone_mode=True):
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd, rest = (argv[0], argv[1:]) if argv[0] != "data" else ("data " + argv[1], argv[2:])
    o, sets = _opts(rest)
    if cmd == "data synth":
        for t in ("asr_en", "ml_asr", "sv", "er"):
            Path(o["out"], t).mkdir(parents=True, exist_ok=True)
            Path(o["out"], t, "train.jsonl").write_text(o["preset"])
    elif cmd == "extract":
        Path(o["out"]).mkdir(parents=True, exist_ok=True)
        Path(o["out"], "request.json").write_text(json.dumps(o))
    elif cmd == "train":
        run = Path(o["out"]); run.mkdir(parents=True)
        args = dict(s.split("=", 1) for s in sets)
        task_args = {k[10:]: v for k, v in args.items() if k.startswith("task_args.")}
        cfg = {"models": o["models"].split(","), "interface": o["interface"], "task": o["task"],
               "task_args": task_args, "train": {"steps": 10}}
        (run / "config.yaml").write_text(json.dumps(cfg))
        (run / "sets.json").write_text(json.dumps(sets))
        metric, direction = {"er": ("accuracy", "higher")}.get(o["task"], ("eer", "lower"))
        v = 0.1 + 0.01 * len(o["interface"])
        recs = [{"task": o["task"], "metric": metric, "value": v, "direction": direction, "split": s}
                for s in ("dev", "test")]
        (run / "metrics.json").write_text(json.dumps(recs))
        (run / "log.jsonl").write_text(json.dumps({"step": 10, "train_loss": 1.0, "dev_" + metric: v}) + "\\n")
        (run / "interface_summary.json").write_text(json.dumps({"weights": [[0.5, 0.5]], "layer_norms": [1.0, 2.0]}))
    elif cmd == "report":
        from stages.report import write_report
        write_report(o["runs"], o["out"], o.get("config"))
    else:
        raise SystemExit(f"fake pipeline: unknown command {argv}")
    return 0
"""
FAKE_STORE = """
import json
from pathlib import Path

class _Reader:
    def __init__(self, path):
        req = json.loads((Path(path) / "request.json").read_text())
        self.complete, self.missing_parts, self.failed = True, [], []
        self.ids, self.total_frames = ["u1", "u2"], 20
        self.fingerprint = {"model": req["model"], "whisper_mode": req.get("whisper-mode"), "num_layers": 2, "dim": 4}

def open_store(path, mode="auto"):
    return _Reader(path)
"""


def _repo(tmp: Path, params_text: str) -> Path:
    """A copy of the DVC-relevant files with a fake `pipeline` package, git and DVC initialised."""
    repo = tmp / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(
        ROOT / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache", "config.local")
    )
    (repo / "stages").mkdir()
    for name in (
        "__init__.py",
        "plan.py",
        "dvc_stage.py",
        "report.py",
        "report_tables.py",
        "report_figures.py",
        "train.py",  # dependencies of the train stages (not imported here)
        "config.py",
    ):
        shutil.copy(ROOT / "stages" / name, repo / "stages" / name)
    for d in ("upstreams", "interfaces", "tasks"):
        (repo / "pipeline" / d).mkdir(parents=True)
        (repo / "pipeline" / d / "__init__.py").write_text("")
    (repo / "pipeline" / "__init__.py").write_text("")
    (repo / "pipeline" / "data" / "words").mkdir(parents=True)  # synth's dependencies
    for name in ("synth.py", "synth_plan.py", "voices.py", "augment.py"):
        (repo / "pipeline" / "data" / name).write_text("")
    (repo / "pipeline" / "data" / "words" / "en.txt").write_text("word\n")
    (repo / "pipeline" / "cli" / "__init__.py").parent.mkdir()
    (repo / "pipeline" / "cli" / "__init__.py").write_text(FAKE_CLI)
    (repo / "pipeline" / "store.py").write_text(FAKE_STORE)
    (repo / "params.yaml").write_text(params_text)
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "pipeline"
    exe.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, '.')\nfrom pipeline.cli import app\nsys.exit(app())\n"
    )
    exe.chmod(0o755)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "init")
    return repo


def _env(repo: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{repo.parent / 'bin'}:{Path(sys.executable).parent}:{env['PATH']}"
    env.pop("PYTHONPATH", None)
    return env


def _git(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", *args], cwd=repo, check=True, env=env)


def dvc(repo: Path, *args: str, check: bool = True) -> str:
    env = {
        **_env(repo),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    p = subprocess.run([str(DVC), *args], cwd=repo, env=env, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(
            f"dvc {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
        )
    return p.stdout + p.stderr


def _placeholders(repo: Path) -> None:
    """Empty data dirs and stamps, so `dvc repro --dry` can walk the whole graph (DVC's dry run
    otherwise stops at the first dependency that does not exist yet)."""
    plan = make_plan(load_config(repo / "params.yaml"))
    for s in plan.stores.values():
        (repo / s.data).mkdir(parents=True, exist_ok=True)
        (repo / s.stamp).parent.mkdir(parents=True, exist_ok=True)
        (repo / s.stamp).write_text("{}")
    (repo / "runs").mkdir(exist_ok=True)


def test_default_params_resolve_and_dry_run(tmp_path):
    repo = _repo(tmp_path, (ROOT / "params.yaml").read_text())
    stages = dvc(repo, "stage", "list", "--name-only").split()
    assert len(stages) == 1 + 8 + 32 + 1
    assert "synth@demo" in stages and "report" in stages
    assert sum(s.startswith("train@") for s in stages) == 32
    _placeholders(repo)
    out = dvc(repo, "repro", "--dry")
    cmds = [ln for ln in out.splitlines() if ln.startswith("> ")]
    assert len(cmds) == 42
    assert "> pipeline data synth --out data/demo --preset demo --seed 0" in cmds
    assert "> python -m stages.dvc_stage train whisper_tiny_en+whisper_base-chconv-er" in cmds
    assert cmds[-1] == "> pipeline report --runs runs --out results --config params.yaml"


def test_paper_config_resolves(tmp_path):
    repo = _repo(tmp_path, render(ROOT / "configs" / "paper.yaml"))
    stages = dvc(repo, "stage", "list", "--name-only").split()
    assert sum(s.startswith("train@") for s in stages) == 750
    assert sum(s.startswith("extract@") for s in stages) == 100
    assert sum(s.startswith("import@") for s in stages) == 4 and "report" in stages


def _params_text(cfg: dict, generated: dict | None = None) -> str:
    """params.yaml for `cfg`: its YAML, MARKER, the generated sections (fresh unless given)."""
    from stages.plan import MARKER

    gen = make_plan(cfg).generated() if generated is None else generated
    return (
        yaml.safe_dump(cfg, sort_keys=False)
        + "\n"
        + MARKER
        + "\n"
        + yaml.safe_dump(gen, sort_keys=False)
    )


def _small_experiment() -> dict:
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["data"].update(suite="t", synth="tiny")
    cfg["tasks"] = {"sv": {"task": "sv"}, "er": {"task": "er"}}
    cfg["table"] = [
        {"section": "Single model", "sets": [["whisper_base"]], "interfaces": ["ws", "hconv"]},
        {
            "section": "2-model fusion",
            "sets": [["whisper_tiny_en", "whisper_base"]],
            "interfaces": ["gumd"],
        },
    ]
    return cfg


def _ran(out: str) -> list[str]:
    return sorted(ln.split("'")[1] for ln in out.splitlines() if ln.startswith("Running stage"))


def test_repro_end_to_end_with_a_fake_pipeline(tmp_path):
    cfg = _small_experiment()
    repo = _repo(tmp_path, _params_text(cfg))
    out = dvc(repo, "repro")
    assert len(_ran(out)) == 1 + 4 + 6 + 1, out
    table = (repo / "results" / "table.md").read_text()
    assert "| Whisper base | WS |" in table and "| Whisper tiny.en & Whisper base | GumD |" in table
    stamp = json.loads((repo / "cache/t/sv/whisper_base.stamp.json").read_text())
    assert stamp["fingerprint"]["whisper_mode"] == "trim" and stamp["utterances"] == 2
    metrics = json.loads(dvc(repo, "metrics", "show", "--json"))
    assert any("whisper_base-hconv" in json.dumps(v) for v in metrics.values())
    dvc(repo, "plots", "show", "--json")
    # nothing changed: nothing runs
    assert "Data and pipelines are up to date." in dvc(repo, "repro")
    # a GumD parameter reruns the GumD runs (and the report) only
    p = repo / "params.yaml"
    cfg["interfaces"]["gumd"]["linear_steps"] = 60
    p.write_text(_params_text(cfg))
    assert _ran(dvc(repo, "repro")) == ["report", "train@whisper_tiny_en+whisper_base-gumd-er",
                                        "train@whisper_tiny_en+whisper_base-gumd-sv"]  # fmt: skip
    # an upstream's extraction setting reruns its stores and every run that reads them
    cfg["upstreams"]["whisper_tiny_en"]["whisper_mode"] = "pad30"
    p.write_text(_params_text(cfg))
    # (the fake runs come out identical, so the report, which depends on their content, stays)
    ran = _ran(dvc(repo, "repro"))
    assert ran == ["extract@er-whisper_tiny_en", "extract@sv-whisper_tiny_en",
                   "train@whisper_tiny_en+whisper_base-gumd-er", "train@whisper_tiny_en+whisper_base-gumd-sv"]  # fmt: skip
    # dvc exp run -S: the new value reaches `pipeline train`
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "ran")
    out = dvc(repo, "exp", "run", "-S", "+interfaces.hconv.dim=128")
    assert _ran(out) == ["report", "train@whisper_base-hconv-er", "train@whisper_base-hconv-sv"]
    sets = json.loads((repo / "runs/whisper_base-hconv-sv/sets.json").read_text())
    assert "interface_args.dim=128" in sets
    # a sweep: one queued experiment per value (run later by `dvc queue start`, in temp copies)
    out = dvc(repo, "exp", "run", "--queue", "-S", "interfaces.gumd.linear_steps=25,100")
    assert out.count("Queued experiment") == 2, out
    dvc(repo, "queue", "remove", "--all")
    # a structural edit without re-planning is refused by the stage command
    stale = make_plan(cfg).generated()
    cfg["table"][0]["interfaces"] = ["ws"]
    p.write_text(_params_text(cfg, stale))
    out = dvc(repo, "repro", "train@whisper_base-ws-sv", "--force", "--single-item", check=False)
    assert "no longer match" in out


@pytest.mark.slow
def test_paper_dry_run_of_one_run(tmp_path):
    repo = _repo(tmp_path, render(ROOT / "configs" / "paper.yaml"))
    _placeholders(repo)
    for r in make_plan(load_config(repo / "params.yaml")).runs.values():
        (repo / r.data).mkdir(parents=True, exist_ok=True)
    out = dvc(repo, "repro", "--dry", "train@whisper_small+wavlm_base_plus-chconv-er-fold3")
    cmds = [ln for ln in out.splitlines() if ln.startswith("> ")]
    assert (
        "> pipeline data import iemocap /corpora/IEMOCAP_full_release --out data/paper --seed 0 "
        in [c + " " if not c.endswith(" ") else c for c in cmds]
        or any(c.startswith("> pipeline data import iemocap") for c in cmds)
    )
    assert (
        cmds[-1]
        == "> python -m stages.dvc_stage train whisper_small+wavlm_base_plus-chconv-er-fold3"
    )
