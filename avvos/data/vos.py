"""Video object segmentation training samples: DAVIS / YouTube-VOS style folders and the synthetic AV task.

Every training data set in avvos returns the same sample, a dict of tensors for ``T`` frames and ``O`` object
slots (STCN trains with up to two objects per sample):

* ``frames`` (T, 3, H, W) float32 RGB in [0, 1] (not normalised);
* ``masks`` (T, O, H, W) float32 in [0, 1], one map per object slot (soft for warped static images);
* ``selector`` (O,) float32: 1 where the slot holds an object (slot 0 always does);
* ``valid`` (T,) bool: the frame has ground truth (frames without it get no loss);
* ``audio`` (T, WINDOW_SAMPLES) float32: for each frame the mono 16 kHz window that ends at its time;
* ``has_audio`` () bool: false when the video has no sound track; the model then gets no audio embedding;
* ``history_frames`` (T, N, 3, H/4, W/4) and ``history_audio`` (T, N, RECENT_SAMPLES): for each frame, the
  last N = SYNC_HISTORY frames at stride 4 and the last 40 ms of their sound, oldest first (the ``sync``
  audio design's input). Data sets without consecutive frames repeat the frame itself (no change seen);
* ``lookalikes`` (T, H, W) float32: where objects that look like the heard one but make no sound are (the
  synthetic task's distractors; zeros elsewhere), for the sounding loss;
* ``name``: the video's name.

Items are addressed by :class:`~avvos.data.sampling.ItemKey`, so a sample is a pure function of its key.
"""

from __future__ import annotations

import json
import re
import wave
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from avvos.data.av_sync import TRAIN_SEED_START, AVSyncConfig, AVSyncDataset
from avvos.data.sampling import ItemKey, item_rng, sample_frame_indices
from avvos.masks import read_mask
from avvos.model.audio import RECENT_SAMPLES, SAMPLE_RATE, SYNC_HISTORY, WINDOW_SAMPLES, pool_frames

#: Object slots per sample, as in STCN's training (a target and, where the video has one, a second object).
MAX_OBJECTS = 2
#: STCN's fill colour for pixels that augmentations bring in from outside the image.
FILL_RGB = (124 / 255, 116 / 255, 104 / 255)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


# ------------------------------------------------------------------------------------------------------ audio


def read_audio(path: str | Path) -> np.ndarray:
    """A PCM WAV file (8, 16 or 32 bit, any channels and rate) as mono float32 at 16 kHz."""
    with wave.open(str(path), "rb") as handle:
        width, channels, rate = handle.getsampwidth(), handle.getnchannels(), handle.getframerate()
        raw = handle.readframes(handle.getnframes())
    if width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.float32) / 32768
    elif width == 4:
        data = np.frombuffer(raw, "<i4").astype(np.float32) / 2**31
    else:
        raise ValueError(f"{path}: unsupported WAV sample width of {width} bytes")
    data = data.reshape(-1, channels).mean(axis=1)
    if rate != SAMPLE_RATE:
        data = AF.resample(torch.from_numpy(data), rate, SAMPLE_RATE).numpy()
    return np.ascontiguousarray(data, dtype=np.float32)


def audio_windows(audio: np.ndarray | None, times: Sequence[float], samples: int = WINDOW_SAMPLES) -> np.ndarray:
    """(T, samples) windows of 16 kHz ``audio`` ending at each of ``times`` (seconds), silence before 0.

    The window of a frame at time ``t`` holds samples ``[t·16000 − samples, t·16000)``, as a live stream has
    them when the frame arrives. ``None`` gives silence.
    """
    out = np.zeros((len(times), samples), np.float32)
    if audio is None:
        return out
    for row, time in enumerate(times):
        end = min(int(round(time * SAMPLE_RATE)), len(audio))
        start = max(end - samples, 0)
        if end > start:
            out[row, samples - (end - start) :] = audio[start:end]
    return out


