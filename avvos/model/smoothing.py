"""Temporal smoothing over successive memory reads.

STCN matches every frame in isolation: its readout ignores the order of frames. The smoother is a
causal, per-object convolutional GRU at stride 16 whose state carries the readouts of earlier frames
(as XMem's sensory memory does). Its correction to the readout starts at zero, so an untrained
smoother leaves the network exactly as it was.

With ``sensory`` the state also takes in, after each frame, the memory value written from that frame's
*output* mask (:meth:`ReadoutSmoother.absorb`), as XMem's sensory memory is updated from the decoded frame:
the next frame's readout is then corrected by where the object was last seen, not only by what earlier
readouts said. That step's gain starts at zero, so a sensory smoother added to trained weights changes nothing
until it is trained.
"""

from __future__ import annotations

import torch
from torch import nn


def _gru_step(x: torch.Tensor, state: torch.Tensor, gates: nn.Conv2d, candidate: nn.Conv2d) -> torch.Tensor:
    """One convolutional GRU update of ``state`` (K, D, h, w) with input ``x`` (K, D, h, w)."""
    update, reset = torch.sigmoid(gates(torch.cat([x, state], dim=1))).chunk(2, dim=1)
    proposal = torch.tanh(candidate(torch.cat([x, reset * state], dim=1)))
    return (1 - update) * state + update * proposal


class ReadoutSmoother(nn.Module):
    """``(readout (K, C, h, w), state (K, D, h, w) | None) → (smoothed readout, new state)``; with ``sensory``,
    also ``absorb(value (K, C, h, w), state) → state`` after each frame."""

    def __init__(self, value_dim: int, state_dim: int = 64, sensory: bool = False) -> None:
        super().__init__()
        self.state_dim = state_dim
        self.sensory = sensory
        self.compress = nn.Conv2d(value_dim, state_dim, 1)
        self.gates = nn.Conv2d(2 * state_dim, 2 * state_dim, 3, padding=1)
        self.candidate = nn.Conv2d(2 * state_dim, state_dim, 3, padding=1)
        self.out = nn.Conv2d(state_dim, value_dim, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if sensory:
            self.sense = nn.Conv2d(value_dim, state_dim, 1)
            self.sense_gates = nn.Conv2d(2 * state_dim, 2 * state_dim, 3, padding=1)
            self.sense_candidate = nn.Conv2d(2 * state_dim, state_dim, 3, padding=1)
            self.sense_gain = nn.Parameter(torch.zeros(()))

    def initial_state(self, objects: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(objects, self.state_dim, height, width)

    def forward(self, readout: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.relu(self.compress(readout))
        if state is None:
            state = self.initial_state(readout.shape[0], *readout.shape[-2:], like=x)
        new_state = _gru_step(x, state.to(x.dtype), self.gates, self.candidate)
        return readout + self.out(new_state), new_state

    def absorb(self, value: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """The state after a frame whose memory value (from its output mask) is ``value``: a second GRU step,
        scaled by ``sense_gain`` (zero at start: the state is then left as it was)."""
        x = torch.relu(self.sense(value))
        if state is None:
            state = self.initial_state(value.shape[0], *value.shape[-2:], like=x)
        state = state.to(x.dtype)
        return state + self.sense_gain * (_gru_step(x, state, self.sense_gates, self.sense_candidate) - state)
