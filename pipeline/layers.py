"""Layer subsets: which hidden states a store keeps (`pipeline extract --layers SPEC`).

SPEC is a comma-separated list of items, each one of

- ``i``        one state (0 is the first: the CNN/embedding output; L-1 the last layer),
- ``a-b``      the states a..b, both included,
- ``a-b:s``    every s-th state from a up to b (``0-12:4`` -> 0, 4, 8, 12),
- ``all``      every state (the default: no subset).

Items may overlap and come in any order; the subset is sorted and deduplicated. A store keeps
the states in increasing order, and its fingerprint lists them (`layers`), so stored state j is
the upstream's state `layers[j]`.
"""

from __future__ import annotations

import re

from pipeline.errors import UserError

_ITEM = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")


class LayerSpecError(UserError, ValueError):
    """A --layers value that cannot be parsed or does not fit the upstream's L."""


def parse_layers(spec: str | list[int] | tuple[int, ...] | None, num_layers: int) -> list[int]:
    """Sorted unique state indices in [0, num_layers) for `spec` (None / "all": every state)."""
    if spec is None:
        return list(range(num_layers))
    if isinstance(spec, (list, tuple)):
        picked = {int(i) for i in spec}
    else:
        picked: set[int] = set()
        for item in str(spec).replace(" ", "").split(","):
            if not item:
                continue
            if item == "all":
                picked.update(range(num_layers))
                continue
            m = _ITEM.match(item)
            if not m:
                raise LayerSpecError(
                    f"--layers {spec!r}: cannot read {item!r}; use i, a-b or a-b:step "
                    "separated by commas, e.g. 0,4,8,12 or 0-12:4"
                )
            a = int(m.group(1))
            b = int(m.group(2)) if m.group(2) is not None else a
            step = int(m.group(3)) if m.group(3) is not None else 1
            if b < a or step < 1:
                raise LayerSpecError(f"--layers {spec!r}: {item!r} is an empty range")
            picked.update(range(a, b + 1, step))
    if not picked:
        raise LayerSpecError(f"--layers {spec!r} selects no state")
    bad = sorted(i for i in picked if not 0 <= i < num_layers)
    if bad:
        raise LayerSpecError(
            f"--layers {spec!r}: state(s) {bad} out of range; this upstream has L = {num_layers} "
            f"hidden states, numbered 0..{num_layers - 1}"
        )
    return sorted(picked)


def format_layers(layers: list[int]) -> str:
    """A compact SPEC for a subset: [0, 4, 8, 12] -> '0-12:4', [0, 1, 2, 5] -> '0-2,5'."""
    if not layers:
        return ""
    if len(layers) > 2:
        step = layers[1] - layers[0]
        if step > 0 and all(b - a == step for a, b in zip(layers, layers[1:], strict=False)):
            return f"{layers[0]}-{layers[-1]}" + ("" if step == 1 else f":{step}")
    out, start, prev = [], layers[0], layers[0]
    for i in [*layers[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(out)
