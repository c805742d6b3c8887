"""Multilingual ASR, the ML-SUPERB downstream: transformer + CTC over characters, CER per language.

Head (ESPnet egs2/ml_superb/asr1, conf/tuning/train_asr_s3prl_1h.yaml), in ESPnet's order:
SpecAugment (training only) -> utterance MVN -> Linear(D -> 80) pre-encoder -> Conv2dSubsampling2
(T -> (T-1)//2 - 2) -> `blocks` pre-LayerNorm transformer blocks (256 d, 8 heads, FFN 1024,
ReLU, dropout 0.1) -> LayerNorm -> Linear(256 -> V) CTC output. Pure CTC, greedy decoding.

Vocabulary: `<blank>` (0), `<unk>` (1), then every character of the (normalised) train texts,
sorted; the space is a token too (ESPnet's `<space>`), and a Han or kana character is one token.

CER: `metrics.normalize_ml` on references and hypotheses (upper case, punctuation removed,
single spaces), then jiwer.cer per language on the whole strings, so the single spaces
between words count as characters (as ESPnet's `<space>` tokens do). The score is the mean of
the per-language CERs.

Legend: B batch, T frames, D feature width, V vocabulary size.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.data.manifest import Utterance
from pipeline.masks import frame_mask
from pipeline.tasks import register
from pipeline.tasks.asr import BiLSTMCTCHead, CTCTask, specaug_from_cfg, utterance_mvn
from pipeline.tasks.base import metrics_record
from pipeline.tasks.metrics import cer, normalize_ml
from pipeline.tasks.specaug import SpecAugmentConfig

ML_SPECIALS = ["<blank>", "<unk>"]
# ESPnet ml_superb specaug_conf (time warping is not implemented here)
ML_SPECAUG = SpecAugmentConfig(
    num_freq_mask=2,
    freq_mask_width=(0, 27),
    num_time_mask=5,
    time_mask_width=(0, 0),
    time_mask_ratio=0.05,
)


class Conv2dSubsampling2(nn.Module):
    """ESPnet Conv2dSubsampling2: (B, T, idim) -> (B, (T-1)//2 - 2, odim), with scaled sinusoidal positions."""

    def __init__(self, idim: int, odim: int, dropout: float):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, odim, 3, 2), nn.ReLU(), nn.Conv2d(odim, odim, 3, 1), nn.ReLU()
        )
        self.out = nn.Linear(odim * ((idim - 1) // 2 - 2), odim)
        self.odim = odim
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def out_lengths(lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths - 1, 2, rounding_mode="floor") - 2

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[1] < 7:  # the two convolutions need 7 frames
            x = nn.functional.pad(x, (0, 0, 0, 7 - x.shape[1]))
        x = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))  # (B, T', odim)
        pos = torch.arange(t, device=x.device, dtype=x.dtype)[:, None]
        freq = torch.exp(
            torch.arange(0, self.odim, 2, device=x.device, dtype=x.dtype)
            * (-math.log(10000.0) / self.odim)
        )
        pe = torch.zeros(t, self.odim, device=x.device, dtype=x.dtype)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        x = self.dropout(x * math.sqrt(self.odim) + pe)
        return x, self.out_lengths(lengths).clamp(min=0, max=t)


