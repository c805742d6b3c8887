"""dvc.yaml in a temp copy of the repo (git init + dvc init): it resolves for params.yaml and the
paper config, and on a small experiment with a fake `pipeline` it runs end to end, a second
`dvc repro` does nothing, a changed interface parameter reruns only that interface's runs, and
`dvc exp run -S` passes the new value to `pipeline train`."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.plan import (
    load_experiment,
    make_plan,
    parse_experiment,
    read_experiment_mapping,
    render,
)

ROOT = Path(__file__).resolve().parents[1]
DVC = Path(sys.executable).with_name("dvc")

# Stand-ins for the heavy code. The stages (the real stages/ folder) call the real plan and the
# real glue (pipeline/extract/from_plan.py, pipeline/train/from_plan.py, pipeline/train/config.py,
# pipeline/store/usage.py, pipeline/grid/); the repo copy holds fakes of what those call:
# `pipeline.extract.engine.run`, `pipeline.train.loop.train`, `pipeline.store`,
# `pipeline.data.synth.synthesize`, `pipeline.report.write_report` (which runs the real report
# from the checkout) and the analysis (the working directory comes first on sys.path). The real
# interface and task modules are copied (their files are what the runs depend on) but never
# imported: the registries' __init__ files are stand-ins that import no torch.
FAKE_SYNTH = """
from pathlib import Path

def synthesize(out, preset="demo", seed=0):
    for t in ("asr_en", "ml_asr", "sv", "er"):
        Path(out, t).mkdir(parents=True, exist_ok=True)
        Path(out, t, "train.jsonl").write_text(preset)
    return Path(out)
"""
FAKE_REPORT = """
import os
import subprocess
import sys

# the real report, run from the checkout; an interface module only the repo copy has (a test's
# new one) is registered from its file first, as a user's own code would register it
CODE = '''
import importlib.util, sys
from pathlib import Path
import pipeline
from pipeline.report import write_report
for f in sorted(Path("pipeline/interfaces").glob("*.py")):
    if not (Path(pipeline.__file__).parent / "interfaces" / f.name).exists():
        spec = importlib.util.spec_from_file_location(f"pipeline.interfaces.{f.stem}", f)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
write_report(*sys.argv[1:4], importance=False)
'''

def write_report(runs, out, config=None, importance=True):
    code = CODE
    subprocess.run([sys.executable, "-P", "-c", code, str(runs), str(out), str(config or "")],
                   check=True, env={**os.environ, "PYTHONPATH": "@ROOT@"})
    return {}
"""
FAKE_ANALYSIS = """
import json
from pathlib import Path

OUT = "results/analysis"

def analyze(params_path="params.yaml", out=OUT):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "analysis.json").write_text(json.dumps({"probes": [], "similarity": None}))
    return out / "analysis.json"
"""
FAKE_EXTRACT = """
import json, shutil
from dataclasses import dataclass, field
from pathlib import Path
from pipeline.store import FingerprintMismatch

@dataclass
class ExtractConfig:
    model: str
    data: str
    out: str
    device: str = "auto"
    whisper_mode: str = "pad30"
    batch_seconds: float | None = None
    force: bool = False
    progress: bool = True
    layers: object = None
    encoding: str = "fp16"

@dataclass
class ExtractResult:
    store: str = ""
    shard: tuple = (0, 1)
    written: int = 0
    already: int = 0
    failed: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

def run(cfg, upstream=None):
    req = {"model": cfg.model, "whisper-mode": cfg.whisper_mode, "data": cfg.data}
    out = Path(cfg.out)
    if (out / "request.json").exists():
        have = json.loads((out / "request.json").read_text())
        if have == req:
            return ExtractResult(already=2)
        if not cfg.force:
            raise FingerprintMismatch(f"{out}: made for {have}, asked for {req}")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "request.json").write_text(json.dumps(req))
    builds = out.parent / "builds.log"
    builds.write_text((builds.read_text() if builds.exists() else "") + out.name + "\\n")
    return ExtractResult(written=2)

