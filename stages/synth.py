"""dvc.yaml's synth stage: `python -m stages.synth SUITE` writes the built-in offline suite.

The same as `pipeline data synth --out <paths.data_root>/SUITE --preset <data.synth> --seed <data.seed>`.
"""

from __future__ import annotations

import sys

from pipeline.data.synth import synthesize
from pipeline.errors import run_reporting
from pipeline.plan import PlanError, checked


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m stages.synth SUITE", file=sys.stderr)
        return 2

    def run() -> None:
        exp, plan = checked("params.yaml")
        item = plan.synth.get(args[0])
        if item is None:
            raise PlanError(f"params.yaml: no synth key `{args[0]}`")
        print(f"+ python -m stages.synth {args[0]}", flush=True)
        path = synthesize(item["out"], preset=exp.data.synth, seed=exp.data.seed)
        print(f"wrote the {exp.data.synth} suite to {path}")

    return run_reporting(run, f"synth {args[0]}")


if __name__ == "__main__":
    sys.exit(main())
