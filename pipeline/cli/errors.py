"""The `pipeline` command's error handler: the one policy of pipeline/errors.py.

User errors (every `UserError`, a full disk, a missing file) print `error: MESSAGE` on stderr
and exit 1; Ctrl-C says what is kept and how to resume, and exits 130. Anything else is a bug and keeps its traceback, as does every error with
`pipeline --debug ...` or PIPELINE_DEBUG=1.
"""

from __future__ import annotations

from typing import Any

import click
from typer.core import TyperGroup

from pipeline.errors import USER_ERROR_STATUS, debug_requested, user_message


class ErrorHandlingGroup(TyperGroup):
    """The top-level group: turns user errors raised by any sub-command into one message."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["pipeline.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            if debug_requested() or ctx.params.get("debug"):
                raise
            click.echo(
                "interrupted: what was committed is kept (stores, checkpoints); rerun the same "
                "command to resume",
                err=True,
            )
            ctx.exit(130)
        except Exception as e:
            if debug_requested() or ctx.params.get("debug"):
                raise
            msg = user_message(e, ctx.meta.get("pipeline.argv", []))
            if msg is None:
                raise
            click.echo(f"error: {msg}", err=True)
            ctx.exit(USER_ERROR_STATUS)
