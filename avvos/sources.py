"""Offline frame sources: folders of images and video files, read lazily one frame at a time.

Also finds the sequences of a DAVIS or YouTube-VOS style data set (``discover_davis``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from avvos.closing import Closeable
from avvos.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

# What PIL and PyAV raise for files they cannot read (PyAV's errors derive from ValueError or OSError).
_IMAGE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_VIDEO_ERRORS = (av.error.FFmpegError, OSError, ValueError)


@dataclass
class Frame:
    """One frame: its position, a name for output files, the RGB pixels and its time in seconds."""

    index: int
    name: str
    image: np.ndarray
    time: float


class FrameSource(Closeable):
    """Frames of one folder or video, decoded one at a time as the source is iterated.

    ``num_frames`` is the frame count when it is known up front (always for folders; for videos
    when the container records it), else None, in which case ``len()`` raises TypeError.
    ``size`` is (H, W) of the first frame. Use as a context manager, or call ``close()``, to
    release an open video file.
    """

    def __init__(self, path: Path, fps: float, num_frames: int | None, size: tuple[int, int]) -> None:
        self.path = path
        self.fps = fps
        self.num_frames = num_frames
        self.size = size
        self.names: list[str] | None = None

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def __len__(self) -> int:
        if self.num_frames is None:
            raise TypeError(f"the frame count of {self.path} is not known before decoding it")
        return self.num_frames

    def close(self) -> None:
        """Release any open file; iterating again afterwards reopens it."""

    def _check_size(self, image: np.ndarray, where: str) -> None:
        """Refuse a frame whose size differs from the first: masks and memory assume one size."""
        if image.shape[:2] != self.size:
            raise InputError(
                f"{where} is {image.shape[1]}x{image.shape[0]} but the first frame of {self.path} is "
                f"{self.size[1]}x{self.size[0]}: all frames of a sequence must have the same size"
            )


def open_frames(path: str | Path, fps: float = 25.0) -> FrameSource:
    """Open a folder of images (sorted by name) or a video file as a lazy source of RGB frames.

    ``fps`` gives frame times for folders; videos use their stream's average frame rate (or
    ``fps`` when the container does not give one). Problems found at open time (missing path,
    no images, a file that is not a video) raise InputError; a frame that cannot be decoded
    raises InputError only when it is reached, after the frames before it were yielded.
    """
    path = Path(path)
    if path.is_dir():
        return _FolderSource(path, fps)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise InputError(f"{path} is a single image: give a folder of frames or a video file")
        return _VideoSource(path, fps)
    raise InputError(f"frames not found: {path} is neither a folder of images nor a video file")


def _natural_key(name: str) -> list[int | str]:
    """Sort key that orders digit runs by value, so that 'f2.jpg' comes before 'f10.jpg'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Pixels of a PIL image as (H, W, 3) uint8 RGB, whatever its mode (grey, 16-bit, palette, RGBA)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        grey = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb(image)
    except _IMAGE_ERRORS as exc:
        raise InputError(f"cannot read frame {path}: the file is corrupt or not an image ({exc})") from exc


class _FolderSource(FrameSource):
    """The image files of one folder, in natural name order, each read when it is reached."""

    def __init__(self, folder: Path, fps: float) -> None:
        if fps <= 0:
            raise InputError(f"fps must be positive, got {fps}")
        files = [
            p
            for p in folder.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        ]
        if not files:
            raise InputError(f"no images in {folder}: expected files ending in {', '.join(sorted(IMAGE_SUFFIXES))}")
        files.sort(key=lambda p: _natural_key(p.name))
        stems = [p.stem for p in files]
        if len(set(stems)) != len(stems):
            duplicate = next(s for s in stems if stems.count(s) > 1)
            raise InputError(
                f"{folder} holds several images named {duplicate!r} (different extensions): "
                "frame names must be unique because output masks are named after them"
            )
        try:
            with Image.open(files[0]) as first:
                width, height = first.size
        except _IMAGE_ERRORS as exc:
            raise InputError(f"cannot read frame {files[0]}: the file is corrupt or not an image ({exc})") from exc
        super().__init__(folder, float(fps), len(files), (height, width))
        self.files = files
        self.names = stems

    def __iter__(self) -> Iterator[Frame]:
        for index, (file, name) in enumerate(zip(self.files, self.names or [], strict=True)):
            image = _read_image(file)
            self._check_size(image, f"frame {file}")
            yield Frame(index=index, name=name, image=image, time=index / self.fps)


