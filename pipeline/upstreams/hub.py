"""Loading from the Hugging Face hub without a minute of retries when it cannot be reached.

`from_hub(load, source)` first tries the local Hugging Face cache only; on a miss it asks the
network for the files only when the hub's host answers a TCP connection within
`PROBE_TIMEOUT_S` (or a proxy is configured, which a direct probe cannot judge). Offline, a
miss is one `HubMiss` at once, instead of huggingface_hub's five retries (about a minute of
messages) before the same failure. With HF_HUB_OFFLINE set, the network is never asked.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlparse

T = TypeVar("T")
PROBE_TIMEOUT_S = 3.0
OFFLINE_ENV = "HF_HUB_OFFLINE"
PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


class HubMiss(OSError):
    """The files are not in the local cache and the hub is not asked or cannot be reached."""


def offline_set() -> bool:
    """Is HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to a true value?"""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in (OFFLINE_ENV, "TRANSFORMERS_OFFLINE")
    )


def hub_host() -> tuple[str, int]:
    """(host, port) of the hub this process talks to (HF_ENDPOINT, else huggingface.co)."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when the hub's host accepts a TCP connection within `timeout` seconds, or when a
    proxy is configured (the probe cannot see through it, so the real request decides)."""
    if any(os.environ.get(v) for v in PROXY_ENV):
        return True
    try:
        with socket.create_connection(hub_host(), timeout=timeout):
            return True
    except OSError:
        return False


def from_hub(load: Callable[..., T], source: str, **kwargs) -> T:
    """`load(source, **kwargs)` (a transformers `from_pretrained`) from the local cache, else
    from the hub when it can be reached; otherwise raises HubMiss saying why."""
    try:
        return load(source, local_files_only=True, **kwargs)
    except OSError as local_miss:
        if offline_set():
            raise HubMiss(f"{OFFLINE_ENV} is set, so the hub is not asked") from local_miss
        if not hub_reachable():
            host, port = hub_host()
            raise HubMiss(f"{host}:{port} cannot be reached") from local_miss
    try:
        return load(source, **kwargs)
    except OSError as e:
        raise HubMiss(str(e).splitlines()[0][:160] if str(e) else type(e).__name__) from e
