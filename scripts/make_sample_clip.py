"""Regenerate the bundled sample clip (avvos/samples/shapes): two textured shapes moving over a
textured background, 24 frames at 320x240, and the first frame's palette mask.

Run: python scripts/make_sample_clip.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from avvos.masks import write_mask

OUT = Path(__file__).resolve().parents[1] / "avvos" / "samples" / "shapes"


def main(frames: int = 24, height: int = 240, width: int = 320, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    noise = cv2.resize(rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8), (width, height))
    background = (0.6 * noise + 0.4 * np.array([90, 140, 90])).astype(np.uint8)
    (OUT / "frames").mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        image = background.copy()
        labels = np.zeros((height, width), np.uint8)
        cx, cy = int(60 + 7 * t), int(80 + 30 * np.sin(t / 5))
        cv2.circle(labels, (cx, cy), 34, 1, -1)
        x0, y0 = int(250 - 5 * t), int(150 + 3 * t)
        cv2.rectangle(labels, (x0 - 30, y0 - 22), (x0 + 30, y0 + 22), 2, -1)
        stripes = (np.indices((height, width)).sum(0) // 6 % 2).astype(bool)
        image[labels == 1] = np.where(stripes[labels == 1, None], [220, 60, 40], [250, 200, 60])
        image[labels == 2] = np.where(stripes[labels == 2, None], [40, 70, 200], [240, 240, 250])
        cv2.imwrite(str(OUT / "frames" / f"{t:05d}.jpg"), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        if t == 0:
            write_mask(OUT / "first_mask.png", labels)


if __name__ == "__main__":
    main()
