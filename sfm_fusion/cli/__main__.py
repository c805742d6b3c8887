"""`python -m sfm_fusion.cli ...` (what `torchrun -m sfm_fusion.cli train ...` starts on each rank)."""

from sfm_fusion.cli import app

app()