def cpu_shards(cfg):
    return 1

def run_local_shards(cfg, n):
    return run(cfg)
"""
FAKE_TRAIN = """
import ast
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

def train(cfg, *, force=False, progress=True):
    run = Path(cfg.out); run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(json.dumps(asdict(cfg)))
    metric, direction = {"er": ("accuracy", "higher")}.get(cfg.task, ("eer", "lower"))
    v = 0.1 + 0.01 * len(cfg.interface)
    recs = [{"task": cfg.task, "metric": metric, "value": v, "direction": direction, "split": s}
            for s in ("dev", "test")]
    (run / "metrics.json").write_text(json.dumps(recs))
    (run / "log.jsonl").write_text(json.dumps({"step": 10, "train_loss": 1.0, "dev_" + metric: v}) + "\\n")
    (run / "interface_summary.json").write_text(json.dumps({"weights": [[0.5, 0.5]], "first_conv_norms": [1.0, 2.0]}))
    return run
"""
FAKE_STORE = """
import ast
import hashlib
import json
import shutil
from pathlib import Path

class StoreError(RuntimeError):
    pass

class FingerprintMismatch(StoreError):
    pass

class _Reader:
    def __init__(self, path):
        req = json.loads((Path(path) / "request.json").read_text())
        self.complete, self.missing_parts, self.failed = True, [], []
        self.ids, self.total_frames = ["u1", "u2"], 20
        self.fingerprint = {"model": req["model"], "whisper_mode": req.get("whisper-mode"), "num_layers": 2, "dim": 4}

def open_store(path, mode="auto"):
    return _Reader(path)

def remove_store(path):
    shutil.rmtree(path)

def store_exists(path):
    return (Path(path) / "request.json").exists()

def manifest_hash(utts):
    return "h"

def make_fingerprint(*a, **k):  # never the reader's: the fake `run` decides adopt or rebuild
    return {"requested": True}
"""
# What pipeline/extract/from_plan.py imports from the library besides the store, as stand-ins.
FAKE_LIBS = {
    "pipeline/upstreams/registry.py": (
        "class _Spec:\n    num_layers = 2\n\n"
        "class _Up:\n    spec = _Spec()\n    def weights_hash(self):\n        return 'w'\n"
        "    def forward(self, *a):\n        raise NotImplementedError\n\n"
        "def load_upstream(name, device='cpu', whisper_mode='pad30'):\n    return _Up()\n"
    ),
    "pipeline/encoding.py": "def check_encoding(e):\n    return e\n",
    "pipeline/layers.py": "def parse_layers(spec, n):\n    return list(range(n))\n",
    "pipeline/data/manifest.py": "def read_manifests(path, check_files=True):\n    return []\n",
    # the registries (the real ones import torch); the module files beside them are real copies
    "pipeline/interfaces/__init__.py": "class _Interface:\n    def __init__(self, shapes, frame_rates=None, **kwargs):\n"
    "        pass\n\ndef interface_class(name, where=''):\n    return _Interface\n",
    "pipeline/tasks/__init__.py": "class _Task:\n    demo = {}\n    recipe = {}\n\n"
    "def task_class(name, where=''):\n    return _Task\n",
    "pipeline/device.py": "def resolve_device(name):\n    return 'cpu'\n",
    "pipeline/feed/__init__.py": "",
    "pipeline/feed/tiers.py": "TIERS = ('auto', 'gpu', 'pinned', 'mmap')\n",
    "pipeline/data/synth.py": FAKE_SYNTH,
    "pipeline/report/__init__.py": FAKE_REPORT.replace("@ROOT@", str(ROOT)),
    "pipeline/analysis/suite.py": FAKE_ANALYSIS,
    "pipeline/extract/engine.py": FAKE_EXTRACT,
    "pipeline/train/loop.py": FAKE_TRAIN,
    "pipeline/store/__init__.py": FAKE_STORE,
    # packing needs the real trainer; the fake runs train one at a time
    "pipeline/train/pack.py": "def pack_groups(cfgs):\n    return [[c] for c in cfgs]\n\n"
    "def train_packed(cfgs, progress=False, force=False):\n    raise NotImplementedError\n",
}
# the real code the fake repo runs: the stage files, the plan, the glue and the name table
REAL = ("stages", "pipeline/__init__.py", "pipeline/errors.py", "pipeline/names.py", "pipeline/paths.py", "pipeline/plan",
        "pipeline/extract/from_plan.py", "pipeline/train/__init__.py", "pipeline/train/config.py",
        "pipeline/train/from_plan.py", "pipeline/store/usage.py", "pipeline/grid",
        "pipeline/interfaces", "pipeline/tasks")  # fmt: skip


def _dep_paths() -> set[str]:
    """Every literal code path dvc.yaml's stages depend on (not the templated data/stamps)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    out = set()
    for st in spec["stages"].values():
        body = st.get("do", st)
        out |= {d for d in body.get("deps") or [] if "${" not in d}
    return out


