"""Interface + head of a run as one TorchScript module: traced parts inside a scripted wrapper.

Legend: N upstreams, B batch, L_i stored states of upstream i, T_i frames, D_i width, T output
frames, V vocabulary, C classes, E embedding width.

    m = torch.jit.load("model.torchscript.pt")            # torch alone
    out = m([x_1, ..., x_N], [n_1, ..., n_N])              # x_i (B, L_i, T_i, D_i) float32, n_i (B,) int64

returns a dict of tensors, by task (the same numbers as `pipeline evaluate` computes from them):

- asr / asr_en / ml_asr: "log_probs" (B, T', V) CTC log-probabilities, "lengths" (B,) valid T'
  (greedy decoding: argmax per frame, merge repeats, drop blank 0, map ids through the card's vocab)
- er: "logits" (B, C), "probs" (B, C) softmax (the card's labels give the class order)
- sv: "embedding" (B, E), L2-normalised (score a trial by the dot product)

The interface is traced (`torch.jit.trace`; its code has no TorchScript types) on inputs
built to take its general paths: several lengths per batch, and every non-reference upstream
one frame short of the reference, so the frame alignment is traced in its resampling form,
which is exact for equal lengths too (the shortcut it skips is only faster). The head is
scripted (`torch.jit.script`), so its length-dependent branches (asr frame stacking, the
ml_asr convolutions' 7 frames, the x-vector TDNNs' padding) stay branches: the sv heads through
eval-mode mirrors of their forward over the trained modules (`SimpleSVScript`,
`XVectorScript`; pipeline/tasks/sv.py's `_batch_norm` does not compile). Every export is
checked against the eager modules (pipeline/infer/export.py `verify`), 1 to 62 frames.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import UserError
from pipeline.infer.run_model import RunModel
from pipeline.interfaces.align import reference_index
from pipeline.masks import frame_mask
from pipeline.tasks.asr import CTCTask
from pipeline.tasks.er import EmotionRecognition
from pipeline.tasks.sv import TDNN, SimpleSVHead, SpeakerVerification, XVectorHead, stats_pool


class ExportError(UserError, RuntimeError):
    """A run that cannot be exported as asked; the message says why and what to do."""


class _ListInterface(nn.Module):
    """The interface with a fixed list signature, for tracing."""

    def __init__(self, interface: nn.Module):
        super().__init__()
        self.m = interface

    def forward(
        self, feats: list[torch.Tensor], lengths: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.m(feats, lengths)


class _TDNNScript(nn.Module):
    """sv.TDNN's eval-mode forward in TorchScript, over the trained conv and BatchNorm."""

    def __init__(self, layer: TDNN):
        super().__init__()
        self.conv, self.bn, self.shrink = layer.conv, layer.bn, int(layer.shrink)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[1] <= self.shrink:
            x = F.pad(x, [0, 0, 0, self.shrink + 1 - x.shape[1]])
        y = F.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # (B, T', C')
        lengths = (lengths - self.shrink).clamp(min=1, max=y.shape[1])
        valid = frame_mask(lengths, y.shape[1])
        out = torch.zeros_like(y)
        out[valid] = self.bn(y[valid])
        return out, lengths


class XVectorScript(nn.Module):
    """sv.XVectorHead's eval-mode forward in TorchScript (its `_batch_norm` is the plain
    BatchNorm in eval mode), over the trained modules."""

    def __init__(self, head: XVectorHead):
        super().__init__()
        self.proj, self.embed = head.proj, head.embed
        self.tdnn = nn.ModuleList([_TDNNScript(layer) for layer in head.tdnn])

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.proj(feats)
        lengths = lengths.clamp(min=1)
        for layer in self.tdnn:
            x, lengths = layer(x, lengths)
        return self.embed(stats_pool(x, lengths))


class SimpleSVScript(nn.Module):
    """sv.SimpleSVHead's eval-mode forward in TorchScript, over the trained modules."""

    def __init__(self, head: SimpleSVHead):
        super().__init__()
        self.has_norm = head.norm is not None
        self.norm = head.norm if head.norm is not None else nn.Identity()
        self.embed = head.embed

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = stats_pool(feats, lengths)
        if self.has_norm:
            x = self.norm(x)
        return self.embed(x)


class _Base(nn.Module):
    def __init__(self, interface: nn.Module, head: nn.Module):
        super().__init__()
        self.interface = interface
        self.head = head


