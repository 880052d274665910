"""Offline segmentation: a loop over an :class:`~avvos.session.InferenceSession`.

Reads frames lazily, applies the first mask (and masks given at later frames), writes each mask
as soon as it is computed (so an error part-way keeps what was done) and an optional overlay video.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from avvos.errors import MaskError
from avvos.masks import read_mask
from avvos.session import InferenceSession
from avvos.sinks import MaskWriter, VideoWriter, overlay
from avvos.sources import FrameSource


@dataclass
class SegmentStats:
    """What one run did: frame and object counts, and time spent (model only, and in total)."""

    frames: int = 0
    objects: int = 0
    model_seconds: float = 0.0
    total_seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.total_seconds if self.total_seconds > 0 else 0.0

    @property
    def model_fps(self) -> float:
        return self.frames / self.model_seconds if self.model_seconds > 0 else 0.0


@dataclass
class MaskPlan:
    """Masks to apply: ``by_frame`` maps a frame name to a mask file. Frames are matched by name,
    or by position for the first mask (``first``). ``new_objects_only`` takes from later masks only
    ids not yet tracked (the YouTube-VOS rule, for annotation folders holding every frame)."""

    first: Path | None = None
    by_frame: dict[str, Path] | None = None
    new_objects_only: bool = False
    resize_masks: bool = False


def masks_in_folder(folder: str | Path) -> dict[str, Path]:
    """PNG masks of a folder keyed by file stem (``00005.png`` → ``"00005"``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MaskError(f"mask folder not found: {folder}")
    return {p.stem: p for p in sorted(folder.glob("*.png"))}


def load_mask(path: Path, frame_size: tuple[int, int], resize: bool) -> np.ndarray:
    """Read a mask and check it against the frame size (H, W), resizing (nearest) only if asked."""
    mask = read_mask(path)
    if mask.shape != frame_size:
        if not resize:
            raise MaskError(
                f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but the frames are "
                f"{frame_size[1]}x{frame_size[0]} (width x height); fix the mask or pass --resize-masks "
                "to resize it (nearest neighbour)"
            )
        mask = cv2.resize(mask, (frame_size[1], frame_size[0]), interpolation=cv2.INTER_NEAREST)
    return mask


def segment_source(
    session: InferenceSession,
    source: FrameSource,
    plan: MaskPlan,
    out_dir: Path | None = None,
    overlay_path: Path | None = None,
    progress: bool = True,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
) -> SegmentStats:
    """Segment every frame of ``source``; write masks to ``out_dir`` and an overlay video if asked."""
    session.reset()
    stats = SegmentStats()
    writer = MaskWriter(out_dir) if out_dir is not None else None
    by_frame = dict(plan.by_frame or {})
    total = source.num_frames
    video = VideoWriter(overlay_path, source.fps) if overlay_path is not None else None
    start = time.perf_counter()
    try:
        bar = tqdm(total=total, unit="frame", disable=not progress, desc=source.path.name, leave=False)
        with bar:
            for frame in source:
                mask_path = plan.first if frame.index == 0 and plan.first is not None else by_frame.get(frame.name)
                mask, objects = None, None
                if mask_path is not None:
                    mask = load_mask(mask_path, frame.image.shape[:2], plan.resize_masks)
                    if frame.index > 0 and plan.new_objects_only:
                        objects = [i for i in np.unique(mask).tolist() if i != 0 and i not in session.object_ids]
                        if not objects:
                            mask = None
                if frame.index == 0 and mask is None:
                    raise MaskError(f"no mask for the first frame ({frame.name}): give --mask FILE")
                model_start = time.perf_counter()
                last = total is not None and frame.index == total - 1
                result = session.step(frame.image, mask=mask, objects=objects, end=last)
                if session.device.type == "cuda":
                    torch.cuda.synchronize(session.device)
                stats.model_seconds += time.perf_counter() - model_start
                if writer is not None:
                    writer.write(frame.name, result.labels)
                if video is not None:
                    video.write(overlay(frame.image, result.labels))
                if on_frame is not None:
                    on_frame(frame.index, result.labels)
                stats.frames += 1
                stats.objects = len(result.object_ids)
                bar.update()
    finally:
        if video is not None:
            video.close()
    stats.total_seconds = time.perf_counter() - start
    return stats
