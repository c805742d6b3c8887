"""Readers and rebuilders of a feature store, kept apart by an advisory lock beside the store.

A training run reads its stores for minutes to days; an extract stage of another experiment
(a `dvc exp run --queue` workspace sharing an absolute `paths.cache_root`) may at the same time
ask for one of them. It adopts a store that is complete for the same request (writing nothing)
and rebuilds one made for another request only when no process reads it:

    with StoreUse(path) as use:        # shared: any number of readers and adopters
        ...                            # read, or adopt a complete store
        use.exclusive()                # StoreBusy while another process holds the store

The lock is `flock` on `<store>.readers.lock` (a sibling of the store, never inside it), so the
kernel drops it when its process dies. Stores behind a URL (`s3://...`) take no lock: share them
read-only, or give each experiment its own `paths.cache_root`.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from pipeline.errors import UserError

LOCK_SUFFIX = ".readers.lock"


class StoreBusy(UserError, RuntimeError):
    """Another process reads (or rebuilds) the store; the message says what to do."""


def lock_path(store: str | Path) -> Path | None:
    """The lock file of a local store; None for a URL."""
    return None if "://" in str(store) else Path(str(store).rstrip("/") + LOCK_SUFFIX)


class StoreUse:
    """A shared (reader) hold on one store that can be upgraded to exclusive (rebuilder)."""

    def __init__(self, store: str | Path) -> None:
        self.store = str(store)
        self._path = lock_path(store)
        self._fd: int | None = None

    def __enter__(self) -> StoreUse:
        self.shared()
        return self

    def __exit__(self, et: type | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def _open(self) -> int | None:
        if self._path is None:
            return None
        if self._fd is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o666)
        return self._fd

    def shared(self) -> None:
        """Hold the store as a reader; StoreBusy while another process rebuilds it."""
        fd = self._open()
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise StoreBusy(
                f"{self.store} is being rebuilt by another process (an extract stage of another "
                "experiment?); wait for it to finish, then run this again"
            ) from None

    def exclusive(self) -> None:
        """Hold the store alone (to rebuild it); StoreBusy while any other process reads it."""
        fd = self._open()
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreBusy(
                f"{self.store} exists for another request and another process is reading it "
                "(a training run of another experiment?), so it is not rebuilt under it: wait for "
                "that run to finish and run this again, or give this experiment its own "
                "paths.cache_root"
            ) from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


class Reading:
    """Shared holds on several stores at once (the stores a training run reads)."""

    def __init__(self, stores: list[str]) -> None:
        self.uses = [StoreUse(s) for s in dict.fromkeys(stores)]

    def __enter__(self) -> Reading:
        try:
            for u in self.uses:
                u.shared()
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, et: type | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def release(self) -> None:
        for u in self.uses:
            u.release()
