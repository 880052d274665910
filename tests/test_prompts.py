"""Marking objects without a mask file: GrabCut boxes and clicks."""

from __future__ import annotations

import numpy as np
import pytest

from avvos.errors import MaskError
from avvos.prompts import add_object, mask_from_box, mask_from_clicks


def _scene() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = (rng.normal(90, 8, (120, 160, 3))).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:120, :160]
    disc = (yy - 60) ** 2 + (xx - 70) ** 2 < 25**2
    image[disc] = (230, 40, 40)
    return image, disc


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def test_box_refined_by_grabcut_finds_the_object() -> None:
    image, disc = _scene()
    mask = mask_from_box(image, (35, 25, 110, 100))
    assert _iou(mask, disc) > 0.9  # GrabCut drops the background corners of the box


def test_clicks_find_the_object() -> None:
    image, disc = _scene()
    assert _iou(mask_from_clicks(image, [(70, 60), (60, 50)]), disc) > 0.85


def test_bad_marks() -> None:
    image, _ = _scene()
    with pytest.raises(MaskError, match="too small"):
        mask_from_box(image, (10, 10, 11, 11))
    with pytest.raises(MaskError, match="no clicks"):
        mask_from_clicks(image, [])


def test_add_object_takes_its_pixels() -> None:
    labels = np.zeros((4, 4), np.uint8)
    labels[:2] = 1
    new = np.zeros((4, 4), bool)
    new[1:3] = True
    out, object_id = add_object(labels, new)
    assert object_id == 2 and (out[1:3] == 2).all() and (out[0] == 1).all()
    with pytest.raises(MaskError, match="is 3x4"):
        add_object(labels, np.zeros((4, 3), bool))
