"""Fusion interfaces: many upstreams' hidden states in, one (B, T, D_out) sequence out.

    from pipeline.interfaces import build, count_parameters
    itf = build("hconv", [(13, 768)])            # shapes: one (L_i, D_i) per upstream
    out, out_lengths = itf(feats, lengths)       # feats: N x (B, L_i, T_i, D_i), lengths: N x (B,)

Names: ws (weighted sum), hconv (hierarchical convolution, additive fusion), chconv
(concatenated HConv + projection), gumd (dimension-wise Gumbel layer selection). Keyword
arguments go to the class: ws(layer_norm, out_dim), hconv(dim, layer_norm),
chconv(out_dim, layer_norm), gumd(linear_steps, exp_steps, out_dim, layer_norm). `frame_rates`
(Hz, one per upstream) picks the reference for frame alignment (the highest); without it all
rates are taken as equal.

Adding an interface: a module `pipeline/interfaces/NAME.py` with an `Interface` subclass whose
`name = "NAME"`, decorated with `@register`. Nothing else: the plan, `--help`, DVC and the grid
find it by its file (pipeline/names.py), and only the runs that use it depend on it, because
this registry imports the module of the name asked for and no other. `register` can also be
called from a user's own code; such a class is known in that process only.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from pipeline import names
from pipeline.interfaces.base import Interface, count_parameters

REGISTRY: dict[str, type[Interface]] = {}
names.attach("interface", REGISTRY)


def register(cls: type[Interface]) -> type[Interface]:
    """Make `cls` available under `cls.name` to `build`, the plan, the report and the CLI."""
    if not cls.name:
        raise ValueError(f"interface class {cls.__name__} must set `name`")
    REGISTRY[cls.name] = cls
    return cls


def interface_class(name: str, where: str = "") -> type[Interface]:
    """The class registered as `name`, importing pipeline/interfaces/NAME.py if need be."""
    if name not in REGISTRY and name in names.module_names("interface"):
        importlib.import_module(f"pipeline.interfaces.{name}")
        if name not in REGISTRY:
            raise names.UnknownName(
                f"{names.module_path('interface', name)} registers no interface `{name}`: "
                f"decorate its Interface class (with `name = {name!r}`) with @register"
            )
    if name not in REGISTRY:
        raise names.unknown("interface", name, names.known("interface"), where)
    return REGISTRY[name]


def interface_label(name: str) -> str:
    """The printed name of an interface (`HConv` for hconv); the name itself if unknown."""
    try:
        cls = interface_class(name)
    except names.UnknownName:
        return name
    return cls.label or cls.name


__all__ = [
    "REGISTRY", "Interface", "build", "count_parameters", "interface_class", "interface_label",
    "register",
]  # fmt: skip


def build(
    name: str,
    shapes: Sequence[tuple[int, int]],
    frame_rates: Sequence[float] | None = None,
    **kwargs: Any,
) -> Interface:
    """Build the interface `name` for upstreams of the given (L_i, D_i) shapes."""
    cls = interface_class(name)
    if not shapes:
        raise ValueError(
            f"interface {name!r} needs at least one (L, D) shape, one per upstream store"
        )
    for s in shapes:
        if len(s) != 2 or min(int(s[0]), int(s[1])) < 1:
            raise ValueError(
                f"interface {name!r}: each shape must be (L, D) with L, D >= 1, got {s!r}"
            )
    if frame_rates is not None and len(frame_rates) != len(shapes):
        raise ValueError(
            f"interface {name!r}: {len(frame_rates)} frame rates for {len(shapes)} shapes"
        )
    try:
        return cls(shapes, frame_rates=frame_rates, **kwargs)
    except TypeError as e:
        raise TypeError(f"interface {name!r}: bad keyword argument(s) {sorted(kwargs)}: {e}") from e
