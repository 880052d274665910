"""The audio-influence probe: zero audio channels weigh nothing, non-zero ones change probabilities."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avvos.checkpoint import save_checkpoint
from avvos.config import ModelConfig
from avvos.data.av_sync import EVAL_SEED_START, AVSyncConfig, write_dataset
from avvos.errors import InputError
from avvos.model.stcn import build_model
from training.audio_influence import audio_influence


def test_audio_influence_measures_the_audio_channels(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_dataset(data, "crossing", 1, EVAL_SEED_START, AVSyncConfig(frames=8, height=64, width=96), progress=False)
    torch.manual_seed(0)
    model = build_model(ModelConfig.light(audio="pixel"))
    save_checkpoint(model, tmp_path / "zero.safetensors")
    zero = audio_influence(tmp_path / "zero.safetensors", data)
    assert zero["audio_rms"] == 0.0 and zero["max_prob_change"] == 0.0 and zero["visual_rms"] > 0
    torch.nn.init.normal_(model.audio_key.proj.weight, std=0.5)
    save_checkpoint(model, tmp_path / "loud.safetensors")
    loud = audio_influence(tmp_path / "loud.safetensors", data)
    assert loud["audio_rms"] > 0 and loud["max_prob_change"] > 0  # zero audio channels gave exactly 0
    save_checkpoint(build_model(ModelConfig.light()), tmp_path / "visual.safetensors")
    with pytest.raises(InputError, match="no audio channels"):
        audio_influence(tmp_path / "visual.safetensors", data)
