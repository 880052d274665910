"""AVSBench (Zhou et al., ECCV 2022) S4 and MS3 clips as training samples.

The layout is the one the AVSBench authors distribute (and their ``preprocess_scripts`` write)::

    Single-source/s4_meta_data.csv                 name, ..., category, split
    Single-source/s4_data/visual_frames/<split>/<category>/<name>/<name>_<i>.png     i = 1..5
    Single-source/s4_data/gt_masks/<split>/<category>/<name>/<name>_<i>.png          train: i = 1 only
    Single-source/s4_data/audio_wav/<split>/<category>/<name>.wav
    Multi-sources/ms3_meta_data.csv                video_id, split
    Multi-sources/ms3_data/visual_frames/<name>/<name>.mp4_<i>.png                   i = 1..5
    Multi-sources/ms3_data/gt_masks/<split>/<name>/<name>_<i>.png                    i = 1..5
    Multi-sources/ms3_data/audio_wav/<split>/<name>.wav

A clip is 5 s; frame ``i`` is the video frame at ``i − 1 + 15/16`` s (the last of 16 sub-samples of each
second), 224×224. Masks are binary: every sounding object is foreground, so a sample has one object.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from avvos.data.sampling import ItemKey, item_rng, sample_frame_indices
from avvos.data.vos import MAX_OBJECTS, SampleSet, fit_video, load_labels, load_rgb, make_sample, windows_for

FRAMES_PER_CLIP = 5
#: Time (s) of each of the five frames within the clip.
FRAME_TIMES = tuple(i + 15 / 16 for i in range(FRAMES_PER_CLIP))
#: Frames are one second apart: about this many frames of a 25 fps video, for the max-skip rule.
FRAME_STEP = 25
_SUBSETS = {
    "s4": ("Single-source", "s4_meta_data.csv", "s4_data"),
    "ms3": ("Multi-sources", "ms3_meta_data.csv", "ms3_data"),
}


@dataclass(frozen=True)
class AVSBenchClip:
    """One clip: its five frames, its masks (None where a frame has none) and its sound."""

    name: str
    frames: tuple[Path, ...]
    masks: tuple[Path | None, ...]
    audio: Path | None


def _locate(root: Path, subset: str | None) -> tuple[str, Path]:
    """(subset, folder holding the csv) for a root given as the subset's folder or AVSBench's data root."""
    for name, (folder, csv_name, _) in _SUBSETS.items():
        if subset in (None, name):
            for base in (root, root / folder):
                if (base / csv_name).is_file():
                    return name, base
    raise FileNotFoundError(
        f"no AVSBench {subset or 's4/ms3'} metadata under {root}: expected s4_meta_data.csv (Single-source) "
        f"or ms3_meta_data.csv (Multi-sources)"
    )


def find_clips(root: str | Path, split: str, subset: str | None = None) -> list[AVSBenchClip]:
    """The clips of ``split`` (train/val/test) listed in the subset's metadata csv."""
    subset, base = _locate(Path(root), subset)
    _, csv_name, data_name = _SUBSETS[subset]
    data = base / data_name
    with open(base / csv_name, newline="") as handle:
        rows = list(csv.reader(handle))
    header, rows = [h.strip() for h in rows[0]], rows[1:]
    split_col = header.index("split")
    category_col = header.index("category") if "category" in header else None
    clips = []
    for row in rows:
        if len(row) <= split_col or row[split_col].strip() != split:
            continue
        name = row[0].strip()
        if subset == "s4":
            assert category_col is not None
            relative = Path(split) / row[category_col].strip()
            frame_dir = data / "visual_frames" / relative / name
            frames = [frame_dir / f"{name}_{i}.png" for i in range(1, FRAMES_PER_CLIP + 1)]
        else:
            relative = Path(split)
            frames = [data / "visual_frames" / name / f"{name}.mp4_{i}.png" for i in range(1, FRAMES_PER_CLIP + 1)]
        mask_dir = data / "gt_masks" / relative / name
        masks = [mask_dir / f"{name}_{i}.png" for i in range(1, FRAMES_PER_CLIP + 1)]
        audio = data / "audio_wav" / relative / f"{name}.wav"
        if all(f.is_file() for f in frames):
            clips.append(
                AVSBenchClip(
                    name,
                    tuple(frames),
                    tuple(m if m.is_file() else None for m in masks),
                    audio if audio.is_file() else None,
                )
            )
    return clips


class AVSBenchDataset(SampleSet):
    """AVSBench clips with at least two annotated frames as training samples (one object: what sounds).

    S4's train split annotates only the first frame, so it gives nothing to learn propagation from; use its
    val/test splits or MS3. ``num_frames`` frames are sampled from the five (repeating frames when more are
    asked for); frames without a mask have ``valid`` false.
    """

    def __init__(
        self,
        roots: Sequence[str | Path],
        size: tuple[int, int],
        num_frames: int,
        split: str = "train",
        subset: str | None = None,
        objects: int = MAX_OBJECTS,
        augment: bool = True,
    ) -> None:
        clips = [clip for root in roots for clip in find_clips(root, split, subset)]
        self.clips = [clip for clip in clips if sum(m is not None for m in clip.masks) >= 2]
        if not self.clips:
            raise ValueError(
                f"no AVSBench clips of split {split!r} with two or more masks under {[str(r) for r in roots]} "
                f"({len(clips)} clips found; S4 train annotates only the first frame)"
            )
        super().__init__(size, num_frames, objects, augment)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: ItemKey) -> dict:
        clip = self.clips[key.index]
        rng = item_rng(key.seed)
        max_jump = max(key.max_skip // FRAME_STEP, 1)
        for _ in range(5):
            indices = sample_frame_indices(FRAMES_PER_CLIP, self.num_frames, max_jump, rng)
            if clip.masks[indices[0]] is not None:
                break
        else:
            first = next(i for i, m in enumerate(clip.masks) if m is not None)
            indices = sample_frame_indices(FRAMES_PER_CLIP - first, self.num_frames, max_jump, rng, 0.0)
            indices = [first + i for i in indices]
        frames = torch.stack([load_rgb(clip.frames[i]) for i in indices])
        size = tuple(frames.shape[-2:])
        labels = torch.stack(
            [
                (load_labels(m, size) > 0).float() if m is not None else torch.zeros(size)
                for m in (clip.masks[i] for i in indices)
            ]
        )[:, None]
        frames, labels = fit_video(frames, labels, self.size, self.augment, int(rng.integers(2**31 - 1)))
        masks = torch.zeros(len(indices), self.objects, *self.size)
        masks[:, 0] = labels[:, 0]
        valid = torch.tensor([clip.masks[i] is not None for i in indices])
        windows, has_audio = windows_for(clip.audio, [FRAME_TIMES[i] for i in indices])
        return make_sample(frames, masks, torch.eye(self.objects)[0], windows, has_audio, clip.name, valid)
