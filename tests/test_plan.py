"""Plan expansion: params.yaml (11 rows × 4 tasks × 3 seeds = 132 runs), the paper config, the stage commands."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.plan import (
    MARKER,
    Column,
    PlanError,
    Section,
    check,
    extract_argv,
    load_experiment,
    make_plan,
    parse_experiment,
    read_experiment_mapping,
    render,
    train_argv,
)
from pipeline.train.config import resolve_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def default_params(tmp_path_factory) -> Path:
    """configs/default.yaml rendered into a temporary params.yaml: the tests below never read
    the working copy's params.yaml, which a user may have rewritten (`plan write`, a sweep)."""
    p = tmp_path_factory.mktemp("params") / "params.yaml"
    p.write_text(render(ROOT / "configs" / "default.yaml"))
    return p


def _committed(path: str) -> str:
    """The committed text of `path` (git HEAD), else the working copy's."""
    r = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else (ROOT / path).read_text()


def test_committed_params_yaml_is_the_default_config_plus_its_plan(default_params):
    assert _committed("params.yaml") == default_params.read_text()
    check(default_params)


def test_default_plan_counts(default_params):
    plan = make_plan(load_experiment(default_params))
    assert len(plan.rows) == 11 and len(plan.runs) == 132 and len(plan.stores) == 12
    assert plan.columns == ["asr_en", "ml_asr", "sv", "er"]
    one, two = "2-model fusion, one family", "2-model fusion, two families"
    assert [(r.section, len(r.members), r.interface) for r in plan.rows] == [
        ("Single model", 1, "ws"), ("Single model", 1, "hconv"),
        ("Single model", 1, "ws"), ("Single model", 1, "hconv"),
        ("Single model", 1, "ws"), ("Single model", 1, "hconv"),
        (one, 2, "ws"), (one, 2, "hconv"),
        (two, 2, "ws"), (two, 2, "gumd"), (two, 2, "hconv"),
    ]  # fmt: skip
    assert {r.seed for r in plan.runs.values()} == {0, 1, 2}
    run = plan.runs["whisper_base+moonshine_base_en-gumd-ml_asr-s1"]
    assert run.data == "data/demo/ml_asr" and run.cache == "cache/demo/ml_asr"
    assert run.settings == {"mode": "multi"} and run.seed == 1
    assert run.stamps == [
        "cache/demo/ml_asr/whisper_base.stamp.json",
        "cache/demo/ml_asr/moonshine_base_en.stamp.json",
        "cache/demo/ml_asr/whisper_base.stamp.json",  # padded to dvc.yaml's 3 slots
    ]
    assert plan.synth == {"demo": {"out": "data/demo"}} and plan.imports == {}


def test_train_commands_resolve_with_the_trainer_config(default_params):
    """Every run's `--set` keys are ones pipeline.train.config accepts (no typo can reach a DVC stage)."""
    raw = read_experiment_mapping(default_params)
    raw["interfaces"]["hconv"] = {"dim": 256}
    cfg = parse_experiment(raw)
    for run in make_plan(cfg).runs.values():
        argv = train_argv(cfg, run)
        sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        rc = resolve_config(
            interface=run.interface, models=",".join(run.models), task=run.task, data=run.data,
            cache=run.cache, out="runs/x", sets=sets,
        )  # fmt: skip
        assert rc.models == run.models and rc.task_args.get("mode") == run.settings.get("mode")
        if run.interface == "gumd":
            assert rc.interface_args == {"linear_steps": 30, "exp_steps": 90, "layer_norm": True}
        if run.interface == "hconv":
            assert rc.interface_args == {"dim": 256}


def test_extract_command(default_params):
    cfg = load_experiment(default_params)
    store = make_plan(cfg).stores["sv-whisper_base"]
    assert shlex.join(extract_argv(cfg, store)) == (
        "extract --model whisper_base --data data/demo/sv --out cache/demo/sv/whisper_base.zarr "
        "--device auto --whisper-mode trim"
    )


