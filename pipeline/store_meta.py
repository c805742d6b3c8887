"""Feature store metadata: format constants, errors, fingerprints, locks (pipeline/store.py
re-exports every name here: `from pipeline.store import make_fingerprint` is the one import)."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterable
from pathlib import Path

import zarr

from pipeline.encoding import stored_dtype

FORMAT = "sfm-feature-store"
FORMAT_VERSION = 1
CODE_VERSION = "1"  # bump when extraction changes what is stored for the same fingerprint
FINGERPRINT_FIELDS = (
    "upstream", "source", "weights_hash", "whisper_mode", "num_layers", "dim",
    "frame_rate", "dtype", "manifest_hash", "code_version", "encoding", "layers",
)  # fmt: skip


class StoreError(RuntimeError):
    """A store that cannot be used as asked; the message names the store and what to do."""


class FingerprintMismatch(StoreError):
    """The store on disk was made by another upstream, mode or manifest than requested."""


class StoreLocked(StoreError):
    """Another live process is writing the same store part."""


def part_name(i: int, n: int) -> str:
    return f"part-{i:05d}-of-{n:05d}"


def manifest_hash(utts: Iterable) -> str:
    """A hash of the utterance set: ids and durations (not paths, so a moved corpus still matches)."""
    import hashlib

    h = hashlib.sha256()
    for uid, dur in sorted((u.id, round(float(u.duration), 4)) for u in utts):
        h.update(f"{uid}\t{dur}\n".encode())
    return h.hexdigest()[:16]


def make_fingerprint(
    spec,
    weights_hash: str,
    whisper_mode: str | None,
    manifest: str,
    encoding: str = "fp16",
    layers: list[int] | None = None,
) -> dict:
    """The fingerprint of a request: every field that changes what the store would hold.

    encoding: fp16 | int8 | fp8 (pipeline/encoding.py); layers: the upstream's states kept
    (sorted; None = all). `num_layers` is the number of states stored, len(layers).
    """
    layers = list(range(int(spec.num_layers))) if layers is None else [int(i) for i in layers]
    return {
        "upstream": spec.name,
        "source": str(spec.source),
        "weights_hash": weights_hash,
        "whisper_mode": whisper_mode if spec.family == "whisper" else None,
        "num_layers": len(layers),
        "dim": int(spec.dim),
        "frame_rate": float(spec.frame_rate),
        "dtype": str(stored_dtype(encoding)),
        "manifest_hash": manifest,
        "code_version": CODE_VERSION,
        "encoding": encoding,
        "layers": layers,
    }


def normalize_fingerprint(fp: dict) -> dict:
    """Fill the fields older stores lack: encoding fp16, every layer (0..num_layers-1)."""
    out = dict(fp)
    out.setdefault("encoding", "fp16")
    if out.get("layers") is None and "num_layers" in out:
        out["layers"] = list(range(int(out["num_layers"])))
    return out


def _is_local(path: str | Path) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _local(path: str | Path) -> Path:
    return Path(str(path).removeprefix("file://"))


def store_exists(path: str | Path) -> bool:
    if _is_local(path):
        return (_local(path) / "zarr.json").is_file()
    try:
        zarr.open_group(str(path), mode="r")
        return True
    except Exception:
        return False


def check_fingerprint(path: str | Path, requested: dict) -> None:
    """Refuse a store whose fingerprint differs from `requested`, naming each differing field.

    A missing store passes (it will be created).
    """
    if not store_exists(path):
        return
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    if attrs.get("format") != FORMAT:
        raise StoreError(
            f"{path} exists but is not a feature store; remove it or pick another --out"
        )
    have = normalize_fingerprint(attrs.get("fingerprint", {}))
    requested = normalize_fingerprint(requested)
    diffs = [
        f"  {k}: store has {have.get(k)!r}, requested {requested.get(k)!r}"
        for k in sorted(set(have) | set(requested))
        if have.get(k) != requested.get(k)
    ]
    if diffs:
        raise FingerprintMismatch(
            f"feature store {path} was built for a different request; differing field(s):\n"
            + "\n".join(diffs)
            + "\nRerun with --force to delete and rebuild it, or write to another --out."
        )


def remove_store(path: str | Path) -> None:
    """Delete a store (for --force); refuses while another live process holds one of its parts."""
    if not _is_local(path):
        zarr.storage.FsspecStore.from_url(str(path)).fs.rm(str(path), recursive=True)
        return
    p = _local(path)
    for lock in p.glob("*.lock"):
        owner = _lock_owner(lock)
        if owner is not None and _alive(owner):
            raise StoreLocked(
                f"cannot rebuild {p}: {lock.name} is held by {owner}; stop that process first"
            )
    if p.exists():
        shutil.rmtree(p)


# ----------------------------------------------------------------------------- locks
def _lock_owner(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return None


def _alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # cannot tell for another host: assume it is running
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True


def _acquire(lock: Path) -> None:
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None and _alive(owner):
                raise StoreLocked(
                    f"{lock.parent} part {lock.stem} is being written by pid {owner.get('pid')} on "
                    f"{owner.get('host')}; wait for it to finish or stop it. If that process is gone "
                    f"(another host, or a reused pid), delete {lock}."
                ) from None
            lock.unlink(missing_ok=True)  # stale: its writer died on this host
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return
    raise StoreLocked(f"could not take the lock {lock}; another process keeps taking it")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
