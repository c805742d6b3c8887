"""Frozen speech upstreams that return every hidden state (see docs/CONTRACTS.md)."""

from .base import Upstream, UpstreamSpec
from .registry import REGISTRY, base_sized_random_hf, load_upstream, resolve_spec, tiny_random_hf

__all__ = [
    "REGISTRY",
    "Upstream",
    "UpstreamSpec",
    "base_sized_random_hf",
    "load_upstream",
    "resolve_spec",
    "tiny_random_hf",
]