class CTCExport(_Base):
    def forward(
        self, feats: list[torch.Tensor], lengths: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        out, n = self.interface(feats, lengths)
        log_probs, out_lengths = self.head(out, n)
        return {"log_probs": log_probs, "lengths": out_lengths}


class ClassifierExport(_Base):
    def forward(
        self, feats: list[torch.Tensor], lengths: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        out, n = self.interface(feats, lengths)
        logits = self.head(out, n).float()
        return {"logits": logits, "probs": torch.softmax(logits, dim=-1)}


class EmbeddingExport(_Base):
    def forward(
        self, feats: list[torch.Tensor], lengths: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        out, n = self.interface(feats, lengths)
        return {"embedding": F.normalize(self.head(out, n).float(), dim=-1)}


def wrapper_class(rm: RunModel) -> type[_Base]:
    """The scripted wrapper of the run's task (ExportError for a task without one)."""
    if isinstance(rm.task, CTCTask):
        return CTCExport
    if isinstance(rm.task, EmotionRecognition):
        return ClassifierExport
    if isinstance(rm.task, SpeakerVerification):
        return EmbeddingExport
    raise ExportError(
        f"task {rm.cfg.task!r} of the run {rm.run_dir} has no export form (asr, asr_en, ml_asr, "
        "er and sv do); use `pipeline predict` with the run instead"
    )


def script_head(rm: RunModel) -> torch.jit.ScriptModule:
    """The head as TorchScript: scripted as it is (asr, ml_asr, er) less its SpecAugment (the
    identity in eval mode), through the eval-mode mirrors above for the sv heads (whose
    `_batch_norm` TorchScript cannot compile)."""
    head = rm.head
    if getattr(head, "specaug", None) is not None:
        head = copy.deepcopy(head)
        head.specaug = None
    if isinstance(rm.task, SpeakerVerification):
        emb = head.embedder
        head = XVectorScript(emb) if isinstance(emb, XVectorHead) else SimpleSVScript(emb)
    try:
        return torch.jit.script(head)
    except Exception as e:  # TorchScript's compile errors have no common class
        raise ExportError(
            f"the {rm.cfg.task} head of {rm.run_dir} cannot be compiled to TorchScript "
            f"({str(e).strip().splitlines()[0][:160]}); use `pipeline predict` with the run instead"
        ) from None


def reference(rm: RunModel, feats: list[torch.Tensor], lengths: list[torch.Tensor]) -> dict:
    """What the exported module computes, in eager PyTorch with the run's own modules."""
    cls = wrapper_class(rm)
    with torch.no_grad():
        out, n = rm.interface(feats, lengths)
        if cls is CTCExport:
            lp, ln = rm.head(out, n)
            return {"log_probs": lp, "lengths": ln}
        if cls is ClassifierExport:
            logits = rm.head(out, n).float()
            return {"logits": logits, "probs": torch.softmax(logits, dim=-1)}
        return {"embedding": F.normalize(rm.head(out, n).float(), dim=-1)}


def example_inputs(
    rm: RunModel, batch: int, frames: int, equal: bool = False, seed: int = 0
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Random N x (B, L_i, T_i, D_i) features and N x (B,) lengths at the run's frame rates:
    the reference upstream's longest utterance has `frames` frames, the others fewer; the other
    upstreams' counts follow their rates, one frame short of it unless `equal`."""
    g = torch.Generator().manual_seed(seed)
    ref = reference_index(rm.frame_rates, len(rm.shapes))
    base = torch.tensor([max(1, frames - (7 * b) % max(frames, 1)) for b in range(batch)])
    base[0] = frames
    feats, lengths = [], []
    for i, (L, D) in enumerate(rm.shapes):
        ratio = rm.frame_rates[i] / rm.frame_rates[ref]
        n = base.clone() if i == ref else (base.double() * ratio).round().long()
        if i != ref and not equal:
            n = (n - 1).clamp(min=1)
        n = n.clamp(min=1)
        feats.append(torch.randn(batch, L, int(n.max()), D, generator=g))
        lengths.append(n.to(torch.int64))
    return feats, lengths


def build_module(rm: RunModel) -> torch.jit.ScriptModule:
    """The interface traced and the head scripted on the CPU, in the task's scripted wrapper."""
    if rm.device.type != "cpu":
        raise ExportError("export traces on the CPU: load the run with device='cpu'")
    cls = wrapper_class(rm)
    feats, lengths = example_inputs(rm, 3, 32)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings: the general paths are taken (above)
        itf = torch.jit.trace(_ListInterface(rm.interface), (feats, lengths), check_trace=False)
        return torch.jit.script(cls(itf, script_head(rm)))


def max_difference(a: dict, b: dict) -> float:
    """Largest |a - b| over the outputs (inf when shapes or keys differ)."""
    if set(a) != set(b):
        return math.inf
    worst = 0.0
    for k in a:
        x, y = a[k].float(), b[k].float()
        if x.shape != y.shape:
            return math.inf
        if x.numel():
            worst = max(worst, float((x - y).abs().max()))
    return worst
