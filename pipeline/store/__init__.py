"""The feature store: every hidden state of one upstream over one manifest, in Zarr v3.

Layout (full description for researchers in cache/README.md)::

    STORE.zarr/                     group; attrs: format, format_version, fingerprint, num_parts
      scales   (L, D) float32       8-bit encodings only: x = stored value * scale
      part-00000-of-00001/          one part per writer (`--shard i/n` -> n parts)
        frames   (F, L, D) float16  frames-major, chunked along frames only: (C, L, D); int8 or
                                    uint8 (fp8 e4m3 bits) for the 8-bit encodings
        ids      (N,) string        utterance ids, in write order
        offsets  (N,) int64         first frame of each utterance in `frames`
        lengths  (N,) int64         frames of each utterance
        attrs: committed {utterances, frames}, checksums {frames: [crc32 per chunk], ids,
               offsets, lengths}, complete, failed [{id, reason}], shard [i, n]
      part-00000-of-00001.lock      while a writer holds the part (an flock on the open file)

Modules, each importing only those before it: errors, faults, checksum -> meta -> lock ->
create (root metadata and part skeletons, kill-safe) -> writer (StoreWriter: commit protocol,
recovery), reader (StoreReader, open_store:
zero-copy memory-mapped reads), manage (remove_store / remove_part for --force), verify
(verify_store: every chunk against its checksum), source (the FeatureSource protocol).
`from pipeline.store import X` is the one import for every public name.
"""

from pipeline.store.checksum import index_checksums
from pipeline.store.create import CHUNK_BYTES, INDEX_CHUNK, chunk_frames_for
from pipeline.store.errors import (
    FingerprintMismatch,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreLocked,
)
from pipeline.store.lock import FileLock, is_held
from pipeline.store.manage import remove_part, remove_store
from pipeline.store.meta import (
    CODE_VERSION,
    FINGERPRINT_FIELDS,
    FORMAT,
    FORMAT_VERSION,
    check_adoptable,
    check_fingerprint,
    make_fingerprint,
    manifest_hash,
    normalize_fingerprint,
    part_name,
    store_exists,
    unexpected_entries,
)
from pipeline.store.reader import StoreReader, open_store
from pipeline.store.source import FeatureSource
from pipeline.store.verify import verify_store
from pipeline.store.writer import StoreWriter

__all__ = [
    "CHUNK_BYTES", "CODE_VERSION", "FINGERPRINT_FIELDS", "FORMAT", "FORMAT_VERSION", "INDEX_CHUNK",
    "FeatureSource", "FileLock", "FingerprintMismatch", "StoreCorrupt", "StoreError", "StoreFull",
    "StoreLocked", "StoreReader", "StoreWriter", "check_adoptable", "check_fingerprint",
    "chunk_frames_for", "index_checksums", "is_held", "make_fingerprint", "manifest_hash",
    "normalize_fingerprint", "open_store", "part_name", "remove_part", "remove_store",
    "store_exists", "unexpected_entries", "verify_store",
]  # fmt: skip
