"""Exporting a run's resume checkpoint to shippable weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avvos.checkpoint import load_model
from avvos.config import InferenceConfig
from avvos.model.stcn import build_model
from avvos.session import InferenceSession
from training.config import make_config
from training.export import main


def test_export_keeps_weights_and_records_the_processing_size(tmp_path: Path) -> None:
    config = make_config("av", {"pretrained": False})
    torch.manual_seed(0)
    model = build_model(config.model)
    resume = tmp_path / "resume.pt"
    torch.save({"config": config.to_json(), "model": model.state_dict(), "iteration": 7}, resume)
    out = tmp_path / "w.safetensors"
    assert main([str(resume), str(out), "--description", "test", "--process-size", "96"]) == 0
    loaded, info = load_model(out)
    assert loaded.config.process_size == 96 and info.metadata["description"] == "test"
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    session = InferenceSession(loaded, InferenceConfig(), "cpu")
    frame = np.zeros((192, 256, 3), np.uint8)
    mask = np.zeros((192, 256), np.uint8)
    mask[50:100, 60:120] = 1
    assert session.step(frame, mask=mask).labels.shape == (192, 256)  # masks come back at the input size
    assert session.process_size == (96, 128)
