"""Time the look-alike search the session runs once per annotated object: the default colour test alone beside
all the tests it tries in turn (``avvos.identity.find_lookalikes``), on the first frames of the DAVIS-2016 dev
sequences at the bundled 240p processing size (one object each and no look-alike: the search's worst case).

    python scripts/bench_lookalike_search.py [--data ../shared/data/davis2016-dev] [--repeat 3]

Prints the median times and their ratio, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from avvos.identity import LookalikeFinder, find_lookalikes
from avvos.masks import read_mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/davis2016-dev"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    frames = sorted((args.data / "JPEGImages" / "480p").glob("*/00000.jpg"))
    if not frames:
        raise SystemExit(f"no DAVIS first frames under {args.data / 'JPEGImages' / '480p'}")
    default, every = [], []
    for frame in frames:
        image = np.asarray(Image.open(frame).convert("RGB"))
        mask = read_mask(args.data / "Annotations" / "480p" / frame.parent.name / "00000.png") > 0
        size = (image.shape[1] // 2, image.shape[0] // 2)
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
        for _ in range(args.repeat):
            start = time.perf_counter()
            LookalikeFinder(image, mask).lookalikes(image)
            middle = time.perf_counter()
            find_lookalikes(image, mask)
            default.append(middle - start)
            every.append(time.perf_counter() - middle)
    one, all_tests = statistics.median(default) * 1e3, statistics.median(every) * 1e3
    print(
        f"{len(frames)} first frames at 240p: default colour test {one:.1f} ms, all tests {all_tests:.1f} ms "
        f"(x{all_tests / one:.2f}), once per annotated object"
    )


if __name__ == "__main__":
    main()
