"""Expand an experiment config into the stores to extract and the runs to train.

`make_plan(cfg)` takes a parsed experiment (params.yaml or configs/*.yaml, without the
generated part) and returns a `Plan` (sfm_fusion/stages/plan/model.py): one `Store` per upstream × task
data dir, one `Run` per table row × task column × expansion (fold, language) × seed.
"""

from __future__ import annotations

from typing import Any

from sfm_fusion.interfaces import REGISTRY as INTERFACE_REGISTRY
from sfm_fusion.stages.plan.model import (
    STORE_SLOTS,
    Plan,
    PlanError,
    Row,
    Run,
    Store,
)
from sfm_fusion.tasks import TASKS


def _get(d: dict, key: str, where: str) -> Any:
    if key not in d:
        raise PlanError(f"{where}: missing key `{key}`")
    return d[key]


def resolve(member: str, column: str, task: str, aliases: dict, upstreams: dict, where: str) -> str:
    """An upstream or alias name as an upstream name for one column (column key, task, default)."""
    if member in aliases:
        a = aliases[member]
        name = a.get(column, a.get(task, a.get("default")))
        if name is None:
            raise PlanError(
                f"{where}: alias `{member}` has no entry for column `{column}` and no `default`"
            )
        member = name
    if member not in upstreams:
        raise PlanError(
            f"{where}: `{member}` is not under `upstreams:` (known: {sorted(upstreams)}) nor `aliases:`"
        )
    return member


