"""The experiment plan: an experiment config expanded into the stores to extract and the runs to train.

An experiment config (params.yaml, configs/*.yaml) names *what* to compare: upstreams, the
table's sections (upstream sets × interfaces), the task columns and the seeds. DVC cannot take
cross products of such a structure, so this package expands it into two flat dicts that
dvc.yaml iterates with `foreach`:

    stores: {"<dataset>-<upstream>": {dataset, upstream, data, store, stamp}}
    runs:   {"<set>-<interface>-<column>[-<value>][-s<seed>]": {models, interface, column, task,
             data, cache, stamps: [3 slots], code: [12 slots], settings, group, seed}}

`python -m pipeline.plan write CONFIG -o params.yaml` writes the config's text under a header
that names it, then the generated sections and the config's path and hash (`source`); every
stage refuses to run when those sections no longer match the experiment above them, or when
the config has changed since (the config is the one place the experiment is kept). Hyperparameters (`train`, `tasks.<column>`,
`interfaces.<name>`, `upstreams.<name>`) are *not* copied into the runs: the stages read
them from params.yaml when they run (pipeline/plan/settings.py), so
`dvc exp run -S train.lr=...` needs no regeneration.

The experiment is one typed tree, `Experiment` (experiment.py), parsed once from the YAML by
`load_experiment(FILE)` with errors that name the file and the key path; docs/CONFIG.md lists
its keys and the one precedence chain of a run's settings. Its keys (configs/default.yaml is
a commented example):
    data:       {suite, synth (preset or null), seed, import: {name: {corpus, root, args}}}
    paths:      {data_root, cache_root, runs_root}
    device:     auto | cpu | cuda[:N]   (read when a stage runs)
    upstreams:  {name: {whisper_mode?, source?, batch_seconds?}}
    aliases:    {alias: {default: upstream, <column>: upstream}}  # per-column substitutes
    tasks:      {column: {task, data?, store_data?, set?: {...}, expand?: {key: [values]},
                 train?: {...}, args?: {...}}}
                `data` / `store_data` are paths under data/<suite>/ and may hold `{key}` of the
                expansion (`iemocap/fold{fold}`); `store_data` (default `data`) is the dir the
                stores are extracted from, so folds that hold the same utterances share stores.
    table:      [{table?, section, sets: [[upstream|alias, ...]], interfaces: [...], tasks?: [...]}]
    seeds:      [0, 1, 2]  # each run once per seed (keys get `-s<seed>` when more than one);
                           # default [train.seed] or [0]
    defaults:   demo | recipe | none  # which of each task's own defaults the runs start from
    train, interfaces, report: hyperparameters and labels, passed through; analysis: free-form.

Modules: experiment.py (the typed experiment, `parse_experiment`), model.py (the plan's
dataclasses), expand.py (`make_plan`), params_file.py (params.yaml: `render`,
`load_experiment`, `check`), settings.py (a run's or store's live hyperparameters),
__main__.py (`python -m pipeline.plan write | check | list`).
"""

from pipeline.plan.expand import as_experiment, experiment_seeds, make_plan, resolve
from pipeline.plan.experiment import (
    Column,
    CorpusImport,
    Data,
    Experiment,
    Paths,
    Section,
    parse_experiment,
)
from pipeline.plan.model import (
    ANALYSIS_SLOTS,
    CODE_SLOTS,
    GENERATED,
    MARKER,
    STORE_SLOTS,
    Plan,
    PlanError,
    Row,
    Run,
    Store,
)
from pipeline.plan.params_file import (
    check,
    checked,
    load_experiment,
    read_experiment_mapping,
    render,
)
from pipeline.plan.settings import extract_argv, train_argv, train_settings

__all__ = [
    "ANALYSIS_SLOTS", "CODE_SLOTS", "GENERATED", "MARKER", "STORE_SLOTS", "Column", "CorpusImport", "Data", "Experiment",
    "Paths", "Plan", "PlanError", "Row", "Run", "Section", "Store", "as_experiment", "check", "checked",
    "experiment_seeds", "extract_argv", "load_experiment", "make_plan", "parse_experiment",
    "read_experiment_mapping", "render", "resolve", "train_argv", "train_settings",
]  # fmt: skip