# --------------------------------------------------------------------------------------------- augmentations


def augment_video(frames: torch.Tensor, labels: torch.Tensor, size: tuple[int, int], seed: int) -> tuple:
    """STCN's video augmentations, drawn from ``seed``: (T, 3, H, W) frames and (T, C, H, W) label maps.

    Per sequence: horizontal flip, a random resized crop to ``size`` (area 36–100 %, bicubic; labels nearest),
    colour jitter (0.1, 0.03, 0.03) and 5 % greyscale. Per frame: a random affine (±15°, shear 10; bilinear, as
    torchvision warps tensors) and a slight colour jitter. Returns the frames (clamped to [0, 1]) and labels at
    ``size``.
    """
    height, width = size
    aspect = width / height
    sequence = v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomResizedCrop(
                size,
                scale=(0.36, 1.0),
                ratio=(0.75 * aspect, aspect / 0.75),
                interpolation=v2.InterpolationMode.BICUBIC,
            ),
            v2.ColorJitter(0.1, 0.03, 0.03, 0),
            v2.RandomGrayscale(0.05),
        ]
    )
    per_frame = v2.Compose(
        [
            v2.RandomAffine(
                degrees=15,
                shear=10,
                interpolation=v2.InterpolationMode.BILINEAR,
                fill={tv_tensors.Video: FILL_RGB, tv_tensors.Mask: 0},
            ),
            v2.ColorJitter(0.01, 0.01, 0.01, 0),
        ]
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        video, masks = sequence(tv_tensors.Video(frames), tv_tensors.Mask(labels))
        pairs = [
            per_frame(tv_tensors.Video(video[t : t + 1]), tv_tensors.Mask(masks[t : t + 1])) for t in range(len(video))
        ]
    out_frames = torch.cat([p[0].as_subclass(torch.Tensor) for p in pairs]).clamp_(0, 1)
    out_labels = torch.cat([p[1].as_subclass(torch.Tensor) for p in pairs])
    return out_frames, out_labels


def fit_video(frames: torch.Tensor, labels: torch.Tensor, size: tuple[int, int], augment: bool, seed: int) -> tuple:
    """Frames and labels brought to the training ``size``: augmented (:func:`augment_video`) or only resized."""
    return augment_video(frames, labels, size, seed) if augment else resize_video(frames, labels, size)


def windows_for(audio_path: Path | None, times: Sequence[float]) -> tuple[np.ndarray, bool]:
    """The audio windows ending at ``times`` of the file at ``audio_path`` (silence when there is none), and
    whether there was a file."""
    audio = read_audio(audio_path) if audio_path is not None else None
    return audio_windows(audio, times), audio is not None


def resize_video(frames: torch.Tensor, labels: torch.Tensor, size: tuple[int, int]) -> tuple:
    """Frames (bilinear, antialiased) and label maps (nearest) resized to ``size``, for unaugmented samples."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames, labels
    frames = F.interpolate(frames, size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    return frames, F.interpolate(labels, size, mode="nearest")


def pick_objects(
    labels: torch.Tensor, objects: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Object masks (T, objects, H, W) and selector from a (T, H, W) label video, or None if frame 0 is empty.

    The target is drawn uniformly from the labels visible in frame 0, further objects from the rest (STCN).
    """
    present = [int(v) for v in torch.unique(labels[0]) if v != 0]
    if not present:
        return None
    chosen = rng.permutation(present)[:objects].tolist()
    masks = torch.zeros(labels.shape[0], objects, *labels.shape[1:])
    selector = torch.zeros(objects)
    for slot, label in enumerate(chosen):
        masks[:, slot] = (labels == label).float()
        selector[slot] = 1.0
    return masks, selector


def make_sample(
    frames: torch.Tensor,
    masks: torch.Tensor,
    selector: torch.Tensor,
    audio: np.ndarray,
    has_audio: bool,
    name: str,
    valid: torch.Tensor | None = None,
    history: tuple[torch.Tensor, np.ndarray] | None = None,
    lookalikes: torch.Tensor | None = None,
) -> dict:
    """The common training sample (see the module docstring).

    ``history``: (T, N, 3, H, W) frames and (T, N, ≥RECENT_SAMPLES) sound before each frame; without it each
    frame and its own sound are repeated.
    """
    if history is None:
        steps = frames.shape[0]
        history = (
            frames[:, None].expand(-1, SYNC_HISTORY, -1, -1, -1),
            np.broadcast_to(audio[:, None, -RECENT_SAMPLES:], (steps, SYNC_HISTORY, RECENT_SAMPLES)),
        )
    history_frames, history_audio = history
    return {
        "frames": frames.float().contiguous(),
        "masks": masks.float().contiguous(),
        "selector": selector.float(),
        "valid": torch.ones(frames.shape[0], dtype=torch.bool) if valid is None else valid.bool(),
        "audio": torch.from_numpy(audio),
        "has_audio": torch.tensor(bool(has_audio)),
        "history_frames": pool_frames(history_frames.float()).contiguous(),
        "history_audio": torch.from_numpy(np.ascontiguousarray(history_audio[..., -RECENT_SAMPLES:])),
        "lookalikes": torch.zeros(frames.shape[0], *frames.shape[-2:]) if lookalikes is None else lookalikes.float(),
        "name": name,
    }


def history_indices(indices: Sequence[int], length: int = SYNC_HISTORY) -> list[list[int]]:
    """For each frame index, the ``length`` indices ending at it, oldest first (the first frame repeated)."""
    return [[max(i - k, 0) for k in range(length - 1, -1, -1)] for i in indices]


def load_rgb(path: Path) -> torch.Tensor:
    """An image file as a (3, H, W) float32 tensor in [0, 1]."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255)


def load_labels(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """A mask file as (H, W) float32 object ids, resized (nearest) to ``size`` if it differs."""
    labels = torch.from_numpy(read_mask(path).astype(np.float32))
    if tuple(labels.shape) != tuple(size):
        labels = F.interpolate(labels[None, None], size, mode="nearest")[0, 0]
    return labels


# ------------------------------------------------------------------------------------------- folders on disk


@dataclass(frozen=True)
class VideoEntry:
    """One annotated video: its frames that have masks, in order, and where its sound is."""

    name: str
    frames: tuple[Path, ...]
    masks: tuple[Path, ...]
    numbers: tuple[int, ...]
    step: int
    fps: float
    audio: Path | None


def _resolution_dir(path: Path) -> Path:
    """``path/480p`` when it exists (DAVIS), else ``path`` (YouTube-VOS and plain layouts)."""
    return path / "480p" if (path / "480p").is_dir() else path


def _split_names(root: Path, split: str) -> list[str]:
    """Sequence names listed in ``ImageSets/<split>.txt`` or ``ImageSets/*/<split>.txt``."""
    candidates = [root / "ImageSets" / f"{split}.txt", *sorted((root / "ImageSets").glob(f"*/{split}.txt"))]
    listing = next((p for p in candidates if p.is_file()), None)
    if listing is None:
        raise FileNotFoundError(f"no ImageSets/{split}.txt (or ImageSets/*/{split}.txt) under {root}")
    names: list[str] = []
    for line in listing.read_text().splitlines():
        if not line.strip():
            continue
        parts = line.split()[0].strip("/").split("/")
        name = parts[-2] if len(parts) > 1 else parts[0]  # DAVIS 2016 lists frame paths
        if name not in names:
            names.append(name)
    return names


def _frame_number(stem: str, position: int) -> int:
    digits = re.findall(r"\d+", stem)
    return int(digits[-1]) if digits else position


def find_videos(root: str | Path, split: str | None = None, fps: float = 24.0, min_frames: int = 2) -> list[VideoEntry]:
    """Annotated videos of a DAVIS (``JPEGImages/480p/<seq>``) or YouTube-VOS (``JPEGImages/<seq>``) root.

    Only frames with a mask are kept (YouTube-VOS annotates every 5th frame: ``step`` is that spacing, so the
    max skip counts original frames). A video's frame rate is ``Meta/<seq>.json``'s ``fps`` when present,
    else ``fps``; its sound is ``Audio/<seq>.wav`` when present. Videos with fewer than ``min_frames``
    annotated frames are left out.
    """
    root = Path(root)
    image_root, mask_root = _resolution_dir(root / "JPEGImages"), _resolution_dir(root / "Annotations")
    if not image_root.is_dir() or not mask_root.is_dir():
        raise FileNotFoundError(f"{root} has no JPEGImages/ and Annotations/ folders (DAVIS or YouTube-VOS layout)")
    names = _split_names(root, split) if split else sorted(p.name for p in image_root.iterdir() if p.is_dir())
    videos = []
    for name in names:
        masks = {p.stem: p for p in (mask_root / name).glob("*.png")}
        images = sorted(
            p for p in (image_root / name).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and p.stem in masks
        )
        if len(images) < min_frames:
            continue
        numbers = tuple(_frame_number(p.stem, i) for i, p in enumerate(images))
        step = max(int(np.median(np.diff(numbers))), 1) if len(numbers) > 1 else 1
        meta = root / "Meta" / f"{name}.json"
        video_fps = float(json.loads(meta.read_text()).get("fps", fps)) if meta.is_file() else fps
        audio = root / "Audio" / f"{name}.wav"
        videos.append(
            VideoEntry(
                name, tuple(images), tuple(masks[p.stem] for p in images), numbers, step, video_fps,
                audio if audio.is_file() else None,
            )
        )  # fmt: skip
    return videos


class SampleSet(Dataset):
    """What every training sample set shares: the output ``size`` (H, W), frames per sample, object slots,
    and whether samples are augmented."""

    def __init__(self, size: tuple[int, int], num_frames: int, objects: int, augment: bool) -> None:
        self.size = tuple(size)
        self.num_frames = num_frames
        self.objects = objects
        self.augment = augment


class VOSDataset(SampleSet):
    """Training samples from DAVIS / YouTube-VOS style roots (DAVIS-2016 0/255 masks too).

    Item ``key`` samples ``num_frames`` annotated frames with at most ``key.max_skip`` original frames between
    neighbours, applies STCN's augmentations and picks up to ``objects`` objects visible in the first sampled
    frame (up to 5 tries). Videos with no ``Audio/<seq>.wav`` get silence and ``has_audio`` false.
    """

    def __init__(
        self,
        roots: Sequence[str | Path],
        size: tuple[int, int],
        num_frames: int,
        objects: int = MAX_OBJECTS,
        split: str | None = None,
        fps: float = 24.0,
        augment: bool = True,
    ) -> None:
        self.videos = [video for root in roots for video in find_videos(root, split, fps)]
        if not self.videos:
            raise ValueError(f"no annotated videos found under {[str(r) for r in roots]}")
        super().__init__(size, num_frames, objects, augment)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, key: ItemKey) -> dict:
        video = self.videos[key.index]
        rng = item_rng(key.seed)
        max_jump = max(key.max_skip // video.step, 1)
        for _ in range(5):
            indices = sample_frame_indices(len(video.frames), self.num_frames, max_jump, rng)
            frames = torch.stack([load_rgb(video.frames[i]) for i in indices])
            size = tuple(frames.shape[-2:])
            labels = torch.stack([load_labels(video.masks[i], size) for i in indices])[:, None]
            frames, labels = fit_video(frames, labels, self.size, self.augment, int(rng.integers(2**31 - 1)))
            picked = pick_objects(labels[:, 0], self.objects, rng)
            if picked is not None:
                break
        if picked is None:
            picked = torch.zeros(self.num_frames, self.objects, *self.size), torch.eye(self.objects)[0]
        masks, selector = picked
        windows, has_audio = windows_for(video.audio, [video.numbers[i] / video.fps for i in indices])
        return make_sample(frames, masks, selector, windows, has_audio, video.name)


# -------------------------------------------------------------------------------------------- synthetic task


class AVSyncSequences(SampleSet):
    """Training samples from the synthetic "who is sounding" task, generated on the fly.

    Item ``key`` is the clip of seed ``TRAIN_SEED_START + key.index`` (from :class:`AVSyncDataset`, frames at
    ``size``), of which ``num_frames`` frames are sampled with the max-skip rule. Augmentations are per
    sequence only (flip, a zoom into 25–100 % of the area, colour jitter, greyscale): per-frame changes would
    disturb the visible sync cue. The zoom shows objects up to twice the task's largest size: without it,
    models trained here lost large plain objects (measured: an 80-pixel flat square in a 240p frame).
    The target is slot 0; distractors are background, as the task defines.
    """

    def __init__(
        self,
        size: tuple[int, int],
        num_frames: int,
        clips: int = 100_000,
        frames_per_clip: int = 24,
        splits: Sequence[str] = ("crossing", "distinct"),
        objects: int = MAX_OBJECTS,
        augment: bool = True,
        config: AVSyncConfig | None = None,
    ) -> None:
        base = config or AVSyncConfig()
        self.config = replace(base, frames=frames_per_clip, height=size[0], width=size[1])
        self.clips = AVSyncDataset(self.config, seeds=range(TRAIN_SEED_START, TRAIN_SEED_START + clips), splits=splits)
        super().__init__(size, num_frames, objects, augment)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: ItemKey) -> dict:
        clip = self.clips[key.index]
        rng = item_rng(key.seed)
        indices = sample_frame_indices(clip["frames"].shape[0], self.num_frames, key.max_skip, rng)
        before = history_indices(indices)
        needed = sorted({i for row in before for i in row})
        frames = clip["frames"][needed]
        target = torch.stack([clip["masks"][needed].float(), clip["lookalikes"][needed].float()], dim=1)
        if self.augment:
            frames, target = self._augment(frames, target, int(rng.integers(2**31 - 1)))
        else:
            frames, target = resize_video(frames, target, self.size)
        position = {index: n for n, index in enumerate(needed)}
        chosen = [position[i] for i in indices]
        masks = torch.zeros(len(indices), self.objects, *self.size)
        masks[:, 0] = target[chosen, 0]
        selector = torch.eye(self.objects)[0]
        audio = clip["audio"].numpy()
        rate = clip["fps"]
        history = (
            frames[torch.tensor([[position[i] for i in row] for row in before])],
            audio_windows(audio, [i / rate for row in before for i in row], RECENT_SAMPLES).reshape(
                len(indices), len(before[0]), -1
            ),
        )
        name = f"{clip['split']}_{clip['seed']:06d}"
        windows = audio_windows(audio, [i / rate for i in indices])
        return make_sample(
            frames[chosen], masks, selector, windows, True, name, history=history, lookalikes=target[chosen, 1]
        )

    def _augment(self, frames: torch.Tensor, target: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        aspect = self.size[1] / self.size[0]
        transform = v2.Compose(
            [
                v2.RandomHorizontalFlip(),
                v2.RandomResizedCrop(
                    self.size,
                    scale=(0.25, 1.0),
                    ratio=(0.75 * aspect, aspect / 0.75),
                    interpolation=v2.InterpolationMode.BILINEAR,
                ),
                v2.ColorJitter(0.1, 0.03, 0.03, 0),
                v2.RandomGrayscale(0.05),
            ]
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            video, masks = transform(tv_tensors.Video(frames), tv_tensors.Mask(target))
        return video.as_subclass(torch.Tensor).clamp(0, 1), masks.as_subclass(torch.Tensor)
