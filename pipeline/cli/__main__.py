"""`python -m pipeline.cli ...` (what `torchrun -m pipeline.cli train ...` starts on each rank)."""

from pipeline.cli import app

app()
