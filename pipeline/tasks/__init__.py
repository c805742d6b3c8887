"""Task registry: the names users type (`--task`) mapped to Task classes.

Each Task class carries its own name, metric, direction and defaults (`demo`, `recipe`); the
trainer, the report and the CLI read them from here. Adding a task is one module
`pipeline/tasks/NAME.py` with a `Task` subclass and one `register(...)` line in it; another
name for an existing task is a module that registers it again under that name (asr_en.py).
As for interfaces, the plan and `--help` find the names by their files (pipeline/names.py), and
this registry imports the module of the name asked for and no other, so a run depends on its
own task's code only.
"""

from __future__ import annotations

import importlib

from pipeline import names
from pipeline.tasks.base import Task, metrics_record

TASKS: dict[str, type[Task]] = {}
names.attach("task", TASKS)
METRIC_LABELS = {"wer": "WER", "cer": "CER", "eer": "EER", "accuracy": "Acc"}


def register(cls: type[Task], *aliases: str) -> type[Task]:
    """Make `cls` available under `cls.name` (and each alias) to every stage and the CLI."""
    if not cls.name or not cls.metric or cls.direction not in ("lower", "higher"):
        raise ValueError(f"task class {cls.__name__} must set name, metric and direction")
    for name in (cls.name, *aliases):
        TASKS[name] = cls
    return cls


def task_class(name: str, where: str = "") -> type[Task]:
    """The class registered as `name`, importing pipeline/tasks/NAME.py if need be."""
    if name not in TASKS and name in names.module_names("task"):
        importlib.import_module(f"pipeline.tasks.{name}")
        if name not in TASKS:
            raise names.UnknownName(
                f"{names.module_path('task', name)} registers no task `{name}`: call "
                f"register(YourTask{', ' + repr(name) if name else ''}) in it"
            )
    if name not in TASKS:
        raise names.unknown("task", name, names.known("task"), where)
    return TASKS[name]


def task_names() -> list[str]:
    return names.known("task")


def build_task(name: str, cfg: dict, train_utts: list) -> Task:
    return task_class(name)(cfg, train_utts)


__all__ = [
    "METRIC_LABELS",
    "TASKS",
    "Task",
    "build_task",
    "metrics_record",
    "register",
    "task_class",
    "task_names",
]
