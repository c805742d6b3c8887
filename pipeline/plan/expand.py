"""Expand an experiment into the stores to extract and the runs to train.

`make_plan(exp)` takes a typed `Experiment` (pipeline/plan/experiment.py; a plain mapping
is parsed into one first) and returns a `Plan` (pipeline/plan/model.py): one `Store` per
upstream × task data dir, one `Run` per table row × task column × expansion (fold, language) ×
seed. Names and types were checked when the experiment was parsed; what is left here is what
depends on the column: resolving aliases and refusing a set that names an upstream twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline import names
from pipeline.paths import run_key, stamp_path, store_path
from pipeline.plan.experiment import Experiment, parse_experiment
from pipeline.plan.model import (
    ANALYSIS_SLOTS,
    CODE_SLOTS,
    STORE_SLOTS,
    Plan,
    PlanError,
    Row,
    Run,
    Store,
)


def as_experiment(exp: Experiment | Mapping[str, Any]) -> Experiment:
    """`exp` itself, or the mapping (a parsed YAML experiment) parsed into an Experiment."""
    return exp if isinstance(exp, Experiment) else parse_experiment(exp)


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


def experiment_seeds(exp: Experiment | Mapping[str, Any]) -> list[int]:
    """The experiment's `seeds` (default: `[train.seed]`, else `[0]`): each run trains once per seed."""
    return as_experiment(exp).run_seeds()


def make_plan(exp: Experiment | Mapping[str, Any]) -> Plan:
    """Expand an experiment (typed, or a parsed params.yaml / configs/*.yaml) into stores, runs and rows."""
    exp = as_experiment(exp)
    suite, paths, seeds = exp.data.suite, exp.paths, exp.run_seeds()
    data_dir = f"{paths.data_root}/{suite}"
    synth = {suite: {"out": data_dir}} if exp.data.synth else {}
    # Beside synth (whose DVC output is all of data/<suite>), imports go to a folder of their
    # own: DVC refuses an output inside another stage's output folder.
    import_dir = f"{data_dir}-import" if synth else data_dir
    imports = {
        name: {"corpus": s.corpus, "root": s.root, "args": s.args, "parent": import_dir,
               "out": f"{import_dir}/{s.corpus}"}
        for name, s in exp.data.imports.items()
    }  # fmt: skip
    corpora = {v["corpus"] for v in imports.values()}

    def data_path(dataset: str) -> str:
        """Where a column's task data dir lies: an imported corpus's, else the suite's."""
        return f"{import_dir if dataset.split('/')[0] in corpora else data_dir}/{dataset}"

    stores: dict[str, Store] = {}
    runs: dict[str, Run] = {}
    rows: list[Row] = []

    def store_for(dataset: str, m: str) -> Store:
        skey = f"{dataset.replace('/', '_')}-{m}"
        if skey not in stores:
            cache_dir = f"{paths.cache_root}/{suite}/{dataset}"
            stores[skey] = Store(skey, dataset, m, data_path(dataset),
                                 store_path(cache_dir, m), stamp_path(suite, dataset, m))  # fmt: skip
        return stores[skey]

    for si, sec in enumerate(exp.table):
        where = f"{exp.source}: table[{si}]"
        cols = sec.tasks or list(exp.tasks)
        for members in sec.sets:
            if not 1 <= len(members) <= STORE_SLOTS:
                raise PlanError(
                    f"{where}: a set has {len(members)} upstreams; dvc.yaml has {STORE_SLOTS} slots"
                )
            for iface in sec.interfaces:
                row = Row(sec.table, sec.section, list(members), iface, {})
                for col in cols:
                    row.cells[col] = _cell(exp, col, members, iface, where, seeds, store_for,
                                           runs, data_path)  # fmt: skip
                rows.append(row)
    for col, spec in exp.tasks.items():
        for _, ex in spec.expansions():
            for ds in (spec.data_dir.format(**ex), spec.store_dir.format(**ex)):
                if not synth and ds.split("/")[0] not in corpora:
                    raise PlanError(
                        f"{exp.source}: tasks.{col}: task data `{ds}` comes from no corpus under "
                        f"data.import (imported: {sorted(corpora)}); import it or set data.synth"
                    )
    return Plan(suite, list(exp.tasks), stores, runs, rows, synth, imports, seeds,
                analysis_code(exp))  # fmt: skip


def _cell(exp: Experiment, col: str, members: list[str], iface: str, where: str,
          seeds: list[int], store_for, runs: dict[str, Run], data_path) -> list[str]:  # fmt: skip
    """The run keys of one table cell (adding its runs to `runs`): one per expansion × seed.
    `data_path(dataset)` is where a task data dir lies (the suite's or an import's folder)."""
    spec = exp.tasks[col]
    models = [resolve(m, col, spec.task, exp.aliases, exp.upstreams, where) for m in members]
    if len(set(models)) != len(models):
        raise PlanError(f"{where}: set {members} resolves to {models} for `{col}`: an upstream twice")  # fmt: skip
    code = run_code(iface, spec.task, where)
    keys = []
    for group, ex in spec.expansions():
        dataset, store_data = spec.data_dir.format(**ex), spec.store_dir.format(**ex)
        stamps = [store_for(store_data, m).stamp for m in models]
        for seed in seeds:
            key = run_key(models, iface, col, group, seed, len(seeds))
            if key not in runs:
                runs[key] = Run(key, models, iface, col, spec.task, data_path(dataset),
                                f"{exp.paths.cache_root}/{exp.data.suite}/{store_data}",
                                stamps + [stamps[0]] * (STORE_SLOTS - len(stamps)), code,
                                {**spec.set, **ex}, group, seed)  # fmt: skip
            keys.append(key)
    return keys


def run_code(interface: str, task: str, where: str) -> list[str]:
    """The files of pipeline/interfaces/ and pipeline/tasks/ a run of `interface` and `task`
    runs, padded to CODE_SLOTS by repeating the first (its train stage's code dependencies)."""
    files = names.code_files("interface", interface) + names.code_files("task", task)
    if len(files) > CODE_SLOTS:
        raise PlanError(
            f"{where}: interface `{interface}` with task `{task}` runs {len(files)} files of "
            f"pipeline/interfaces and pipeline/tasks; dvc.yaml's train stage has {CODE_SLOTS} "
            "code slots (raise CODE_SLOTS in pipeline/plan/model.py and add slots to dvc.yaml)"
        )
    return files + [files[0]] * (CODE_SLOTS - len(files))


def analysis_code(exp: Experiment) -> list[str]:
    """The task modules the analyze stage's probes run (`analysis.probe.columns`' tasks), padded
    to ANALYSIS_SLOTS: its code dependencies beside the shared ones, so an edit of a task the
    probes do not use reruns no analysis."""
    probe = (exp.analysis or {}).get("probe") or {}
    files: list[str] = []
    for col in probe.get("columns") or []:
        if str(col) in exp.tasks:
            files += names.code_files("task", exp.tasks[str(col)].task)
    files = sorted(set(files)) or ["pipeline/tasks/__init__.py"]
    if len(files) > ANALYSIS_SLOTS:
        raise PlanError(
            f"{exp.source}: analysis.probe.columns run {len(files)} files of pipeline/tasks; "
            f"dvc.yaml's analyze stage has {ANALYSIS_SLOTS} slots (raise ANALYSIS_SLOTS in "
            "pipeline/plan/model.py and add slots to dvc.yaml)"
        )
    return files + [files[0]] * (ANALYSIS_SLOTS - len(files))
