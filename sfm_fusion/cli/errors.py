"""The `pipeline` command's error handler: one short message for errors a user can act on.

User errors (UserError and its subclasses, StoreError and its subclasses such as
FingerprintMismatch, ConfigError, a missing file, a full disk) print `error: MESSAGE` on stderr
and exit 1. Anything else is a bug and keeps its traceback, as does every error with
`pipeline --debug ...` or PIPELINE_DEBUG=1.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

import click
from typer.core import TyperGroup

from sfm_fusion.errors import UserError

DEBUG_ENV = "PIPELINE_DEBUG"
TARGET_OPTIONS = ("--out", "--cache", "--store")  # named in a full-disk message


def debug_requested(ctx: click.Context | None = None) -> bool:
    """--debug given to the top-level command, or PIPELINE_DEBUG set to a true value."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return bool(ctx is not None and ctx.params.get("debug"))


def _user_error_types() -> tuple[type, ...]:
    """UserError plus the store's and the config's error bases, when their modules are loaded.

    An exception of one of those classes can only exist once its module was imported, so the
    handler looks them up in sys.modules instead of importing the store (and torch) into every
    `pipeline --help`.
    """
    types: list[type] = [UserError]
    for module, name in (
        ("sfm_fusion.store", "StoreError"),
        ("sfm_fusion.stages.config", "ConfigError"),
    ):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            types.append(cls)
    return tuple(types)


def _option_value(argv: list[str], names: tuple[str, ...]) -> str | None:
    """The value of the first of `names` (in that order of preference) given in `argv`."""
    for n in names:
        for i, a in enumerate(argv):
            if a == n and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def user_message(e: BaseException, argv: list[str] | None = None) -> str | None:
    """The one-line (or few-line) message for a user error, None for anything else."""
    argv = argv or []
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        where = e.filename or _option_value(argv, TARGET_OPTIONS) or "the output folder"
        return (
            f"no space left on the device while writing {where}. Free some space (or write to "
            "a larger disk) and rerun the same command: extraction and training resume from "
            "what was committed before the disk filled."
        )
    if isinstance(e, _user_error_types()):
        return str(e)
    if isinstance(e, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        if e.filename is None:
            return str(e)
        what = e.strerror or type(e).__name__
        return f"{e.filename}: {what}. Check the path given on the command line."
    return None


class ErrorHandlingGroup(TyperGroup):
    """The top-level group: turns user errors raised by any sub-command into one message."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["sfm_fusion.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as e:
            if debug_requested(ctx):
                raise
            msg = user_message(e, ctx.meta.get("sfm_fusion.argv", []))
            if msg is None:
                raise
            click.echo(f"error: {msg}", err=True)
            ctx.exit(1)