def test_paper_plan():
    cfg = load_experiment(ROOT / "configs" / "paper.yaml")
    plan = make_plan(cfg)
    t1 = [r for r in plan.rows if r.table == "I"]
    t2 = [r for r in plan.rows if r.table == "II"]
    assert len(t1) == 4 * 2 + 4 * 4 + 2 * 3 and len(t2) == 2 * 2 + 1 * 2
    # columns: LS 1 run, Mono 13 (one per mono-1h config), Multi 1, SV 1, ER 5 folds
    assert len(t1[0].cells["mono"]) == 13 and len(t1[0].cells["er"]) == 5
    assert all("multi" not in r.cells for r in t2)
    assert len(plan.runs) == len(t1) * (1 + 13 + 1 + 1 + 5) + len(t2) * (1 + 13 + 1 + 5)
    # English-only Whisper and Data2Vec as the best SSL on LibriSpeech, multilingual elsewhere
    whspr = next(r for r in t1 if r.members == ["whspr", "best_ssl"] and r.interface == "chconv")
    assert whspr.cells["asr_en"] == ["whisper_small_en+data2vec_base-chconv-asr_en"]
    assert whspr.cells["sv"] == ["whisper_small+wavlm_base_plus-chconv-sv"]
    large = next(r for r in t2 if len(r.members) == 2 and r.interface == "hconv")
    assert large.cells["asr_en"] == ["whisper_medium_en+data2vec_large-hconv-asr_en"]
    # ER folds: 5 data dirs, one shared store; mono: one data dir and store per config
    fold3 = plan.runs["wavlm_base_plus-hconv-er-fold3"]
    assert fold3.data == "data/paper/iemocap/fold3" and fold3.cache == "cache/paper/iemocap/fold1"
    assert fold3.settings == {"fold": 3}
    fra2 = plan.runs["wavlm_base_plus-ws-mono-fra2"]
    assert fra2.data == "data/paper/mlsuperb/mono/fra2"
    assert fra2.settings == {"mode": "mono", "config": "fra2", "language": "fra"}
    assert {s.dataset for s in plan.stores.values() if s.dataset.startswith("iemocap")} == {
        "iemocap/fold1"
    }
    assert plan.synth == {} and set(plan.imports) == {
        "librispeech",
        "mlsuperb",
        "voxceleb1",
        "iemocap",
    }
    # SUPERB / ML-SUPERB recipes reach the trainer
    argv = train_argv(cfg, plan.runs["hubert_base-ws-asr_en"])
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    rc = resolve_config(interface="ws", models="hubert_base", task="asr_en", out="r", sets=sets)
    assert (rc.train.steps, rc.train.batch_size, rc.train.lr, rc.train.eval_every) == (
        200000,
        32,
        1e-4,
        2000,
    )
    # the CPU demo's head shortcuts (pipeline/train/config.py TASK_DEFAULTS) must not leak into it
    assert rc.task_args == {
        "proj": 1024,
        "hidden": 1024,
        "layers": 2,
        "dropout": 0.2,
        "specaug": True,
        "mvn": "none",
        "downsample": 1,
    }
    argv = train_argv(cfg, plan.runs["hubert_base-ws-multi"])
    rc = resolve_config(interface="ws", models="hubert_base", task="ml_asr", out="r",
                        sets=[argv[i + 1] for i, a in enumerate(argv) if a == "--set"])  # fmt: skip
    assert {k: rc.task_args[k] for k in ("pre_dim", "d_model", "heads", "ffn", "blocks")} == {
        "pre_dim": 80,
        "d_model": 256,
        "heads": 8,
        "ffn": 1024,
        "blocks": 2,
    }
    argv = train_argv(cfg, plan.runs["hubert_base-ws-er-fold1"])
    rc = resolve_config(interface="ws", models="hubert_base", task="er", out="r",
                        sets=[argv[i + 1] for i, a in enumerate(argv) if a == "--set"])  # fmt: skip
    assert (rc.train.steps, rc.train.batch_size, rc.train.accum, rc.train.lr) == (30000, 4, 8, 1e-4)
    up = extract_argv(cfg, plan.stores["librispeech-whisper_small_en"])
    assert up[up.index("--whisper-mode") + 1] == "pad30"


def test_tiny_config_merges_over_default(tmp_path):
    cfg = load_experiment(ROOT / "configs" / "tiny.yaml")
    assert cfg.data.suite == "tiny" and cfg.data.synth == "tiny"
    assert cfg.interfaces["gumd"] == {"linear_steps": 30, "exp_steps": 90, "layer_norm": True}
    out = tmp_path / "params.yaml"
    out.write_text(render(ROOT / "configs" / "tiny.yaml"))
    check(out)
    assert make_plan(load_experiment(out)).runs["whisper_base-ws-sv"].data == "data/tiny/sv"


