"""Task registry: the names users type (`--task`) mapped to Task classes.

Task modules register themselves here; `build_task(name, cfg, train_utts)` builds one.
"""

from __future__ import annotations

import importlib

from pipeline.tasks.base import Task, metrics_record

# name -> "module:Class"; modules are imported lazily so a missing optional task never breaks the rest
TASKS: dict[str, str] = {
    "er": "pipeline.tasks.er:EmotionRecognition",
    "asr_en": "pipeline.tasks.asr:ASR",
    "asr": "pipeline.tasks.asr:ASR",
    "ml_asr": "pipeline.tasks.ml_asr:MultilingualASR",
    "sv": "pipeline.tasks.sv:SpeakerVerification",
}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    mod, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def build_task(name: str, cfg: dict, train_utts: list) -> Task:
    return task_class(name)(cfg, train_utts)


__all__ = ["TASKS", "Task", "build_task", "metrics_record", "task_class"]
