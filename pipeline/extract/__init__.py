"""Stage one: run a frozen upstream over a manifest and store every layer's hidden states.

Modules: engine.py (the resumable, sharded extraction, `run`), encode.py (how frames are
encoded into the store), from_plan.py (one store of the experiment plan, as DVC's extract stage
builds it, and its stamp).
"""
