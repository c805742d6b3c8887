"""Stage two at scale: train every pending run of the experiment plan at once.

Modules: runner.py (`run_grid`: pending runs from DVC, packing, slots, recording in dvc.lock),
jobs.py (jobs and the local engine of worker processes), dask_runner.py (the same jobs on a Dask
cluster), worker.py (one job's process, `python -m pipeline.grid.worker`).
"""
