"""The key/value memory of a session and STCN's memory read (L2 affinity + top-k softmax).

Keys are shared by all objects; values are per object. Buffers are preallocated and grow by
doubling, so adding a memory frame costs a copy of that frame only. Objects may join later than
the first memory frame: each object remembers the first memory position that holds its values
and reads only from there on (objects that joined together share one read).
"""

from __future__ import annotations

import math

import torch


class MemoryStore:
    """Permanent memory frames plus an optional one-frame temporary slot (STCN's ``include_last``)."""

    def __init__(self, key_dim: int, value_dim: int, initial_frames: int = 8, scale_dim: int | None = None) -> None:
        """``scale_dim``: affinities are divided by its square root (STCN: the visual key's 64
        channels, kept when audio channels join the key so that zero audio channels change nothing)."""
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.scale = 1 / math.sqrt(scale_dim or key_dim)
        self._initial_frames = initial_frames
        self.clear()

    def clear(self) -> None:
        """Forget every memory frame and object."""
        self._keys: torch.Tensor | None = None  # (key_dim, capacity)
        self._key_sq: torch.Tensor | None = None  # (capacity,) squared key norms, computed once
        self._values: torch.Tensor | None = None  # (objects, value_dim, capacity)
        self._object_start: list[int] = []  # first memory position holding each object's values
        self.size = 0  # positions in permanent memory
        self.temp_size = 0  # positions in the temporary slot, stored right after permanent memory
        self.frames = 0

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

    def add(self, key: torch.Tensor, values: torch.Tensor, temporary: bool = False) -> None:
        """Add one frame: ``key`` (key_dim, h, w) and ``values`` (objects, value_dim, h, w).

        A permanent frame replaces the temporary slot; a temporary frame replaces the previous one.
        """
        if values.shape[0] != self.num_objects:
            raise ValueError(f"memory holds {self.num_objects} objects, values are for {values.shape[0]}")
        key = key.flatten(1)
        values = values.flatten(2)
        n = key.shape[1]
        self._reserve(self.size + n, key)
        start = self.size
        self._keys[:, start : start + n] = key
        self._key_sq[start : start + n] = key.pow(2).sum(0)
        self._values[:, :, start : start + n] = values
        if temporary:
            self.temp_size = n
        else:
            self.size += n
            self.temp_size = 0
            self.frames += 1

    def _reserve(self, needed: int, like: torch.Tensor) -> None:
        if self._keys is not None and needed <= self.capacity:
            return
        capacity = max(needed, 2 * self.capacity, self._initial_frames * needed)
        keys = like.new_empty(self.key_dim, capacity)
        key_sq = like.new_empty(capacity)
        values = like.new_zeros(self.num_objects, self.value_dim, capacity)
        if self._keys is not None:
            used = self.size
            keys[:, :used] = self._keys[:, :used]
            key_sq[:used] = self._key_sq[:used]
            values[:, :, :used] = self._values[:, :, :used]
        self._keys, self._key_sq, self._values = keys, key_sq, values

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
        for start, members in self._groups().items():
            out[members] = self._read_group(affinity[start:], self._values[members, :, start:total], top_k)
        return out.view(self.num_objects, self.value_dim, h, w)

    def _groups(self) -> dict[int, list[int]]:
        groups: dict[int, list[int]] = {}
        for index, start in enumerate(self._object_start):
            groups.setdefault(start, []).append(index)
        return groups

    @staticmethod
    def _read_group(affinity: torch.Tensor, values: torch.Tensor, top_k: int) -> torch.Tensor:
        """Top-k softmax over the memory axis of ``affinity`` (N, HW), applied to ``values`` (K, C, N)."""
        k = min(top_k, affinity.shape[0])
        weights, indices = torch.topk(affinity, k, dim=0)
        weights = torch.exp(weights - weights[:1])
        weights = weights / weights.sum(dim=0, keepdim=True)
        flat = values.flatten(0, 1).to(weights.dtype)
        out = flat.new_zeros(flat.shape[0], affinity.shape[1])
        for j in range(k):
            out.addcmul_(flat.index_select(1, indices[j]), weights[j])
        return out.view(values.shape[0], values.shape[1], -1)
