"""A small deterministic synthetic VOS clip: textured background, two textured moving objects.

Only uniform draws and basic IEEE arithmetic are used (no transcendental functions), so the
frames are bit-identical on any machine.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Bilinearly upsampled random grid, (height, width, 3) float64 in [0, 1)."""
    gh, gw = height // cell + 2, width // cell + 2
    grid = rng.random((gh, gw, 3))
    y = np.arange(height, dtype=np.float64) / cell
    x = np.arange(width, dtype=np.float64) / cell
    y0, x0 = y.astype(np.int64), x.astype(np.int64)
    fy, fx = (y - y0)[:, None, None], (x - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _object_texture(rng: np.random.Generator, size: int, base: np.ndarray, period: int) -> np.ndarray:
    """A square texture patch: base colour, diagonal stripes and blotches, float64 in [0, 255]."""
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = (((yy + xx) // period) % 2).astype(np.float64)[..., None]
    blotch = _smooth_noise(rng, size, size, 6)
    tex = base[None, None, :] * (0.65 + 0.35 * stripes) + 70.0 * (blotch - 0.5)
    return np.clip(tex, 0.0, 255.0)


def _ellipse(height: int, width: int, cy: int, cx: int, ry: int, rx: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return (yy - cy) ** 2 * rx * rx + (xx - cx) ** 2 * ry * ry <= (rx * ry) ** 2


def _blob(height: int, width: int, cy: int, cx: int, r: int) -> np.ndarray:
    """A rounded square (superellipse of degree 4, integer arithmetic)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return (yy - cy) ** 4 + (xx - cx) ** 4 <= r**4


def make_clip(seed: int = 0, frames: int = 12, height: int = 100, width: int = 180) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames (T, H, W, 3) uint8 and the first-frame label mask (H, W) uint8 in {0, 1, 2}.

    The background pans slowly; object 1 (an ellipse) moves right and down, object 2 (a
    rounded square) moves left and up, and passes partly in front of object 1 late in the clip.
    """
    rng = np.random.default_rng(seed)
    pan = 2
    canvas_w = width + pan * frames
    background = 40.0 + 150.0 * _smooth_noise(rng, height, canvas_w, 16)
    background += 50.0 * (_smooth_noise(rng, height, canvas_w, 3) - 0.5)
    background += 24.0 * (rng.random((height, canvas_w, 1)) - 0.5)

    tex_size = max(height, width)
    tex1 = _object_texture(rng, tex_size, np.array([230.0, 60.0, 40.0]), 5)
    tex2 = _object_texture(rng, tex_size, np.array([40.0, 90.0, 235.0]), 3)

    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    first_mask = np.zeros((height, width), dtype=np.uint8)
    ry1, rx1 = height * 22 // 100, width * 16 // 100
    r2 = height * 18 // 100
    for t in range(frames):
        img = background[:, pan * t : pan * t + width].copy()
        cy1, cx1 = height * 40 // 100 + t, width * 25 // 100 + 3 * t
        cy2, cx2 = height * 62 // 100 - t, width * 78 // 100 - 4 * t
        m1 = _ellipse(height, width, cy1, cx1, ry1, rx1)
        m2 = _blob(height, width, cy2, cx2, r2)
        oy1, ox1 = cy1 - ry1, cx1 - rx1
        oy2, ox2 = cy2 - r2, cx2 - r2
        yy, xx = np.mgrid[0:height, 0:width]
        img[m1] = tex1[(yy[m1] - oy1) % tex_size, (xx[m1] - ox1) % tex_size]
        img[m2] = tex2[(yy[m2] - oy2) % tex_size, (xx[m2] - ox2) % tex_size]
        out[t] = np.clip(np.floor(img + 0.5), 0, 255).astype(np.uint8)
        if t == 0:
            first_mask[m1] = 1
            first_mask[m2] = 2
    return out, first_mask


def clip_sha256(frames: np.ndarray, first_mask: np.ndarray) -> str:
    """SHA-256 of the frame bytes followed by the mask bytes (both C-ordered uint8)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(frames, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(first_mask, dtype=np.uint8).tobytes())
    return digest.hexdigest()
