"""Run configuration: dataclasses, per-task defaults, a YAML file and `--set key=value` overrides.

`resolve_config` is the one place that applies the precedence chain of a run's settings (the
table in docs/CONFIG.md: dataclass defaults, the task's own defaults, `--config`, `--set`,
explicit arguments). The resolved config is written to RUN_DIR/config.yaml and is what a
resumed run is compared against.

The `demo` defaults suit the built-in offline suite on 2 CPU cores (a few hundred steps, small
heads); `recipe` holds the anchors' recipes (SUPERB / ML-SUPERB) for the paper config.

`--set` keys are dotted (`train.lr=3e-4`, `interface_args.layer_norm=true`,
`task_args.hidden=128`); a bare name of a `TrainSettings` field (`lr=3e-4`) means `train.<name>`.
Values are parsed as YAML, then coerced to the field's type.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline import names
from pipeline.errors import UserError
from pipeline.feed.tiers import TIERS
from pipeline.interfaces import interface_class
from pipeline.names import DEFAULTS_LAYERS
from pipeline.tasks import task_class


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message names the key or file and what to fix."""


@dataclass
class TrainSettings:
    """How stage two trains: step-based, AdamW, dev evaluation every `eval_every` steps."""

    steps: int = 200  # optimizer steps (SUPERB ER: 30k, ASR: 200k)
    batch_size: int = 8  # utterances per micro-batch
    accum: int = 1  # micro-batches per optimizer step (gradient accumulation)
    lr: float = 1e-3  # AdamW; SUPERB uses 1e-4 over far more steps
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    warmup: int = 0  # linear warm-up steps, then constant
    grad_clip: float = 1.0  # max gradient norm (s3prl clips at 1); 0 disables
    eval_every: int = 50  # steps between dev evaluations (and last.pt checkpoints)
    patience: int = 0  # early stop after this many evaluations without improvement; 0 = never
    seed: int = 0  # torch, numpy, random and the loader's shuffle
    num_workers: int = 0  # loader worker processes (spawned); 0 reads in the main process
    device: str = "auto"  # auto = cuda if available, else cpu
    threads: int = 0  # torch intra-op CPU threads; 0 = torch's default (1 helps on a busy machine)
    tier: str = "auto"  # loader tier: auto | gpu | pinned | mmap (see pipeline.feed.loader)
    features: str = "cache"  # cache: read stores | onthefly: run the upstream inside the step
    whisper_mode: str = "pad30"  # on the fly only: how Whisper upstreams see short input
    autocast: str = "none"  # none | bf16: the training forward in bfloat16 autocast (CPU or GPU)
    crop_s: float = 0.0  # crop each training clip to a random window of this many seconds; 0 = whole


@dataclass
class RunConfig:
    """Everything a run depends on. `out` (the run dir) is not part of a run's identity."""

    interface: str = "ws"  # a name registered in pipeline.interfaces (ws, hconv, chconv, gumd)
    models: list[str] = field(default_factory=list)  # upstream names, one store each
    task: str = "er"  # a name registered in pipeline.tasks (er, asr, asr_en, ml_asr, sv)
    defaults: str = "demo"  # the task's defaults to start from: demo | recipe | none
    data: str = ""  # task data dir: train.jsonl, dev.jsonl, test.jsonl (+ trials.tsv)
    cache: str = ""  # CACHE_DIR holding <upstream>.zarr
    stores: list[str] = field(default_factory=list)  # explicit store paths (override cache)
    out: str = ""  # RUN_DIR
    train: TrainSettings = field(default_factory=TrainSettings)
    interface_args: dict[str, Any] = field(default_factory=dict)  # kwargs for interfaces.build
    task_args: dict[str, Any] = field(default_factory=dict)  # the task's cfg dict


AUTOCAST = ("none", "bf16")  # train.autocast: the training forward's precision

# Keys that may differ when a run resumes (they do not change what is computed).
VOLATILE = ("out", "train.device", "train.num_workers", "train.tier", "train.threads")

# Which of a task's own defaults a run starts from (pipeline.tasks: each Task class holds them):
# `demo` is sized for the built-in suite on a CPU, `recipe` holds only what the anchor recipe
# (SUPERB / ML-SUPERB) states, `none` applies neither. configs/paper.yaml sets `recipe`, so the
# demo's shortcuts (small heads, MVN, no SpecAugment) never leak into the paper's runs.
# The layers' names, DEFAULTS_LAYERS, are defined with the other names users type (pipeline/names.py).


