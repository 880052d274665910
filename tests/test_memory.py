"""The memory store: unbounded growth (STCN) and the bounded policies (first frame pinned)."""

from __future__ import annotations

import pytest
import torch

from avvos.config import InferenceConfig
from avvos.memory import MemoryStore
from avvos.session import InferenceSession
from tests.conftest import moving_discs


def _frame(seed: int, hw: tuple[int, int] = (2, 3), objects: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, *hw, generator=g), torch.full((objects, 5, *hw), float(seed))


def test_unbounded_memory_keeps_everything() -> None:
    store = MemoryStore(4, 5)
    store.add_objects(1)
    for i in range(30):
        store.add(*_frame(i))
    assert store.size == 30 * 6 and store.frames == 30 and store.evicted == 0


@pytest.mark.parametrize("policy", ["fifo", "usage"])
def test_bounded_memory_invariant(policy: str) -> None:
    store = MemoryStore(4, 5, capacity_frames=3, policy=policy, min_age=1)
    store.add_objects(1)
    capacity = None
    for i in range(40):
        store.add(*_frame(i))
        store.read(torch.randn(4, 2, 3), top_k=4)
        assert store.size <= 3 * 6
        capacity = capacity or store.capacity
        assert store.capacity == capacity  # buffers never grow
        assert (store._values[0, :, :6] == 0).all()  # the first frame (value 0) stays pinned
    assert store.evicted == 37 * 6


def test_fifo_drops_the_oldest_unpinned_frame() -> None:
    store = MemoryStore(4, 5, capacity_frames=3, policy="fifo")
    store.add_objects(1)
    for i in range(5):
        store.add(*_frame(i))
    kept = store._values[0, 0, : store.size].view(-1, 6)[:, 0].tolist()
    assert kept == [0.0, 3.0, 4.0]


def test_usage_keeps_positions_that_reads_use() -> None:
    store = MemoryStore(2, 1, capacity_frames=3, policy="usage", min_age=1)
    store.add_objects(1)
    keys = [torch.tensor([[[0.0]], [[0.0]]]), torch.tensor([[[5.0]], [[0.0]]]), torch.tensor([[[-5.0]], [[0.0]]])]
    for i, key in enumerate(keys):
        store.add(key, torch.full((1, 1, 1, 1), float(i)))
    for _ in range(3):  # queries near frame 1's key use it; frame 2 is never read
        store.read(torch.tensor([[[5.0]], [[0.0]]]), top_k=1)
    store.add(torch.tensor([[[1.0]], [[1.0]]]), torch.full((1, 1, 1, 1), 3.0))
    assert store._values[0, 0, : store.size].tolist() == [0.0, 1.0, 3.0]


def test_read_after_eviction_equals_a_fresh_store_of_the_kept_positions() -> None:
    store = MemoryStore(4, 5, capacity_frames=3, policy="usage", min_age=0)
    store.add_objects(2)
    for i in range(6):
        key, _ = _frame(i)
        store.add(key, torch.randn(2, 5, 2, 3, generator=torch.Generator().manual_seed(100 + i)))
        store.read(torch.randn(4, 2, 3), top_k=3)
    fresh = MemoryStore(4, 5)
    fresh.add_objects(2)
    fresh.add(store._keys[:, : store.size].reshape(4, 1, -1), store._values[:, :, : store.size].reshape(2, 5, 1, -1))
    query = torch.randn(4, 2, 3)
    assert torch.allclose(store.read(query, 3), fresh.read(query.reshape(4, 1, 6), 3).reshape(2, 5, 2, 3))


def test_forget_unpinned_keeps_only_the_first_frame() -> None:
    store, first = MemoryStore(4, 5), MemoryStore(4, 5)
    for s in (store, first):
        s.add_objects(1)
        s.add(*_frame(0))
    for i in range(1, 4):
        store.add(*_frame(i))
    store.add(*_frame(9), temporary=True)
    store.forget_unpinned()
    query = torch.randn(4, 2, 3)
    assert store.size == 6 and store.temp_size == 0
    assert torch.equal(store.read(query, 3), first.read(query, 3))
    store.add(*_frame(5))  # memory grows again from there
    assert store.size == 12 and store._values[0, 0, 6:12].eq(5).all()


def test_object_start_is_remapped_after_eviction() -> None:
    store = MemoryStore(4, 5, capacity_frames=3, policy="fifo")
    store.add_objects(1)
    store.add(*_frame(0))
    store.add(*_frame(1))
    store.add_objects(1)  # joins at frame 2
    store.add(*_frame(2, objects=2))
    store.add(*_frame(3, objects=2))  # frame 1 goes: object 2's values now start at position 6
    assert store._object_start == [0, 6]
    store.add(*_frame(4, objects=2))  # frame 2 goes too: object 2 starts right after the pinned frame
    assert store._object_start == [0, 6]
    store.read(torch.randn(4, 2, 3), top_k=3)


def test_bad_policy_and_capacity() -> None:
    with pytest.raises(ValueError, match="policy"):
        MemoryStore(4, 5, policy="random")
    with pytest.raises(ValueError, match="at least 2"):
        MemoryStore(4, 5, capacity_frames=1)
    with pytest.raises(ValueError, match="memory_frames"):
        InferenceConfig(memory_frames=0)


def test_session_stream_with_bounded_memory_stays_flat(stcn_model) -> None:
    clip, first = moving_discs(frames=10, height=32, width=48)
    session = InferenceSession(stcn_model, InferenceConfig(mem_every=1, memory_frames=4), "cpu")
    session.step(clip[0], mask=first)
    sizes = set()
    for t in range(1, 60):
        result = session.step(clip[t % 10])
        sizes.add(session.memory.capacity)
        assert session.memory.size <= 4 * 6
    assert len(sizes) == 1 and result.labels.shape == first.shape
