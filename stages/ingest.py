"""dvc.yaml's import stage: `python -m stages.ingest NAME` reads one real corpus into manifests.

The same as `pipeline data import <corpus> <root> --out <paths.data_root>/<suite> <args>`
for the entry NAME of `data.import` (`import` itself is a Python keyword, hence the file name).
"""

from __future__ import annotations

import shlex
import sys

from pipeline.data.corpora import import_corpus
from pipeline.errors import run_reporting
from pipeline.plan import PlanError, checked


def options(args: str, where: str) -> dict[str, str]:
    """`--trials PATH --seed 1` -> {"trials": "PATH", "seed": "1"}."""
    words = shlex.split(args)
    if len(words) % 2 or not all(w.startswith("--") for w in words[::2]):
        raise PlanError(f"{where}: `args` must be `--option value` pairs, got {args!r}")
    return {k[2:].replace("-", "_"): v for k, v in zip(words[::2], words[1::2], strict=True)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m stages.ingest NAME", file=sys.stderr)
        return 2

    def run() -> None:
        _, plan = checked("params.yaml")
        item = plan.imports.get(args[0])
        if item is None:
            raise PlanError(f"params.yaml: no data.import entry `{args[0]}`")
        opts = options(item["args"], f"params.yaml: data.import.{args[0]}")
        seed = int(opts.pop("seed", 0))
        print(f"+ python -m stages.ingest {args[0]}", flush=True)
        result = import_corpus(item["corpus"], item["root"], item["parent"], seed=seed, **opts)
        for path, n in result.written.items():
            print(f"{n:8d}  {path}")
        if result.skipped:
            print(f"left out {len(result.skipped)} item(s), e.g. {result.skipped[0]}")

    return run_reporting(run, f"import {args[0]}")


if __name__ == "__main__":
    sys.exit(main())
