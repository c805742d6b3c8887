"""dvc.yaml's analyze stage: `python -m stages.analyze [--params FILE] [--out DIR]`.

Linear probes on every stored layer and CKA between the upstreams' layers, as the `analysis`
section of params.yaml says (pipeline/analysis/suite.py) -> results/analysis/ for the report.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.analysis.suite import OUT, analyze
from pipeline.errors import run_reporting


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stages.analyze", description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", default=OUT, help="folder of the results (default: %(default)s)")
    a = p.parse_args(argv)
    return run_reporting(lambda: print(analyze(a.params, a.out)), "analyze")


if __name__ == "__main__":
    sys.exit(main())
