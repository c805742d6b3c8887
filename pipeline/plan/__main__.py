"""`python -m pipeline.plan write CONFIG [-o params.yaml] | check [PARAMS] | list [CONFIG]`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from pipeline.errors import run_reporting
from pipeline.plan.expand import make_plan
from pipeline.plan.params_file import check, load_experiment, render
from pipeline.plan.settings import extract_argv, train_argv


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.plan",
        description="Expand an experiment config into the stores to extract and the runs to train.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write params.yaml (config text + generated runs/stores)")
    w.add_argument("config")
    w.add_argument("-o", "--out", default=None, help="default: overwrite CONFIG itself")
    c = sub.add_parser("check", help="fail if params.yaml's generated sections are stale")
    c.add_argument("params", nargs="?", default="params.yaml")
    ls = sub.add_parser("list", help="dry run: every store and run with its equivalent command")
    ls.add_argument("config", nargs="?", default="params.yaml")
    a = p.parse_args(argv)

    def run() -> None:
        if a.cmd == "write":
            out = Path(a.out or a.config)
            text = render(a.config, out)
            out.write_text(text, encoding="utf-8")
            plan = make_plan(load_experiment(out))
            print(
                f"wrote {out}: {len(plan.stores)} stores, {len(plan.runs)} runs, "
                f"{len(plan.rows)} table rows, seeds {plan.seeds}"
            )
        elif a.cmd == "check":
            check(a.params)
            print(f"{a.params}: up to date")
        else:
            exp = load_experiment(a.config)
            plan = make_plan(exp)
            for s in plan.stores.values():
                print("pipeline " + shlex.join(extract_argv(exp, s)))
            for r in plan.runs.values():
                print("pipeline " + shlex.join(train_argv(exp, r)))
            print(
                f"# {len(plan.stores)} stores, {len(plan.runs)} runs, {len(plan.rows)} table rows, "
                f"seeds {plan.seeds}",
                file=sys.stderr,
            )

    return run_reporting(run, f"plan {a.cmd}")


if __name__ == "__main__":
    sys.exit(main())