def test_stale_params_are_refused(tmp_path, default_params):
    p = tmp_path / "params.yaml"
    text = (default_params).read_text()
    p.write_text(text.replace("interfaces: [ws, gumd, hconv]", "interfaces: [ws, hconv]"))
    with pytest.raises(PlanError, match="no longer match"):
        check(p)
    p.write_text(render(p))  # `python -m pipeline.plan write params.yaml` fixes it
    check(p)
    assert len(make_plan(load_experiment(p)).runs) == 132 - 4 * 3  # the GumD row is gone
    assert p.read_text().count(MARKER) == 1


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["table"][0]["sets"].append(["wavlm_base_plus"]), "not under `upstreams:`"),
        (lambda c: c["table"][1]["interfaces"].append("attn"), "unknown interface"),
        (lambda c: c["tasks"].update(x={"task": "kws"}), "unknown task"),
        (
            lambda c: c["table"][1]["sets"].append(["whisper_base", "whisper_base"]),
            "an upstream twice",
        ),
        (lambda c: c["data"].update(synth=None), "data: set"),
        (lambda c: c["tasks"]["er"].update(data="er/fold{fold}"), "expand"),
    ],
)
def test_config_errors_name_the_key(edit, match):
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    edit(cfg)
    with pytest.raises(PlanError, match=match):
        make_plan(cfg)


def test_seeds_multiply_runs_and_reach_the_trainer():
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg.pop("seeds", None)
    base = make_plan(cfg)
    assert base.seeds == [0] and all(r.seed == 0 for r in base.runs.values())
    assert "whisper_base-ws-sv" in base.runs  # one seed: unsuffixed keys
    cfg["seeds"] = [0, 1, 2]
    plan = make_plan(cfg)
    assert len(plan.runs) == 3 * len(base.runs) and len(plan.rows) == len(base.rows)
    run = plan.runs["whisper_base+moonshine_base_en-gumd-er-s2"]
    assert run.seed == 2 and run.models == ["whisper_base", "moonshine_base_en"]
    assert "whisper_base+moonshine_base_en-gumd-er" not in plan.runs  # no unsuffixed key
    cell = plan.rows[9].cells["er"]  # the two-family GumD row: one run per seed
    assert cell == [f"whisper_base+moonshine_base_en-gumd-er-s{s}" for s in (0, 1, 2)]
    argv = train_argv(parse_experiment(cfg), run)
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    rc = resolve_config(interface="gumd", models=run.models, task="er", out="r", sets=sets)
    assert rc.train.seed == 2
    # the generated section carries each run's seed (a DVC param of its train stage)
    assert plan.generated()["runs"]["whisper_base-ws-sv-s1"]["seed"] == 1


def test_seed_defaults_and_conflicts():
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["train"]["seed"] = 7
    cfg.pop("seeds", None)
    plan = make_plan(cfg)  # no `seeds`: train.seed is the one seed; keys without suffix
    assert plan.seeds == [7] and plan.runs["whisper_base-ws-sv"].seed == 7
    cfg["seeds"] = [0, 1]
    with pytest.raises(PlanError, match="train.seed"):
        make_plan(cfg)
    cfg["train"].pop("seed")
    for bad in ([], [0, 0], ["a"], 3):
        cfg["seeds"] = bad
        with pytest.raises(PlanError, match="seeds"):
            make_plan(cfg)


def test_paper_runs_start_from_the_recipes_never_the_demo_defaults():
    from pipeline.tasks import task_class
    from pipeline.train.from_plan import run_config

    cfg = load_experiment(ROOT / "configs" / "paper.yaml")
    plan = make_plan(cfg)
    seen = set()
    for run in plan.runs.values():
        if run.task in seen:
            continue
        seen.add(run.task)
        rc = run_config(cfg, run)
        assert rc.defaults == "recipe", run.key
        demo = task_class(run.task).demo
        for k, v in (demo.get("task_args") or {}).items():
            recipe = task_class(run.task).recipe.get("task_args") or {}
            if k not in recipe:  # a demo-only setting never appears unless the config states it
                col = cfg.tasks[run.column].args
                assert k in col or rc.task_args.get(k) != v or k in run.settings, (run.key, k)
    assert {"asr_en", "er", "sv"} <= seen


