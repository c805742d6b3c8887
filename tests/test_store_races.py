"""Writers racing for one store part: exactly one holder in every race, and the store's
fingerprint is always the winner's (the metadata describes the frames)."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import zarr

from pipeline.store import FingerprintMismatch, StoreLocked, StoreWriter, open_store, part_name

L, D = 2, 8
N_PROCS, N_RACES = 4, 50  # 50 races to create a store + 50 to take over a dead writer's part


def _fp(upstream: str) -> dict:
    return {"upstream": upstream, "source": "fake://", "weights_hash": "h", "whisper_mode": None,
            "num_layers": L, "dim": D, "frame_rate": 50.0, "dtype": "float16",
            "manifest_hash": "m", "code_version": "1"}  # fmt: skip


def _racer(k: int, base: str, kind: str, barrier, results) -> None:
    """Race N_RACES times; hold a won part until every racer has tried, then release it."""
    for r in range(N_RACES):
        path = Path(base) / f"{kind}{r}.zarr"
        barrier.wait()
        w, won = None, False
        try:  # creation races ask for different stores; takeovers for the same one
            w = StoreWriter(path, _fp(f"w{k}" if kind == "create" else "same"), chunk_frames=64)
            won = True
            w.append(f"u{k}", np.full((3, L, D), k, np.float16))
            w.commit()
        except (StoreLocked, FingerprintMismatch):
            pass
        barrier.wait()  # every racer has tried while the winner still holds the part
        results.put((r, k, won))
        if w is not None:
            w.close()
        barrier.wait()


def _race(tmp_path: Path, kind: str) -> list[list[int]]:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(N_PROCS), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(k, str(tmp_path), kind, barrier, results)) for k in range(N_PROCS)]  # fmt: skip
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in range(N_PROCS * N_RACES)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    winners: list[list[int]] = [[] for _ in range(N_RACES)]
    for r, k, won in got:
        if won:
            winners[r].append(k)
    return winners


def test_racing_creators_one_winner_whose_fingerprint_the_store_holds(tmp_path):
    winners = _race(tmp_path, "create")
    assert all(len(w) == 1 for w in winners), winners
    for r, (k,) in enumerate(winners):
        s = open_store(tmp_path / f"create{r}.zarr")
        assert s.fingerprint["upstream"] == f"w{k}" and s.ids == [f"u{k}"] and s.complete
        np.testing.assert_array_equal(s[f"u{k}"], np.full((3, L, D), k, np.float16))


def test_racing_takeovers_of_a_dead_writers_part_one_holder(tmp_path):
    for r in range(N_RACES):  # a store whose writer died: a lock file (empty, as if killed
        path = tmp_path / f"takeover{r}.zarr"  # between creating and writing it) is left
        w = StoreWriter(path, _fp("same"), chunk_frames=64)
        w.append("first", np.zeros((2, L, D), np.float16))
        w.commit()
        w._release()
        (path / f"{part_name(0, 1)}.lock").write_bytes(b"")
    winners = _race(tmp_path, "takeover")
    assert all(len(w) == 1 for w in winners), winners
    for r, (k,) in enumerate(winners):
        s = open_store(tmp_path / f"takeover{r}.zarr")
        assert s.ids == ["first", f"u{k}"] and s.complete
        assert zarr.open_group(str(tmp_path / f"takeover{r}.zarr"), mode="r").attrs["fingerprint"]["upstream"] == "same"  # fmt: skip
