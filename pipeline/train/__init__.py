"""Stage two: train an interface and a task head from cached stores.

Modules: config.py (RunConfig and the one precedence chain, `resolve_config`), loop.py (the
training loop, `train`), feed.py (the run's set-up: stores, model, batches), run_dir.py (the run
directory), pack.py (runs that share one pass over the cache), ddp.py (data-parallel training),
evaluate.py (re-scoring a finished run), from_plan.py (a run of the experiment plan, as DVC's
train stage and the grid train it). The batches themselves come from pipeline/feed/.
"""
