"""Reading and writing label masks: palette PNGs of object ids and DAVIS-2016 0/255 PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from avvos.errors import MaskError


def davis_palette() -> np.ndarray:
    """The DAVIS palette (256×3 uint8): id 1 red, 2 green, 3 yellow, ... as the official tools write."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in range(256):
        value, r, g, b = label, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[label] = (r, g, b)
    return palette


def read_mask(path: str | Path, *, binary_threshold: int = 128) -> np.ndarray:
    """Read a mask PNG as an (H, W) uint8 array of object ids (0 = background).

    Palette ("P") images give their indices. Single-channel images that hold only 0 and 255
    (DAVIS 2016 style) become one object with id 1; other greyscale images are taken as ids
    when every value is below ``binary_threshold`` and otherwise thresholded to one object.
    Colour images are refused: their colours would have to be guessed.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image)
    except FileNotFoundError as exc:
        raise MaskError(f"mask file not found: {path}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MaskError(f"cannot read mask {path}: the file is corrupt or not an image ({exc})") from exc
    if mode == "P":
        return array.astype(np.uint8, copy=False)
    if mode in ("L", "1"):
        array = array.astype(np.uint8)
        values = np.unique(array)
        if set(values.tolist()) <= {0, 255} or values.max() >= binary_threshold:
            return (array >= binary_threshold).astype(np.uint8)
        return array
    if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(array)
        if array.max() > 255 or array.min() < 0:
            raise MaskError(f"mask {path} has object ids up to {array.max()}: ids must be 0..255 (0 = background)")
        return array.astype(np.uint8)
    raise MaskError(f"mask {path} is a {mode} image: give a palette PNG of object ids or a 0/255 greyscale PNG")


def write_mask(path: str | Path, labels: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write an (H, W) array of object ids as a palette PNG (DAVIS palette unless given)."""
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette((davis_palette() if palette is None else palette).reshape(-1).tolist())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def object_ids(mask: np.ndarray) -> list[int]:
    """Sorted non-zero ids present in a mask (the official order of objects)."""
    return [int(v) for v in np.unique(mask) if v != 0]
