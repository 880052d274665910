"""Video training samples: DAVIS / YouTube-VOS folders, audio windows, and the synthetic AV task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avvos.data.sampling import ItemKey
from avvos.data.vos import (
    AVSyncSequences,
    VOSDataset,
    audio_windows,
    find_videos,
    read_audio,
)
from avvos.model.audio import WINDOW_SAMPLES
from tests.training.fake_data import write_davis_root, write_wav, write_youtube_root

SIZE = (32, 48)


def _check_sample(sample: dict, frames: int, objects: int, size: tuple[int, int] = SIZE) -> None:
    assert sample["frames"].shape == (frames, 3, *size) and sample["frames"].dtype == torch.float32
    assert float(sample["frames"].min()) >= 0 and float(sample["frames"].max()) <= 1
    assert sample["masks"].shape == (frames, objects, *size)
    assert sample["selector"].shape == (objects,) and sample["selector"][0] == 1
    assert sample["valid"].shape == (frames,) and sample["valid"].dtype == torch.bool
    assert sample["audio"].shape == (frames, WINDOW_SAMPLES)
    assert sample["has_audio"].dtype == torch.bool


def test_audio_windows_end_at_each_frame_time() -> None:
    audio = np.arange(32000, dtype=np.float32)
    windows = audio_windows(audio, [0.0, 0.5, 1.5])
    assert windows.shape == (3, WINDOW_SAMPLES)
    assert not windows[0].any()  # nothing has been heard at time 0
    assert windows[1, -1] == 7999 and windows[1, -8000] == 0 and not windows[1, : WINDOW_SAMPLES - 8000].any()
    np.testing.assert_array_equal(windows[2], audio[24000 - WINDOW_SAMPLES : 24000])
    assert not audio_windows(None, [1.0]).any()


def test_read_audio_makes_mono_16k(tmp_path: Path) -> None:
    left = 0.5 * np.sin(2 * np.pi * 220 * np.arange(44100) / 44100)
    write_wav(tmp_path / "a.wav", np.stack([left, -left], 1).reshape(-1), rate=44100, channels=2)
    audio = read_audio(tmp_path / "a.wav")
    assert audio.dtype == np.float32 and abs(len(audio) - 16000) <= 1
    assert np.abs(audio).max() < 1e-3  # the channels cancel
    write_wav(tmp_path / "b.wav", left[:16000], rate=16000)
    np.testing.assert_allclose(read_audio(tmp_path / "b.wav"), left[:16000], atol=1e-4)


def test_find_videos_davis_and_youtube_layouts(tmp_path: Path) -> None:
    davis = write_davis_root(tmp_path / "davis", names=("a", "b", "c"), frames=4, audio_for=("b",))
    (davis / "ImageSets" / "2017").mkdir()
    (davis / "ImageSets" / "2017" / "val.txt").write_text("c\n")
    videos = find_videos(davis)
    assert [v.name for v in videos] == ["a", "b", "c"]
    assert videos[0].audio is None and videos[1].audio == davis / "Audio" / "b.wav"
    assert videos[0].numbers == (0, 1, 2, 3) and videos[0].step == 1
    assert [v.name for v in find_videos(davis, "train")] == ["a", "b", "c"]
    assert [v.name for v in find_videos(davis, "val")] == ["c"]
    youtube = find_videos(write_youtube_root(tmp_path / "yt", frames=30, step=5))
    assert youtube[0].numbers == (0, 5, 10, 15, 20, 25) and youtube[0].step == 5
    with pytest.raises(FileNotFoundError):
        find_videos(tmp_path / "nothing")


def test_vos_samples_are_keyed_and_flag_missing_audio(tmp_path: Path) -> None:
    root = write_davis_root(tmp_path / "davis", names=("a", "b"), frames=10, audio_for=("b",))
    dataset = VOSDataset([root], SIZE, num_frames=4)
    assert len(dataset) == 2
    silent = dataset[ItemKey(0, 0, 7, 5)]
    _check_sample(silent, 4, 2)
    assert not silent["has_audio"] and not silent["audio"].any()
    assert silent["selector"].tolist() == [1.0, 1.0]  # both discs are visible in frame 0
    assert silent["masks"][0, 0].sum() > 0
    again = dataset[ItemKey(0, 0, 7, 5)]
    for name in ("frames", "masks", "selector"):
        assert torch.equal(silent[name], again[name])
    other = dataset[ItemKey(0, 0, 8, 5)]
    assert not torch.equal(silent["frames"], other["frames"])
    sounding = dataset[ItemKey(0, 1, 3, 5)]
    assert sounding["has_audio"] and sounding["audio"].abs().max() > 0.1


def test_vos_davis2016_masks_are_one_object(tmp_path: Path) -> None:
    root = write_davis_root(tmp_path / "d16", names=("a",), frames=6, davis2016=True)
    sample = VOSDataset([root], SIZE, num_frames=3, augment=False)[ItemKey(0, 0, 1, 5)]
    _check_sample(sample, 3, 2)
    assert sample["selector"].tolist() == [1.0, 0.0]
    assert set(torch.unique(sample["masks"]).tolist()) <= {0.0, 1.0}


def test_vos_real_davis_sample(shared_data: Path) -> None:
    dataset = VOSDataset([shared_data / "davis2016-dev"], (64, 64), num_frames=3)
    assert len(dataset) == 10
    sample = dataset[ItemKey(0, 3, 11, 25)]
    _check_sample(sample, 3, 2, (64, 64))
    assert not sample["has_audio"]


def test_avsync_sequences_carry_the_clip_audio() -> None:
    dataset = AVSyncSequences((48, 64), num_frames=5, clips=4, frames_per_clip=16, objects=1, augment=False)
    sample = dataset[ItemKey(0, 2, 5, 5)]
    _check_sample(sample, 5, 1, (48, 64))
    assert sample["has_audio"] and sample["masks"][0, 0].sum() > 0
    clip = dataset.clips[2]
    indices = [next(i for i in range(16) if torch.equal(clip["frames"][i], f)) for f in sample["frames"]]
    assert all(0 < abs(b - a) <= 5 for a, b in zip(indices, indices[1:], strict=False))
    expected = audio_windows(clip["audio"].numpy(), [i / clip["fps"] for i in indices])
    np.testing.assert_array_equal(sample["audio"].numpy(), expected)
    lookalikes = np.stack([clip["lookalikes"][i].numpy() for i in indices])
    np.testing.assert_array_equal(sample["lookalikes"].numpy(), lookalikes.astype(np.float32))
    assert lookalikes.any() and not (lookalikes & (sample["masks"][:, 0].numpy() > 0)).any()
    history = audio_windows(clip["audio"].numpy(), [max(indices[-1] - k, 0) / clip["fps"] for k in range(9, -1, -1)])
    np.testing.assert_array_equal(sample["history_audio"][-1].numpy(), history[:, -640:])
    augmented = AVSyncSequences((48, 64), num_frames=5, clips=4, frames_per_clip=16, objects=2)[ItemKey(0, 2, 5, 5)]
    _check_sample(augmented, 5, 2, (48, 64))
    assert augmented["selector"].tolist() == [1.0, 0.0]


def test_avsync_augmentation_zooms_in_so_objects_appear_larger() -> None:
    """The per-sequence zoom shows the task's objects larger than the generator draws them."""
    plain = AVSyncSequences((48, 64), num_frames=2, clips=6, frames_per_clip=8, objects=1, augment=False)
    zoomed = AVSyncSequences((48, 64), num_frames=2, clips=6, frames_per_clip=8, objects=1)
    keys = [ItemKey(0, i, 1000 + i, 2) for i in range(6)]
    plain_area = [float(plain[key]["masks"][0, 0].mean()) for key in keys]
    zoomed_area = [float(zoomed[key]["masks"][0, 0].mean()) for key in keys]
    assert max(zoomed_area) > 1.3 * max(plain_area), (plain_area, zoomed_area)
