"""The defaults of the layer analysis, shared by the `analysis` section of an experiment config
(dvc.yaml's analyze stage, pipeline/analysis/suite.py) and `pipeline analyze probe|similarity`,
so that both give the same numbers on the same stores when a key is left out.

A config's `analysis.probe` / `analysis.similarity` keys override these for its stage; the
CLI's options override them for one command. `remove_position` is on: Whisper encoders all add
the same sinusoidal positional embedding, which makes any two Whisper models (random ones too)
look alike frame by frame.
"""

from __future__ import annotations

from typing import Any

SEED = 0  # every probe's initialisation and batches; the CKA utterance sample
PROBE: dict[str, Any] = {
    "steps": None,  # Adam steps per layer; None: the probe's own (300 classifiers, 600 CTC)
    "lr": None,  # None: 1e-2 classifiers, 5e-3 CTC (pipeline/analysis/probe.py)
    "split": "test",  # the split the figure shows
    "max_train_utterances": None,  # a seeded sample of the train split; None: all of it
}
SIMILARITY: dict[str, Any] = {
    "splits": ("train",),  # the manifests whose utterances are compared
    "max_frames": None,  # aligned frames, a seeded sample of utterances; None: all
    "memory_gb": 2.0,  # accumulator budget; wider models take several passes
    "remove_position": True,  # subtract each model's mean frame at every frame index first
}


def probe_setting(cfg: dict, key: str) -> Any:
    """`analysis.probe.<key>` of a config, else the default."""
    value = cfg.get(key)
    return PROBE[key] if value is None else value


def similarity_setting(cfg: dict, key: str) -> Any:
    """`analysis.similarity.<key>` of a config, else the default."""
    value = cfg.get(key)
    return SIMILARITY[key] if value is None else value
