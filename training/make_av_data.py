"""Write held-out clips of the synthetic who-is-sounding task to disk (DAVIS-like layout, with Audio/).

    python -m training.make_av_data data/av_eval --clips 20

writes the ``crossing``, ``distinct`` and ``silent`` splits from :data:`EVAL_SEED_START` on (seeds never
used in training; the splits are paired by seed, so ``silent`` is ``crossing`` with the sound replaced).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avvos.data.av_sync import EVAL_SEED_START, SPLITS, AVSyncConfig, write_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.make_av_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder to write (JPEGImages/, Annotations/, Audio/, ImageSets/)")
    parser.add_argument("--clips", type=int, default=20, help="clips per split (default 20)")
    parser.add_argument("--seed", type=int, default=EVAL_SEED_START, help="first seed (default: evaluation seeds)")
    parser.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits (default: all three)")
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=432)
    args = parser.parse_args(argv)
    config = AVSyncConfig(height=args.height, width=args.width)
    for split in args.splits.split(","):
        names = write_dataset(args.root, split, args.clips, args.seed, config, progress=True)
        print(f"{split}: {len(names)} clips in {args.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
