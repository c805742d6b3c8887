"""A training run's directory: create it, refuse or clear another run in it, check its inputs.

RUN_DIR holds config.yaml (the resolved config), inputs.json (pipeline/feed/run_inputs.py) and what
training writes (RUN_OUTPUTS). A run resumes from checkpoints/last.pt when its config and its
inputs are unchanged; `--force` discards a run whose config or inputs changed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline.console import console
from pipeline.errors import UserError
from pipeline.feed.run_inputs import InputsChanged, compare_inputs, read_inputs
from pipeline.train.config import RunConfig, identity, load_run_config, save_config

RUN_OUTPUTS = ("checkpoints", "log.jsonl", "metrics.json", "interface_summary.json", "inputs.json")
CHANGED_INPUTS_ADVICE = (
    "Restore the stores and manifests the run was trained on, or retrain it from scratch "
    "with --force (discards its checkpoints), or train into another --out."
)


class RunDirError(UserError, RuntimeError):
    """A run directory that cannot be used as asked; the message says what to do."""


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def prepare_run_dir(cfg: RunConfig, force: bool = False) -> bool:
    """Create RUN_DIR and write config.yaml. Returns True when last.pt should be resumed.

    An existing run dir with another config is refused unless `force`, which clears it.
    """
    run_dir = Path(cfg.out)
    cfg_path = run_dir / "config.yaml"
    if cfg_path.exists():
        old = load_run_config(cfg_path)
        if identity(old) != identity(cfg):
            if not force:
                a, b = _flat(identity(old)), _flat(identity(cfg))
                diff = [
                    f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
                    for k in sorted(set(a) | set(b))
                    if a.get(k) != b.get(k)
                ]
                raise RunDirError(
                    f"{run_dir} holds a run with a different config (differs in {diff}); "
                    "use another --out, or --force to discard it"
                )
            clear_run(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_config(cfg, cfg_path)
    return (run_dir / "checkpoints" / "last.pt").exists()


def clear_run(run_dir: Path) -> None:
    """Delete what a training run wrote (checkpoints, log, metrics, inputs); keeps config.yaml."""
    for name in RUN_OUTPUTS:
        p = run_dir / name
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)


def truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")


def inputs_unchanged(run_dir: Path, inputs: dict, force: bool) -> bool:
    """True when the run may resume: its recorded inputs match. With `force` a changed run is cleared."""
    recorded = read_inputs(run_dir)
    if recorded is None:
        return True  # written before inputs were recorded: nothing to compare
    try:
        compare_inputs(recorded, inputs, CHANGED_INPUTS_ADVICE)
    except InputsChanged as e:
        if not force:
            raise
        console.print(f"--force: {str(e).splitlines()[1].strip()} ...; training from scratch")
        clear_run(run_dir)
        return False
    return True