def task_defaults(task: str, layer: str) -> dict[str, dict[str, Any]]:
    """{"train": {...}, "task_args": {...}} of `task` for the `layer` of defaults."""
    if layer not in DEFAULTS_LAYERS:
        raise ConfigError(f"defaults={layer!r}: choose one of {DEFAULTS_LAYERS}")
    if layer == "none" or task not in names.known("task"):
        return {}
    return getattr(task_class(task), layer)


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(d: dict[str, Any], where: str = "config") -> RunConfig:
    """Build a RunConfig from a nested dict, refusing unknown keys (naming `where`)."""
    cfg = RunConfig()
    apply_dict(cfg, d, where)
    return cfg


def apply_dict(cfg: RunConfig, d: dict[str, Any], where: str = "config") -> None:
    """Overlay a nested dict (as in a YAML file) on `cfg`, in place."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level, got {type(d).__name__}")
    for key, value in d.items():
        if key == "train":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: `train` must be a mapping")
            for k, v in value.items():
                set_key(cfg, f"train.{k}", v, where)
        elif key in ("interface_args", "task_args"):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: `{key}` must be a mapping")
            getattr(cfg, key).update(value)
        else:
            set_key(cfg, key, value, where)


def set_key(cfg: RunConfig, key: str, value: Any, where: str = "--set") -> None:
    """Set one dotted key (`train.lr`, `task_args.hidden`, `models`, or a bare train field)."""
    train_fields = {f.name: f for f in dataclasses.fields(TrainSettings)}
    top_fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    parts = key.split(".")
    if len(parts) == 1 and parts[0] in train_fields and parts[0] not in top_fields:
        parts = ["train", parts[0]]
    head = parts[0]
    if head in ("interface_args", "task_args") and len(parts) >= 2:
        node = getattr(cfg, head)
        for p in parts[1:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    elif head == "train" and len(parts) == 2 and parts[1] in train_fields:
        setattr(cfg.train, parts[1], _coerce(value, train_fields[parts[1]], key, where))
    elif (
        len(parts) == 1
        and head in top_fields
        and head not in ("train", "interface_args", "task_args")
    ):
        setattr(cfg, head, _coerce(value, top_fields[head], key, where))
    else:
        raise ConfigError(
            f"{where}: unknown key {key!r}. Valid: {sorted(set(top_fields) - {'train'})}, "
            f"train.<{'|'.join(train_fields)}>, interface_args.<name>, task_args.<name>"
        )


def _coerce(value: Any, f: dataclasses.Field, key: str, where: str) -> Any:
    kind = str(f.type)
    try:
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)  # YAML 1.1 reads "1e-3" as a string
        if kind == "str":
            return str(value)
        if kind.startswith("list"):
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            return [str(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key}={value!r} is not a valid {kind}") from None
    return value


def parse_set(item: str) -> tuple[str, Any]:
    """`key=value` -> (key, YAML-parsed value)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.lr=3e-4")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({e})") from e
    return key.strip(), value


