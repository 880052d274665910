"""The hand-made sync cues (per position and per object) and their comparison on generated clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avvos.data.av_sync import EVAL_SEED_START, AVSyncConfig, write_dataset
from training.sync_cue import change_correlation, object_cue, object_states, sync_cue


def test_change_correlation_is_one_where_changes_follow_the_sound_and_small_elsewhere() -> None:
    torch.manual_seed(0)
    loudness = torch.rand(11)
    frames = torch.rand(11, 3, 4, 4) * 0.01
    frames[:, :, 0, 0] += 2 * loudness[:, None]  # follows the sound
    frames[:, :, 1, 1] -= 3 * loudness[:, None]  # follows it with the other sign (a mouth darkening)
    cue = change_correlation(frames, loudness)
    assert cue[0, 0] > 0.99 and cue[1, 1] > 0.99
    assert cue[3, 3] < 0.9


def test_sync_cue_singles_out_a_brightness_target(tmp_path: Path) -> None:
    """With the brightness mapping the target's cells follow the sound more than the look-alikes' cells."""
    config = AVSyncConfig(frames=24, height=120, width=216, mappings=("brightness",), snr_db_range=(30.0, 30.0))
    write_dataset(tmp_path, "crossing", 2, EVAL_SEED_START, config, progress=False)
    result = sync_cue(tmp_path, history=10)
    assert set(result) == {"brightness"}
    row = result["brightness"]
    assert row["clips"] >= 1 and row["target"] > row["lookalikes"]


def test_object_states_follow_one_object() -> None:
    image = torch.full((3, 8, 8), 0.8)
    image[:, 2, 2] = 0.1  # a dark "mouth" pixel
    mask = np.zeros((8, 8), bool)
    mask[1:4, 1:4] = True
    states = object_states([image, image], [mask, np.zeros((8, 8), bool)])
    assert states[0, 1] == 9 and abs(states[0, 2] - 1 / 9) < 1e-9 and abs(states[0, 0] - (8 * 0.8 + 0.1) / 9) < 1e-6
    assert np.isnan(states[1]).all()  # not visible


def test_object_cue_singles_out_an_opening_target(tmp_path: Path) -> None:
    """Followed with its mask, the object whose mouth opens with the sound is the one that follows it."""
    config = AVSyncConfig(frames=30, height=120, width=216, mappings=("opening",), snr_db_range=(30.0, 30.0))
    write_dataset(tmp_path, "crossing", 2, EVAL_SEED_START, config, progress=False)
    row = object_cue(tmp_path, history=10)["opening"]
    assert row["clips"] >= 1 and row["target"] > row["lookalikes"] + 0.1
