"""AVSBench S4 / MS3 clips in the layout their authors distribute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avvos.data.avsbench import FRAME_TIMES, AVSBenchDataset, find_clips
from avvos.data.sampling import ItemKey
from avvos.model.audio import WINDOW_SAMPLES
from tests.training.fake_data import write_avsbench


@pytest.fixture(scope="module")
def avsbench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_avsbench(tmp_path_factory.mktemp("avsbench"))


def test_find_clips_reads_both_subsets(avsbench: Path) -> None:
    train = find_clips(avsbench, "train", "s4")
    assert [c.name for c in train] == ["s4a", "s4b"]
    assert train[0].masks[0] is not None and train[0].masks[1:] == (None,) * 4
    assert train[0].audio is not None and train[0].frames[0].name == "s4a_1.png"
    val = find_clips(avsbench / "Single-source", "val")
    assert [c.name for c in val] == ["s4c"] and all(m is not None for m in val[0].masks)
    ms3 = find_clips(avsbench, "train", "ms3")
    assert [c.name for c in ms3] == ["ms3a"] and ms3[0].frames[2].name == "ms3a.mp4_3.png"
    assert ms3[0].audio is None  # this fake MS3 clip has no wav
    with pytest.raises(FileNotFoundError):
        find_clips(avsbench / "nothing", "train")


def test_s4_train_alone_is_refused(avsbench: Path) -> None:
    with pytest.raises(ValueError, match="first frame"):
        AVSBenchDataset([avsbench], (32, 32), 4, split="train", subset="s4")


def test_avsbench_samples(avsbench: Path) -> None:
    dataset = AVSBenchDataset([avsbench / "Single-source"], (32, 32), num_frames=7, split="val", objects=1)
    sample = dataset[ItemKey(0, 0, 3, 25)]
    assert sample["frames"].shape == (7, 3, 32, 32) and sample["masks"].shape == (7, 1, 32, 32)
    assert sample["valid"].all() and sample["has_audio"]
    assert sample["audio"].shape == (7, WINDOW_SAMPLES)
    # the wav is a ramp from -0.5 to 0.5 over 5 s, so each window's last sample tells its frame's time
    times = (sample["audio"][:, -1].numpy() + 0.5) * 5
    assert all(np.isclose(times, t, atol=2e-3).any() for t in times)
    assert all(np.isclose(np.asarray(FRAME_TIMES), t, atol=2e-3).any() for t in times)
    ms3 = AVSBenchDataset([avsbench], (32, 32), num_frames=3, split="train", subset="ms3")[ItemKey(0, 0, 1, 5)]
    assert ms3["selector"].tolist() == [1.0, 0.0] and not ms3["has_audio"] and ms3["valid"].all()
    assert ms3["masks"][0, 0].sum() > 0
