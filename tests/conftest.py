"""Shared test fixtures: where the real data in ../shared lives, skipping cleanly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVVOS_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder ``../shared/data`` (tests that need it skip when it is missing)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set AVVOS_SHARED to the shared folder)")
    return path


@pytest.fixture(scope="session")
def stcn_model():
    """One randomly initialised STCN (seed 0) shared by the tests that only need *a* model."""
    import torch

    from avvos.model.stcn import build_model

    torch.manual_seed(0)
    return build_model()


def moving_discs(frames: int = 8, height: int = 64, width: int = 96, objects: int = 2):
    """A small generated clip (T, H, W, 3) uint8 and its first-frame mask (H, W)."""
    from avvos.bench import generated_clip

    return generated_clip(frames, height, width, objects, seed=1)
