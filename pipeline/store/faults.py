"""Kill injection for the crash tests: `SFM_STORE_KILL_AT=STEP[:N]` ends the process with
os._exit(KILL_EXIT) the N-th time (default 1) the writer reaches the named step. Steps, in the
order a new store meets them: STEPS. Unset (always, outside tests) it costs one dict lookup."""

from __future__ import annotations

import os

KILL_EXIT = 77
ENV = "SFM_STORE_KILL_AT"
STEPS = (
    "part_locked",  # the part lock is held, nothing written yet
    "root_created",  # the store's zarr.json (format, fingerprint) is written
    "scales_created",  # 8-bit: the `scales` array exists, its values not yet written
    "part_tmp",  # the part skeleton's group exists in its temporary folder
    "part_frames",  # ... with its frames array
    "part_built",  # ... complete, not yet renamed into place
    "part_renamed",  # the part is in place, before the first append
    "chunk_written",  # a frame chunk file was written (before its checksum is committed)
    "chunks_synced",  # commit: the chunk files are durable, the index not yet written
    "index_resized",  # commit: the index arrays have their new shape, not yet their values
    "index_written",  # commit: the index is durable, `committed` not yet updated
    "committed",  # commit: `committed` (and the checksums) updated
    "trimmed",  # close: frames trimmed to their exact length, `complete` not yet set
    "completed",  # close: `complete` set, the lock not yet released
)
_hits: dict[str, int] = {}


def reached(env: str, name: str, hits: dict[str, int]) -> bool:
    """Count a visit of point `name`; True when the variable `env` (`NAME[:N]`) asks to end the
    process at this, its N-th visit (default 1). Shared by the store's and the trainer's hooks."""
    want = os.environ.get(env)
    if not want:
        return False
    target, _, nth = want.partition(":")
    if target != name:
        return False
    hits[name] = hits.get(name, 0) + 1
    return hits[name] >= int(nth or 1)


def step(name: str) -> None:
    """Mark that the writer reached `name`; the end of the process if the env asks for it."""
    if reached(ENV, name, _hits):
        os._exit(KILL_EXIT)
