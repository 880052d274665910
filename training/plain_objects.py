"""How much of a large plain object a model keeps: a check for a weakness the bundled weights once had.

A flat bright square (or disc) on a flat dark 320x240 frame is given as the mask of frame 0, and the *same*
frame is segmented again from that memory; the fraction of the object kept is printed per size. Matching is
trivial here (the frame is its own memory), so a low fraction means the value encoder and decoder drop plain
interiors. ``python -m training.plain_objects W.safetensors``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import cv2
import numpy as np

from avvos.checkpoint import load_model
from avvos.config import InferenceConfig
from avvos.session import InferenceSession

SIDES = (24, 40, 60, 80, 120)


def kept_fraction(weights: Path, shape: str, side: int, size: int = 240) -> float:
    """Mean foreground probability over a ``side``-pixel plain ``shape`` (square or disc) re-segmented on its
    own frame, processed at ``size`` (shorter side)."""
    model, _ = load_model(weights)
    image = np.full((240, 320, 3), 40, np.uint8)
    mask = np.zeros((240, 320), np.uint8)
    if shape == "square":
        mask[60 : 60 + side, 60 : 60 + side] = 1
    else:
        cv2.circle(mask, (160, 120), side // 2, 1, -1)
    image[mask == 1] = 235
    session = InferenceSession(model, InferenceConfig(size=size), "cpu")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*running without audio")
        session.step(image, mask=mask)
        probs = session.step(image).probs[1]
    return float(probs[mask == 1].mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.plain_objects", description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path, help="an avvos checkpoint")
    args = parser.parse_args(argv)
    for shape in ("square", "disc"):
        kept = [f"{side} px {kept_fraction(args.weights, shape, side):.2f}" for side in SIDES]
        print(f"{shape}: " + ", ".join(kept))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
