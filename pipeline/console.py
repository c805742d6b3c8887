"""The one rich console of the library: progress bars and notices go to stderr."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)
