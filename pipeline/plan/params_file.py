"""params.yaml on disk: an experiment's text, MARKER, then the generated `synth/imports/stores/runs`.

`render` writes it; `load_experiment` reads the experiment back as a typed `Experiment` (the
generated part dropped, a `base:` file merged under it; `read_experiment_mapping` gives that
mapping before typing); `check` refuses a params.yaml whose generated sections no longer match
the experiment above them (a structural edit without `python -m pipeline.plan write`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.plan.expand import make_plan
from pipeline.plan.experiment import Experiment, parse_experiment
from pipeline.plan.model import GENERATED, MARKER, PlanError


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _yaml(path: Path, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PlanError(f"{path}: not valid YAML ({e})") from None


def read_experiment_mapping(path: str | Path) -> dict[str, Any]:
    """A config file as a mapping: the generated part (below MARKER, or its keys) dropped,
    `base: FILE` (relative to the file) merged under it."""
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"{path}: no such experiment config (configs/*.yaml or params.yaml)")
    cfg = _yaml(path, path.read_text(encoding="utf-8").split(MARKER)[0]) or {}
    if not isinstance(cfg, dict):
        raise PlanError(f"{path}: expected a mapping of experiment keys, got {type(cfg).__name__}")
    for k in GENERATED:
        cfg.pop(k, None)
    if "base" in cfg:
        base = path.parent / str(cfg.pop("base"))
        if not base.is_file():
            raise PlanError(f"{path}: base config {base} does not exist")
        cfg = _merge(read_experiment_mapping(base), cfg)
    return cfg


def load_experiment(path: str | Path) -> Experiment:
    """The typed experiment of a config file (configs/*.yaml or params.yaml)."""
    return parse_experiment(read_experiment_mapping(path), str(path))


def render(config_path: str | Path) -> str:
    """The text of params.yaml for a config: its own text (or, with `base:`, the merged YAML),
    MARKER, then the generated sections."""
    path = Path(config_path)
    cfg = read_experiment_mapping(path)
    exp = parse_experiment(cfg, str(path))
    head = path.read_text(encoding="utf-8").split(MARKER)[0].rstrip() + "\n\n"
    raw = _yaml(path, head) or {}
    if "base" in raw or any(k in raw for k in GENERATED):  # merged, or MARKER lost: plain YAML
        head = f"# {path} as read by pipeline/plan\n" + yaml.safe_dump(cfg, sort_keys=False) + "\n"
    plan = make_plan(exp)
    unset = sorted({r.interface for r in plan.rows} - set(exp.interfaces))
    if unset:  # dvc.yaml's train stage declares `interfaces.<name>` a parameter: it must exist
        head = _with_interfaces(head, unset, cfg)
    gen = plan.generated()
    return (
        head
        + MARKER
        + "\n"
        + yaml.safe_dump(gen, sort_keys=False, default_flow_style=None, width=120)
    )


def _with_interfaces(head: str, names: list[str], cfg: dict[str, Any]) -> str:
    """`head` (an experiment's YAML text) with an empty `interfaces.<name>` entry for each of
    `names`: the table uses them and sets nothing for them (their classes' defaults apply)."""
    lines = head.rstrip("\n").split("\n")
    note = "  # no settings: added by `python -m pipeline.plan write`"
    at = [i for i, ln in enumerate(lines) if ln.split("#")[0].rstrip() == "interfaces:"]
    if at:
        lines[at[0] + 1 : at[0] + 1] = [f"  {n}: {{}}{note}" for n in names]
    elif not any(ln.startswith("interfaces:") for ln in lines):
        lines += ["", "interfaces:"] + [f"  {n}: {{}}{note}" for n in names]
    else:  # a flow-style mapping: write the experiment as plain YAML
        cfg = {**cfg, "interfaces": {**(cfg.get("interfaces") or {}), **{n: {} for n in names}}}
        return (
            "# the experiment as read by pipeline/plan\n"
            + yaml.safe_dump(cfg, sort_keys=False)
            + "\n"
        )
    return "\n".join(lines) + "\n\n"


def check(params_path: str | Path = "params.yaml") -> None:
    """Raise PlanError when params.yaml's generated sections do not match its experiment."""
    path = Path(params_path)
    want = make_plan(load_experiment(path)).generated()
    full = _yaml(path, path.read_text(encoding="utf-8")) or {}
    stale = [k for k, v in want.items() if full.get(k) != v]
    if stale:
        raise PlanError(
            f"{path}: the generated section(s) {stale} no longer match the experiment above them. "
            f"Run `python -m pipeline.plan write {path}` and then `dvc repro` again."
        )