def _repo(tmp: Path, params_text: str) -> Path:
    """A copy of the DVC-relevant files with fakes of the heavy modules, git and DVC initialised."""
    repo = tmp / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(
        ROOT / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache", "config.local")
    )
    for name in REAL:
        src, dst = ROOT / name, repo / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    for name, text in FAKE_LIBS.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    for dep in sorted(_dep_paths()):  # the rest of the code the stages depend on: placeholders
        path = repo / dep
        if path.exists():
            continue
        if dep.endswith(".py"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
        else:
            path.mkdir(parents=True, exist_ok=True)
            (path / "__init__.py").write_text("")
    (repo / "params.yaml").write_text(params_text)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "init")
    return repo


def _env(repo: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
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
    plan = make_plan(load_experiment(repo / "params.yaml"))
    for s in plan.stores.values():
        (repo / s.data).mkdir(parents=True, exist_ok=True)
        (repo / s.stamp).parent.mkdir(parents=True, exist_ok=True)
        (repo / s.stamp).write_text("{}")
    (repo / "runs").mkdir(exist_ok=True)
    (repo / "results" / "analysis").mkdir(parents=True, exist_ok=True)


def test_default_params_resolve_and_dry_run(tmp_path):
    repo = _repo(tmp_path, render(ROOT / "configs" / "default.yaml"))  # not the working copy's
    stages = dvc(repo, "stage", "list", "--name-only").split()
    assert len(stages) == 1 + 12 + 132 + 1 + 1
    assert "synth@demo" in stages and "report" in stages and "analyze" in stages
    assert sum(s.startswith("train@") for s in stages) == 132
    _placeholders(repo)
    out = dvc(repo, "repro", "--dry")
    cmds = [ln for ln in out.splitlines() if ln.startswith("> ")]
    assert len(cmds) == 1 + 12 + 132 + 1 + 1
    analyze = "> python -m stages.analyze --params params.yaml --out results/analysis"
    assert cmds.index(analyze) < cmds.index("> python -m stages.report")
    assert "> python -m stages.synth demo" in cmds
    assert "> python -m stages.train whisper_base+moonshine_base_en-hconv-er-s2" in cmds
    assert cmds[-1] == "> python -m stages.report"


def test_paper_config_resolves(tmp_path):
    repo = _repo(tmp_path, render(ROOT / "configs" / "paper.yaml"))
    stages = dvc(repo, "stage", "list", "--name-only").split()
    assert sum(s.startswith("train@") for s in stages) == 750
    assert sum(s.startswith("extract@") for s in stages) == 100
    assert sum(s.startswith("import@") for s in stages) == 4 and "report" in stages


def _params_text(cfg: dict, generated: dict | None = None) -> str:
    """params.yaml for `cfg`: its YAML, MARKER, the generated sections (fresh unless given)."""
    from pipeline.plan import MARKER

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
    cfg.pop("seeds")  # one seed, unsuffixed run keys
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
    assert len(_ran(out)) == 1 + 4 + 6 + 1 + 1, out
    order = [ln.split("'")[1] for ln in out.splitlines() if ln.startswith("Running stage")]
    last_extract = max(i for i, s in enumerate(order) if s.startswith("extract@"))
    assert last_extract < order.index("analyze") < order.index("report")
    assert (repo / "results" / "analysis" / "analysis.json").is_file()
    assert "## Layer analysis" in (repo / "results" / "report.md").read_text()
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
    assert ran == ["analyze", "extract@er-whisper_tiny_en", "extract@sv-whisper_tiny_en",
                   "train@whisper_tiny_en+whisper_base-gumd-er", "train@whisper_tiny_en+whisper_base-gumd-sv"]  # fmt: skip
    # dvc exp run -S: the new value reaches `pipeline train`
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "ran")
    out = dvc(repo, "exp", "run", "-S", "+interfaces.hconv.dim=128")
    assert _ran(out) == ["report", "train@whisper_base-hconv-er", "train@whisper_base-hconv-sv"]
    run_cfg = json.loads((repo / "runs/whisper_base-hconv-sv/config.yaml").read_text())
    assert run_cfg["interface_args"] == {"layer_norm": True, "dim": 128}
    # a sweep: one queued experiment per value (run later by `dvc queue start`, in temp copies)
    out = dvc(repo, "exp", "run", "--queue", "-S", "interfaces.gumd.linear_steps=25,100")
    assert out.count("Queued experiment") == 2, out
    dvc(repo, "queue", "remove", "--all")
    # another seed (the run keys stay: one seed) reruns every run, and reaches the trainer
    cfg["train"].pop("seed", None)
    cfg["seeds"] = [1]
    p.write_text(_params_text(cfg))
    ran = _ran(dvc(repo, "repro"))
    assert [r for r in ran if r.startswith("train@")] == sorted(
        f"train@{k}" for k in make_plan(cfg).runs
    )
    run_cfg = json.loads((repo / "runs/whisper_base-ws-er/config.yaml").read_text())
    assert run_cfg["train"]["seed"] == 1
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
    for r in make_plan(load_experiment(repo / "params.yaml")).runs.values():
        (repo / r.data).mkdir(parents=True, exist_ok=True)
    out = dvc(repo, "repro", "--dry", "train@whisper_small+wavlm_base_plus-chconv-er-fold3")
    cmds = [ln for ln in out.splitlines() if ln.startswith("> ")]
    # the run's chain, in order: its corpus imported, its two stores extracted, then the run
    imp = "> python -m stages.ingest iemocap"
    assert [c.rstrip() for c in cmds[:1]] == [imp], cmds
    assert sorted(cmds[1:-1]) == [
        f"> python -m stages.extract iemocap_fold1-{m}"
        for m in ("wavlm_base_plus", "whisper_small")
    ], cmds
    assert cmds[-1] == "> python -m stages.train whisper_small+wavlm_base_plus-chconv-er-fold3"


