"""The base class of errors a user can act on.

`pipeline` commands print such an error's message alone (what happened, which file or store,
what to do) and exit 1; other exceptions are bugs and keep their traceback. Library modules
that raise user errors subclass `UserError` (next to the builtin they refine, e.g.
`class ManifestStoreMismatch(UserError, ValueError)`).
"""

from __future__ import annotations


class UserError(Exception):
    """An error whose message tells the user what happened and what to do; no traceback."""
