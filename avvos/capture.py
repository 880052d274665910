"""Live video capture on one shared clock: cameras, network streams, video files and frame folders.

Every timestamp in avvos' live path comes from ``now()`` (``time.monotonic``), so that a frame can be
paired with the audio that ends at its capture time (see ``avvos.audio``).

``CameraSource`` reads frames in a background thread. In realtime mode (the default) it keeps only the
newest frame: a consumer slower than the camera gets the newest frame at each ``read()`` and the frames
it missed are counted (``LiveFrame.dropped``, ``stats.dropped``) instead of piling up as latency. With
``realtime=False`` every frame is delivered in order (files and folders then use their own timeline:
``time = index / fps``).

A stream that stops (camera unplugged, server gone, end of file) ends the iteration cleanly: ``ended``
becomes True and ``end_reason`` says why; no exception escapes the capture thread.

Frame size changes do not stop a live source: a frame whose size differs from the previous one is
delivered with ``size_changed=True`` and carries its new size (``stats.size_changes`` counts them), so
the consumer decides (e.g. restart the segmentation memory). Folders deliver the new size as it is;
OpenCV's FFmpeg reader (URLs, files) scales the frames of a stream whose size changes to the size it
saw first (measured on an MJPEG stream), so such streams keep one size.
"""

from __future__ import annotations

import collections
import glob
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avvos.closing import Closeable
from avvos.errors import InputError
from avvos.sources import open_frames

DEFAULT_FPS = 25.0


def now() -> float:
    """The shared clock of the live path, in seconds (monotonic; its origin is arbitrary)."""
    return time.monotonic()


@dataclass
class LiveFrame:
    """One delivered frame.

    ``index`` counts delivered frames (0, 1, 2, ...); ``image`` is (H, W, 3) uint8 RGB; ``time`` is the
    capture time on ``now()``'s clock (files read with ``realtime=False``: seconds from the start of the
    file); ``dropped`` is how many grabbed frames were skipped since the previous delivered one;
    ``size_changed`` is True when the size differs from the previous delivered frame.
    """

    index: int
    image: np.ndarray
    time: float
    dropped: int = 0
    size_changed: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return self.image.shape[0], self.image.shape[1]


@dataclass
class CaptureStats:
    """Counters of a source: frames grabbed from it, delivered to the consumer, skipped, and size changes.

    ``fps`` is the grab rate measured over the last frames (0 until two frames were grabbed).
    """

    grabbed: int = 0
    delivered: int = 0
    dropped: int = 0
    size_changes: int = 0
    fps: float = 0.0


