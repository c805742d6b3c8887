"""params.yaml on disk: an experiment's text, MARKER, then the generated `synth/imports/stores/runs`.

`render` writes it; `load_experiment` reads the experiment back as a typed `Experiment` (the
generated part dropped, a `base:` file merged under it; `read_experiment_mapping` gives that
mapping before typing); `check` refuses a params.yaml whose generated sections no longer match
the experiment above them (a structural edit without `python -m pipeline.plan write`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import yaml

from pipeline.plan.expand import make_plan
from pipeline.plan.experiment import Experiment, parse_experiment
from pipeline.plan.model import GENERATED, HEADER, MARKER, Plan, PlanError


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


def render(config_path: str | Path, out: str | Path | None = None) -> str:
    """The text of params.yaml for a config: its own text (or, with `base:`, the merged YAML),
    MARKER, then the generated sections.

    With `out` (the params file to write) other than the config, the text starts with a header
    that names the config as the one place to edit, and records the config's path (relative to
    `out`) and sha256 under `source`: `check` then refuses the params file once the config has
    changed, until it is written again. Written in place (no `out`), a file is its own source,
    which a file written from another config may not be.
    """
    path = Path(config_path)
    target = Path(out) if out is not None else path
    text = path.read_text(encoding="utf-8")
    generated = _yaml(path, text.split(MARKER, 1)[1]) if MARKER in text else None
    own = generated if isinstance(generated, dict) else {}
    if target.resolve() == path.resolve() and own.get("source"):
        src = own["source"].get("config")
        raise PlanError(
            f"{path} is written from {src}: edit {src} and run "
            f"`python -m pipeline.plan write {src} -o {path}` (hyperparameters of one DVC "
            "experiment: `dvc exp run -S KEY=VALUE`)"
        )
    cfg = read_experiment_mapping(path)
    exp = parse_experiment(cfg, str(path))
    text = text.split(MARKER)[0]
    head = (
        "\n".join(ln for ln in text.split("\n") if not ln.startswith(HEADER)).strip("\n") + "\n\n"
    )
    raw = _yaml(path, head) or {}
    if "base" in raw or any(k in raw for k in GENERATED):  # merged, or MARKER lost: plain YAML
        head = f"# {path} as read by pipeline/plan\n" + yaml.safe_dump(cfg, sort_keys=False) + "\n"
    plan = make_plan(exp)
    unset = sorted({r.interface for r in plan.rows} - set(exp.interfaces))
    if unset:  # dvc.yaml's train stage declares `interfaces.<name>` a parameter: it must exist
        head = _with_interfaces(head, unset, cfg)
    gen: dict[str, Any] = plan.generated()
    if target.resolve() != path.resolve():
        rel = os.path.relpath(path.resolve(), target.resolve().parent)
        head = (
            f"{HEADER} {rel} -o {target.name}`: the experiment is {rel}.\n"
            f"# Edit {rel}, not this file, then write this file again (`dvc repro` refuses it\n"
            f"# while {rel} has changed). `dvc exp run -S KEY=VALUE` varies a hyperparameter\n"
            "# here for one DVC experiment.\n" + head
        )
        gen["source"] = {"config": rel, "sha256": _sha256(path)}
    return (
        head
        + MARKER
        + "\n"
        + yaml.safe_dump(gen, sort_keys=False, default_flow_style=None, width=120)
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


def checked(params_path: str | Path = "params.yaml") -> tuple[Experiment, Plan]:
    """(the experiment, its plan) of params.yaml, read once; PlanError when the generated
    sections do not match the experiment above them."""
    path = Path(params_path)
    if not path.is_file():
        raise PlanError(f"{path}: no such experiment config (configs/*.yaml or params.yaml)")
    full = _yaml(path, path.read_text(encoding="utf-8")) or {}
    if not isinstance(full, dict):
        raise PlanError(f"{path}: expected a mapping of experiment keys, got {type(full).__name__}")
    cfg = {k: v for k, v in full.items() if k not in GENERATED}
    if "base" in cfg:
        base = path.parent / str(cfg.pop("base"))
        if not base.is_file():
            raise PlanError(f"{path}: base config {base} does not exist")
        cfg = _merge(read_experiment_mapping(base), cfg)
    exp = parse_experiment(cfg, str(path))
    plan = make_plan(exp)
    source = full.get("source") or {}
    if source:  # written from a config: refuse it once that config changed
        src = path.parent / str(source.get("config"))
        if not src.is_file() or _sha256(src) != source.get("sha256"):
            why = "no longer exists" if not src.is_file() else "changed"
            raise PlanError(
                f"{path} was written from {source.get('config')}, which {why} since: run "
                f"`python -m pipeline.plan write {source.get('config')} -o {path}` (edits belong "
                f"in {source.get('config')}, not in {path})"
            )
    stale = [k for k, v in plan.generated().items() if full.get(k) != v]
    if stale:
        raise PlanError(
            f"{path}: the generated section(s) {stale} no longer match the experiment above them. "
            f"Run `python -m pipeline.plan write {path}` and then `dvc repro` again."
        )
    return exp, plan


def check(params_path: str | Path = "params.yaml") -> None:
    """Raise PlanError when params.yaml's generated sections do not match its experiment."""
    checked(params_path)
