"""Tests of the audio-visual task's measures: identity switches, flicker, J&F after the first frame."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from avvos.data.av_sync import AVSyncConfig, read_distractor_masks, read_meta, write_dataset
from avvos.masks import read_mask, write_mask
from avvos.metrics import evaluate, evaluate_after_first, evaluate_av_sync, flicker, identity_switches


def _rect(top: int, left: int, height: int, width: int, shape: tuple[int, int] = (8, 12)) -> np.ndarray:
    """A boolean mask with one filled rectangle."""
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + height, left : left + width] = True
    return mask


def test_identity_switches_counts_frames_after_the_first_crossing() -> None:
    target, distractor, empty = _rect(0, 0, 4, 4), _rect(0, 6, 4, 4), np.zeros((8, 12), bool)
    both = _rect(0, 2, 4, 6)
    targets = np.stack([target] * 6)
    distractors = np.stack([distractor] * 6)[:, None]
    pred = np.stack([target, distractor, target, distractor, empty, both])
    result = identity_switches(pred, targets, distractors, [2, 3])
    assert result == {"switches": 1, "frames": 3, "fraction": 1 / 3, "switch_frames": [3]}
    assert identity_switches(pred, targets, distractors[:, 0], [0])["switch_frames"] == [1, 3]


def test_identity_switches_takes_the_most_overlapped_distractor() -> None:
    target, left, right = _rect(0, 0, 2, 4), _rect(4, 0, 2, 4), _rect(4, 6, 4, 4)
    pred = np.stack([target, target | right, _rect(0, 0, 1, 4) | right])
    distractors = np.stack([np.stack([left, right])] * 3)
    result = identity_switches(pred, np.stack([target] * 3), distractors, [0])
    assert result["switch_frames"] == [1, 2] and result["fraction"] == 1.0


def test_identity_switches_without_a_crossing() -> None:
    masks = np.stack([_rect(0, 0, 2, 2)] * 4)
    result = identity_switches(masks, masks, np.zeros((4, 2, 8, 12), bool), [])
    assert result["switches"] == 0 and result["frames"] == 0 and math.isnan(result["fraction"])
    assert identity_switches(masks, masks, np.zeros((4, 2, 8, 12), bool), [3])["frames"] == 0
    with pytest.raises(ValueError):
        identity_switches(masks, masks[:3], masks[:, None], [1])


def test_flicker_hand_computed() -> None:
    a, b = _rect(0, 0, 1, 4), _rect(0, 2, 1, 4)
    steady = np.stack([a] * 4)
    assert flicker(np.stack([a, a, b, b]), steady) == pytest.approx(2 / 9)
    assert flicker(steady, np.stack([a, b, a, b])) == pytest.approx(-2 / 3)
    empty = np.zeros((3, 8, 12), bool)
    assert flicker(empty, empty) == 0.0
    assert flicker(np.stack([a, a * 0, a * 0]), empty) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        flicker(steady[:1], steady[:1])


def test_after_first_scores_the_last_frame(tmp_path: Path) -> None:
    gt = [_rect(0, 0, 4, 4)] * 4
    pred = gt[:3] + [_rect(4, 6, 4, 4)]
    for t in range(4):
        write_mask(tmp_path / "gt" / "seq" / f"{t:05d}.png", gt[t].astype(np.uint8))
        write_mask(tmp_path / "pred" / "seq" / f"{t:05d}.png", pred[t].astype(np.uint8))
    official = evaluate(tmp_path / "pred", tmp_path / "gt", progress=False)
    after_first = evaluate_after_first(tmp_path / "pred", tmp_path / "gt", progress=False)
    assert official["overall"]["J-Mean"] == 1.0
    assert after_first["overall"]["J-Mean"] == pytest.approx(2 / 3)
    assert after_first["overall"]["F-Mean"] == pytest.approx(2 / 3)


def test_evaluate_av_sync_on_a_written_split(tmp_path: Path) -> None:
    config = AVSyncConfig(frames=10, height=48, width=64)
    names = write_dataset(tmp_path / "data", "crossing", 3, 40, config, progress=False)
    for name in names:
        for t, path in enumerate(sorted((tmp_path / "data" / "Annotations" / name).glob("*.png"))):
            if t:
                write_mask(tmp_path / "perfect" / name / path.name, read_mask(path))
            distractor = read_distractor_masks(tmp_path / "data", name)[t, 0]
            write_mask(tmp_path / "swapped" / name / path.name, read_mask(path) if t == 0 else distractor)
    perfect = evaluate_av_sync(tmp_path / "perfect", tmp_path / "data", "crossing")
    assert perfect["clips"] == 3 and perfect["J&F-Mean"] == 1.0
    assert perfect["identity_switches"] == 0 and perfect["identity_switch_fraction"] == 0.0
    assert perfect["flicker"] == 0.0 and set(perfect["sequences"]) == set(names)

    swapped = evaluate_av_sync(tmp_path / "swapped", tmp_path / "data", "crossing")
    expected = []
    for name in names:
        start = min(read_meta(tmp_path / "data", name)["crossing_frames"]) + 1
        visible = read_distractor_masks(tmp_path / "data", name)[start:, 0].any(axis=(1, 2))
        expected.append(visible.mean())
        assert swapped["sequences"][name]["post_crossing_frames"] == 10 - start
    assert swapped["identity_switch_fraction"] == pytest.approx(np.mean(expected))
    assert swapped["identity_switch_fraction"] > 0.5 and swapped["J&F-Mean"] < 0.5