class _VideoSource(FrameSource):
    """The video stream of a file, decoded with PyAV as it is iterated."""

    def __init__(self, path: Path, fps: float) -> None:
        self._container: av.container.InputContainer | None = None
        container = self._open(path)
        try:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            video_fps = float(rate) if rate else float(fps)
            if video_fps <= 0:
                raise InputError(f"fps must be positive, got {fps}")
            try:
                first = next(container.decode(stream), None)
            except _VIDEO_ERRORS as exc:
                raise InputError(f"cannot decode the video {path}: {exc}") from exc
            if first is None:
                raise InputError(f"the video {path} holds no frame that can be decoded")
            num_frames = stream.frames if stream.frames > 0 else None
            super().__init__(path, video_fps, num_frames, (first.height, first.width))
        finally:
            container.close()

    @staticmethod
    def _open(path: Path) -> av.container.InputContainer:
        try:
            container = av.open(str(path), mode="r")
        except _VIDEO_ERRORS as exc:
            raise InputError(f"cannot open {path} as a video: the file is corrupt or not a video ({exc})") from exc
        if not container.streams.video:
            container.close()
            raise InputError(f"{path} has no video stream")
        return container

    def __iter__(self) -> Iterator[Frame]:
        container = self._open(self.path)
        self._container = container
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = 0
        try:
            packets = container.demux(stream)
            while True:
                damage = None
                try:
                    packet = next(packets, None)
                    if packet is None:
                        break
                    if packet.is_corrupt:
                        # Frame threading hides decoder errors: truncation shows as the demuxer's flag.
                        # Flushing first still yields the good frames the decoder threads hold.
                        damage = "its data is truncated or corrupt"
                        frames = stream.decode(None)
                    else:
                        frames = packet.decode()
                except _VIDEO_ERRORS as exc:
                    raise self._damaged(index, str(exc)) from exc
                for frame in frames:
                    image = frame.to_ndarray(format="rgb24")
                    self._check_size(image, f"frame {index} of the video")
                    yield Frame(index=index, name=f"{index:05d}", image=image, time=index / self.fps)
                    index += 1
                if damage is not None:
                    raise self._damaged(index, damage)
        finally:
            container.close()
            if self._container is container:
                self._container = None
        if self.num_frames is not None and index < self.num_frames:
            warnings.warn(
                f"the video {self.path} ended after {index} frames but its header announces "
                f"{self.num_frames}: the file may be truncated",
                stacklevel=2,
            )

    def _damaged(self, index: int, reason: str) -> InputError:
        return InputError(f"the video {self.path} is damaged: decoding failed at frame {index} ({reason})")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


@dataclass
class Sequence:
    """One sequence of a data set: its frames folder and its annotations folder (None if absent)."""

    name: str
    frames: Path
    annotations: Path | None


def discover_davis(root: str | Path, imageset: str | Path | None = None) -> list[Sequence]:
    """Find the sequences of a DAVIS (``JPEGImages/480p/<seq>``) or YouTube-VOS (``JPEGImages/<seq>``) root.

    With ``imageset`` (a text file of sequence names, one a line, given as a path or relative to
    ``root``) only those sequences are returned, in the file's order; without it, all of them sorted.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data set root not found: {root}")
    if (root / "JPEGImages" / "480p").is_dir():
        frames_root, annotations_root = root / "JPEGImages" / "480p", root / "Annotations" / "480p"
    elif (root / "JPEGImages").is_dir():
        frames_root, annotations_root = root / "JPEGImages", root / "Annotations"
    else:
        raise InputError(
            f"{root} is not a DAVIS or YouTube-VOS root: expected JPEGImages/480p/<sequence>/ "
            "or JPEGImages/<sequence>/ inside it"
        )
    available = sorted(p.name for p in frames_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if imageset is None:
        names = available
    else:
        names = _read_imageset(root, Path(imageset))
        missing = sorted(set(names) - set(available))
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise InputError(f"sequences listed in {imageset} but missing from {frames_root}: {shown}")
    sequences = []
    for name in names:
        annotations = annotations_root / name
        sequences.append(Sequence(name, frames_root / name, annotations if annotations.is_dir() else None))
    return sequences


def _read_imageset(root: Path, imageset: Path) -> list[str]:
    """Sequence names of an image-set file, in order, without blanks or repeats."""
    path = imageset if imageset.is_file() or imageset.is_absolute() else root / imageset
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the image set {imageset}: {exc}") from exc
    names = list(dict.fromkeys(line.strip() for line in lines if line.strip()))
    if not names:
        raise InputError(f"the image set {path} lists no sequence")
    return names
