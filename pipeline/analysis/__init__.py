"""Analyses of the cached stores: layer-wise linear probes and cross-model layer similarity (CKA).

- `cka`: linear CKA, full-batch (`linear_cka`) and streamed over frame chunks (`StreamingCKA`).
- `similarity`: every layer of several stores against every layer, frames aligned as the
  interfaces align them; matrices, a one-number summary per pair, heatmaps.
- `probe`: one linear probe per stored layer for er, sv, asr_en and ml_asr.
- `plots`: the PNG figures.
"""

from pipeline.analysis.cka import StreamingCKA, group_passes, linear_cka

__all__ = ["StreamingCKA", "linear_cka", "group_passes"]
