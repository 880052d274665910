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
