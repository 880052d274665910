"""Turning a user's marks into an object mask: a box refined by GrabCut, or a few clicks.

Used by the live window and the web demo, so an object can be marked without a mask file.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from avvos.errors import MaskError


def mask_from_box(image: np.ndarray, box: tuple[int, int, int, int], iterations: int = 5) -> np.ndarray:
    """Foreground (H, W) bool of the object inside ``box`` = (x0, y0, x1, y1), segmented by GrabCut.

    ``image`` is (H, W, 3) uint8 RGB. Falls back to the whole box when GrabCut finds nothing.
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box
    x0, x1 = sorted((max(0, min(width - 1, int(x0))), max(0, min(width, int(x1)))))
    y0, y1 = sorted((max(0, min(height - 1, int(y0))), max(0, min(height, int(y1)))))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise MaskError(f"the box {box} is too small to mark an object (at least 2x2 pixels inside the frame)")
    mask = np.zeros((height, width), np.uint8)
    background = np.zeros((1, 65), np.float64)
    foreground = np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    if x0 == 0 and y0 == 0 and x1 >= width and y1 >= height:
        return np.ones((height, width), bool)  # GrabCut needs some background outside the box
    cv2.grabCut(bgr, mask, (x0, y0, x1 - x0, y1 - y0), background, foreground, iterations, cv2.GC_INIT_WITH_RECT)
    result = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    if not result.any():
        result[y0:y1, x0:x1] = True
    return result


def mask_from_clicks(image: np.ndarray, points: Sequence[tuple[int, int]], iterations: int = 5) -> np.ndarray:
    """Foreground (H, W) bool around clicked points (x, y) on the object, segmented by GrabCut.

    The clicks are sure foreground, a box around them (grown by their spread, at least a sixth of
    the frame) probable foreground, the frame's border sure background, the rest probable background.
    """
    if not points:
        raise MaskError("no clicks: click on the object at least once")
    height, width = image.shape[:2]
    xs = np.array([p[0] for p in points])
    ys = np.array([p[1] for p in points])
    span = max(xs.max() - xs.min(), ys.max() - ys.min(), min(height, width) // 6)
    x0, x1 = int(max(0, xs.min() - span)), int(min(width, xs.max() + span))
    y0, y1 = int(max(0, ys.min() - span)), int(min(height, ys.max() + span))
    mask = np.full((height, width), cv2.GC_PR_BGD, np.uint8)
    border = max(1, min(height, width) // 40)
    mask[:border], mask[-border:], mask[:, :border], mask[:, -border:] = (cv2.GC_BGD,) * 4
    mask[y0:y1, x0:x1] = cv2.GC_PR_FGD  # a probable box around the clicks, the clicks sure foreground
    radius = max(2, min(height, width) // 60)
    for x, y in points:
        cv2.circle(mask, (int(x), int(y)), radius, int(cv2.GC_FGD), -1)
    background = np.zeros((1, 65), np.float64)
    foreground = np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(image[:, :, ::-1]), mask, None, background, foreground, iterations,
                cv2.GC_INIT_WITH_MASK)  # fmt: skip
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def add_object(labels: np.ndarray, object_mask: np.ndarray, object_id: int | None = None) -> tuple[np.ndarray, int]:
    """Paint a new object into a label map; it takes the pixels it covers. Returns (labels, its id)."""
    if labels.shape != object_mask.shape:
        raise MaskError(f"object mask is {object_mask.shape[1]}x{object_mask.shape[0]} but the label map is "
                        f"{labels.shape[1]}x{labels.shape[0]}")  # fmt: skip
    new_id = int(labels.max()) + 1 if object_id is None else object_id
    if not 1 <= new_id <= 255:
        raise MaskError(f"object ids must be 1..255, got {new_id}")
    out = labels.copy()
    out[object_mask.astype(bool)] = new_id
    return out, new_id
