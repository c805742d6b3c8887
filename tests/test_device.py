"""One `resolve_device` for extraction and training: auto, explicit devices, clear refusals."""

from __future__ import annotations

import pytest
import torch

from pipeline.device import DeviceUnavailable, resolve_device
from pipeline.errors import UserError


def test_auto_and_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device(" cpu ") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


def test_cuda_is_refused_without_a_gpu_and_beyond_the_visible_ones(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailable, match="no CUDA device is visible"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(DeviceUnavailable, match="only 2 CUDA device"):
        resolve_device("cuda:2")


def test_an_unknown_name_is_a_user_error():
    with pytest.raises(UserError, match="not a device torch knows"):
        resolve_device("gpu0")