def _expansions(spec: dict, where: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """A column's `expand` as (group, task settings) pairs; no expansion -> [({}, {})].

    `expand: {fold: [1, 2]}` -> [({fold: 1}, {fold: 1}), ({fold: 2}, {fold: 2})];
    `expand: {config: {eng1: {language: eng}}}` -> [({config: eng1}, {config: eng1, language: eng})].
    """
    expand = spec.get("expand") or {}
    if not expand:
        return [({}, {})]
    if len(expand) != 1:
        raise PlanError(
            f"{where}: `expand` takes one key (a language list or a fold list), got {sorted(expand)}"
        )
    ((k, values),) = expand.items()
    if isinstance(values, dict) and values:
        return [({k: v}, {k: v, **(extra or {})}) for v, extra in values.items()]
    if not isinstance(values, list) or not values:
        raise PlanError(f"{where}: `expand.{k}` must be a non-empty list or mapping")
    return [({k: v}, {k: v}) for v in values]


def experiment_seeds(cfg: dict) -> list[int]:
    """The experiment's `seeds` (default: `[train.seed]`, else `[0]`): each run trains once per seed.

    `train.seed` beside a `seeds` list is refused unless it is that list's only member, so a
    `-S train.seed=...` cannot be silently overridden by the list.
    """
    train_seed = (cfg.get("train") or {}).get("seed")
    if "seeds" not in cfg:
        return [0 if train_seed is None else int(train_seed)]
    seeds = cfg["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise PlanError(
            f"seeds: expected a non-empty list of integers, e.g. [0, 1, 2]; got {seeds!r}"
        )
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise PlanError(f"seeds: every seed must be an integer; got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise PlanError(f"seeds: {seeds} lists a seed twice")
    if train_seed is not None and seeds != [train_seed]:
        raise PlanError(
            f"train.seed: {train_seed} is set beside seeds: {seeds}; drop train.seed "
            "(each run trains with its own seed from `seeds`)"
        )
    return list(seeds)


def make_plan(cfg: dict) -> Plan:
    """Expand an experiment config (a parsed params.yaml / configs/*.yaml) into stores, runs and rows."""
    data = cfg.get("data") or {}
    suite = str(_get(data, "suite", "data"))
    paths = {
        "data_root": "data",
        "cache_root": "cache",
        "runs_root": "runs",
        **(cfg.get("paths") or {}),
    }
    upstreams = _get(cfg, "upstreams", "config")
    aliases = cfg.get("aliases") or {}
    tasks = _get(cfg, "tasks", "config")
    table = _get(cfg, "table", "config")
    imports_cfg = data.get("import") or {}
    seeds = experiment_seeds(cfg)
    if data.get("synth") and imports_cfg:
        raise PlanError(
            "data: set either `synth` (the built-in suite) or `import` (real corpora), not both"
        )
    if not data.get("synth") and not imports_cfg:
        raise PlanError("data: set `synth: tiny|demo` or list corpora under `import:`")

    data_dir = f"{paths['data_root']}/{suite}"
    synth = {suite: {"out": data_dir}} if data.get("synth") else {}
    imports = {}
    for name, spec in imports_cfg.items():
        corpus = _get(spec, "corpus", f"data.import.{name}")
        imports[name] = {
            "corpus": corpus,
            "root": str(_get(spec, "root", f"data.import.{name}")),
            "args": str(spec.get("args", "")),
            "parent": data_dir,
            "out": f"{data_dir}/{corpus}",
        }

    stores: dict[str, Store] = {}
    runs: dict[str, Run] = {}
    rows: list[Row] = []

    def store_for(dataset: str, m: str) -> Store:
        skey = f"{dataset.replace('/', '_')}-{m}"
        if skey not in stores:
            cache_dir = f"{paths['cache_root']}/{suite}/{dataset}"
            stores[skey] = Store(
                skey,
                dataset,
                m,
                f"{data_dir}/{dataset}",
                f"{cache_dir}/{m}.zarr",
                f"cache/{suite}/{dataset}/{m}.stamp.json",
            )
        return stores[skey]

    for si, sec in enumerate(table):
        where = f"table[{si}]"
        section = str(_get(sec, "section", where))
        cols = sec.get("tasks") or list(tasks)
        for c in cols:
            if c not in tasks:
                raise PlanError(
                    f"{where}: task column `{c}` is not under `tasks:` (known: {list(tasks)})"
                )
        for iface in _get(sec, "interfaces", where):
            if iface not in INTERFACE_REGISTRY:  # the names registered in sfm_fusion.interfaces
                raise PlanError(
                    f"{where}: unknown interface `{iface}`; choose from {sorted(INTERFACE_REGISTRY)}"
                )
        for members in _get(sec, "sets", where):
            members = [members] if isinstance(members, str) else list(members)
            if not 1 <= len(members) <= STORE_SLOTS:
                raise PlanError(
                    f"{where}: a set has {len(members)} upstreams; dvc.yaml has {STORE_SLOTS} slots"
                )
            for iface in sec["interfaces"]:
                row = Row(str(sec.get("table", "I")), section, members, iface, {})
                for col in cols:
                    spec = tasks[col] or {}
                    task = spec.get("task", col)
                    if task not in TASKS:  # the names registered in sfm_fusion.tasks
                        raise PlanError(
                            f"tasks.{col}: unknown task `{task}`; choose from {sorted(TASKS)}"
                        )
                    models = [resolve(m, col, task, aliases, upstreams, where) for m in members]
                    if len(set(models)) != len(models):
                        raise PlanError(
                            f"{where}: set {members} resolves to {models} for `{col}`: an upstream twice"
                        )
                    keys = []
                    for group, ex in _expansions(spec, f"tasks.{col}"):
                        try:
                            dataset = str(spec.get("data", task)).format(**ex)
                            store_data = str(spec.get("store_data", spec.get("data", task))).format(
                                **ex
                            )
                        except KeyError as e:
                            raise PlanError(
                                f"tasks.{col}: `data` uses {e} but `expand` has no such key"
                            ) from None
                        stamps = [store_for(store_data, m).stamp for m in models]
                        suffix = "".join(
                            f"-{k}{v}" if isinstance(v, int) else f"-{v}" for k, v in group.items()
                        )
                        for seed in seeds:
                            key = f"{'+'.join(models)}-{iface}-{col}{suffix}"
                            key += f"-s{seed}" if len(seeds) > 1 else ""
                            if key not in runs:
                                runs[key] = Run(
                                    key,
                                    models,
                                    iface,
                                    col,
                                    task,
                                    f"{data_dir}/{dataset}",
                                    f"{paths['cache_root']}/{suite}/{store_data}",
                                    stamps + [stamps[0]] * (STORE_SLOTS - len(stamps)),
                                    {**(spec.get("set") or {}), **ex},
                                    group,
                                    seed,
                                )
                            keys.append(key)
                    row.cells[col] = keys
                rows.append(row)
    corpora = {v["corpus"] for v in imports.values()}
    for r in runs.values():
        ds = r.data[len(data_dir) + 1 :]
        if not synth and ds.split("/")[0] not in corpora:
            raise PlanError(
                f"task data `{ds}` comes from no corpus under data.import (imported: {sorted(corpora)})"
            )
    return Plan(suite, list(tasks), stores, runs, rows, synth, imports, seeds)
