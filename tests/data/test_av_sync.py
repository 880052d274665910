"""Tests of the synthetic "who is sounding" generator against its task definition (av_sync_task.md)."""

from __future__ import annotations

import json
import time
import wave
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from avvos.data.av_sync import (
    EVAL_SEED_START,
    NEAR_RADII,
    SPLITS,
    TRAIN_SEED_START,
    AVSyncClip,
    AVSyncConfig,
    AVSyncDataset,
    clip_name,
    generate_clip,
    read_clip,
    read_distractor_masks,
    read_meta,
    read_wav,
    write_dataset,
)

SMALL = AVSyncConfig(frames=12, height=64, width=96)


def _frame_rms(clip: AVSyncClip) -> np.ndarray:
    """RMS of the audio in a window of one frame's duration centred on each frame's timestamp."""
    hop = clip.sample_rate / clip.fps
    out = []
    for t in range(len(clip.frames)):
        a, b = max(0, round((t - 0.5) * hop)), min(len(clip.audio), round((t + 0.5) * hop))
        out.append(np.sqrt(np.mean(clip.audio[a:b].astype(np.float64) ** 2)))
    return np.asarray(out)


def _labels(clip: AVSyncClip) -> np.ndarray:
    """Visible object ids (object index + 1) per pixel, (T, H, W)."""
    labels = np.zeros(clip.masks.shape, np.int64)
    labels[clip.masks > 0] = clip.target + 1
    for column, obj in enumerate(clip.meta["distractors"]):
        labels[clip.distractor_masks[:, column]] = obj + 1
    return labels


