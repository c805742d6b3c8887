"""Whisper trim vs pad30: CPU time on 10-s clips and per-layer cosine similarity.

Usage: .venv/bin/python bench/whisper_modes.py [--model whisper_tiny_en] [--clips 6]
Speech comes from eSpeak NG (espeak-ng must be on PATH). Prints times, the speed ratio and
the mean cosine similarity per state between the two modes (docs/BACKGROUND.md: tiny.en
[1.0, 0.999, 0.998, 0.996, 0.987]).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from pipeline.upstreams import load_upstream

TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish. "
    "Rice is often served in round bowls. The juice of lemons makes fine punch. "
    "The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage. "
    "Four hours of steady work faced us. A large size in stockings is hard to sell."
)


def speech_clips(n: int, seconds: float = 10.0) -> torch.Tensor:
    """(n, seconds·16k) float32 eSpeak NG speech, different voices/speeds per clip."""
    out = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(n):
            path = f"{d}/{i}.wav"
            voice = ["en-us", "en", "en-us+f2", "en+m3", "en-us+f4", "en+m7"][i % 6]
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(150 + 10 * i), "-w", path, TEXT], check=True
            )
            w, sr = sf.read(path, dtype="float32")
            w = AF.resample(torch.from_numpy(w), sr, 16000)
            n_s = int(seconds * 16000)
            out.append(torch.nn.functional.pad(w, (0, max(0, n_s - len(w))))[:n_s])
    return torch.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="whisper_tiny_en")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.threads:  # on a shared machine 1 thread avoids OpenMP spinning under contention
        torch.set_num_threads(args.threads)
    clips = speech_clips(args.clips)
    lengths = torch.full((len(clips),), clips.shape[1])
    ups = {mode: load_upstream(args.model, whisper_mode=mode) for mode in ("pad30", "trim")}
    outs: dict = {}
    wall = {m: float("inf") for m in ups}
    cpu = {m: float("inf") for m in ups}
    for up in ups.values():
        up.forward(clips[:1], lengths[:1])  # warm-up
    for _ in range(args.rounds):  # interleaved rounds, best of: the machine is shared
        for mode, up in ups.items():
            t, c = time.perf_counter(), time.process_time()
            outs[mode] = [
                up.forward(clips[i : i + 1], lengths[i : i + 1])[0] for i in range(len(clips))
            ]
            wall[mode] = min(wall[mode], time.perf_counter() - t)
            cpu[mode] = min(cpu[mode], time.process_time() - c)
    audio_s = clips.shape[0] * clips.shape[1] / 16000
    print(
        f"{args.model}: {audio_s:.0f} s of audio in {len(clips)} clips, batch 1, "
        f"{torch.get_num_threads()} threads"
    )
    for mode in ups:
        print(f"  {mode:5s} wall {wall[mode]:.2f} s, cpu {cpu[mode]:.2f} s (best of {args.rounds})")
    print(
        f"  pad30 / trim ratio: wall {wall['pad30'] / wall['trim']:.2f}x, "
        f"cpu {cpu['pad30'] / cpu['trim']:.2f}x"
    )
    cos = torch.stack(
        [
            torch.nn.functional.cosine_similarity(a, b, dim=-1).mean(-1)
            for a, b in zip(outs["pad30"], outs["trim"], strict=True)
        ]
    ).mean(0)  # (L,)
    print("  mean cosine(trim, pad30) per state:", np.round(cos.numpy(), 4).tolist())


if __name__ == "__main__":
    main()
