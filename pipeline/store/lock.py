"""Advisory locks on open files (flock): held while the file is open, released by the kernel
when the holder exits or dies, so a dead writer never leaves a lock anyone must clean up.

Local stores only. flock locks belong to an open file description: two opens in one process
exclude each other like two processes do. A lock file is unlinked by its holder on release;
a taker checks that the file it locked is still the one at the path (else it retries), so a
release racing with a take never yields two holders. On NFS, Linux maps flock to byte-range
locks that the server enforces across clients; other network file systems may not honour them.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from pipeline.store.errors import StoreLocked


class FileLock:
    """An exclusive advisory lock on `path` (created if missing, with its folder)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self, blocking: bool = False) -> bool:
        """Take the lock; False if another holder has it (only when not `blocking`)."""
        if self.fd is not None:
            return True
        for _ in range(1000):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:  # the folder was removed between mkdir and open
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its holder unlinked it as we opened it: lock the new file instead
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
            self.fd = fd
            return True
        raise StoreLocked(f"could not take the lock {self.path}", "another process keeps replacing it")  # fmt: skip

    def release(self) -> None:
        """Unlink the lock file and drop the lock (unlink first: a taker then retries)."""
        if self.fd is None:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def owner(self) -> str:
        """'pid P on HOST' of the recorded holder, or 'another process'."""
        try:
            o = json.loads(self.path.read_text())
            return f"pid {o['pid']} on {o['host']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def __enter__(self) -> FileLock:
        self.acquire(blocking=True)
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def is_held(path: str | Path) -> bool:
    """Whether a live process holds the lock at `path` (False when there is no such file)."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False
