"""The key/value memory of a session and STCN's memory read (L2 affinity + top-k softmax).

Keys are shared by all objects; values are per object. Buffers are preallocated and grow by
doubling, so adding a memory frame costs a copy of that frame only. Objects may join later than
the first memory frame: each object remembers the first memory position that holds its values and
reads only from there on (objects that joined together share one read).

Unbounded (the default) is STCN: every memory frame is kept. With ``capacity_frames`` set, the first
frame stays pinned and the rest is kept under the capacity by a policy: ``fifo`` drops the oldest
positions; ``usage`` (in the spirit of XMem) drops the positions that reads use least, measured as
the top-k weight each position received per read since it was added.
"""

from __future__ import annotations

import math

import torch

POLICIES = ("fifo", "usage")


class MemoryStore:
    """Permanent memory positions plus an optional one-frame temporary slot (STCN's ``include_last``)."""

    def __init__(
        self,
        key_dim: int,
        value_dim: int,
        initial_frames: int = 8,
        scale_dim: int | None = None,
        capacity_frames: int | None = None,
        policy: str = "usage",
        min_age: int = 5,
    ) -> None:
        """``scale_dim``: affinities are divided by its square root (STCN: the visual key's 64 channels,
        kept when audio channels join the key so that zero audio channels change nothing).
        ``capacity_frames``: bound on permanent memory, in frames of the first frame's size (None:
        unbounded). ``min_age``: reads a position survives before the usage policy may drop it."""
        if policy not in POLICIES:
            raise ValueError(f"memory policy must be one of {POLICIES}, got {policy!r}")
        if capacity_frames is not None and capacity_frames < 2:
            raise ValueError(
                f"memory capacity must be at least 2 frames (the pinned first frame + 1), got {capacity_frames}"
            )
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.scale = 1 / math.sqrt(scale_dim or key_dim)
        self.capacity_frames = capacity_frames
        self.policy = policy
        self.min_age = min_age
        self._initial_frames = initial_frames
        self.clear()

    def clear(self) -> None:
        """Forget every memory frame and object."""
        self._keys: torch.Tensor | None = None  # (key_dim, capacity)
        self._key_sq: torch.Tensor | None = None  # (capacity,) squared key norms, computed once
        self._values: torch.Tensor | None = None  # (objects, value_dim, capacity)
        self._usage: torch.Tensor | None = None  # (capacity,) summed top-k weight received
        self._age: torch.Tensor | None = None  # (capacity,) reads since the position was added
        self._object_start: list[int] = []  # first memory position holding each object's values
        self.size = 0  # positions in permanent memory
        self.temp_size = 0  # positions in the temporary slot, stored right after permanent memory
        self.pinned = 0  # leading positions never evicted (the first memory frame)
        self.frames = 0  # permanent frames added so far
        self.evicted = 0  # positions dropped by the capacity policy

    @property
    def num_objects(self) -> int:
        return len(self._object_start)

    @property
    def capacity(self) -> int:
        return 0 if self._keys is None else self._keys.shape[1]

    def add_objects(self, count: int) -> None:
        """Register ``count`` new objects whose values start with the next memory frame."""
        self._object_start.extend([self.size] * count)
        if self._values is not None:
            extra = self._values.new_zeros(count, *self._values.shape[1:])
            self._values = torch.cat([self._values, extra], dim=0)

    def remove_objects(self, indices: list[int]) -> None:
        """Drop objects (by internal index) and their values."""
        keep = [i for i in range(self.num_objects) if i not in set(indices)]
        self._object_start = [self._object_start[i] for i in keep]
        if self._values is not None:
            self._values = self._values[keep]

    def forget_unpinned(self) -> None:
        """Drop every frame but the pinned first one (and the temporary slot): what memory learnt since the first
        frame is no longer trusted."""
        self.size = self.pinned
        self.temp_size = 0
        self._object_start = [min(start, self.size) for start in self._object_start]

    def add(self, key: torch.Tensor, values: torch.Tensor, temporary: bool = False) -> None:
        """Add one frame: ``key`` (key_dim, h, w) and ``values`` (objects, value_dim, h, w).

        A permanent frame replaces the temporary slot; a temporary frame replaces the previous one.
        With a capacity, positions are evicted first so that the new frame fits.
        """
        if values.shape[0] != self.num_objects:
            raise ValueError(f"memory holds {self.num_objects} objects, values are for {values.shape[0]}")
        key = key.flatten(1)
        values = values.flatten(2)
        n = key.shape[1]
        if not temporary and self.capacity_frames is not None and self.size > 0:
            limit = self.capacity_frames * (self.pinned or n)
            if self.size + n > limit:
                self._evict(self.size + n - limit)
        self._reserve(self.size + n, key)
        start = self.size
        self._keys[:, start : start + n] = key
        self._key_sq[start : start + n] = key.pow(2).sum(0)
        self._values[:, :, start : start + n] = values
        self._usage[start : start + n] = 0
        self._age[start : start + n] = 0
        if temporary:
            self.temp_size = n
        else:
            if self.size == 0:
                self.pinned = n
            self.size += n
            self.temp_size = 0
            self.frames += 1

    def _reserve(self, needed: int, like: torch.Tensor) -> None:
        if self._keys is not None and needed <= self.capacity:
            return
        if self.capacity_frames is not None:
            per_frame = self.pinned or (needed - self.size)
            capacity = max(needed, (self.capacity_frames + 1) * per_frame)  # + the temporary slot
        else:
            capacity = max(needed, 2 * self.capacity, self._initial_frames * needed)
        keys = like.new_empty(self.key_dim, capacity)
        key_sq = like.new_empty(capacity)
        values = like.new_zeros(self.num_objects, self.value_dim, capacity)
        usage = like.new_zeros(capacity, dtype=torch.float32)
        age = like.new_zeros(capacity, dtype=torch.float32)
        if self._keys is not None:
            used = self.size
            keys[:, :used] = self._keys[:, :used]
            key_sq[:used] = self._key_sq[:used]
            values[:, :, :used] = self._values[:, :, :used]
            usage[:used] = self._usage[:used]
            age[:used] = self._age[:used]
        self._keys, self._key_sq, self._values, self._usage, self._age = keys, key_sq, values, usage, age

    def _evict(self, count: int) -> None:
        """Drop ``count`` unpinned positions chosen by the policy, compacting the buffers in place."""
        candidates = torch.arange(self.pinned, self.size, device=self._keys.device)
        if self.policy == "fifo":
            drop = candidates[:count]
        else:
            rate = self._usage[self.pinned : self.size] / self._age[self.pinned : self.size].clamp(min=1)
            young = self._age[self.pinned : self.size] < self.min_age
            rate = torch.where(young, torch.full_like(rate, float("inf")), rate)
            drop = candidates[torch.topk(rate, count, largest=False).indices]
        keep_mask = torch.ones(self.size, dtype=torch.bool, device=self._keys.device)
        keep_mask[drop] = False
        keep = keep_mask.nonzero().squeeze(1)
        new_size = keep.numel()
        self._keys[:, :new_size] = self._keys[:, keep]
        self._key_sq[:new_size] = self._key_sq[keep]
        self._values[:, :, :new_size] = self._values[:, :, keep]
        self._usage[:new_size] = self._usage[keep]
        self._age[:new_size] = self._age[keep]
        kept_before = torch.cumsum(keep_mask.long(), 0)
        self._object_start = [int(kept_before[start - 1]) if start > 0 else 0 for start in self._object_start]
        self.size = new_size
        self.temp_size = 0
        self.evicted += count

    def read(self, query_key: torch.Tensor, top_k: int) -> torch.Tensor:
        """Memory readout (objects, value_dim, h, w) for a query key (key_dim, h, w).

        Affinity is ``(2·mᵀq − ‖m‖²)/√C`` (STCN drops the per-query ``‖q‖²`` term), softmaxed over
        the ``top_k`` largest entries per query position with the maximum subtracted first.
        """
        if self.size == 0 or self.num_objects == 0:
            raise RuntimeError("memory read with an empty memory")
        _, h, w = query_key.shape
        query = query_key.flatten(1).float()
        total = self.size + self.temp_size
        keys = self._keys[:, :total].float()
        affinity = (2 * (keys.transpose(0, 1) @ query) - self._key_sq[:total, None].float()) * self.scale
        out = query.new_empty(self.num_objects, self.value_dim, h * w)
        track = self.capacity_frames is not None and self.policy == "usage"
        for start, members in self._groups().items():
            out[members] = self._read_group(
                affinity[start:],
                self._values[members, :, start:total],
                top_k,
                self._usage[start:total] if track else None,
            )
        if track:
            self._age[:total] += 1
        return out.view(self.num_objects, self.value_dim, h, w)

    def _groups(self) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for index, start in enumerate(self._object_start):
            groups.setdefault(start, []).append(index)
        return groups

    @staticmethod
    def _read_group(
        affinity: torch.Tensor, values: torch.Tensor, top_k: int, usage: torch.Tensor | None
    ) -> torch.Tensor:
        """Top-k softmax over the memory axis of ``affinity`` (N, HW), applied to ``values`` (K, C, N).

        ``usage`` (N,), when given, accumulates the weight each memory position received.
        """
        k = min(top_k, affinity.shape[0])
        weights, indices = torch.topk(affinity, k, dim=0)
        weights = torch.exp(weights - weights[:1])
        weights = weights / weights.sum(dim=0, keepdim=True)
        if usage is not None:
            usage.index_add_(0, indices.flatten(), weights.flatten().to(usage.dtype))
        flat = values.flatten(0, 1).to(weights.dtype)
        out = flat.new_zeros(flat.shape[0], affinity.shape[1])
        for j in range(k):
            out.addcmul_(flat.index_select(1, indices[j]), weights[j])
        return out.view(values.shape[0], values.shape[1], -1)
