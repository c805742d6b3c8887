"""One error policy for the `pipeline` command, the DVC stages and the grid workers.

An error a user can act on subclasses `UserError` (next to the builtin it refines, e.g.
`class ManifestStoreMismatch(UserError, ValueError)`); its message says what happened, which
file, store or key, and what to do. Such errors, a full disk and a missing file print one line,
`error: MESSAGE`, and exit with status 1. Anything else is a bug and keeps its full traceback,
as does every error under PIPELINE_DEBUG=1 (or `pipeline --debug ...`).
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Callable, Sequence

DEBUG_ENV = "PIPELINE_DEBUG"
USER_ERROR_STATUS = 1
TARGET_OPTIONS = ("--out", "--cache", "--store")  # named in a full-disk message


class UserError(Exception):
    """An error whose message tells the user what happened and what to do; no traceback."""


def debug_requested() -> bool:
    """PIPELINE_DEBUG set to a true value: every error keeps its traceback."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _option_value(argv: Sequence[str], names: tuple[str, ...]) -> str | None:
    """The value of the first of `names` (in that order of preference) given in `argv`."""
    for n in names:
        for i, a in enumerate(argv):
            if a == n and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def user_message(e: BaseException, argv: Sequence[str] = ()) -> str | None:
    """The one-line message of an error a user can act on; None for a bug."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        where = e.filename or _option_value(argv, TARGET_OPTIONS) or "the output folder"
        return (
            f"no space left on the device while writing {where}. Free some space (or write to "
            "a larger disk) and rerun the same command: extraction and training resume from "
            "what was committed before the disk filled."
        )
    if isinstance(e, UserError):
        return str(e)
    if isinstance(e, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        if e.filename is None:
            return str(e)
        what = e.strerror or type(e).__name__
        return f"{e.filename}: {what}. Check the path given on the command line."
    return None


def run_reporting(run: Callable[[], object], what: str = "", argv: Sequence[str] = ()) -> int:
    """Run `run`; a user error prints `error: [WHAT: ]MESSAGE` and returns 1, success 0.

    Anything else propagates with its traceback (a bug is never dressed as a user error).
    """
    try:
        run()
    except Exception as e:
        msg = None if debug_requested() else user_message(e, argv)
        if msg is None:
            raise
        print(f"error: {what + ': ' if what else ''}{msg}", file=sys.stderr, flush=True)
        return USER_ERROR_STATUS
    return 0


def format_traceback(e: BaseException) -> str:
    """The full traceback of `e` as text (for logs that keep a bug's trace)."""
    return "".join(traceback.format_exception(type(e), e, e.__traceback__))
