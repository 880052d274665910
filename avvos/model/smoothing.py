"""Temporal smoothing over successive memory reads.

STCN matches every frame in isolation: its readout ignores the order of frames. The smoother is a
causal, per-object convolutional GRU at stride 16 whose state carries the readouts of earlier frames
(as XMem's sensory memory does). Its correction to the readout starts at zero, so an untrained
smoother leaves the network exactly as it was.
"""

from __future__ import annotations

import torch
from torch import nn


class ReadoutSmoother(nn.Module):
    """``(readout (K, C, h, w), state (K, D, h, w) | None) → (smoothed readout, new state)``."""

    def __init__(self, value_dim: int, state_dim: int = 64) -> None:
        super().__init__()
        self.state_dim = state_dim
        self.compress = nn.Conv2d(value_dim, state_dim, 1)
        self.gates = nn.Conv2d(2 * state_dim, 2 * state_dim, 3, padding=1)
        self.candidate = nn.Conv2d(2 * state_dim, state_dim, 3, padding=1)
        self.out = nn.Conv2d(state_dim, value_dim, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def initial_state(self, objects: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(objects, self.state_dim, height, width)

    def forward(self, readout: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.relu(self.compress(readout))
        if state is None:
            state = self.initial_state(readout.shape[0], *readout.shape[-2:], like=x)
        state = state.to(x.dtype)
        update, reset = torch.sigmoid(self.gates(torch.cat([x, state], dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * state], dim=1)))
        new_state = (1 - update) * state + update * candidate
        return readout + self.out(new_state), new_state
