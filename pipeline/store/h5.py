"""Feature stores exported to HDF5: the layout, and a read-only reader stage two can train from.

Legend: N utterances, T frames, L hidden states kept, D width. Layout (docs/HDF5.md)::

    OUT.h5                           attrs: format, format_version, fingerprint (JSON), one
                                     attribute per fingerprint field (lists/None as JSON),
                                     source_store, source_encoding, layout "(T, L, D)"
      ids        (N,) string         utterance ids, in the store's order
      lengths    (N,) int64          frames of each utterance
      utterances/                    group
        <name>   (T, L, D) float16   one dataset per utterance (or float32, see attrs dtype);
                                     <name> is the id with "%" -> "%25" and "/" -> "%2F"

The values are plain floats: 8-bit stores are decoded (with their scales) on export, so the
file needs h5py alone. `open_h5_store(path)` gives the reader interface of
pipeline/store/reader.py that the loader uses (`ids`, `length(id)`, `reader[id] -> (T, L, D)`,
`raw`, `decode`, `fingerprint`, `encoding`, `layers`, `num_layers`, `dim`, `frame_rate`,
`scales` None, `mode` "hdf5").
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.store.errors import StoreError

H5_FORMAT = "sfm-feature-hdf5"
H5_FORMAT_VERSION = 1
H5_SUFFIXES = (".h5", ".hdf5")
EXPORT_DTYPES = ("float16", "float32")


def is_h5_path(path: str | Path) -> bool:
    """True when `path` names an HDF5 export (suffix .h5 or .hdf5)."""
    return Path(str(path)).suffix.lower() in H5_SUFFIXES


def dataset_name(uid: str) -> str:
    """The dataset name of utterance `uid` under `utterances/` ("/" is HDF5's separator)."""
    name = uid.replace("%", "%25").replace("/", "%2F")
    return "%2E" if name == "." else "%2E%2E" if name == ".." else name


def attr_value(v: Any) -> Any:
    """An HDF5 attribute for a fingerprint value: str/int/float as is, the rest as JSON."""
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return v
    return json.dumps(v)


class H5StoreReader:
    """Read-only access to an HDF5 export, with the StoreReader interface the loader uses.

    `reader[id] -> np.ndarray (T, L, D)` in the file's dtype (float16 or float32), read into
    memory. `encoding` is "fp16" for both widths: to the loader it means "floats, no scales".
    Picklable: DataLoader workers reopen the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if not Path(self.path).is_file():
            raise StoreError(f"no HDF5 feature file at {self.path}; write one with `pipeline cache export STORE {self.path}`")  # fmt: skip
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as e:
            raise StoreError(f"{self.path} cannot be opened as HDF5 ({e}); re-export it with `pipeline cache export`") from None  # fmt: skip
        f = self._file
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        if attrs.get("format") != H5_FORMAT:
            self._file.close()
            raise StoreError(f"{self.path} is not an exported feature store (attribute format != {H5_FORMAT!r}); write it with `pipeline cache export`")  # fmt: skip
        if int(attrs.get("format_version", 0)) > H5_FORMAT_VERSION:
            self._file.close()
            raise StoreError(f"{self.path} has HDF5 format version {attrs['format_version']}; upgrade the pipeline")  # fmt: skip
        self.attrs = attrs
        self.fingerprint: dict = json.loads(attrs["fingerprint"])
        self.encoding = "fp16"
        self.scales: np.ndarray | None = None
        self.layers: list[int] = [int(i) for i in self.fingerprint["layers"]]
        self.num_layers = int(self.fingerprint["num_layers"])
        self.dim = int(self.fingerprint["dim"])
        self.frame_rate = float(self.fingerprint["frame_rate"])
        self.stored_dtype = np.dtype(self.fingerprint["dtype"])
        self.failed: list[dict] = json.loads(attrs.get("failed", "[]"))
        self.missing_parts: list[str] = []
        self.ids: list[str] = [x.decode() if isinstance(x, bytes) else str(x) for x in f["ids"][:]]
        lengths = np.asarray(f["lengths"][:], dtype=np.int64)
        if len(lengths) != len(self.ids):
            raise StoreError(f"{self.path}: {len(self.ids)} ids but {len(lengths)} lengths; re-export it")  # fmt: skip
        self._length = dict(zip(self.ids, lengths.tolist(), strict=True))
        if len(self._length) != len(self.ids):
            raise StoreError(f"{self.path}: an utterance id appears twice; re-export it")
        self._group = f["utterances"]

    complete = True
    mode = "hdf5"

    @property
    def total_frames(self) -> int:
        return int(sum(self._length.values()))

    def length(self, uid: str) -> int:
        """Frames of utterance `uid`."""
        try:
            return self._length[uid]
        except KeyError:
            raise KeyError(f"utterance {uid!r} is not in {self.path}; export a store that holds it") from None  # fmt: skip

    def __contains__(self, uid: object) -> bool:
        return uid in self._length

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __getitem__(self, uid: str) -> np.ndarray:
        """(T, L, D) hidden states of utterance `uid`, frames-major, in the file's dtype."""
        self.length(uid)  # a clear KeyError for unknown ids
        try:
            ds = self._group[dataset_name(uid)]
        except KeyError:
            raise StoreError(
                f"{self.path}: utterance {uid!r} is in the index but its dataset "
                f"utterances/{dataset_name(uid)} is gone; the file is damaged",
                "re-export it with `pipeline cache export STORE FILE --force`",
            ) from None
        return ds[()]

    def raw(self, uid: str) -> np.ndarray:
        """(T, L, D) stored values of `uid`: the same floats as `reader[uid]`."""
        return self[uid]

    def decode(self, raw: np.ndarray, dtype=np.float32) -> np.ndarray:
        """(..., L, D) values -> `dtype` (a cast: nothing is encoded in an HDF5 export)."""
        return np.asarray(raw).astype(dtype, copy=False)

    def get_many(self, uids: Iterable[str]) -> list[np.ndarray]:
        """[(T_i, L, D)] for each id, in order."""
        return [self[u] for u in uids]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> H5StoreReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:  # reopen in worker processes: h5py handles do not pickle
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])


def open_h5_store(path: str | Path) -> H5StoreReader:
    """Open an HDF5 export (from `pipeline cache export`) read-only."""
    return H5StoreReader(path)


def verify_h5(path: str | Path) -> list[str]:
    """Every problem of an HDF5 export, naming the utterance: a dataset missing, a length that
    disagrees with the index, values whose crc32 differs from the one written at export (files
    exported before checksums were written are checked for the rest), NaN or inf."""
    r = H5StoreReader(path)
    problems = []
    try:
        for uid in r.ids:
            try:
                ds = r._group[dataset_name(uid)]
            except KeyError:
                problems.append(f"{uid}: dataset utterances/{dataset_name(uid)} is missing")
                continue
            x = np.ascontiguousarray(ds[()])
            if len(x) != r.length(uid):
                problems.append(f"{uid}: {len(x)} frames, the index says {r.length(uid)}")
            want = ds.attrs.get("crc32")
            if want is not None and zlib.crc32(x.tobytes()) != int(want):
                problems.append(f"{uid}: its values differ from those exported (crc32)")
            if x.size and not np.isfinite(x).all():
                problems.append(f"{uid}: NaN or inf values")
    finally:
        r.close()
    return problems
