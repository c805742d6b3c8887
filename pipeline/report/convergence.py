"""Which runs were still learning when they stopped: the table's "not converged" mark.

A run is *still improving* when its best dev value over all evaluations beats its best dev
value up to 80 % of its last step by more than THRESHOLD (relative): it gained more than 2 % in
the last fifth of its steps, so a longer run would likely score better. A run that stopped
early (its patience ran out before its step cap) has converged by definition; a run with a
single evaluation cannot tell, and counts as still improving.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.report.curves import dev_value
from pipeline.report.runs import RunResult

THRESHOLD = 0.02  # relative dev gain over the last fifth of the steps
LAST = 0.2  # the last fifth
MARK = "†"


def still_improving(run: RunResult, direction: str) -> bool:
    """True when the run's dev metric improved by more than THRESHOLD over its last fifth."""
    points = [(int(line["step"]), dev_value(line)) for line in run.log]
    points = [(s, v) for s, v in points if v is not None]
    if not points:
        return False
    last = points[-1][0]
    cap = int((run.config.get("train") or {}).get("steps") or last)
    patience = int((run.config.get("train") or {}).get("patience") or 0)
    if patience and last < cap:
        return False  # stopped early: no dev improvement in `patience` evaluations
    pick = min if direction == "lower" else max
    before = [v for s, v in points if s <= (1 - LAST) * last]
    if not before:
        return True
    early, best = pick(before), pick(v for _, v in points)
    gain = (early - best) if direction == "lower" else (best - early)
    return gain > THRESHOLD * max(abs(early), 1e-9)


def unconverged(keys: Sequence[str], runs: dict[str, RunResult], direction: str) -> int:
    """How many of a cell's runs were still improving at their last step."""
    return sum(1 for k in keys if k in runs and still_improving(runs[k], direction))


def legend() -> str:
    return (
        f"{MARK} *not converged*: at least one of the cell's runs was still improving at its "
        f"last step (its best dev value beat its best up to {100 * (1 - LAST):.0f} % of its "
        f"steps by more than {100 * THRESHOLD:.0f} %, relative), so more steps would likely "
        "change the cell."
    )
