"""STCN's frame sampling, the max-skip curriculum and the keyed batch sampler."""

from __future__ import annotations

import numpy as np
import pytest

from avvos.data.sampling import MAX_SKIP_SCHEDULE, KeyBatchSampler, max_skip_at, sample_frame_indices


def test_max_skip_curriculum() -> None:
    assert [max_skip_at(p) for p in (0.0, 0.05, 0.1, 0.25, 0.35, 0.5, 0.89, 0.9, 1.0)] == [
        5,
        5,
        10,
        15,
        20,
        25,
        25,
        5,
        5,
    ]
    assert max_skip_at(0.5, ((0.0, 3),)) == 3
    assert MAX_SKIP_SCHEDULE[0] == (0.0, 5)


@pytest.mark.parametrize(("length", "count", "jump"), [(50, 8, 5), (50, 8, 25), (9, 8, 25), (8, 8, 3), (30, 3, 1)])
def test_frame_indices_respect_the_max_jump(length: int, count: int, jump: int) -> None:
    rng = np.random.default_rng(0)
    reversed_seen = forward_seen = False
    for _ in range(200):
        indices = sample_frame_indices(length, count, jump, rng)
        assert len(indices) == count and min(indices) >= 0 and max(indices) < length
        gaps = np.diff(indices)
        assert (np.abs(gaps) >= 1).all() and (np.abs(gaps) <= jump).all()
        assert (gaps > 0).all() or (gaps < 0).all()
        reversed_seen |= bool((gaps < 0).all())
        forward_seen |= bool((gaps > 0).all())
    assert reversed_seen and forward_seen


def test_short_videos_repeat_frames() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        indices = sample_frame_indices(5, 8, 1, rng, reverse_probability=0.0)
        assert len(indices) == 8 and indices == sorted(indices) and max(indices) <= 4
        assert (np.diff(indices) <= 1).all()
    assert sample_frame_indices(1, 3, 5, rng) == [0, 0, 0]


def test_key_sampler_is_deterministic_resumable_and_splits_ranks() -> None:
    def make(batch: int, rank: int = 0, world: int = 1, start: int = 0) -> KeyBatchSampler:
        return KeyBatchSampler([10, 3], [0.8, 0.2], batch, 20, seed=7, rank=rank, world_size=world, start=start)

    full = list(make(4))
    assert len(full) == 20 and all(len(b) == 4 for b in full)
    assert list(make(4, start=12)) == full[12:]
    rank0, rank1 = list(make(2, 0, 2)), list(make(2, 1, 2))
    assert [a + b for a, b in zip(rank0, rank1, strict=True)] == full
    keys = [k for b in full for k in b]
    assert {k.source for k in keys} == {0, 1}
    assert all(k.index < (10, 3)[k.source] for k in keys)
    assert [b[0].max_skip for b in full] == [max_skip_at(i / 20) for i in range(20)]
    assert len({k.seed for k in keys}) == len(keys)
    with pytest.raises(ValueError):
        KeyBatchSampler([0], [1.0], 1, 1, 0)