def _module_file(name: str) -> Path | None:
    p = ROOT / Path(*name.split("."))
    if (p / "__init__.py").is_file():
        return p / "__init__.py"
    return p.with_suffix(".py") if p.with_suffix(".py").is_file() else None


def _imports(name: str, module_level: bool) -> set[str]:
    """The project modules `name` imports: every import statement (module_level: only those that
    run on import, outside function bodies), and `importlib.import_module("literal")` calls."""
    f = _module_file(name)
    tree = ast.parse(f.read_text(encoding="utf-8"))
    is_pkg, found, todo = f.name == "__init__.py", [], [tree]
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if not (module_level and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))):
                todo.append(child)
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = name.split(".") if is_pkg else name.split(".")[:-1]
                base = ".".join(up[: len(up) - (node.level - 1)] + ([base] if base else []))
            found += [base] + [f"{base}.{a.name}" for a in node.names]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append(node.args[0].value)
    out = set()
    for t in found:
        while t and _module_file(t) is None:
            t = t.rpartition(".")[0]
        if t:
            out.add(t)
    return out


def import_closure(entries: list[str]) -> set[str]:
    """Files of every project module a stage's command can run: the entry modules and all they
    import (at any depth, inside functions too); for the parent packages that Python executes
    on the way (and what they import), only their module-level imports."""
    deep, shallow, todo = set(), set(), [(e, True) for e in entries]
    while todo:
        m, full = todo.pop()
        if m in deep or (not full and m in shallow):
            continue
        (deep if full else shallow).add(m)
        parts = m.split(".")
        todo += [(x, full) for x in _imports(m, module_level=not full)]
        todo += [(".".join(parts[:i]), False) for i in range(1, len(parts))]
    return {_module_file(m).relative_to(ROOT).as_posix() for m in deep | shallow}