def to_rgb(image: np.ndarray, order: str = "bgr") -> np.ndarray:
    """(H, W, 3) uint8 RGB from a grey (H, W) / (H, W, 1), colour or 4-channel frame, 8 or 16 bit.

    ``order`` is the channel order of colour inputs: "bgr"/"bgra" (OpenCV) or "rgb"/"rgba". Alpha
    is dropped (a camera frame has nothing behind it to blend with).
    """
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating):
            image = np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0)
            image = (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
        else:
            raise InputError(f"unsupported frame pixel type {image.dtype}: expected 8 or 16-bit integers")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InputError(f"unsupported frame shape {image.shape}: expected grey, 3 or 4 channels")
    bgr = order.lower().startswith("bgr")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if bgr:
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log while opening a source (process-wide, restored afterwards)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


class CameraSource(Closeable):
    """Frames of a camera index, a URL (HTTP MJPEG, RTSP, ...), a video file or a folder of images.

    ``fps_hint`` is the frame rate to use for folders, and for files whose rate is unknown. In
    realtime mode files and folders are played at their frame rate, like a camera. ``timeout``
    (seconds) bounds how long opening a URL, or waiting for its next frame, may take before the
    stream counts as stopped. Opening problems raise InputError; later ones end the stream.
    ``queue_size`` bounds the frames waiting for the consumer when ``realtime=False``.

    ``origin`` is the clock time at which the source started (0.0 for files and folders read with
    ``realtime=False``): ``frame.time - origin`` is the frame's position in the stream, which is the
    time ``FileAudio.window`` takes for a video's own audio track. ``fps`` is the source's frame rate.
    """

    def __init__(
        self,
        source: int | str | Path,
        *,
        fps_hint: float | None = None,
        realtime: bool = True,
        timeout: float = 10.0,
        queue_size: int = 8,
    ) -> None:
        if fps_hint is not None and fps_hint <= 0:
            raise InputError(f"fps_hint must be positive, got {fps_hint}")
        self.source = source
        self.realtime = realtime
        self.timeout = timeout
        self.kind, self._capture, self._folder = self._open(source, timeout)
        # Sorted image files of a folder (raises InputError when there is none).
        self._files: list[Path] = list(getattr(open_frames(self._folder), "files", [])) if self._folder else []
        self.fps = self._frame_rate(fps_hint)
        # Frames read in this process are on now()'s clock; files read without realtime pacing on their own.
        self.origin = 0.0 if (not realtime and self.kind in ("file", "folder")) else now()
        self._frames: collections.deque[tuple[int, np.ndarray, float]] = collections.deque(
            maxlen=1 if realtime else None
        )
        self._queue_size = max(1, queue_size)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ended = False
        self._end_reason: str | None = None
        self._stats = CaptureStats()
        self._grab_times: collections.deque[float] = collections.deque(maxlen=30)
        self._last_seq = -1
        self._last_size: tuple[int, int] | None = None
        self._thread = threading.Thread(target=self._run, name=f"avvos-capture-{self.kind}", daemon=True)
        self._thread.start()

    # ---- opening -------------------------------------------------------------------------------

    @staticmethod
    def _open(source: int | str | Path, timeout: float) -> tuple[str, cv2.VideoCapture | None, Path | None]:
        if isinstance(source, bool):
            raise InputError(f"not a video source: {source!r}")
        if isinstance(source, str) and source.strip().isdigit():
            source = int(source.strip())
        if isinstance(source, int):
            with _quiet_opencv():  # its warnings for a missing camera would repeat our error in worse words
                capture = cv2.VideoCapture(source)
            if not capture.isOpened():
                capture.release()
                devices = sorted(glob.glob("/dev/video*"))
                present = ", ".join(devices) if devices else "none"
                raise InputError(
                    f"no camera at index {source}: OpenCV could not open it (video devices present: {present}); "
                    "check the index, that the camera is plugged in and not used by another program"
                )
            return "camera", capture, None
        text = str(source)
        if "://" in text:
            ms = int(timeout * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            with _quiet_opencv():
                capture = cv2.VideoCapture(text, cv2.CAP_FFMPEG, params)
            if not capture.isOpened():
                capture.release()
                raise InputError(
                    f"cannot open the stream {text}: it did not answer within {timeout:g} s, or it is not a video "
                    "stream OpenCV can read (HTTP MJPEG, RTSP, ...)"
                )
            return "stream", capture, None
        path = Path(text)
        if path.is_dir():
            return "folder", None, path
        if not path.is_file():
            raise InputError(f"video source not found: {path} is not a camera index, URL, video file or folder")
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise InputError(f"cannot open {path} as a video: the file is corrupt or not a video")
        return "file", capture, None

    def _frame_rate(self, fps_hint: float | None) -> float:
        if self.kind == "folder":
            return float(fps_hint or DEFAULT_FPS)
        rate = float(self._capture.get(cv2.CAP_PROP_FPS)) if self._capture is not None else 0.0
        if not np.isfinite(rate) or rate <= 0 or rate > 1000:
            rate = 0.0
        if self.kind == "file":
            return rate or float(fps_hint or DEFAULT_FPS)
        return float(fps_hint or rate or DEFAULT_FPS)

    # ---- capture thread ------------------------------------------------------------------------

    def _run(self) -> None:
        """Grab frames until the source ends or ``close()``; never lets an exception out of the thread."""
        reason = "closed"
        try:
            reason = self._grab_folder() if self.kind == "folder" else self._grab_capture()
        except BaseException as exc:  # a capture thread must end with a reason, not a traceback
            reason = f"capture failed: {type(exc).__name__}: {exc}"
        finally:
            if self._capture is not None:
                self._capture.release()
            with self._cond:
                self._ended = True
                self._end_reason = "closed" if self._stop.is_set() else reason
                self._cond.notify_all()

    def _grab_capture(self) -> str:
        assert self._capture is not None
        index = 0
        while not self._stop.is_set():
            if self.kind == "file" and self.realtime and not self._pace(index):
                break
            ok, image = self._capture.read()
            if not ok or image is None:
                if self._stop.is_set():
                    break
                if self.kind == "file":
                    return f"end of file after {index} frames"
                what = f"camera {self.source}" if self.kind == "camera" else f"the stream {self.source}"
                return f"{what} stopped delivering frames after {index} frames"
            self._push(image, self._timestamp(index))
            index += 1
        return "closed"

    def _grab_folder(self) -> str:
        """Read the folder's images in name order; unlike offline sources, frames may change size."""
        for index, file in enumerate(self._files):
            if self._stop.is_set() or (self.realtime and not self._pace(index)):
                return "closed"
            image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)  # keeps grey/alpha/16-bit for to_rgb
            if image is None:
                return f"cannot read frame {file}: the file is corrupt or not an image"
            self._push(image, self._timestamp(index))
        return f"end of folder after {len(self._files)} frames"

    def _pace(self, index: int) -> bool:
        """Wait until frame ``index`` of a file is due, as a camera would deliver it; False when closed."""
        delay = self.origin + index / self.fps - now()
        return not (delay > 0 and self._stop.wait(delay))

    def _timestamp(self, index: int) -> float:
        if self.kind in ("file", "folder"):
            return self.origin + index / self.fps
        return now()

    def _push(self, image: np.ndarray, stamp: float) -> None:
        with self._cond:
            if not self.realtime:
                while len(self._frames) >= self._queue_size and not self._stop.is_set():
                    self._cond.wait(0.1)
                if self._stop.is_set():
                    return
            self._frames.append((self._stats.grabbed, image, stamp))
            self._stats.grabbed += 1
            self._grab_times.append(now())
            self._cond.notify_all()

    # ---- consumer side -------------------------------------------------------------------------

    def read(self, timeout: float | None = None) -> LiveFrame | None:
        """The next frame to process (the newest one in realtime mode), or None at the end or on timeout.

        Blocks until a frame not delivered before is there, for at most ``timeout`` seconds (None: no limit).
        """
        deadline = None if timeout is None else now() + timeout
        with self._cond:
            while not self._frames:
                if self._ended:
                    return None
                remaining = None if deadline is None else deadline - now()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            seq, raw, stamp = self._frames.popleft()
            self._cond.notify_all()
            dropped = seq - self._last_seq - 1
            self._last_seq = seq
            self._stats.dropped += dropped
            index = self._stats.delivered
            self._stats.delivered += 1
        image = to_rgb(raw)  # OpenCV gives BGR(A)
        size = (image.shape[0], image.shape[1])
        changed = self._last_size is not None and size != self._last_size
        if changed:
            with self._cond:
                self._stats.size_changes += 1
        self._last_size = size
        return LiveFrame(index=index, image=image, time=stamp, dropped=dropped, size_changed=changed)

    def __iter__(self) -> Iterator[LiveFrame]:
        while (frame := self.read()) is not None:
            yield frame

    @property
    def stats(self) -> CaptureStats:
        """A snapshot of the counters (grabbed, delivered, dropped, size changes, measured fps)."""
        with self._cond:
            stats = CaptureStats(**vars(self._stats))
            times = self._grab_times
            if len(times) >= 2 and times[-1] > times[0]:
                stats.fps = (len(times) - 1) / (times[-1] - times[0])
        return stats

    @property
    def ended(self) -> bool:
        """True once the source gave its last frame (or failed, or was closed); frames still queued remain readable."""
        return self._ended

    @property
    def end_reason(self) -> str | None:
        """Why the source ended ("end of file ...", "... stopped delivering frames ...", "closed", ...)."""
        return self._end_reason

    def close(self) -> None:
        """Stop capturing and release the device; frames not read yet are discarded."""
        self._stop.set()
        with self._cond:
            self._frames.clear()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(self.timeout + 1.0)