def _visible_state(clip: AVSyncClip, obj: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the object's state measured from the pixels, and whether it was clear of the other objects.

    Brightness: median intensity relative to the base colour; size: square root of the area; opening: the
    number of dark pixels. Needs a flat texture.
    """
    labels = _labels(clip)
    base = np.asarray(clip.meta["colours"][obj], np.float64)
    mapping = clip.meta["mapping"]
    values, clear = [], []
    for t in range(len(clip.frames)):
        mask = (labels[t] == obj + 1).astype(np.uint8)
        others = ((labels[t] > 0) & (labels[t] != obj + 1)).astype(np.uint8)
        inner = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
        relative = clip.frames[t][inner].astype(np.float64) @ base / (base @ base)
        if mapping == "brightness":
            values.append(np.median(relative) if relative.size else np.nan)
        elif mapping == "size":
            values.append(np.sqrt(mask.sum()))
        else:
            values.append(np.count_nonzero(relative < 0.5))
        clear.append(inner.any() and not (cv2.dilate(mask, np.ones((5, 5), np.uint8)) & others).any())
    return np.asarray(values, np.float64), np.asarray(clear)


def test_seeds_of_training_and_evaluation_are_apart() -> None:
    assert TRAIN_SEED_START + 1_000_000 <= EVAL_SEED_START
    assert clip_name("crossing", 123) == "crossing_000123"


def test_clip_is_a_function_of_its_seed() -> None:
    a, b, c = generate_clip(11), generate_clip(11), generate_clip(12)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.distractor_masks, b.distractor_masks)
    assert a.meta == b.meta and a.crossing_frames == b.crossing_frames
    assert not np.array_equal(a.frames, c.frames)
    assert not np.array_equal(a.audio, c.audio)


def test_default_clip_shapes_and_types() -> None:
    clip = generate_clip(3)
    k = clip.meta["objects"]
    assert k in (2, 3) and 0 <= clip.target < k
    assert clip.frames.shape == (40, 240, 432, 3) and clip.frames.dtype == np.uint8
    assert clip.masks.shape == (40, 240, 432) and clip.masks.dtype == np.uint8
    assert set(np.unique(clip.masks)) <= {0, 1}
    assert clip.distractor_masks.shape == (40, k - 1, 240, 432) and clip.distractor_masks.dtype == bool
    assert clip.audio.dtype == np.float32 and clip.audio.shape == (40 * 16000 // 25,)
    assert np.abs(clip.audio).max() <= 1.0
    assert clip.envelopes.shape == (k, 40) and clip.envelopes.min() >= 0 and clip.envelopes.max() <= 1
    assert clip.fps == 25 and clip.sample_rate == 16000
    assert not (clip.masks[:, None].astype(bool) & clip.distractor_masks).any()
    json.dumps(clip.meta)


@pytest.mark.parametrize(("frames", "fps"), [(40, 25.0), (16, 25.0), (30, 30.0), (25, 12.5)])
def test_audio_lasts_exactly_the_clip(frames: int, fps: float) -> None:
    clip = generate_clip(5, replace(SMALL, frames=frames, fps=fps))
    assert len(clip.audio) == frames / fps * 16000
    assert len(clip.frames) == frames


def test_any_frame_size_and_per_clip_draws() -> None:
    for height, width in ((16, 16), (77, 101), (200, 48)):
        clip = generate_clip(2, replace(SMALL, height=height, width=width))
        assert clip.frames.shape[1:3] == (height, width) and clip.masks[0].any()
    config = replace(SMALL, frames_range=(8, 14), size_choices=((48, 64), (64, 48)), fps_choices=(20.0, 25.0))
    drawn = {(c.frames.shape[:3], c.fps) for c in (generate_clip(s, config) for s in range(12))}
    assert len({shape[0] for shape, _ in drawn}) > 2
    assert {shape[1:] for shape, _ in drawn} == {(48, 64), (64, 48)}
    assert {fps for _, fps in drawn} == {20.0, 25.0}


def test_audio_follows_the_target_with_no_lag() -> None:
    """Per-frame loudness tracks the target's *visible* state (measured from pixels), not a distractor's."""
    config = AVSyncConfig(textures=("flat",), snr_db_range=(30.0, 30.0))
    for index, mapping in enumerate(("brightness", "size", "opening")):
        for seed in range(2):
            clip = generate_clip(100 * index + seed, replace(config, mappings=(mapping,)))
            loudness = _frame_rms(clip)
            correlations = {}
            for obj in range(clip.meta["objects"]):
                state, clear = _visible_state(clip, obj)
                correlations[obj] = np.corrcoef(state[clear], loudness[clear])[0, 1]
            assert correlations[clip.target] > 0.85, (mapping, seed, correlations)
            others = [correlations[j] for j in clip.meta["distractors"]]
            assert correlations[clip.target] > max(others) + 0.3, (mapping, seed, correlations)
            envelope = clip.envelopes[clip.target]
            lagged = [np.corrcoef(envelope[2 + lag : 38 + lag], loudness[2:38])[0, 1] for lag in (-2, -1, 0, 1, 2)]
            assert np.argmax(lagged) == 2 and lagged[2] > 0.9, lagged


def test_audio_is_noise_at_the_drawn_snr() -> None:
    config = replace(SMALL, frames=40, snr_db_range=(10.0, 10.0), carriers=("tone",))
    clean = generate_clip(8, replace(config, snr_db_range=(80.0, 80.0)))
    noisy = generate_clip(8, config)
    signal = clean.audio / clean.meta["audio_gain"]
    noise = noisy.audio / noisy.meta["audio_gain"] - signal
    assert 10 * np.log10(np.mean(signal**2) / np.mean(noise**2)) == pytest.approx(10.0, abs=0.05)


def test_crossing_split_crosses_after_frame_5() -> None:
    for seed in range(20):
        clip = generate_clip(seed, replace(SMALL, frames=40) if seed % 2 else AVSyncConfig())
        centres = np.asarray(clip.meta["centres"])
        radius = clip.meta["radius"]
        gaps = np.linalg.norm(centres[:, clip.meta["distractors"]] - centres[:, [clip.target]], axis=-1).min(1)
        assert [t for t in clip.crossing_frames if t > 5], seed
        crossing = set(clip.crossing_frames)
        assert set(np.flatnonzero(gaps <= NEAR_RADII * radius - 0.02)) <= crossing
        assert crossing <= set(np.flatnonzero(gaps <= NEAR_RADII * radius + 0.02))
        assert 0 not in clip.crossing_frames and clip.masks[0].any()
        height, width = clip.frames.shape[1:3]
        assert centres.min() >= radius and (centres[..., 0] <= width - 1 - radius).all()
        assert (centres[..., 1] <= height - 1 - radius).all()


def test_splits_differ_only_where_the_page_says() -> None:
    config = AVSyncConfig(textures=("flat",), mappings=("size",))
    for seed in range(4):
        crossing, distinct, silent = (generate_clip(seed, replace(config, split=s)) for s in SPLITS)
        assert np.array_equal(crossing.frames, silent.frames)
        assert np.array_equal(crossing.masks, distinct.masks)
        assert not np.array_equal(crossing.audio, silent.audio)
        for clip, same in ((crossing, True), (distinct, False)):
            labels = _labels(clip)
            medians = []
            for obj in range(clip.meta["objects"]):
                kernel = np.ones((3, 3), np.uint8)
                inner = np.stack([cv2.erode((m == obj + 1).astype(np.uint8), kernel) for m in labels])
                medians.append(np.median(clip.frames[inner.astype(bool)], axis=0))
            spread = max(np.abs(a - b).max() for a in medians for b in medians)
            colours = np.asarray(clip.meta["colours"])
            if same:
                assert spread <= 1 and np.ptp(colours, axis=0).max() == 0
            else:
                pairs = [np.linalg.norm(a - b) for i, a in enumerate(colours) for b in colours[i + 1 :]]
                assert spread > 10 and min(pairs) > 30


def test_silent_audio_does_not_follow_the_target() -> None:
    real, silent = [], []
    for seed in range(6):
        for split, out in (("crossing", real), ("silent", silent)):
            clip = generate_clip(seed, replace(SMALL, frames=40, split=split))
            out.append(np.corrcoef(clip.envelopes[clip.target], _frame_rms(clip))[0, 1])
    assert min(real) > 0.7
    assert np.mean(np.abs(silent)) < 0.25
    muted = generate_clip(0, replace(SMALL, split="silent", silent_audio="mute"))
    assert not muted.audio.any()


def test_write_dataset_layout_round_trip(tmp_path: Path) -> None:
    first = write_dataset(tmp_path, "crossing", 2, 7, SMALL, progress=False)
    second = write_dataset(tmp_path, "crossing", 1, 9, SMALL, progress=False)
    silent = write_dataset(tmp_path, "silent", 1, 7, SMALL, progress=False)
    assert first == ["crossing_000007", "crossing_000008"] and second == ["crossing_000009"]
    assert (tmp_path / "ImageSets" / "crossing.txt").read_text().split() == first + second
    assert (tmp_path / "ImageSets" / "silent.txt").read_text().split() == silent
    write_dataset(tmp_path, "crossing", 1, 7, SMALL, progress=False)
    assert (tmp_path / "ImageSets" / "crossing.txt").read_text().split() == first + second

    name = first[0]
    clip = generate_clip(7, SMALL)
    images = sorted((tmp_path / "JPEGImages" / name).iterdir())
    masks = sorted((tmp_path / "Annotations" / name).iterdir())
    assert [p.name for p in images] == [f"{t:05d}.jpg" for t in range(12)]
    assert [p.name for p in masks] == [f"{t:05d}.png" for t in range(12)]
    with Image.open(masks[0]) as image:
        assert image.mode == "P" and image.size == (96, 64)
        assert np.array_equal(np.asarray(image), clip.masks[0])
        assert image.getpalette()[3:6] == [128, 0, 0]
    with wave.open(str(tmp_path / "Audio" / f"{name}.wav"), "rb") as handle:
        assert (handle.getnchannels(), handle.getsampwidth(), handle.getframerate()) == (1, 2, 16000)
        assert handle.getnframes() == 12 * 16000 // 25 and handle.getcomptype() == "NONE"
    audio, rate = read_wav(tmp_path / "Audio" / f"{name}.wav")
    assert rate == 16000 and np.abs(audio - clip.audio).max() < 1 / 32767 + 1e-6

    back = read_clip(tmp_path, name)
    assert np.array_equal(back.masks, clip.masks)
    assert np.array_equal(back.distractor_masks, clip.distractor_masks)
    assert np.array_equal(read_distractor_masks(tmp_path, name), clip.distractor_masks)
    assert back.crossing_frames == clip.crossing_frames and back.target == clip.target
    assert np.abs(back.frames.astype(int) - clip.frames).mean() < 4
    meta = read_meta(tmp_path, name)
    assert meta["meta"]["seed"] == 7 and meta["meta"]["split"] == "crossing"
    assert np.allclose(meta["envelopes"], clip.envelopes, atol=1e-4)


def test_generation_is_fast() -> None:
    """Well under 0.5 s of CPU per default clip (CPU time, so that a busy machine does not fail it)."""
    generate_clip(0)
    start = time.process_time()
    for seed in range(5):
        generate_clip(seed)
    assert (time.process_time() - start) / 5 < 0.5


def test_dataset_yields_tensors_deterministically() -> None:
    dataset = AVSyncDataset(SMALL, seeds=range(4), splits=("crossing", "silent"))
    assert len(dataset) == 4
    item = dataset[1]
    assert item["frames"].shape == (12, 3, 64, 96) and item["frames"].dtype == torch.float32
    assert item["frames"].min() >= 0 and item["frames"].max() <= 1
    assert item["masks"].shape == (12, 64, 96) and item["audio"].shape == (12 * 640,)
    assert item["envelope"].shape == (12,) and item["crossing"].dtype == torch.bool
    assert item["split"] == "silent" and dataset[0]["split"] == "crossing"
    again = dataset[1]
    assert torch.equal(item["frames"], again["frames"]) and torch.equal(item["audio"], again["audio"])
    raw = AVSyncDataset(SMALL, seeds=[1], splits=("silent",), jpeg_quality=None)[0]
    clip = generate_clip(1, replace(SMALL, split="silent"))
    assert torch.equal(raw["masks"], torch.from_numpy(clip.masks))
    assert torch.allclose(raw["frames"] * 255, torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float())


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="split"):
        AVSyncConfig(split="loud")
    with pytest.raises(ValueError, match="frames"):
        AVSyncConfig(frames=5)
    with pytest.raises(ValueError, match="shapes"):
        AVSyncConfig(shapes=("cube",))
    with pytest.raises(ValueError, match="seed"):
        generate_clip(-1)
