"""Export a feature store to HDF5: one (T, L, D) dataset per utterance, readable with h5py alone.

The layout is described in pipeline/store/h5.py and docs/HDF5.md. 8-bit stores (int8 / fp8)
are decoded with their scales to the float dtype asked for; a layer subset (`layers`, the
upstream's state numbers, as `pipeline extract --layers`) keeps only those states. The file is
written next to OUT under a temporary name and renamed when complete, so a killed export never
leaves a file that looks finished.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipeline.layers import format_layers, parse_layers
from pipeline.store.errors import StoreError
from pipeline.store.h5 import (
    EXPORT_DTYPES,
    H5_FORMAT,
    H5_FORMAT_VERSION,
    attr_value,
    dataset_name,
)
from pipeline.store.reader import open_store

COMPRESSIONS = ("none", "gzip", "lzf")


def select_states(stored: list[int], spec: str | None, store: str) -> list[int]:
    """Positions (into the store's L axis) of the upstream states `spec` picks (None: all).

    `stored` is the store's `layers` (the upstream's state numbers it holds, sorted).
    """
    if spec is None:
        return list(range(len(stored)))
    picked = parse_layers(spec, max(stored) + 1)
    absent = [i for i in picked if i not in stored]
    if absent:
        raise StoreError(
            f"--layers {spec!r}: {store} does not hold state(s) {absent}; it holds "
            f"{format_layers(stored)} (the upstream's state numbers, as `pipeline extract --layers`)"
        )
    return [stored.index(i) for i in picked]


def h5_fingerprint(fp: dict, layers: list[int], dtype: str) -> dict:
    """The exported file's fingerprint: the store's, with the kept states and the float dtype."""
    out = dict(fp)
    out.update(layers=list(layers), num_layers=len(layers), dtype=dtype)
    out["encoding"] = "fp16" if dtype == "float16" else "fp32"
    return out


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("utterances, {task.fields[frames]} frames"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def export_h5(
    store: str | Path,
    out: str | Path,
    layers: str | None = None,
    dtype: str = "float16",
    compression: str = "none",
    partial: bool = False,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write store `store` to the HDF5 file `out`; returns a summary (utterances, frames, bytes).

    layers: a SPEC of upstream states to keep (None: every stored state); dtype: float16 or
    float32; compression: none, gzip or lzf (per utterance dataset); partial: export a store
    whose extraction has not finished (its committed utterances); force: overwrite `out`.
    """
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"--dtype {dtype!r}: choose one of {', '.join(EXPORT_DTYPES)}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"--compression {compression!r}: choose one of {', '.join(COMPRESSIONS)}")
    out = Path(out)
    if out.exists() and not force:
        raise StoreError(f"{out} exists; pass --force to overwrite it")
    r = open_store(store)
    if not r.complete and not partial:
        parts = getattr(r, "parts", [])
        todo = list(r.missing_parts) + [p.name for p in parts if not p.attrs.get("complete")]
        raise StoreError(
            f"{store} is not complete (parts {', '.join(todo)} missing or unfinished): finish it "
            "with the same `pipeline extract` command, or pass --partial to export what is committed"
        )
    pos = select_states(list(r.layers), layers, str(store))
    kept = [int(r.layers[j]) for j in pos]
    all_states = pos == list(range(len(r.layers)))
    fp = h5_fingerprint(r.fingerprint, kept, dtype)
    np_dtype = np.dtype(dtype)
    comp = None if compression == "none" else compression
    tmp = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    t0, frames, lengths = time.perf_counter(), 0, []
    try:
        with h5py.File(tmp, "w") as f, _progress(progress) as bar:
            f.attrs.update({
                "format": H5_FORMAT,
                "format_version": H5_FORMAT_VERSION,
                "fingerprint": json.dumps(fp),
                "source_store": str(store),
                "source_encoding": str(r.encoding),
                "layout": "(T, L, D)",
                "failed": json.dumps(r.failed),
                **{k: attr_value(v) for k, v in fp.items()},
            })  # fmt: skip
            group = f.create_group("utterances")
            task = bar.add_task(f"export {Path(str(store)).name}", total=len(r.ids), frames=0)
            for uid in r.ids:
                raw = r.raw(uid)  # (T, L_stored, D) in the stored dtype
                x = r.decode(raw, np_dtype)  # with the scales of every stored state
                if not all_states:
                    x = x[:, pos]  # (T, L, D)
                use = comp if len(x) else None  # HDF5 cannot chunk an empty dataset
                x = np.ascontiguousarray(x)
                ds = group.create_dataset(dataset_name(uid), data=x, compression=use)
                ds.attrs["crc32"] = zlib.crc32(x.tobytes())  # of its C-order values (cache verify)
                lengths.append(len(x))
                frames += len(x)
                bar.update(task, advance=1, frames=frames)
            f.create_dataset("ids", data=np.array(r.ids, dtype=object), dtype=h5py.string_dtype())
            f.create_dataset("lengths", data=np.array(lengths, dtype=np.int64))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {
        "out": str(out),
        "utterances": len(lengths),
        "frames": frames,
        "layers": kept,
        "dtype": dtype,
        "bytes": out.stat().st_size,
        "seconds": time.perf_counter() - t0,
    }
