"""Output sinks: palette mask PNGs, coloured overlays, and mp4 videos that stay playable on errors."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import cv2
import numpy as np

from avvos.closing import Closeable
from avvos.errors import AvvosError
from avvos.masks import davis_palette, write_mask

if TYPE_CHECKING:
    from avvos.session import Revision

CONTOUR_WIDTH = 2


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5, palette: np.ndarray | None = None) -> np.ndarray:
    """Blend each object's region of an RGB image with its palette colour and outline it.

    Object pixels become ``(1 - alpha) * image + alpha * colour``; the outermost 2 pixels inside each
    object are drawn in the full colour so that neighbouring objects stay apart. Background pixels
    are left unchanged.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels {labels.shape} do not match the image size {image.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    palette = davis_palette() if palette is None else np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    labels = labels.astype(np.uint8, copy=False)
    colours = palette[labels].astype(np.float32)
    foreground = labels > 0
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    out = np.where(foreground[:, :, None], np.rint(blended), image).astype(np.uint8)
    # A pixel lies on a contour when some pixel within CONTOUR_WIDTH of it carries another label.
    kernel = np.ones((2 * CONTOUR_WIDTH + 1, 2 * CONTOUR_WIDTH + 1), np.uint8)
    lowest = cv2.erode(labels, kernel, borderType=cv2.BORDER_REPLICATE)
    highest = cv2.dilate(labels, kernel, borderType=cv2.BORDER_REPLICATE)
    contour = foreground & ((lowest != labels) | (highest != labels))
    out[contour] = palette[labels[contour]]
    return out


class MaskWriter:
    """Writes label maps as palette PNGs named after their frames, creating the folder."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, labels: np.ndarray) -> Path:
        """Write ``out_dir/<name>.png`` (DAVIS palette) and return its path."""
        if not name or Path(name).name != name:
            raise ValueError(f"a mask name must be a plain file name, got {name!r}")
        path = self.out_dir / f"{name}.png"
        write_mask(path, labels)
        return path


def _video_codec() -> str:
    """H.264 (libx264) when this PyAV build has it, else MPEG-4 part 2, which every build has."""
    try:
        av.codec.Codec("libx264", "w")
    except (av.error.FFmpegError, ValueError):
        return "mpeg4"
    return "libx264"


class VideoWriter(Closeable):
    """Writes RGB uint8 frames to an mp4 file (yuv420p), opened on the first frame.

    Odd widths or heights are padded by one pixel (repeating the last row or column), as yuv420p
    needs even sizes. Leaving the ``with`` block, even on an exception, flushes the encoder and
    writes the file's index, so the frames written so far stay playable. No frame, no file.

    With ``audio_rate``, the file also gets a mono AAC track fed by :meth:`write_audio`. Frames given
    a capture ``time`` are placed at that time (a live stream that drops frames stays in step with
    its audio); frames without one follow each other at ``fps``.
    """

    def __init__(self, path: str | Path, fps: float, audio_rate: int | None = None) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = fps
        self.audio_rate = audio_rate
        self.audio_samples_written = 0
        self._audio_stream: av.audio.stream.AudioStream | None = None
        self._fifo: av.AudioFifo | None = None
        self._first_time: float | None = None
        self._last_pts = -1
        self.codec = _video_codec()
        self.frames_written = 0
        self._closed = False
        self._size: tuple[int, int] | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None

    def _open(self, height: int, width: int) -> None:
        """Create the file and its video stream; the place where an audio stream would be added."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            container = av.open(str(self.path), mode="w", format="mp4")
        except (av.error.FFmpegError, OSError) as exc:
            raise AvvosError(f"cannot create the video {self.path}: {exc}") from exc
        stream = container.add_stream(self.codec, rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        if self.codec == "libx264":
            stream.options = {"crf": "18", "preset": "fast"}
        else:
            stream.bit_rate = int(stream.width * stream.height * self.fps * 0.3)
        if self.audio_rate is not None:
            self._audio_stream = container.add_stream("aac", rate=self.audio_rate, layout="mono")
            self._fifo = av.AudioFifo()
        self._container, self._stream, self._size = container, stream, (height, width)

    def write(self, image: np.ndarray, time: float | None = None) -> None:
        """Append one (H, W, 3) uint8 RGB frame; every frame must have the size of the first.

        ``time`` (seconds, any origin) places the frame at that time relative to the first frame.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        if self._closed:
            raise ValueError(f"the video {self.path} is already closed")
        if self._size is None:
            self._open(image.shape[0], image.shape[1])
        elif image.shape[:2] != self._size:
            raise ValueError(
                f"frame {self.frames_written} is {image.shape[1]}x{image.shape[0]} but the video "
                f"{self.path} is {self._size[1]}x{self._size[0]}"
            )
        assert self._stream is not None and self._container is not None
        pad_h, pad_w = image.shape[0] % 2, image.shape[1] % 2
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        pts = self._last_pts + 1
        if time is not None:
            self._first_time = time if self._first_time is None else self._first_time
            pts = max(pts, round((time - self._first_time) * self.fps))
        frame.pts = self._last_pts = pts
        frame.time_base = Fraction(1) / self._stream.codec_context.framerate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def write_audio(self, samples: np.ndarray) -> None:
        """Append mono float samples in [-1, 1] at ``audio_rate`` (after the first frame opened the file)."""
        if self._audio_stream is None or self._fifo is None or self._container is None:
            raise ValueError("write_audio needs audio_rate and a first video frame")
        data = np.clip(np.nan_to_num(np.asarray(samples, np.float32).reshape(1, -1)), -1, 1)
        if data.shape[1] == 0:
            return
        frame = av.AudioFrame.from_ndarray(data, format="flt", layout="mono")
        frame.sample_rate = self.audio_rate
        frame.pts = self.audio_samples_written
        self.audio_samples_written += data.shape[1]
        self._fifo.write(frame)
        self._drain_audio(final=False)

    def _drain_audio(self, final: bool) -> None:
        stream, fifo, container = self._audio_stream, self._fifo, self._container
        if stream is None or fifo is None or container is None:
            return
        size = stream.codec_context.frame_size or 1024
        while fifo.samples >= size or (final and fifo.samples > 0):
            for packet in stream.encode(fifo.read(min(size, fifo.samples))):
                container.mux(packet)
        if final:
            for packet in stream.encode(None):
                container.mux(packet)

    def close(self) -> None:
        """Flush the encoders and finish the file; safe to call more than once."""
        container, stream = self._container, self._stream
        if container is None or stream is None:
            self._container, self._stream, self._closed = None, None, True
            return
        try:
            for packet in stream.encode(None):
                container.mux(packet)
            self._drain_audio(final=True)
        finally:
            self._container, self._stream, self._audio_stream, self._closed = None, None, None, True
            container.close()


class HeldFrames:
    """Holds each frame's labels back ``lag`` frames before handing them on (``emit(item, labels)``, in order), so
    that masks the identity check mends later (:class:`~avvos.session.Revision`) still reach the outputs;
    :meth:`flush` hands on the rest. ``revised``: how many held masks were mended (or put back as first output)."""

    def __init__(self, lag: int, emit: Callable[[Any, np.ndarray], None]) -> None:
        self.lag = max(int(lag), 0)
        self.emit = emit
        self.revised = 0
        self._held: deque[tuple[int, Any, np.ndarray, np.ndarray]] = deque()  # (index, item, labels, first output)

    def push(self, index: int, item: Any, labels: np.ndarray, revisions: Iterable[Revision] = ()) -> None:
        """Hold frame ``index`` (``item``: what ``emit`` needs besides the labels), after mending the held frames
        that ``revisions`` name; hand on the frames that are now ``lag`` behind."""
        for revision in revisions:
            for position, (held_index, held_item, held_labels, first) in enumerate(self._held):
                if held_index == revision.index:
                    object_id = revision.object_id
                    mended = np.where(held_labels == object_id, 0, held_labels).astype(held_labels.dtype)
                    if revision.mask is None:
                        mended[(first == object_id) & (mended == 0)] = object_id
                    else:
                        mended[revision.mask] = object_id
                    self._held[position] = (held_index, held_item, mended, first)
                    self.revised += 1
        self._held.append((index, item, labels, labels))
        while len(self._held) > self.lag:
            self._hand_on()

    def flush(self) -> None:
        """Hand on every frame still held."""
        while self._held:
            self._hand_on()

    def _hand_on(self) -> None:
        _, held_item, held_labels, _ = self._held.popleft()
        self.emit(held_item, held_labels)