class TransformerCTCHead(nn.Module):
    """MVN, Linear(D -> pre_dim), Conv2dSubsampling2, transformer blocks, LayerNorm, Linear(d -> V)."""

    def __init__(
        self,
        in_dim: int,
        vocab_size: int,
        pre_dim: int = 80,
        d_model: int = 256,
        heads: int = 8,
        ffn: int = 1024,
        blocks: int = 2,
        dropout: float = 0.1,
        norm_vars: bool = False,
        specaug: nn.Module | None = None,
    ):
        super().__init__()
        self.specaug = specaug
        self.norm_vars = norm_vars
        self.pre = nn.Linear(in_dim, pre_dim)
        self.subsample = Conv2dSubsampling2(pre_dim, d_model, dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, ffn, dropout, activation="relu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.after_norm = nn.LayerNorm(d_model)
        self.ctc = nn.Linear(d_model, vocab_size)

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, T, D), lengths (B,) -> (log_probs (B, T', V), out_lengths (B,)), T' = (T-1)//2 - 2."""
        if self.specaug is not None:
            feats = self.specaug(feats, lengths)
        x = utterance_mvn(feats, lengths, self.norm_vars)
        x, out_lengths = self.subsample(self.pre(x), lengths)  # (B, T', d)
        pad = ~frame_mask(out_lengths.clamp(min=1).to(x.device), x.shape[1])  # (B, T')
        x = self.after_norm(self.encoder(x, src_key_padding_mask=pad))
        return self.ctc(x).log_softmax(dim=-1), out_lengths


@register
class MultilingualASR(CTCTask):
    """ML-SUPERB ASR (mono-1h / multi-1h): characters, CTC, greedy decoding, CER per language.

    cfg keys (ML-SUPERB defaults):
        mode: multi         "multi": one model over all languages; "mono": one language only
        language: null      the ISO 639-3 code for mode mono (select() keeps only it)
        pre_dim: 80         Linear(D -> pre_dim) pre-encoder
        d_model: 256, heads: 8, ffn: 1024, blocks: 2, dropout: 0.1
                            blocks: 0 is SUPERB's phoneme-recognition head instead: utterance
                            MVN (means and variances), `downsample` stacked frames (default 1),
                            one Linear(k·D -> V); the interface is then the only other learned
                            transformation
        mvn_vars: false     ESPnet's utterance_mvn default normalises means only; true adds variances
        specaug: true       ESPnet ml_superb masks: specaug_num_freq_mask 2, specaug_freq_mask_width
                            [0, 27], specaug_num_time_mask 5, specaug_time_mask_ratio 0.05

    predict() gives hypothesis strings; score() gives metric "cer" = mean over languages,
    `per_language` {lang: cer}, `mode` and `language`.
    """

    name = "ml_asr"
    metric = "cer"
    direction = "lower"
    demo = {
        # lr 1e-3 (dev CER after 400 steps, 2e-3 -> 1e-3: tiny.en HConv 95 -> 54 %, WS 56 -> 60 %)
        "train": {"steps": 400, "batch_size": 8, "lr": 1e-3, "eval_every": 100},
        # ML-SUPERB: 80, 256, 8, 1024, 2. The Conv2dSubsampling2's d_model x d_model 3x3 conv
        # dominates the step time on a CPU: d_model 64 trains 3x faster than 128, as well.
        "task_args": {"pre_dim": 80, "d_model": 64, "heads": 4, "ffn": 256, "blocks": 2},
    }
    recipe = {  # ESPnet ml_superb: trained by epochs, so steps come from the corpus size
        "train": {"batch_size": 8, "accum": 4, "lr": 1e-4, "weight_decay": 1e-6},
        "task_args": {"pre_dim": 80, "d_model": 256, "heads": 8, "ffn": 1024, "blocks": 2},
    }

    def __init__(self, cfg: dict, train_utts: list[Utterance]):
        super().__init__(cfg, train_utts)
        self.mode = str(self.cfg.get("mode", "multi"))
        self.language = self.cfg.get("language")
        if self.mode not in ("multi", "mono"):
            raise ValueError(f"ml_asr: mode must be 'multi' or 'mono', got {self.mode!r}")
        if self.mode == "mono" and not self.language:
            raise ValueError(
                "ml_asr: mode 'mono' needs `language` (an ISO 639-3 code such as 'eng') in the task config"
            )
        train = self.select(train_utts)
        chars = sorted({ch for u in train for ch in normalize_ml(u.text or "")})
        self.vocab: list[str] = ML_SPECIALS + chars
        self._index = {c: i for i, c in enumerate(self.vocab)}

    def select(self, utts: list[Utterance]) -> list[Utterance]:
        """Utterances with text; in mono mode only those of `language`."""
        keep = []
        for u in utts:
            if u.text is None:
                continue
            if u.language is None:
                raise ValueError(
                    f"utterance {u.id!r} has no language; ml_asr needs one (ISO 639-3) on every line of the manifest"
                )
            if self.mode == "mono" and u.language != self.language:
                continue
            keep.append(u)
        return keep

    def build_head(self, in_dim: int) -> nn.Module:
        c = self.cfg
        if int(c.get("blocks", 2)) == 0:
            return BiLSTMCTCHead(
                in_dim,
                len(self.vocab),
                layers=0,
                dropout=float(c.get("dropout", 0.1)),
                specaug=specaug_from_cfg(c, ML_SPECAUG),
                mvn="mean_var",
                downsample=int(c.get("downsample", 1)),
            )
        return TransformerCTCHead(
            in_dim,
            len(self.vocab),
            pre_dim=int(c.get("pre_dim", 80)),
            d_model=int(c.get("d_model", 256)),
            heads=int(c.get("heads", 8)),
            ffn=int(c.get("ffn", 1024)),
            blocks=int(c.get("blocks", 2)),
            dropout=float(c.get("dropout", 0.1)),
            norm_vars=bool(c.get("mvn_vars", False)),
            specaug=specaug_from_cfg(c, ML_SPECAUG),
        )

    def encode(self, text: str) -> list[int]:
        return [self._index.get(ch, 1) for ch in normalize_ml(text)]

    def decode(self, ids: list[int]) -> str:
        return normalize_ml("".join(self.vocab[i] for i in ids if i >= len(ML_SPECIALS)))

    def score(
        self, outputs: list[Any], utts: list[Utterance], split: str, data_dir: Path | None = None
    ) -> dict:
        by_lang: dict[str, tuple[list[str], list[str]]] = {}
        for u, h in zip(utts, outputs, strict=True):
            refs, hyps = by_lang.setdefault(u.language or "unknown", ([], []))
            refs.append(normalize_ml(u.text or ""))
            hyps.append(normalize_ml(h))
        per_language = {lang: cer(r, h) for lang, (r, h) in sorted(by_lang.items())}
        mean = sum(per_language.values()) / max(1, len(per_language))
        return metrics_record(
            self.name,
            "cer",
            mean,
            "lower",
            split,
            per_language=per_language,
            mode=self.mode,
            language=self.language,
            num_utts=len(utts),
        )

    def state(self) -> dict:
        return {"vocab": list(self.vocab), "mode": self.mode, "language": self.language}

    def load_state(self, state: dict) -> None:
        if "vocab" in state:
            self.vocab = list(state["vocab"])
            self._index = {c: i for i, c in enumerate(self.vocab)}
        self.mode = state.get("mode", self.mode)
        self.language = state.get("language", self.language)
