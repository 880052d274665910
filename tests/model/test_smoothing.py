"""The readout smoother: a GRU over successive memory reads whose state can follow the scene's motion."""

from __future__ import annotations

import math

import numpy as np
import torch

from avvos.config import InferenceConfig, ModelConfig
from avvos.model.smoothing import ReadoutSmoother, motion_weights
from avvos.model.stcn import build_model
from avvos.session import InferenceSession
from tests.conftest import moving_discs


def _scene(height: int = 6, width: int = 8, channels: int = 16) -> torch.Tensor:
    """Keys (1, C, h, w) with a distinct random feature at every position."""
    torch.manual_seed(0)
    return torch.randn(1, channels, height, width) * 3


def test_motion_weights_are_a_softmax_over_the_previous_positions() -> None:
    previous, key = _scene(), _scene() + 0.1 * torch.randn(1, 16, 6, 8)
    weights = motion_weights(previous, key, torch.tensor(1.0))
    assert weights.shape == (1, 48, 48)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(1, 48))
    # Unchanged positions match themselves best.
    assert torch.equal(weights[0].argmax(dim=0), torch.arange(48))


def test_followed_state_moves_with_the_scene() -> None:
    smoother = ReadoutSmoother(value_dim=8, state_dim=4, follow_motion=True)
    with torch.no_grad():
        smoother.log_sharpness.fill_(math.log(20.0))
    previous = _scene()
    key = torch.roll(previous, shifts=2, dims=3)  # everything moved two positions right
    state = torch.zeros(2, 4, 6, 8)  # two objects of one frame: both follow the frame's motion
    state[0, :, 2:4, 1:3] = 1.0
    state[1, :, 4, 5] = -1.0
    moved = smoother.follow(state, previous, key)
    torch.testing.assert_close(moved, torch.roll(state, shifts=2, dims=3), atol=1e-3, rtol=0)
    # A smoother that does not follow motion keeps the state where it was.
    still = ReadoutSmoother(value_dim=8, state_dim=4)
    readout = torch.randn(2, 8, 6, 8)
    with torch.no_grad():
        torch.nn.init.normal_(still.out.weight)
        smoother.load_state_dict({**still.state_dict(), "log_sharpness": smoother.log_sharpness}, strict=True)
        a, _ = still(readout, state, (previous, key))
        b, _ = smoother(readout, state, (previous, key))
        c, _ = smoother(readout, torch.roll(state, shifts=2, dims=3), None)
    assert (a - b).abs().max() > 1e-2
    torch.testing.assert_close(b, c, atol=1e-3, rtol=0)


def test_untrained_motion_smoother_changes_nothing() -> None:
    smoother = ReadoutSmoother(value_dim=8, state_dim=4, follow_motion=True)
    readout = torch.randn(1, 8, 6, 8)
    with torch.no_grad():
        out, state = smoother(readout, torch.randn(1, 4, 6, 8), (_scene(), _scene()))
    assert torch.equal(out, readout) and state.shape == (1, 4, 6, 8)


def test_session_streams_with_a_motion_smoother() -> None:
    """Streamed frame by frame, the state is moved from each frame's key to the next one's: the session hands
    the smoother the previous frame's key and keeps only that one (bounded memory)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.light(smoothing=True, smoothing_motion=True))
    with torch.no_grad():
        torch.nn.init.normal_(model.smoother.out.weight, std=0.2)
    still = build_model(ModelConfig.light(smoothing=True))
    still.load_state_dict({k: v for k, v in model.state_dict().items() if k != "smoother.log_sharpness"})
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    follow = model.smoother.follow

    def recording_follow(state: torch.Tensor, previous_key: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        seen.append((previous_key, key))
        return follow(state, previous_key, key)

    model.smoother.follow = recording_follow
    clip, first = moving_discs(frames=6, height=64, width=96)
    states, keys = [], []
    for net in (model, still):
        session = InferenceSession(net, InferenceConfig(), "cpu")
        for t in range(6):
            assert np.isfinite(session.step(clip[t], mask=first if t == 0 else None).probs.numpy()).all()
            keys.append(session.previous_key[:, : model.config.key_dim])
        states.append(session.smoothing_state)
        session.reset()
        assert session.previous_key is None
    assert len(seen) == 4  # frames 2..5: frame 1 starts the state
    for t, (previous_key, key) in enumerate(seen, start=2):
        assert torch.equal(previous_key, keys[t - 1]) and torch.equal(key, keys[t])
    assert (states[0] - states[1]).abs().max() > 1e-3
