"""The plain-object check on the bundled default (which must keep large plain objects) and its command."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.plain_objects import kept_fraction, main

DEFAULT = Path(__file__).resolve().parents[2] / "avvos" / "weights" / "default.safetensors"


@pytest.mark.skipif(not DEFAULT.is_file(), reason="no bundled default weights in this checkout")
def test_the_bundled_default_keeps_large_plain_objects(capsys: pytest.CaptureFixture[str]) -> None:
    assert kept_fraction(DEFAULT, "square", 24) > 0.8
    assert kept_fraction(DEFAULT, "square", 60) > 0.6  # the previous default kept 0.05 of it
    assert main([str(DEFAULT)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("square: 24 px ") and "disc: " in printed
