"""The experiment as one typed tree: `Experiment` and its parts, parsed once from a mapping.

`parse_experiment(mapping, source)` checks every structural key (its type, unknown keys with
the keys that exist, the interface and task names against their registries) and raises a
PlanError naming the file and the key path (`configs/x.yaml: tasks.sv.expand: ...`). The
free-form parts stay dicts, validated where they are used: hyperparameters (`train`,
`tasks.<column>.train` / `.args`, `interfaces.<name>`, `upstreams.<name>`) by the run config
(pipeline/train/config.py), `analysis` by the analysis stage. `Experiment.to_dict()` gives the
mapping back (as a YAML file would hold it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline import names
from pipeline.names import DEFAULTS_LAYERS
from pipeline.plan.model import GENERATED, PlanError


@dataclass(frozen=True)
class CorpusImport:
    """`data.import.<name>`: a real corpus imported by `pipeline data import CORPUS ROOT`."""

    corpus: str
    root: str
    args: str = ""


@dataclass(frozen=True)
class Data:
    """`data`: the suite (data/<suite>/), built-in (`synth`), imported (`imports`) or both
    (synth's task dirs beside the imported corpora, which then go to data/<suite>-import/)."""

    suite: str
    synth: str | None = None  # preset of the built-in suite: tiny | demo | large
    seed: int = 0
    imports: dict[str, CorpusImport] = field(default_factory=dict)  # YAML key `import`


@dataclass(frozen=True)
class Paths:
    """`paths`: where manifests, feature stores and run directories live."""

    data_root: str = "data"
    cache_root: str = "cache"
    runs_root: str = "runs"


@dataclass(frozen=True)
class Column:
    """`tasks.<name>`: one column of the table, a pipeline task with its settings."""

    name: str  # the column key
    task: str  # a name registered in pipeline.tasks
    data: str | None = None  # task data dir under data/<suite>/ (default: the task name)
    store_data: str | None = None  # the dir its stores are extracted from (default: data)
    set: dict[str, Any] = field(default_factory=dict)  # structural task settings
    expand: dict[str, Any] = field(default_factory=dict)  # {key: [values] | {value: settings}}
    train: dict[str, Any] = field(default_factory=dict)  # over the experiment's `train`
    args: dict[str, Any] = field(default_factory=dict)  # the task's own arguments

    @property
    def data_dir(self) -> str:
        return self.data or self.task

    @property
    def store_dir(self) -> str:
        return self.store_data or self.data_dir

    def expansions(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(group, task settings) pairs; no expansion -> [({}, {})].

        `expand: {fold: [1, 2]}` -> [({fold: 1}, {fold: 1}), ({fold: 2}, {fold: 2})];
        `expand: {config: {eng1: {language: eng}}}` -> [({config: eng1}, {config: eng1, language: eng})].
        """
        if not self.expand:
            return [({}, {})]
        ((k, values),) = self.expand.items()
        if isinstance(values, dict):
            return [({k: v}, {k: v, **(extra or {})}) for v, extra in values.items()]
        return [({k: v}, {k: v}) for v in values]


@dataclass(frozen=True)
class Section:
    """`table[i]`: a section of a results table, its upstream sets × interfaces."""

    section: str
    sets: list[list[str]]  # upstream or alias names, 1..STORE_SLOTS per set
    interfaces: list[str]  # names registered in pipeline.interfaces
    table: str = "I"
    tasks: list[str] | None = None  # column names; None: every column


@dataclass(frozen=True)
class Experiment:
    """One experiment config (configs/*.yaml, params.yaml above the generated part)."""

    data: Data
    upstreams: dict[str, dict[str, Any]]  # name -> extraction options (free-form)
    tasks: dict[str, Column]  # the table's columns, in order
    table: list[Section]
    paths: Paths = field(default_factory=Paths)
    device: str = "auto"
    # alias -> {column | task | default: upstream}
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)
    seeds: list[int] | None = None  # None: [train.seed], else [0]
    defaults: str | None = None  # the tasks' defaults runs start from: demo | recipe | none
    train: dict[str, Any] = field(default_factory=dict)  # every run (free-form)
    interfaces: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> kwargs
    report: dict[str, Any] = field(default_factory=dict)  # title, names, columns, split(s)
    analysis: dict[str, Any] = field(default_factory=dict)  # free-form, passed through
    source: str = field(default="<mapping>", compare=False)  # the file it was read from

    def run_seeds(self) -> list[int]:
        """Each run trains once per seed: `seeds`, else `[train.seed]`, else `[0]`."""
        if self.seeds is not None:
            return list(self.seeds)
        seed = self.train.get("seed")
        return [0 if seed is None else int(seed)]

    def to_dict(self) -> dict[str, Any]:
        """The experiment as the mapping a YAML file holds (optional keys only when set)."""
        d = self.data
        out: dict[str, Any] = {
            "data": {"suite": d.suite, "synth": d.synth, "seed": d.seed,
                     "import": {k: vars(v).copy() for k, v in d.imports.items()}},
            "paths": vars(self.paths).copy(),
            "device": self.device,
            "upstreams": {k: dict(v) for k, v in self.upstreams.items()},
            "aliases": {k: dict(v) for k, v in self.aliases.items()},
            "tasks": {k: _column_dict(c) for k, c in self.tasks.items()},
            "table": [_section_dict(s) for s in self.table],
        }  # fmt: skip
        if self.seeds is not None:
            out["seeds"] = list(self.seeds)
        if self.defaults is not None:
            out["defaults"] = self.defaults
        out |= {"train": dict(self.train), "interfaces": {k: dict(v) for k, v in self.interfaces.items()},
                "report": dict(self.report)}  # fmt: skip
        if self.analysis:
            out["analysis"] = dict(self.analysis)
        return out


def _column_dict(c: Column) -> dict[str, Any]:
    out: dict[str, Any] = {"task": c.task}
    for k in ("data", "store_data"):
        if getattr(c, k) is not None:
            out[k] = getattr(c, k)
    for k in ("set", "expand", "train", "args"):
        if getattr(c, k):
            out[k] = dict(getattr(c, k))
    return out


def _section_dict(s: Section) -> dict[str, Any]:
    out: dict[str, Any] = {"table": s.table, "section": s.section,
                           "sets": [list(m) for m in s.sets], "interfaces": list(s.interfaces)}  # fmt: skip
    if s.tasks is not None:
        out["tasks"] = list(s.tasks)
    return out


class _Reader:
    """Type checks that name the file and the key path of what they refuse."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, msg: str) -> PlanError:
        return PlanError(f"{self.source}: {path}: {msg}" if path else f"{self.source}: {msg}")

    def mapping(self, v: Any, path: str, keys: tuple[str, ...] | None = None,
                required: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
        """A mapping (None -> {}); with `keys`, only those keys, `required` among them."""
        if v is None:
            v = {}
        if not isinstance(v, Mapping):
            raise self.fail(path, f"expected a mapping, got {type(v).__name__} {v!r}")
        if keys is not None:
            for k in v:
                if k not in keys:
                    raise self.fail(path, f"unknown key `{k}` (known: {', '.join(keys)})")
        for k in required:
            if k not in v:
                where = f"{path}: missing key `{k}`" if path else f"missing key `{k}`"
                raise self.fail("", where)
        return dict(v)

    def string(self, v: Any, path: str, optional: bool = False) -> str | None:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise self.fail(path, f"expected a name (text), got {v!r}")
        return str(v)

    def names(self, v: Any, path: str) -> list[str]:
        if not isinstance(v, list) or not v:
            raise self.fail(path, f"expected a non-empty list of names, got {v!r}")
        return [str(self.string(x, f"{path}[{i}]")) for i, x in enumerate(v)]

    def free(self, v: Any, path: str) -> dict[str, dict[str, Any]]:
        """{name: free-form mapping} (each value None -> {})."""
        return {str(k): self.mapping(x, f"{path}.{k}") for k, x in self.mapping(v, path).items()}


_TOP = ("data", "paths", "device", "upstreams", "aliases", "tasks", "table", "seeds",
        "defaults", "train", "interfaces", "report", "analysis")  # fmt: skip
_COLUMN = ("task", "data", "store_data", "set", "expand", "train", "args")
_SECTION = ("table", "section", "sets", "interfaces", "tasks")


def parse_experiment(cfg: Mapping[str, Any], source: str = "<mapping>") -> Experiment:
    """The typed experiment of a parsed YAML mapping (generated params.yaml sections ignored)."""
    r = _Reader(source)
    top = {k: v for k, v in r.mapping(cfg, "").items() if k not in GENERATED}
    if "base" in top:
        raise r.fail("base", "`base:` is merged by load_experiment(FILE); parse its result")
    r.mapping(top, "", _TOP, required=("data", "upstreams", "tasks", "table"))
    data = _data(r, top["data"])
    paths = Paths(**{k: str(v) for k, v in r.mapping(top.get("paths"), "paths", ("data_root", "cache_root", "runs_root")).items()})  # fmt: skip
    aliases = {}
    for name, spec in r.mapping(top.get("aliases"), "aliases").items():
        m = r.mapping(spec, f"aliases.{name}")
        aliases[str(name)] = {str(k): str(r.string(u, f"aliases.{name}.{k}")) for k, u in m.items()}
    tasks = {str(k): _column(r, str(k), v) for k, v in r.mapping(top["tasks"], "tasks").items()}
    if not tasks:
        raise r.fail("tasks", "lists no column; give at least one, e.g. `er: {task: er}`")
    if not isinstance(top["table"], list) or not top["table"]:
        raise r.fail("table", f"expected a non-empty list of sections, got {top['table']!r}")
    table = [_section(r, i, s, tasks) for i, s in enumerate(top["table"])]
    defaults = r.string(top.get("defaults"), "defaults", optional=True)
    if defaults is not None and defaults not in DEFAULTS_LAYERS:
        raise r.fail("defaults", f"{defaults!r}: choose one of {', '.join(DEFAULTS_LAYERS)}")
    train = r.mapping(top.get("train"), "train")
    exp = Experiment(
        data=data, upstreams=r.free(top["upstreams"], "upstreams"), tasks=tasks, table=table,
        paths=paths, device=str(r.string(top.get("device", "auto"), "device")), aliases=aliases,
        seeds=_seeds(r, top, train), defaults=defaults, train=train,
        interfaces=r.free(top.get("interfaces"), "interfaces"),
        report=r.mapping(top.get("report"), "report"),
        analysis=r.mapping(top.get("analysis"), "analysis"), source=source,
    )  # fmt: skip
    if not exp.upstreams:
        raise r.fail("upstreams", "lists no upstream; name at least one, e.g. `whisper_base: {}`")
    return exp


def _data(r: _Reader, v: Any) -> Data:
    d = r.mapping(v, "data", ("suite", "synth", "seed", "import"), required=("suite",))
    imports = {}
    for name, spec in r.mapping(d.get("import"), "data.import").items():
        where = f"data.import.{name}"
        s = r.mapping(spec, where, ("corpus", "root", "args"), required=("corpus", "root"))
        imports[str(name)] = CorpusImport(str(r.string(s["corpus"], f"{where}.corpus")),
                                          str(r.string(s["root"], f"{where}.root")),
                                          str(s.get("args") or ""))  # fmt: skip
    synth = r.string(d.get("synth"), "data.synth", optional=True) or None
    # Both may be set: the suite's task dirs come from synth, a column whose `data` starts with
    # an imported corpus's name reads that import (make_plan checks every column's source).
    if not synth and not imports:
        raise r.fail("data", "set `synth: tiny|demo|large` or list corpora under `import:`")
    seed = d.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise r.fail("data.seed", f"expected an integer, got {seed!r}")
    return Data(str(r.string(d["suite"], "data.suite")), synth, seed, imports)


def _column(r: _Reader, name: str, v: Any) -> Column:
    where = f"tasks.{name}"
    c = r.mapping(v, where, _COLUMN)
    task = str(r.string(c.get("task", name), f"{where}.task"))
    if task not in names.known("task"):  # pipeline/tasks/<name>.py (pipeline/names.py)
        raise r.fail(f"{where}.task", f"unknown task `{task}`; {names.closest(task, names.known('task'))}")  # fmt: skip
    expand = r.mapping(c.get("expand"), f"{where}.expand")
    if len(expand) > 1:
        raise r.fail(f"{where}.expand", f"takes one key (a language list or a fold list), got {sorted(expand)}")  # fmt: skip
    for k, values in expand.items():
        if not isinstance(values, (list, dict)) or not values:
            raise r.fail(f"{where}.expand.{k}", "must be a non-empty list or mapping")
    col = Column(
        name, task, r.string(c.get("data"), f"{where}.data", optional=True),
        r.string(c.get("store_data"), f"{where}.store_data", optional=True),
        r.mapping(c.get("set"), f"{where}.set"), expand, r.mapping(c.get("train"), f"{where}.train"),
        r.mapping(c.get("args"), f"{where}.args"),
    )  # fmt: skip
    for _, ex in col.expansions():
        try:
            col.data_dir.format(**ex), col.store_dir.format(**ex)
        except KeyError as e:
            raise r.fail(f"{where}.data", f"uses {e} but `expand` has no such key") from None
    return col


def _section(r: _Reader, i: int, v: Any, tasks: dict[str, Column]) -> Section:
    where = f"table[{i}]"
    s = r.mapping(v, where, _SECTION, required=("section", "sets", "interfaces"))
    sets = s["sets"]
    if not isinstance(sets, list) or not sets:
        raise r.fail(f"{where}.sets", f"expected a non-empty list of upstream sets, got {sets!r}")
    sets = [[m] if isinstance(m, str) else r.names(m, f"{where}.sets[{j}]") for j, m in enumerate(sets)]  # fmt: skip
    interfaces = r.names(s["interfaces"], f"{where}.interfaces")
    for name in interfaces:
        if name not in names.known("interface"):  # pipeline/interfaces/<name>.py
            raise r.fail(f"{where}.interfaces", f"unknown interface `{name}`; {names.closest(name, names.known('interface'))}")  # fmt: skip
    cols = None if s.get("tasks") is None else r.names(s["tasks"], f"{where}.tasks")
    for c in cols or []:
        if c not in tasks:
            raise r.fail(f"{where}.tasks", f"task column `{c}` is not under `tasks:` (known: {list(tasks)})")  # fmt: skip
    return Section(str(r.string(s["section"], f"{where}.section")), sets, interfaces,
                   str(r.string(s.get("table", "I"), f"{where}.table")), cols)  # fmt: skip


def _seeds(r: _Reader, top: dict[str, Any], train: dict[str, Any]) -> list[int] | None:
    """`seeds`, checked; `train.seed` beside a `seeds` list is refused unless it is that list's
    only member, so a `-S train.seed=...` cannot be silently overridden by the list."""
    if "seeds" not in top:
        return None
    seeds = top["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise r.fail("seeds", f"expected a non-empty list of integers, e.g. [0, 1, 2]; got {seeds!r}")  # fmt: skip
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise r.fail("seeds", f"every seed must be an integer; got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise r.fail("seeds", f"{seeds} lists a seed twice")
    seed = train.get("seed")
    if seed is not None and seeds != [seed]:
        raise r.fail("train.seed", f"{seed} is set beside seeds: {seeds}; drop train.seed "
                     "(each run trains with its own seed from `seeds`)")  # fmt: skip
    return list(seeds)
