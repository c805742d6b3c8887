"""Feature store metadata: format constants, fingerprints, the entries the format owns."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import zarr

from pipeline.encoding import stored_dtype
from pipeline.store.errors import FingerprintMismatch, StoreError

FORMAT = "sfm-feature-store"
FORMAT_VERSION = 1
CODE_VERSION = "1"  # bump when extraction changes what is stored for the same fingerprint
FINGERPRINT_FIELDS = (
    "upstream", "source", "weights_hash", "whisper_mode", "num_layers", "dim",
    "frame_rate", "dtype", "manifest_hash", "code_version", "encoding", "layers",
)  # fmt: skip


# What the store format owns at the top of a store folder (and `--force` may delete).
META_LOCK = "store.lock"  # held while the root metadata is checked or written
_OWNED = re.compile(
    r"zarr\.json|zarr\.[0-9a-f]{32}\.partial|scales|store\.lock"
    r"|part-\d{5}-of-\d{5}(\.lock)?|\.part-\d{5}-of-\d{5}\.tmp"
)


def part_name(i: int, n: int) -> str:
    return f"part-{i:05d}-of-{n:05d}"


def part_tmp_name(i: int, n: int) -> str:
    """Where a part's skeleton is built before it is renamed into place."""
    return f".{part_name(i, n)}.tmp"


def unexpected_entries(folder: Path) -> list[str]:
    """Names in `folder` that the store format does not own (sorted; [] if none or no folder)."""
    if not folder.is_dir():
        return []
    return sorted(e.name for e in folder.iterdir() if not _OWNED.fullmatch(e.name))


def check_adoptable(path: str | Path) -> None:
    """Refuse to write a store into an existing folder that holds anything else.

    A folder with only store entries (a store, or one whose creation was interrupted) passes.
    """
    if not _is_local(path):
        return
    p = _local(path)
    if p.exists() and not p.is_dir():
        raise StoreError(f"{p} is a file, not a feature store", "pick another --out")
    extra = unexpected_entries(p)
    if extra and not _is_store(p):
        shown = ", ".join(extra[:8]) + (f" and {len(extra) - 8} more" if len(extra) > 8 else "")
        raise StoreError(
            f"{p} exists and is not a feature store (it holds {shown}); nothing was written",
            "pick another --out (a store is a folder of its own, e.g. cache/<suite>/<task>/<upstream>.zarr)",
        )


def foreign_group(p: Path) -> str | None:
    """What `p/zarr.json` says when it belongs to something other than a feature store (other
    attributes, or another format), else None: no zarr.json, this format, or the empty
    attributes of a store whose creation was interrupted before they were written."""
    try:
        doc = json.loads((p / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    attrs = doc.get("attributes") if isinstance(doc, dict) else None
    if not attrs or not isinstance(attrs, dict) or attrs.get("format") == FORMAT:
        return None
    return f"attributes {sorted(attrs)[:5]}, format {attrs.get('format')!r}"


def _is_store(p: Path) -> bool:
    try:
        return (
            json.loads((p / "zarr.json").read_text()).get("attributes", {}).get("format") == FORMAT
        )
    except (OSError, ValueError, AttributeError):
        return False


def manifest_hash(utts: Iterable) -> str:
    """A hash of the utterance set: ids and durations (not paths, so a moved corpus still matches)."""
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
        raise StoreError(f"{path} is a zarr group but not a feature store", "pick another --out")
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
            + "\n".join(diffs),
            "rerun with --force to delete and rebuild it, or write to another --out",
        )


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (its entries)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
