"""Required options, checked together: a command names every missing option in one message.

click stops at the first missing required option, so a newcomer learns them one try at a time.
`AllRequired` (the base of `RegistryHelp`, pipeline/cli/names.py) parses with every option
optional, then lists all that are missing in one `error:` line. `either(...)` makes a command
whose option may be replaced by another: `either(cache="store")` accepts `--store` paths in
place of `--cache` (`stores_cover` then checks that they name a store for every model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from typer.core import TyperCommand

from pipeline.errors import UserError


class MissingOptions(UserError, ValueError):
    """A command line lacks required options; the message lists them all."""


def _given(value: Any) -> bool:
    return value is not None and value != () and value != []


def _flag(p: Any) -> str:
    return max(getattr(p, "opts", None) or [p.name or "?"], key=len)


class AllRequired(TyperCommand):
    """A command that reports every missing required option at once (see the module docstring).

    `alternatives`: {option name: other option name}; the first is missing only when the other
    is not given either (both are declared optional)."""

    alternatives: ClassVar[dict[str, str]] = {}

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        required = [p for p in self.params if p.required]
        for p in required:
            p.required = False
        try:
            rest = super().parse_args(ctx, args)
        finally:
            for p in required:
                p.required = True
        if ctx.resilient_parsing:
            return rest
        missing = [_flag(p) for p in required if not _given(ctx.params.get(p.name))]
        by_name = {p.name: p for p in self.params}
        for name, other in self.alternatives.items():
            if not _given(ctx.params.get(name)) and not _given(ctx.params.get(other)):
                missing.append(f"{_flag(by_name[name])} (or {_flag(by_name[other])})")
        if missing:
            s = "s" if len(missing) > 1 else ""
            raise MissingOptions(
                f"`{ctx.command_path}` needs the option{s} {', '.join(missing)}; "
                f"`{ctx.command_path} --help` says what each takes"
            )
        return rest


def either(base: type[AllRequired] = AllRequired, **pairs: str) -> type[AllRequired]:
    """A subclass of `base` in which option `k` may be replaced by option `v` for each k=v."""
    return type(f"{base.__name__}Either", (base,), {"alternatives": {**base.alternatives, **pairs}})


def stores_cover(models: Sequence[str], stores: Sequence[str]) -> list[str]:
    """The models that `--store` entries (all positional, one per model, or NAME=PATH) leave
    without a store: what `--cache` would have to supply."""
    named = {s.split("=", 1)[0] for s in stores if "=" in s}
    positional = [s for s in stores if "=" not in s]
    if positional and len(positional) == len(models):
        return []
    return [m for m in models if m not in named]


def need_cache(models: Sequence[str], stores: Sequence[str]) -> None:
    """Refuse a command given `--store` but no `--cache` when some model has no store."""
    left = stores_cover(models, stores)
    if left:
        raise MissingOptions(
            f"no store for {', '.join(left)}: give --cache CACHE_DIR (holding <model>.zarr) "
            "or one --store per model (positional, in --models order, or NAME=PATH)"
        )
