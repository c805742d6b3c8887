"""The store's user errors: each names the store (or file), what happened and what to do."""

from __future__ import annotations

from pipeline.errors import UserError


class StoreError(UserError, RuntimeError):
    """A store that cannot be used as asked. `str(e)` is the whole message (one paragraph);
    `e.hint` is what to do (also part of the message), for a CLI that prints it apart."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message, self.hint = message, hint
        sep = "\n" if "\n" in message else "; "  # a multi-line message gets its hint on a line
        super().__init__(f"{message}{sep}{hint}" if hint else message)


class FingerprintMismatch(StoreError):
    """The store on disk was made by another upstream, mode or manifest than requested."""


class StoreLocked(StoreError):
    """Another live process is writing the same store part (or rebuilding the store)."""


class StoreFull(StoreError):
    """The disk filled up while writing; what was committed is intact and a rerun resumes."""


class StoreCorrupt(StoreError):
    """Bytes on disk disagree with what was committed (a truncated, missing or altered chunk)."""
