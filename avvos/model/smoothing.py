"""Temporal smoothing over successive memory reads.

STCN matches every frame in isolation: its readout ignores the order of frames. The smoother is a
causal, per-object convolutional GRU at stride 16 whose state carries the readouts of earlier frames
(as XMem's sensory memory does). Its correction to the readout starts at zero, so an untrained
smoother leaves the network exactly as it was.

With ``follow_motion`` the state moves with the scene before it is combined with the new readout: each
position of this frame takes the state of the previous frame's positions that its key matches (a softmax
over the previous frame's positions of the same negative squared L2 affinity that reads memory, on the
visual key channels, with a learnt sharpness). A state left where an object was a frame ago would pull the
readout towards the object's old place; followed, it stays on the object.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def motion_weights(previous_key: torch.Tensor, key: torch.Tensor, sharpness: torch.Tensor) -> torch.Tensor:
    """How much of each previous position flows to each position now: (B, C, h, w) keys → (B, N, N).

    Column ``j`` is a softmax over the previous frame's ``N = h·w`` positions of
    ``(2·pᵢᵀkⱼ − ‖pᵢ‖²)·sharpness/√C``, computed in float32.
    """
    with torch.autocast(key.device.type, enabled=False):
        previous, current = previous_key.flatten(2).float(), key.flatten(2).float()
        affinity = 2 * previous.transpose(1, 2) @ current - previous.pow(2).sum(dim=1).unsqueeze(2)
        return torch.softmax(affinity * (sharpness.float() / math.sqrt(previous.shape[1])), dim=1)


class ReadoutSmoother(nn.Module):
    """``(readout (K, C, h, w), state (K, D, h, w) | None, keys) → (smoothed readout, new state)``.

    ``keys``: the previous frame's and this frame's visual keys, (B, C, h, w) each with K a multiple of B
    (objects of one frame share its motion); used only with ``follow_motion``.
    """

    def __init__(self, value_dim: int, state_dim: int = 64, follow_motion: bool = False) -> None:
        super().__init__()
        self.state_dim = state_dim
        self.follow_motion = follow_motion
        self.compress = nn.Conv2d(value_dim, state_dim, 1)
        self.gates = nn.Conv2d(2 * state_dim, 2 * state_dim, 3, padding=1)
        self.candidate = nn.Conv2d(2 * state_dim, state_dim, 3, padding=1)
        self.out = nn.Conv2d(state_dim, value_dim, 1)
        if follow_motion:
            self.log_sharpness = nn.Parameter(torch.zeros(()))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def initial_state(self, objects: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(objects, self.state_dim, height, width)

    def follow(self, state: torch.Tensor, previous_key: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """The state (K, D, h, w) moved from the previous frame's positions to this frame's."""
        batch = key.shape[0]
        weights = motion_weights(previous_key, key, self.log_sharpness.exp())
        flat = state.float().reshape(batch, -1, weights.shape[1])
        return (flat @ weights).view(state.shape).to(state.dtype)

    def forward(
        self,
        readout: torch.Tensor,
        state: torch.Tensor | None,
        keys: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.relu(self.compress(readout))
        if state is None:
            state = self.initial_state(readout.shape[0], *readout.shape[-2:], like=x)
        elif self.follow_motion and keys is not None:
            state = self.follow(state, *keys)
        state = state.to(x.dtype)
        update, reset = torch.sigmoid(self.gates(torch.cat([x, state], dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * state], dim=1)))
        new_state = (1 - update) * state + update * candidate
        return readout + self.out(new_state), new_state
