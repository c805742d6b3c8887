"""Task registry: the names users type (`--task`) mapped to Task classes, defined once here.

Each Task class carries its own name, metric, direction and defaults (`demo`, `recipe`); the
plan, the trainer, the report and the CLI all read them from here. Adding a task is one module
with a `Task` subclass and one `register(...)` line below (or a call from your own code).
"""

from __future__ import annotations

from pipeline.tasks.asr import ASR
from pipeline.tasks.base import Task, metrics_record
from pipeline.tasks.er import EmotionRecognition
from pipeline.tasks.ml_asr import MultilingualASR
from pipeline.tasks.sv import SpeakerVerification

TASKS: dict[str, type[Task]] = {}
METRIC_LABELS = {"wer": "WER", "cer": "CER", "eer": "EER", "accuracy": "Acc"}


def register(cls: type[Task], *aliases: str) -> type[Task]:
    """Make `cls` available under `cls.name` (and each alias) to every stage and the CLI."""
    if not cls.name or not cls.metric or cls.direction not in ("lower", "higher"):
        raise ValueError(f"task class {cls.__name__} must set name, metric and direction")
    for name in (cls.name, *aliases):
        TASKS[name] = cls
    return cls


register(EmotionRecognition)
register(ASR, "asr_en")  # asr_en: the English (LibriSpeech) column of the table
register(MultilingualASR)
register(SpeakerVerification)


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


def task_names() -> list[str]:
    return sorted(TASKS)


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
