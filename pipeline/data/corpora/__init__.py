"""Importers for the real corpora, each reading the corpus's own layout into task data dirs.

`IMPORTERS` maps the name a user types (`pipeline data import <name> ROOT --out DIR`) to a
function `(root, out, seed=0, **options) -> ImportResult`; see each module's docstring for the
layout it reads and the manifests it writes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.data.corpora.asterisk import import_asterisk
from pipeline.data.corpora.common import CorpusError, ImportResult
from pipeline.data.corpora.iemocap import import_iemocap
from pipeline.data.corpora.librispeech import import_librispeech
from pipeline.data.corpora.mlsuperb import import_mlsuperb
from pipeline.data.corpora.voxceleb1 import import_voxceleb1

IMPORTERS: dict[str, Callable[..., ImportResult]] = {
    "librispeech": import_librispeech,
    "mlsuperb": import_mlsuperb,
    "voxceleb1": import_voxceleb1,
    "iemocap": import_iemocap,
    "asterisk": import_asterisk,
}

__all__ = ["IMPORTERS", "CorpusError", "ImportResult", "import_corpus"]


def import_corpus(
    name: str, root: str | Path, out: str | Path, seed: int = 0, **options: Any
) -> ImportResult:
    """Run the importer registered as `name` on the corpus at `root`, writing under `out`."""
    if name not in IMPORTERS:
        raise CorpusError(f"unknown corpus {name!r}; choose one of {sorted(IMPORTERS)}")
    return IMPORTERS[name](Path(root), Path(out), seed=seed, **options)