def resolve_config(
    *,
    interface: str | None = None,
    models: str | list[str] | None = None,
    task: str | None = None,
    data: str | Path | None = None,
    cache: str | Path | None = None,
    out: str | Path | None = None,
    config: str | Path | None = None,
    sets: list[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    settings_source: str | Mapping[str, str] = "settings",
    stores: list[str] | None = None,
    device: str | None = None,
) -> RunConfig:
    """The resolved config of a run: the precedence chain of docs/CONFIG.md, applied here only.

    sets: `key=value` texts (the CLI's `--set`); settings: the same keys with typed values, as
    the experiment plan gives them (applied at the same place of the chain, after `sets`; a bad
    value is named with `settings_source`: one text, or one per key, e.g.
    {"train.lr": "params.yaml: tasks.er.train.lr"}).
    """
    file_cfg: dict[str, Any] = {}
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            file_cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from e
    parsed_sets = [(k, v, "--set") for k, v in (parse_set(s) for s in (sets or []))]
    where = settings_source if isinstance(settings_source, Mapping) else {}
    parsed_sets += [(k, v, where.get(k, str(settings_source))) for k, v in (settings or {}).items()]
    # the task and the defaults layer decide which defaults apply, so find them first
    given = {k: v for k, v, _ in parsed_sets}
    task_name = task or given.get("task") or file_cfg.get("task") or RunConfig.task
    names.check("task", str(task_name), "--task")  # before any default is looked up
    layer = given.get("defaults") or file_cfg.get("defaults") or RunConfig.defaults
    cfg = RunConfig(task=task_name, defaults=layer)
    apply_dict(cfg, task_defaults(task_name, layer), f"{layer} defaults of task {task_name!r}")
    if file_cfg:
        apply_dict(cfg, file_cfg, str(config))
    for key, value, where in parsed_sets:
        set_key(cfg, key, value, where)
    explicit = {
        "interface": interface,
        "models": models,
        "task": task,
        "data": data,
        "cache": cache,
        "out": out,
    }
    for key, value in explicit.items():
        if value is not None:
            set_key(cfg, key, str(value) if isinstance(value, Path) else value, "command line")
    if stores:
        cfg.stores = [str(s) for s in stores]
    if device is not None:  # an explicit --device (auto included) beats a file or --set
        cfg.train.device = device
    try:
        validate(cfg)
    except ConfigError as e:  # name where a refused value came from (params.yaml's key path)
        m = re.match(r"([a-z_]+(?:\.[a-z_]+)?)[=:]", str(e))
        origin = {k: w for k, _, w in parsed_sets}.get(m.group(1)) if m else None
        if origin is None or origin == "--set":
            raise
        raise ConfigError(f"{origin}: {e}") from None
    return cfg


def validate(cfg: RunConfig) -> None:
    """Refuse a config that cannot run, before anything is written: names, ranges, modes."""
    t = cfg.train
    names.check("interface", cfg.interface, "--interface")
    names.check("task", cfg.task, "--task")
    if not cfg.models:
        raise ConfigError("no upstream models: give --models a[,b,...] (store names in CACHE_DIR)")
    if t.features not in ("cache", "onthefly"):
        raise ConfigError(f"train.features={t.features!r}: use cache or onthefly")
    for name in ("steps", "batch_size", "accum", "eval_every"):
        if getattr(t, name) < (0 if name == "steps" else 1):
            raise ConfigError(f"train.{name}={getattr(t, name)} is out of range")
    for name in ("warmup", "patience", "num_workers", "threads"):
        if getattr(t, name) < 0:
            raise ConfigError(f"train.{name}={getattr(t, name)} must be 0 or more")
    for name in ("lr", "weight_decay", "grad_clip"):
        v = getattr(t, name)
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"train.{name}={v} must be a finite number, 0 or more")
    if t.autocast not in AUTOCAST:
        raise ConfigError(f"train.autocast={t.autocast!r}: use one of {', '.join(AUTOCAST)}")
    if not (math.isfinite(t.crop_s) and t.crop_s >= 0):
        raise ConfigError(f"train.crop_s={t.crop_s} must be a finite number of seconds, 0 or more")
    if t.tier not in TIERS:
        raise ConfigError(f"train.tier={t.tier!r}: use one of {', '.join(TIERS)}")
    _check_interface_args(cfg)
    _check_task_args(cfg)
    if cfg.stores and len(cfg.stores) != len(cfg.models):
        named = all("=" in s for s in cfg.stores)
        if not named:
            raise ConfigError(
                f"{len(cfg.stores)} --store path(s) for {len(cfg.models)} model(s): give one per model, "
                "in order, or as NAME=PATH"
            )


def _check_task_args(cfg: RunConfig) -> None:
    """Refuse a task argument whose value is not of the kind the task's own defaults give it
    (`task_args.hidden=abc` where the default is a number), before anything is written."""
    cls = task_class(cfg.task, "--task")
    known = {**(cls.recipe.get("task_args") or {}), **(cls.demo.get("task_args") or {})}
    for key, value in cfg.task_args.items():
        if key not in known or known[key] is None:
            continue
        want = known[key]
        if isinstance(want, bool):
            ok = isinstance(value, bool)
        elif isinstance(want, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(want, str):
            ok = isinstance(value, str)
        else:
            continue
        if not ok:
            raise ConfigError(
                f"task_args.{key}={value!r}: task `{cfg.task}` takes "
                f"{'true or false' if isinstance(want, bool) else 'text' if isinstance(want, str) else 'a number'} "
                f"there (its default is {want!r})"
            )


def _check_interface_args(cfg: RunConfig) -> None:
    """Refuse `interface_args` the interface's class does not take (names the key, lists the
    ones it takes), before anything is written."""
    cls = interface_class(cfg.interface, "--interface")
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    takes = [n for n in params if n not in ("self", "shapes", "frame_rates")]
    unknown = sorted(set(cfg.interface_args) - set(takes))
    if unknown:
        raise ConfigError(
            f"interface_args.{unknown[0]}: interface `{cfg.interface}` takes no such argument "
            f"(it takes: {', '.join(takes) or 'none'})"
        )


def identity(cfg: RunConfig) -> dict[str, Any]:
    """The part of the config that defines what a run computes (compared on resume)."""
    d = to_dict(cfg)
    for key in VOLATILE:
        node = d
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node.pop(last, None)
    return d


def save_config(cfg: RunConfig, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
    tmp.replace(path)


def load_run_config(path: str | Path) -> RunConfig:
    """The RunConfig a run directory holds (RUN_DIR/config.yaml, written by `save_config`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path} does not exist: is this a run directory written by `pipeline train`?"
        )
    return from_dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, str(path))
