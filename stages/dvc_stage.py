"""The commands dvc.yaml's extract and train stages run: `python -m stages.dvc_stage {extract,train} KEY`.

Each looks KEY up in params.yaml's generated `stores` / `runs` (refusing a stale params.yaml,
see stages/plan.py), builds the `pipeline extract` / `pipeline train` arguments from the live
hyperparameters (`upstreams.<name>`, `train`, `tasks.<column>`, `interfaces.<name>`), prints
the command and runs it in this process. After an extraction it writes the store's stamp, the
small file that stands for the (untracked, uncached) store in DVC.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from stages.plan import PlanError, Run, Store, check, load_config, make_plan


def train_settings(cfg: dict, run: Run) -> dict[str, Any]:
    """The `--set` overrides of one run: train (+ the column's train overrides), task, interface."""
    col = cfg["tasks"][run.column] or {}
    out: dict[str, Any] = {}
    for k, v in {**(cfg.get("train") or {}), **(col.get("train") or {})}.items():
        out[f"train.{k}"] = v
    for k, v in run.settings.items():
        out[f"task_args.{k}"] = v
    for k, v in (col.get("args") or {}).items():
        out[f"task_args.{k}"] = v
    for k, v in ((cfg.get("interfaces") or {}).get(run.interface) or {}).items():
        out[f"interface_args.{k}"] = v
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def train_argv(cfg: dict, run: Run, device: str | None = None) -> list[str]:
    """`pipeline train` arguments (without the program name) for one run."""
    argv = [
        "train",
        "--models",
        ",".join(run.models),
        "--interface",
        run.interface,
        "--task",
        run.task,
        "--data",
        run.data,
        "--cache",
        run.cache,
        "--out",
        f"{(cfg.get('paths') or {}).get('runs_root', 'runs')}/{run.key}",
        "--device",
        str(device or cfg.get("device", "auto")),
    ]
    for k, v in train_settings(cfg, run).items():
        argv += ["--set", f"{k}={_fmt(v)}"]
    return argv


def extract_argv(cfg: dict, store: Store, device: str | None = None) -> list[str]:
    """`pipeline extract` arguments for one store."""
    up = cfg["upstreams"][store.upstream] or {}
    argv = [
        "extract",
        "--model",
        str(up.get("source", store.upstream)),
        "--data",
        store.data,
        "--out",
        store.store,
        "--device",
        str(device or cfg.get("device", "auto")),
    ]
    if "whisper_mode" in up:
        argv += ["--whisper-mode", str(up["whisper_mode"])]
    if "batch_seconds" in up:
        argv += ["--batch-seconds", str(up["batch_seconds"])]
    return argv + ["--force"]  # DVC re-runs a stage only when its request changed: rebuild then


def write_stamp(store: Store) -> Path:
    """Write the small file that stands for a store in DVC: fingerprint and counts, no timestamps.

    Refuses an incomplete store (a failed or interrupted extraction), so the stage fails.
    """
    from pipeline.store import open_store

    r = open_store(store.store)
    if not r.complete:
        raise PlanError(
            f"{store.store} is incomplete (missing parts {r.missing_parts}); re-run the extract stage"
        )
    ids = sorted(r.ids)
    info = {
        "store": store.store,
        "fingerprint": r.fingerprint,
        "utterances": len(ids),
        "frames": int(r.total_frames),
        "failed": len(r.failed),
        "ids_sha1": hashlib.sha1("\n".join(ids).encode()).hexdigest(),
    }
    path = Path(store.stamp)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(info, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )
    return path


def _call_pipeline(argv: list[str]) -> None:
    """Run the `pipeline` CLI in this process (it prints the command first, for the DVC log)."""
    print("+ pipeline " + " ".join(argv), flush=True)
    from pipeline.cli import app

    rc = app(argv, prog_name="pipeline", standalone_mode=False)
    if isinstance(rc, int) and rc != 0:
        sys.exit(rc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m stages.dvc_stage", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("stage", choices=["extract", "train"])
    p.add_argument(
        "key", help="a key of params.yaml's generated `stores` (extract) or `runs` (train)"
    )
    p.add_argument("--params", default="params.yaml")
    a = p.parse_args(argv)
    try:
        check(a.params)
        cfg = load_config(a.params)
        plan = make_plan(cfg)
        table = plan.stores if a.stage == "extract" else plan.runs
        if a.key not in table:
            raise PlanError(f"{a.params}: no {a.stage} key `{a.key}` (known: {len(table)} keys)")
        if a.stage == "extract":
            _call_pipeline(extract_argv(cfg, plan.stores[a.key]))
            print(f"stamp: {write_stamp(plan.stores[a.key])}")
        else:
            _call_pipeline(train_argv(cfg, plan.runs[a.key]))
    except PlanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
