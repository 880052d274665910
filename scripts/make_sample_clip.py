"""Regenerate the bundled sample clip (avvos/samples/av_distinct): one clip of the synthetic
who-is-sounding task (``distinct`` split, seed 20000000: neither a training nor an evaluation seed),
its first-frame mask and its sound.

Run: python scripts/make_sample_clip.py
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from avvos.data.av_sync import AVSyncConfig, write_dataset

OUT = Path(__file__).resolve().parents[1] / "avvos" / "samples" / "av_distinct"
SEED = 20_000_000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (name,) = write_dataset(root, "distinct", 1, SEED, AVSyncConfig(split="distinct"), progress=False)
        if OUT.exists():
            shutil.rmtree(OUT)
        shutil.copytree(root / "JPEGImages" / name, OUT / "frames")
        shutil.copy(root / "Annotations" / name / "00000.png", OUT / "first_mask.png")
        shutil.copy(root / "Audio" / f"{name}.wav", OUT / "audio.wav")


if __name__ == "__main__":
    main()
