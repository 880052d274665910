"""Offline segmentation: a loop over an :class:`~avvos.session.InferenceSession`.

Reads frames lazily, applies the first mask (and masks given at later frames), writes each mask
as soon as it is final (so an error part-way keeps what was done) and an optional overlay video. With the
identity check on, a mask is final :attr:`~avvos.session.InferenceSession.lookback` frames later: until then
the sound may still mend it (:class:`~avvos.sinks.HeldFrames`).
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

from avvos.audio import FileAudio
from avvos.errors import InputError, MaskError
from avvos.masks import read_mask
from avvos.session import InferenceSession
from avvos.sinks import HeldFrames, MaskWriter, VideoWriter, overlay
from avvos.sources import Frame, FrameSource, Sequence, open_frames


@dataclass
class SegmentStats:
    """What one run did: frame and object counts, frames where the sound re-annotated an object with its heard
    look-alike (:mod:`avvos.identity`) and earlier masks it mended, and time spent (model only, and in total)."""

    frames: int = 0
    objects: int = 0
    reannotated: int = 0
    revised: int = 0
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


def find_audio(
    source_path: Path, audio_path: Path | None, davis_root: Path | None = None, name: str | None = None
) -> tuple[FileAudio | None, str]:
    """The audio for a clip, and a sentence saying where it came from.

    In order: an explicit ``audio_path``; ``Audio/<name>.wav`` beside a DAVIS-like root; the video
    file's own track. None (with the reason) when there is no audio.
    """
    if audio_path is not None:
        return FileAudio(audio_path), f"audio: {audio_path}"
    if davis_root is not None and name is not None:
        wav = davis_root / "Audio" / f"{name}.wav"
        if wav.is_file():
            return FileAudio(wav), f"audio: {wav}"
        return None, f"audio: none ({wav} not found)"
    if source_path.is_file():
        try:
            return FileAudio(source_path), f"audio: the track of {source_path.name}"
        except InputError as exc:
            return None, f"audio: none ({exc})"
    return None, "audio: none (a frame folder; give --audio FILE)"


def describe_audio_length(audio: FileAudio, frames: int, fps: float) -> str | None:
    """A note when the audio is shorter or longer than the video (it is padded with silence or trimmed)."""
    video = frames / fps
    if audio.duration < video - 1 / fps:
        return f"the audio ({audio.duration:.2f} s) is shorter than the video ({video:.2f} s): padded with silence"
    if audio.duration > video + 1 / fps:
        return f"the audio ({audio.duration:.2f} s) is longer than the video ({video:.2f} s): the rest is not used"
    return None


def segment_source(
    session: InferenceSession,
    source: FrameSource,
    plan: MaskPlan,
    out_dir: Path | None = None,
    overlay_path: Path | None = None,
    progress: bool = True,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
    audio: FileAudio | None = None,
) -> SegmentStats:
    """Segment every frame of ``source``; write masks to ``out_dir`` and an overlay video if asked.

    With ``audio``, each frame gets the audio window that ends at its time (frame index / fps).
    """
    session.reset()
    stats = SegmentStats()
    writer = MaskWriter(out_dir) if out_dir is not None else None
    by_frame = dict(plan.by_frame or {})
    total = source.num_frames
    video = VideoWriter(overlay_path, source.fps) if overlay_path is not None else None
    start = time.perf_counter()

    def emit(frame: Frame, labels: np.ndarray) -> None:
        if writer is not None:
            writer.write(frame.name, labels)
        if video is not None:
            video.write(overlay(frame.image, labels))
        if on_frame is not None:
            on_frame(frame.index, labels)

    held = HeldFrames(session.lookback, emit)
    finished = False
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
                window = audio.window(frame.time) if audio is not None else None
                result = session.step(frame.image, window, mask=mask, objects=objects, end=last)
                if session.device.type == "cuda":
                    torch.cuda.synchronize(session.device)
                stats.model_seconds += time.perf_counter() - model_start
                held.push(frame.index, frame, result.labels, result.revisions)
                stats.frames += 1
                stats.objects = len(result.object_ids)
                stats.reannotated += bool(result.reannotated)
                bar.update()
        finished = True
    finally:
        try:
            held.flush()  # what was done is written, also when a frame part-way failed
        except Exception:
            if finished:
                raise
        finally:
            if video is not None:
                video.close()
    stats.revised = held.revised
    stats.total_seconds = time.perf_counter() - start
    return stats


def davis_plan(sequence: Sequence, root: str | Path, resize_masks: bool = False) -> MaskPlan:
    """The mask plan of a sequence of a DAVIS-like root: its annotation folder, new objects only (so a folder
    holding every frame's ground truth gives the first mask of each object and nothing else)."""
    if sequence.annotations is None:
        raise InputError(f"sequence {sequence.name} has no annotation folder under {root}")
    return MaskPlan(by_frame=masks_in_folder(sequence.annotations), new_objects_only=True, resize_masks=resize_masks)


def segment_sequence(
    session: InferenceSession,
    sequence: Sequence,
    root: str | Path,
    out_dir: Path,
    *,
    with_audio: bool,
    fps: float = 25.0,
    progress: bool = False,
) -> SegmentStats:
    """Segment one sequence of a DAVIS-like root into ``out_dir``, with its ``Audio/<name>.wav`` when
    ``with_audio``; ``fps`` times the frames of a folder. What the data-set evaluations run for every sequence."""
    plan = davis_plan(sequence, root)
    audio = find_audio(sequence.frames, None, Path(root), sequence.name)[0] if with_audio else None
    with open_frames(sequence.frames, fps=fps) as source:
        return segment_source(session, source, plan, out_dir, progress=progress, audio=audio)
