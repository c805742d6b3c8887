"""dvc.yaml's report stage: `python -m stages.report` writes results/ from the experiment's runs.

The same as `pipeline report --runs <paths.runs_root> --out results --config params.yaml`:
the table, the findings, the per-language CERs, metrics.json, curves and figures
(pipeline/report/).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.errors import run_reporting
from pipeline.plan import checked
from pipeline.report import write_report


def main(argv: list[str] | None = None) -> int:
    if sys.argv[1:] if argv is None else argv:
        print("usage: python -m stages.report", file=sys.stderr)
        return 2

    def run() -> None:
        runs = Path(checked("params.yaml")[0].paths.runs_root)
        print("+ python -m stages.report", flush=True)
        for name, path in write_report(runs, Path("results"), Path("params.yaml")).items():
            print(f"{name:22s} {path}")

    return run_reporting(run, "report")


if __name__ == "__main__":
    sys.exit(main())
