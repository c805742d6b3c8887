"""`asr_en`: the English (LibriSpeech) column's name for the ASR task of pipeline/tasks/asr.py."""

from __future__ import annotations

from pipeline.tasks import register
from pipeline.tasks.asr import ASR

register(ASR, "asr_en")