def _entry(cmd: str) -> list[str]:
    """The module a stage command starts in: `python -m X` -> X, `pipeline data ...` -> pipeline.cli.data."""
    words = cmd.split()
    if words[:2] == ["python", "-m"]:
        return [words[2]]
    assert words[0] == "pipeline", cmd
    return [f"pipeline.cli.{words[1]}"]


def test_every_stage_depends_on_the_code_it_runs():
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    outputs = {  # what one stage writes and another reads (results/analysis): not in a checkout
        (o if isinstance(o, str) else next(iter(o))).rstrip("/")
        for st in spec["stages"].values()
        for o in st.get("do", st).get("outs") or []
    }
    for name, st in spec["stages"].items():
        body = st.get("do", st)
        deps = [d.rstrip("/") for d in body.get("deps") or [] if "${" not in d]
        closure = import_closure(_entry(body["cmd"]))
        assert closure, name
        missing = sorted(
            f for f in closure if not any(f == d or f.startswith(d + "/") for d in deps)
        )
        assert not missing, f"dvc.yaml stage `{name}` runs {missing} but does not depend on them"
        code = [d for d in deps if d.startswith(("pipeline", "stages"))]
        unused = [d for d in code if not any(f == d or f.startswith(d + "/") for f in closure)]
        assert not unused, f"dvc.yaml stage `{name}` depends on {unused}, which it never runs"
        assert "pipeline/interfaces" not in code, name  # a run depends on its own interface only
        assert "pipeline/tasks" not in code, name  # nor every task: its own (the plan's slots)
        for d in deps:
            assert d in outputs or (ROOT / d).exists(), (
                f"dvc.yaml stage `{name}` depends on {d}, which does not exist"
            )


def test_the_closure_sees_what_a_stage_imports(tmp_path):
    """The check above can fail: the trainer's closure holds the loader and the feed, the
    extraction's does not (so editing the trainer reruns no extraction)."""
    train = import_closure(["stages.train"])
    extract = import_closure(["stages.extract"])
    assert {
        "pipeline/feed/loader.py",
        "pipeline/feed/tiers.py",
        "pipeline/train/feed.py",
        "pipeline/plan/expand.py",
    } <= train
    assert "pipeline/train/loop.py" not in extract and "pipeline/feed/loader.py" not in extract
    assert "pipeline/data/synth.py" in import_closure(["pipeline.cli.data"])  # import_module


