"""Extract one store of the experiment plan and write its stamp, as dvc.yaml's extract stage (stages/extract.py) does.

The store is built from params.yaml's live `upstreams.<name>` settings. A store that already
exists complete for the same request (another experiment's, with a shared absolute
`paths.cache_root`) is adopted: nothing is recomputed or written, only the stamp. A store made
for another request is rebuilt, and only while no other process reads it (pipeline/store/usage.py).
The stamp is the small file that stands for the (untracked, uncached) store in DVC.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

from pipeline.data.manifest import read_manifests
from pipeline.device import resolve_device
from pipeline.encoding import check_encoding
from pipeline.extract.engine import (
    ExtractConfig,
    ExtractResult,
    cpu_shards,
    run,
    run_local_shards,
)
from pipeline.layers import parse_layers
from pipeline.plan import Experiment, PlanError, Store
from pipeline.plan.settings import extract_options
from pipeline.store import (
    FingerprintMismatch,
    make_fingerprint,
    manifest_hash,
    open_store,
    remove_store,
    store_exists,
)
from pipeline.store.usage import StoreUse
from pipeline.upstreams.registry import load_upstream


def extract_config(exp: Experiment, store: Store, device: str | None = None) -> ExtractConfig:
    """The ExtractConfig of one store of the plan (what `pipeline extract` would build);
    `device`: the caller's, else the experiment's."""
    opts = extract_options(exp, store)
    kw = {"whisper_mode": opts["whisper_mode"]} if "whisper_mode" in opts else {}
    if "batch_seconds" in opts:
        kw["batch_seconds"] = float(opts["batch_seconds"])
    return ExtractConfig(model=opts["model"], data=store.data, out=store.store,
                         device=device or exp.device, progress=sys.stderr.isatty(), **kw)  # fmt: skip


def extract_store(exp: Experiment, store: Store, device: str | None = None, upstream=None) -> ExtractResult:  # fmt: skip
    """Build, resume or adopt one store; rebuild it (no reader holding it) if made for another
    request. `upstream`: an Upstream or factory instead of the registry's (tests, custom models)."""
    ecfg = extract_config(exp, store, device)
    with StoreUse(store.store) as use:
        up, done = adoptable(ecfg, upstream)
        if done is not None:
            print(f"{store.store}: adopted, complete for this request ({done} utterances)")
            return ExtractResult(store=store.store, shard=(0, 1), already=done)
        n = cpu_shards(ecfg) if upstream is None else 1
        try:
            res = run_local_shards(ecfg, n) if n > 1 else run(ecfg, up)
        except FingerprintMismatch as e:
            use.exclusive()  # StoreBusy while another process reads the old store
            print(f"rebuilding {store.store}: {e}", flush=True)
            if n > 1:  # the shards must not each delete the store: delete it once here
                remove_store(ecfg.out)
                res = run_local_shards(ecfg, n)
            else:
                res = run(replace(ecfg, force=True), up)
    print(f"{store.store}: {res.written} utterance(s) written, {res.already} already there, "
          f"{len(res.failed)} failed")  # fmt: skip
    for f in res.failed[:20]:
        print(f"  failed {f['id']}: {f['reason']}")
    for w in res.warnings[:20]:
        print(f"  warning {w['id']}: {w['reason']}")
    return res


def adoptable(ecfg: ExtractConfig, upstream=None) -> tuple[object, int | None]:
    """(the loaded upstream, the utterance count of the store when it is complete for exactly
    this request, else None). Reads the store only: an adopted store is not opened for writing.

    The request's fingerprint is built as pipeline.extract.engine.run builds it; should the two ever
    differ, the store is not adopted here and `run` decides (resume, or refuse -> rebuild).
    """
    up = upstream
    if up is None:
        up = load_upstream(ecfg.model, device=resolve_device(ecfg.device), whisper_mode=ecfg.whisper_mode)  # fmt: skip
    elif isinstance(up, type) or not hasattr(up, "forward"):
        up = up()
    if not store_exists(ecfg.out):
        return up, None
    reader = open_store(ecfg.out)
    layers = parse_layers(ecfg.layers, up.spec.num_layers)
    utts = read_manifests(ecfg.data, check_files=False)
    want = make_fingerprint(up.spec, up.weights_hash(), ecfg.whisper_mode, manifest_hash(utts),
                            encoding=check_encoding(ecfg.encoding), layers=layers)  # fmt: skip
    return up, (len(reader.ids) if reader.complete and reader.fingerprint == want else None)


def write_stamp(store: Store) -> Path:
    """Write the small file that stands for a store in DVC: fingerprint and counts, no timestamps.

    Refuses an incomplete store (a failed or interrupted extraction), so the stage fails.
    """
    r = open_store(store.store)
    if not r.complete:
        raise PlanError(
            f"{store.store} is incomplete (missing parts {r.missing_parts}); re-run the extract stage"
        )
    ids = sorted(r.ids)
    info = {
        "store": store.store,
        "fingerprint": r.fingerprint,
        "utterances": len(ids),
        "frames": int(r.total_frames),
        "failed": len(r.failed),
        "ids_sha1": hashlib.sha1("\n".join(ids).encode()).hexdigest(),
    }
    path = Path(store.stamp)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(info, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )
    return path