def _write(tmp_path: Path, edit) -> Path:
    """configs/default.yaml with `edit` applied, written to a temporary file."""
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    edit(cfg)
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda c: c["tasks"]["sv"].update(taks="sv"),
            r"tasks\.sv: unknown key `taks` \(known: task, data,",
        ),  # fmt: skip
        (lambda c: c.update(tabel=[]), r": unknown key `tabel` \(known: data, paths, device,"),
        (
            lambda c: c["table"][1].update(sets="whisper_base"),
            r"table\[1\]\.sets: expected a non-empty list",
        ),  # fmt: skip
        (
            lambda c: c["table"][0].update(interfaces=["ws", "attn"]),
            r"table\[0\]\.interfaces: unknown interface `attn`",
        ),  # fmt: skip
        (
            lambda c: c["paths"].update(run_root="r"),
            r"paths: unknown key `run_root` \(known: data_root, cache_root, runs_root\)",
        ),  # fmt: skip
        (lambda c: c["data"].update(seed="0"), r"data\.seed: expected an integer"),
        (
            lambda c: c.update(defaults="paper"),
            r"defaults: 'paper': choose one of demo, recipe, none",
        ),  # fmt: skip
        (
            lambda c: c["tasks"]["er"].update(expand={"fold": 3}),
            r"tasks\.er\.expand\.fold: must be a non-empty list",
        ),  # fmt: skip
        (lambda c: c.pop("table"), r": missing key `table`"),
    ],
)
def test_experiment_errors_name_the_file_and_the_key_path(tmp_path, edit, match):
    p = _write(tmp_path, edit)
    with pytest.raises(PlanError, match=match) as e:
        load_experiment(p)
    assert str(e.value).startswith(f"{p}: ")


def test_plan_errors_name_the_file(tmp_path):
    p = _write(tmp_path, lambda c: c["table"][0]["sets"].append(["wavlm_base_plus"]))
    with pytest.raises(PlanError, match=r"exp\.yaml: table\[0\]: `wavlm_base_plus` is not under"):
        make_plan(load_experiment(p))


@pytest.mark.parametrize("name", ["default.yaml", "tiny.yaml", "paper.yaml", "gpu.yaml"])
def test_experiment_is_typed_and_round_trips(name):
    """Each config parses into the typed tree; its mapping parses back into the same tree and
    the same plan (what the report and the tests that edit a config rely on)."""
    exp = load_experiment(ROOT / "configs" / name)
    assert all(isinstance(c, Column) for c in exp.tasks.values())
    assert all(isinstance(s, Section) and s.sets for s in exp.table)
    back = parse_experiment(exp.to_dict())
    assert back == exp
    assert make_plan(back).generated() == make_plan(exp).generated()


def test_analysis_is_free_form_and_passed_through(tmp_path):
    section = {"cka": {"pairs": [["whisper_base", "whisper_tiny_en"]], "split": "dev"}, "x": 1}
    exp = load_experiment(_write(tmp_path, lambda c: c.update(analysis=section)))
    assert exp.analysis == section and exp.to_dict()["analysis"] == section
    paper = load_experiment(ROOT / "configs" / "paper.yaml")
    assert paper.defaults == "recipe" and paper.tasks["er"].store_dir == "iemocap/fold1"
    assert paper.aliases["whspr"] == {"default": "whisper_small", "asr_en": "whisper_small_en"}


def test_the_plan_and_the_name_table_import_no_torch():
    """The plan checks names against pipeline/names.py, which lists the interface and task
    module files: so no stage depends on a module it does not run (and planning is quick)."""
    code = (
        "import sys; from pipeline.plan import load_experiment, make_plan; "
        "make_plan(load_experiment('configs/default.yaml')); "
        "assert 'torch' not in sys.modules and 'pipeline.interfaces' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('torch', 'pipeline')))"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_unknown_names_in_the_experiment_name_the_closest(tmp_path):
    raw = read_experiment_mapping(ROOT / "configs" / "default.yaml")
    raw["table"][0]["interfaces"] = ["ws", "hconvv"]
    with pytest.raises(PlanError, match="unknown interface `hconvv`; did you mean `hconv`"):
        parse_experiment(raw, "params.yaml")
    raw = read_experiment_mapping(ROOT / "configs" / "default.yaml")
    raw["tasks"]["sv"]["task"] = "svv"
    with pytest.raises(PlanError, match=r"tasks\.sv\.task.*unknown task `svv`; did you mean `sv`"):
        parse_experiment(raw, "params.yaml")


def test_the_printed_command_builds_the_config_the_stage_runs(default_params):
    """The train stage builds each run's config from typed values (no text round trip); the
    `pipeline train ...` line it prints for doing the same by hand resolves to the same config."""
    from pipeline.train.from_plan import run_config

    for path in (default_params, ROOT / "configs" / "paper.yaml"):
        exp = load_experiment(path)
        for run in list(make_plan(exp).runs.values())[::7]:
            argv = train_argv(exp, run)

            def opt(name: str, argv: list[str] = argv) -> str:
                return argv[argv.index(name) + 1]

            sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
            by_hand = resolve_config(
                interface=opt("--interface"), models=opt("--models"), task=opt("--task"),
                data=opt("--data"), cache=opt("--cache"), out=opt("--out"), sets=sets,
                device=opt("--device"),
            )  # fmt: skip
            assert by_hand == run_config(exp, run), run.key
