"""params.yaml on disk: an experiment's text, MARKER, then the generated `synth/imports/stores/runs`.

`render` writes it, `load_config` reads the experiment back (dropping the generated part and
merging a `base:` file under it), and `check` refuses a params.yaml whose generated sections no
longer match the experiment above them (a structural edit without `python -m sfm_fusion.stages.plan write`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from sfm_fusion.stages.plan.expand import make_plan
from sfm_fusion.stages.plan.model import GENERATED, MARKER, PlanError


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path) -> dict:
    """Read a config; the generated part (below MARKER, or its keys) is dropped; `base: FILE` is merged under."""
    path = Path(path)
    cfg = yaml.safe_load(path.read_text(encoding="utf-8").split(MARKER)[0]) or {}
    for k in GENERATED:
        cfg.pop(k, None)
    if "base" in cfg:
        base = path.parent / cfg.pop("base")
        if not base.is_file():
            raise PlanError(f"{path}: base config {base} does not exist")
        cfg = _merge(load_config(base), cfg)
    return cfg


def render(config_path: str | Path) -> str:
    """The text of params.yaml for a config: its own text (or, with `base:`, the merged YAML),
    MARKER, then the generated sections."""
    path = Path(config_path)
    head = path.read_text(encoding="utf-8").split(MARKER)[0].rstrip() + "\n\n"
    cfg = load_config(path)
    raw = yaml.safe_load(head) or {}
    if "base" in raw or any(k in raw for k in GENERATED):  # merged, or MARKER lost: plain YAML
        head = (
            f"# {path} as read by sfm_fusion/stages/plan\n"
            + yaml.safe_dump(cfg, sort_keys=False)
            + "\n"
        )
    gen = make_plan(cfg).generated()
    return (
        head
        + MARKER
        + "\n"
        + yaml.safe_dump(gen, sort_keys=False, default_flow_style=None, width=120)
    )


def check(params_path: str | Path = "params.yaml") -> None:
    """Raise PlanError when params.yaml's generated sections do not match its experiment."""
    path = Path(params_path)
    full = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    want = make_plan(load_config(path)).generated()
    stale = [k for k, v in want.items() if full.get(k) != v]
    if stale:
        raise PlanError(
            f"{path}: the generated section(s) {stale} no longer match the experiment above them. "
            f"Run `python -m sfm_fusion.stages.plan write {path}` and then `dvc repro` again."
        )
