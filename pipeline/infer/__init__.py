"""Use what was trained: a run on new audio (`predict`) and a run as one TorchScript file (`export`).

Legend: N upstreams, B batch, L_i stored states of upstream i, T_i frames, D_i width, T output
frames (docs/INFERENCE.md).

- `predict(run_dir, inputs, out, ...) -> PredictResult` (pipeline/infer/predict.py): audio files,
  folders or manifests -> the run's upstreams live, checked against its stores' fingerprints and
  encoded as the stores were -> interface N x (B, L_i, T_i, D_i) -> (B, T, D) -> head -> one JSON
  line per utterance (or per trial for sv with `trials=`).
- `export_run(run_dir, out_dir) -> ExportResult` (pipeline/infer/export.py): interface + head as a
  TorchScript module (pipeline/infer/traced.py) and a JSON card (upstreams, fingerprints, states
  used, vocabulary or labels, metrics, training config, file size).
- The parts: `load_run` (pipeline/infer/run_model.py), `open_upstreams`, `LiveFeatures`, `collate`
  (pipeline/infer/live.py), `collect_inputs` (pipeline/infer/inputs.py), `head_outputs`
  (pipeline/infer/outputs.py).
"""

from pipeline.infer.export import ExportResult, export_run
from pipeline.infer.inputs import NoInputs, collect_inputs
from pipeline.infer.live import (
    LiveFeatures,
    UpstreamMismatch,
    UpstreamNotLoadable,
    check_upstream,
    collate,
    open_upstreams,
)
from pipeline.infer.predict import PredictError, PredictResult, predict
from pipeline.infer.run_model import RunModel, RunNotReady, load_run
from pipeline.infer.traced import ExportError

__all__ = [
    "ExportError",
    "ExportResult",
    "LiveFeatures",
    "NoInputs",
    "PredictError",
    "PredictResult",
    "RunModel",
    "RunNotReady",
    "UpstreamMismatch",
    "UpstreamNotLoadable",
    "check_upstream",
    "collate",
    "collect_inputs",
    "export_run",
    "load_run",
    "open_upstreams",
    "predict",
]
