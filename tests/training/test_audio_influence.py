"""The audio-influence probe: zero audio channels weigh nothing, non-zero ones change probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avvos.checkpoint import save_checkpoint
from avvos.config import ModelConfig
from avvos.data.av_sync import EVAL_SEED_START, AVSyncConfig, write_dataset
from avvos.errors import InputError
from avvos.model.stcn import build_model
from training.audio_influence import audio_influence, cell_mean, load_audio_model, sounding_contrast


def test_audio_influence_measures_the_audio_channels(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_dataset(data, "crossing", 1, EVAL_SEED_START, AVSyncConfig(frames=8, height=64, width=96), progress=False)
    torch.manual_seed(0)
    model = build_model(ModelConfig.light(audio="pixel"))
    save_checkpoint(model, tmp_path / "zero.safetensors")
    zero = audio_influence(load_audio_model(tmp_path / "zero.safetensors"), data)
    assert zero["audio_rms"] == 0.0 and zero["max_prob_change"] == 0.0 and zero["visual_rms"] > 0
    torch.nn.init.normal_(model.audio_key.proj.weight, std=0.5)
    save_checkpoint(model, tmp_path / "loud.safetensors")
    loud = audio_influence(load_audio_model(tmp_path / "loud.safetensors"), data)
    assert loud["audio_rms"] > 0 and loud["max_prob_change"] > 0  # zero audio channels gave exactly 0
    assert sounding_contrast(build_model(ModelConfig.light(audio="pixel")), data)["all"] == 0.0
    contrast = sounding_contrast(model.eval(), data)
    mapping = next(k for k in contrast if k != "all")
    assert contrast["all"] == contrast[mapping] and np.isfinite(contrast["all"])
    save_checkpoint(build_model(ModelConfig.light()), tmp_path / "visual.safetensors")
    with pytest.raises(InputError, match="no audio channels"):
        load_audio_model(tmp_path / "visual.safetensors")


def testcell_mean_weights_the_key_cells_by_mask_coverage() -> None:
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # the key grid of a 32x32 frame
    mask = np.zeros((30, 30), bool)  # padded to 32x32 as the key encoder's input is
    mask[:16, :16] = True  # all of cell (0, 0)
    mask[16:24, 16:30] = True  # 8x14 of the 16x16 pixels of cell (1, 1)
    coverage = 8 * 14 / 256
    assert cell_mean(values, mask) == pytest.approx((1.0 + 4.0 * coverage) / (1 + coverage))
    assert np.isnan(cell_mean(values, np.zeros((30, 30), bool)))
