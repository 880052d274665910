"""Which training samples to draw: STCN's frame sampling with its max-skip curriculum, and a keyed batch sampler.

Every random choice of a training sample comes from its :class:`ItemKey`, and the keys of a run are a pure
function of the run's seed and the iteration. So a run resumes exactly from an iteration number, data loader
workers change nothing, and ``N`` processes with batch ``b`` see exactly the samples of one process with
batch ``N·b``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
from torch.utils.data import Sampler

#: STCN's curriculum as (fraction of training, max skip): 5, then 10..25 from 10..40 %, back to 5 at 90 %.
MAX_SKIP_SCHEDULE: tuple[tuple[float, int], ...] = ((0.0, 5), (0.1, 10), (0.2, 15), (0.3, 20), (0.4, 25), (0.9, 5))


class ItemKey(NamedTuple):
    """One training sample: ``source`` data set, ``index`` within it, ``seed`` of its augmentations and
    frame choice, and the ``max_skip`` (in original frames) between consecutive sampled frames."""

    source: int
    index: int
    seed: int
    max_skip: int


def max_skip_at(progress: float, schedule: Sequence[tuple[float, int]] = MAX_SKIP_SCHEDULE) -> int:
    """The max skip in force at ``progress`` (0..1) of training: the last schedule entry not after it."""
    starts = [start for start, _ in schedule]
    position = bisect.bisect_right(starts, progress) - 1
    return int(schedule[max(position, 0)][1])


def sample_frame_indices(
    length: int, count: int, max_jump: int, rng: np.random.Generator, reverse_probability: float = 0.5
) -> list[int]:
    """``count`` frame indices of a ``length``-frame video, consecutive ones 1..``max_jump`` apart.

    STCN's 3-frame rule generalised: gaps are drawn uniformly in ``[1, max_jump]`` and shrunk at random until
    they fit the video, the start is uniform over what is left, and with ``reverse_probability`` the order is
    reversed (the video played backwards). A video shorter than ``count`` repeats frames (gaps of 0).
    """
    if length < 1 or count < 1:
        raise ValueError(f"need a video with frames and a positive count, got length {length}, count {count}")
    low = 1 if length >= count else 0
    high = max(low, min(max_jump, length - 1))
    gaps = rng.integers(low, high, size=count - 1, endpoint=True)
    while gaps.sum() > length - 1:
        shrinkable = np.flatnonzero(gaps > low)
        gaps[rng.choice(shrinkable)] -= 1
    start = int(rng.integers(0, length - 1 - int(gaps.sum()), endpoint=True))
    indices = (start + np.concatenate([[0], np.cumsum(gaps)])).astype(int).tolist()
    if rng.random() < reverse_probability:
        indices.reverse()
    return indices


def item_rng(seed: int) -> np.random.Generator:
    """The generator a data set uses for one item's choices."""
    return np.random.default_rng(seed)


class KeyBatchSampler(Sampler[list[ItemKey]]):
    """Batches of :class:`ItemKey` for one process, from ``start`` up to ``iterations``.

    The global batch of iteration ``i`` holds ``world_size · batch_size`` keys; process ``rank`` takes its
    slice. Each key draws its source with probabilities ``weights``, an index uniformly within that source
    (with replacement: no epochs) and its own seed, all from ``(seed, i, slot)``. ``max_skip`` follows
    ``schedule`` over the fraction ``i / iterations``.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        batch_size: int,
        iterations: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        schedule: Sequence[tuple[float, int]] = MAX_SKIP_SCHEDULE,
    ) -> None:
        if len(sizes) != len(weights) or not sizes:
            raise ValueError("need one weight per data source and at least one source")
        if any(size < 1 for size in sizes):
            raise ValueError(f"every data source needs at least one item, got sizes {list(sizes)}")
        total = float(sum(weights))
        if total <= 0 or any(w < 0 for w in weights):
            raise ValueError(f"source weights must be non-negative with a positive sum, got {list(weights)}")
        self.sizes = list(sizes)
        self.probabilities = np.asarray(weights, dtype=np.float64) / total
        self.batch_size = batch_size
        self.iterations = iterations
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self.schedule = tuple(schedule)

    def __len__(self) -> int:
        return max(self.iterations - self.start, 0)

    def __iter__(self) -> Iterator[list[ItemKey]]:
        for iteration in range(self.start, self.iterations):
            yield self.batch(iteration)

    def batch(self, iteration: int) -> list[ItemKey]:
        """This process's keys for ``iteration``."""
        skip = max_skip_at(iteration / max(self.iterations, 1), self.schedule)
        first = self.rank * self.batch_size
        return [self._key(iteration, slot, skip) for slot in range(first, first + self.batch_size)]

    def _key(self, iteration: int, slot: int, max_skip: int) -> ItemKey:
        rng = np.random.default_rng([self.seed, iteration, slot])
        source = int(rng.choice(len(self.sizes), p=self.probabilities))
        index = int(rng.integers(self.sizes[source]))
        return ItemKey(source, index, int(rng.integers(2**31 - 1)), max_skip)