class _Upstream:
    """A deterministic stand-in for a model (3 states of width 8 at 50 Hz); `version` is its weights."""

    def __init__(self, version: str = "v1") -> None:
        import torch

        from pipeline.upstreams.base import UpstreamSpec

        self.spec = UpstreamSpec("fake", "fake", f"fake://{version}", 16000, 50.0, 3, 8)
        self.version, self.torch, self.pad_sensitive = version, torch, False

    def weights_hash(self) -> str:
        return self.version

    def num_frames(self, num_samples: int) -> int:
        return num_samples // 320

    def forward(self, waveforms, lengths):
        return [
            self.torch.tanh(x[: n // 320 * 320].reshape(-1, 320)[None, :, :8].repeat(3, 1, 1))
            for x, n in zip(waveforms, lengths.tolist(), strict=True)
        ]


def _files(store: Path) -> dict[str, tuple[int, str]]:
    return {
        str(f.relative_to(store)): (
            f.stat().st_mtime_ns,
            hashlib.sha256(f.read_bytes()).hexdigest(),
        )
        for f in sorted(store.rglob("*"))
        if f.is_file() and not f.name.endswith(".lock")
    }


def test_extract_stage_adopts_a_complete_store_and_rebuilds_it_only_unread(tmp_path, tiny_suite, monkeypatch):  # fmt: skip
    """A queued experiment's workspace (no stamps) sharing an absolute cache_root: the extract
    stage adopts the store (nothing recomputed or written, the same stamp); a store made for
    another request is rebuilt, but never while another process reads it."""
    from pipeline.extract.from_plan import extract_store, write_stamp
    from pipeline.store.usage import Reading, StoreBusy, StoreUse

    raw = read_experiment_mapping(ROOT / "configs" / "tiny.yaml")
    raw["paths"] = {"data_root": str(tiny_suite.parent), "cache_root": str(tmp_path / "shared"),
                    "runs_root": "runs"}  # fmt: skip
    raw["data"]["suite"] = tiny_suite.name
    cfg = parse_experiment(raw)
    store = make_plan(cfg).stores["er-whisper_tiny_en"]
    first, second = tmp_path / "ws1", tmp_path / "ws2"
    first.mkdir(), second.mkdir()
    monkeypatch.chdir(first)
    res = extract_store(cfg, store, upstream=_Upstream())
    assert res.written > 0
    stamp = write_stamp(store).read_text()
    before = _files(Path(store.store))
    monkeypatch.chdir(second)  # another workspace: no stamp, the same shared store
    res = extract_store(cfg, store, upstream=_Upstream())
    assert res.written == 0 and res.already > 0
    assert _files(Path(store.store)) == before  # not one file rewritten
    assert write_stamp(store).read_text() == stamp
    # another request (new weights) while a training run reads the store: refused, untouched
    with Reading([store.store]), pytest.raises(StoreBusy, match="another process is reading it"):
        extract_store(cfg, store, upstream=_Upstream("v2"))
    assert _files(Path(store.store)) == before
    # nobody reads it: rebuilt for the new request
    res = extract_store(cfg, store, upstream=_Upstream("v2"))
    assert res.written > 0
    assert (
        json.loads(write_stamp(store).read_text())["fingerprint"]
        != json.loads(stamp)["fingerprint"]
    )
    # and a reader cannot start while a rebuild holds the store
    use = StoreUse(store.store)
    use.shared()
    use.exclusive()
    with pytest.raises(StoreBusy, match="being rebuilt"), Reading([store.store]):
        pass
    use.release()


@pytest.mark.slow
def test_queued_sweep_shares_the_stores(tmp_path):
    """`dvc exp run --queue -S ...` + `dvc queue start -j 2` against an absolute cache_root: the
    queued workspaces lack the stamps, their extract stages adopt the stores (each built once)."""
    cfg = _small_experiment()
    cfg["paths"]["cache_root"] = str(tmp_path / "shared")
    repo = _repo(tmp_path, _params_text(cfg))
    dvc(repo, "repro")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "ran")
    dvc(repo, "exp", "run", "--queue", "-S", "interfaces.gumd.linear_steps=25,100")
    dvc(repo, "queue", "start", "-j", "2")
    for _ in range(240):
        status = dvc(repo, "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    assert status.count("Success") == 2, status
    for task in ("er", "sv"):  # the fake extraction logs every build of a store
        builds = (tmp_path / "shared" / "t" / task / "builds.log").read_text().split()
        assert sorted(builds) == ["whisper_base.zarr", "whisper_tiny_en.zarr"]


def _stale(repo: Path) -> list[str]:
    """The stages `dvc status` reports as changed."""
    return sorted(json.loads(dvc(repo, "status", "--json")))


def test_an_edit_makes_stale_only_the_stages_that_run_that_code(tmp_path):
    """Item by item: an edit of one interface's or one task's module reruns only the runs that
    use it; a new interface module, or any edit of stage two, reruns no extraction."""
    cfg = _small_experiment()
    cfg["tasks"] = {"asr_en": {"task": "asr_en"}, **cfg["tasks"]}
    repo = _repo(tmp_path, _params_text(cfg))
    dvc(repo, "repro")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "ran")
    assert _stale(repo) == []
    runs = make_plan(cfg).runs

    def train(pred) -> list[str]:
        return sorted(f"train@{k}" for k, r in runs.items() if pred(r))

    def after(path: str, edit) -> list[str]:
        f = repo / path
        old = f.read_text() if f.exists() else None
        f.write_text(edit(old))
        try:
            return _stale(repo)
        finally:
            _git(repo, "checkout", "-q", "--", ".")
            _git(repo, "clean", "-qfd", "pipeline")

    hconv = after("pipeline/interfaces/hconv.py", lambda t: t + "\nEXTRA = 1\n")
    assert hconv == train(lambda r: r.interface == "hconv")
    doc = after("pipeline/interfaces/gumd.py", lambda t: t.replace('"""', '"""Edited. ', 1))
    assert doc == train(lambda r: r.interface == "gumd")
    asr = after("pipeline/tasks/asr.py", lambda t: t + "\nEXTRA = 1\n")
    assert asr == train(lambda r: r.task == "asr_en")  # the probes run er and sv, not asr
    er = after("pipeline/tasks/er.py", lambda t: t + "\nEXTRA = 1\n")
    assert er == sorted(train(lambda r: r.task == "er") + ["analyze"])  # the ER probe runs it
    new = after("pipeline/interfaces/mean.py", lambda _: '"""A new interface."""\n')
    assert new == []
    for path in ("pipeline/train/loop.py", "pipeline/feed/loader.py", "pipeline/train/config.py"):
        stale = after(path, lambda t: (t or "") + "\nEXTRA = 1\n")
        assert stale and not [s for s in stale if s.startswith(("extract@", "synth@"))], (
            path,
            stale,
        )


MEAN_INTERFACE = '''"""mean: the plain average of every state of the first upstream (a test's new interface)."""

from pipeline.interfaces import register
from pipeline.interfaces.base import Interface


@register
class Mean(Interface):
    name = "mean"
    label = "Mean"
'''


def test_a_new_interface_module_is_planned_and_trained_through_dvc(tmp_path):
    """Adding an interface is its module (one `@register` line in it): `python -m pipeline.plan
    write` plans its runs and gives it its params entry, and `dvc repro` trains exactly those
    runs (and the report), with no other stage rerun."""
    cfg = _small_experiment()
    repo = _repo(tmp_path, _params_text(cfg))
    dvc(repo, "repro")
    (repo / "pipeline/interfaces/mean.py").write_text(MEAN_INTERFACE)
    cfg["table"][0]["interfaces"].append("mean")
    cfg["interfaces"].pop("mean", None)
    (repo / "params.yaml").write_text(_params_text(cfg, generated={}))
    env = _env(repo)
    subprocess.run([sys.executable, "-m", "pipeline.plan", "write", "params.yaml"], cwd=repo,
                   env=env, check=True, capture_output=True)  # fmt: skip
    written = yaml.safe_load((repo / "params.yaml").read_text())
    assert written["interfaces"]["mean"] == {}
    assert written["runs"]["whisper_base-mean-sv"]["code"][:3] == [
        "pipeline/interfaces/align.py", "pipeline/interfaces/base.py", "pipeline/interfaces/mean.py",
    ]  # fmt: skip
    ran = _ran(dvc(repo, "repro"))
    assert ran == ["report", "train@whisper_base-mean-er", "train@whisper_base-mean-sv"], ran
    run_cfg = json.loads((repo / "runs/whisper_base-mean-sv/config.yaml").read_text())
    assert run_cfg["interface"] == "mean"
