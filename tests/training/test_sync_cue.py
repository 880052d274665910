"""The hand-made sync cue: a correlation of changes, and the per-mapping comparison on generated clips."""

from __future__ import annotations

from pathlib import Path

import torch

from avvos.data.av_sync import EVAL_SEED_START, AVSyncConfig, write_dataset
from training.sync_cue import change_correlation, sync_cue


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
