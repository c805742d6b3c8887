"""Stage two's feed: what the trainer reads from the feature stores.

Modules: loader.py (utterances of several stores aligned by id, length-bucketed batches),
tiers.py (where the frames live while training: GPU, pinned host memory or memory-mapped
chunks), run_inputs.py (which stores a run reads and the record that a resume checks).
"""
