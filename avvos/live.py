"""``avvos live``: segment a camera (and its microphone) frame by frame, as it happens.

The loop always takes the newest frame (stale frames are dropped and counted, never queued), pairs
it with the microphone's audio window that ends at the frame's capture time, steps the session and
shows or records the overlay. With a window, objects can be marked with a box (refined by GrabCut)
or clicks; without one (``--no-window``) the first mask comes from a file and the overlay video and
masks are written.

Keys in the window: ``a`` add an object (drag a box, or click points and press Enter), ``r`` reset,
``space`` pause, ``s`` save a snapshot, ``q``/``Esc`` quit.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from avvos.audio import SAMPLE_RATE, WINDOW_SECONDS, AudioBuffer, FileAudio, MicrophoneSource
from avvos.capture import CameraSource, LiveFrame, now
from avvos.errors import AvvosError, InputError, SourceError
from avvos.masks import read_mask
from avvos.prompts import add_object, mask_from_box, mask_from_clicks
from avvos.session import InferenceSession
from avvos.sinks import MaskWriter, VideoWriter, overlay

WINDOW_NAME = "avvos live"


@dataclass
class LiveOptions:
    """What ``avvos live`` reads, shows and writes."""

    source: str = "0"
    mask: Path | None = None
    window: bool = True
    record: Path | None = None
    masks_out: Path | None = None
    audio: str = "auto"  # auto | mic | file | off
    mic_device: str | None = None
    fps: float | None = None
    realtime: bool = True
    max_frames: int | None = None
    max_seconds: float | None = None


@dataclass
class LiveStats:
    """What a live run did; latencies are end-to-end (capture to overlay ready), in milliseconds."""

    frames: int = 0
    dropped: int = 0
    grabbed: int = 0
    model_ms: list[float] = field(default_factory=list)
    delay_ms: list[float] = field(default_factory=list)
    end_reason: str = ""
    audio: str = "off"
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def med(values: list[float]) -> str:
            return f"{statistics.median(values):.0f}" if values else "-"

        return (
            f"{self.frames} frames processed, {self.dropped} dropped of {self.grabbed} captured; "
            f"model {med(self.model_ms)} ms, capture-to-overlay {med(self.delay_ms)} ms (medians); "
            f"audio: {self.audio}; ended: {self.end_reason}"
        )


class _Marker:
    """Mouse state of the window: a box being dragged or clicks being collected."""

    def __init__(self) -> None:
        self.active = False
        self.start: tuple[int, int] | None = None
        self.box: tuple[int, int, int, int] | None = None
        self.clicks: list[tuple[int, int]] = []
        self.done = False

    def on_mouse(self, event: int, x: int, y: int, _flags: int, _param: object) -> None:
        if not self.active:
            return
        if event == cv2.EVENT_LBUTTONDOWN:
            self.start = (x, y)
        elif event == cv2.EVENT_MOUSEMOVE and self.start is not None:
            self.box = (*self.start, x, y)
        elif event == cv2.EVENT_LBUTTONUP and self.start is not None:
            if abs(x - self.start[0]) > 4 and abs(y - self.start[1]) > 4:
                self.box = (*self.start, x, y)
                self.done = True
            else:
                self.clicks.append((x, y))
            self.start = None


def open_audio(options: LiveOptions, camera: CameraSource, needed: bool) -> tuple[object | None, str]:
    """The audio source for the stream, or None, and a sentence saying which (never fails the run)."""
    if not needed or options.audio == "off":
        return None, "off" if needed else "not used by these weights"
    if options.audio == "file" or (options.audio == "auto" and camera.kind == "file"):
        try:
            return FileAudio(options.source), f"the track of {Path(options.source).name}"
        except AvvosError as exc:
            return None, f"none ({exc})"
    try:
        device = int(options.mic_device) if options.mic_device and options.mic_device.isdigit() else options.mic_device
        mic = MicrophoneSource(device)
        return mic, f"microphone {mic.device_name!r}"
    except SourceError as exc:
        warnings.warn(f"continuing without audio: {exc}", stacklevel=2)
        return None, f"none, continuing without audio ({exc})"


def _audio_window(
    audio: object | None, frame: LiveFrame, origin: float, seconds: float = WINDOW_SECONDS
) -> np.ndarray | None:
    """The audio that ends at the frame's capture time, from a file's track or the microphone."""
    if isinstance(audio, FileAudio):
        return audio.window(frame.time - origin, seconds)
    if isinstance(audio, MicrophoneSource | AudioBuffer):
        return audio.window(frame.time, seconds)
    return None


def _draw_status(image: np.ndarray, lines: list[str]) -> np.ndarray:
    out = np.ascontiguousarray(image[:, :, ::-1])  # BGR for OpenCV
    for i, text in enumerate(lines):
        y = 18 + 18 * i
        cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def run_live(session: InferenceSession, options: LiveOptions, log=print) -> LiveStats:
    """Run the live loop until the source ends, the user quits, or a frame/time limit is reached."""
    stats = LiveStats()
    if not options.window and options.mask is None:
        raise InputError("--no-window needs the first frame's mask: give --mask FILE")
    camera = CameraSource(options.source, fps_hint=options.fps, realtime=options.realtime)
    audio, stats.audio = open_audio(options, camera, session.model.uses_audio)
    log(f"source: {options.source} ({camera.kind}, {camera.fps:.1f} fps); audio: {stats.audio}")
    recorder = None
    if options.record:
        recorder = VideoWriter(options.record, camera.fps, audio_rate=SAMPLE_RATE if audio is not None else None)
    recorded_until: float | None = None  # capture time up to which audio was recorded
    masks = MaskWriter(options.masks_out) if options.masks_out else None
    marker = _Marker()
    pending = read_mask(options.mask) if options.mask else None
    new_object: tuple[np.ndarray, int] | None = None  # (labels, id) marked in the window
    session.reset()
    size: tuple[int, int] | None = None
    origin = camera.origin
    started = now()
    paused = False
    fps_times: deque[float] = deque(maxlen=30)
    last_overlay: np.ndarray | None = None
    if options.window:
        cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)  # no toolbar: marks map 1:1
        cv2.setMouseCallback(WINDOW_NAME, marker.on_mouse)
    try:
        while True:
            if options.max_frames is not None and stats.frames >= options.max_frames:
                stats.end_reason = f"reached {options.max_frames} frames"
                break
            if options.max_seconds is not None and now() - started > options.max_seconds:
                stats.end_reason = f"reached {options.max_seconds:g} s"
                break
            frame = camera.read(timeout=1.0)
            if frame is None:
                if camera.ended:
                    stats.end_reason = camera.end_reason or "the source ended"
                    break
                continue
            image = frame.image
            if size is None:
                size = frame.size
            elif frame.size != size:
                if frame.size_changed:
                    note = f"frame size changed from {size[1]}x{size[0]} to {frame.size[1]}x{frame.size[0]}: resized"
                    log(note)
                    stats.notes.append(note)
                image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            if paused:
                key = cv2.waitKey(30) & 0xFF if options.window else -1
                if key == ord(" "):
                    paused = False
                elif key in (ord("q"), 27):
                    stats.end_reason = "quit"
                    break
                continue
            mask, objects = None, None
            if pending is not None:
                if pending.shape != image.shape[:2]:
                    raise InputError(
                        f"mask is {pending.shape[1]}x{pending.shape[0]} but the frames are "
                        f"{image.shape[1]}x{image.shape[0]}"
                    )
                mask, pending = pending, None
            elif new_object is not None:
                (mask, new_id), new_object = new_object, None
                objects = [new_id]
            tick = time.perf_counter()
            result = session.step(image, _audio_window(audio, frame, origin), mask=mask, objects=objects)
            stats.model_ms.append((time.perf_counter() - tick) * 1000)
            view = overlay(image, result.labels)
            if options.realtime:  # frame times are on now()'s clock only for paced sources
                stats.delay_ms.append((now() - frame.time) * 1000)
            stats.frames += 1
            fps_times.append(now())
            if recorder is not None:
                recorder.write(view, time=frame.time)
                if audio is not None and recorded_until is not None and frame.time > recorded_until:
                    recorder.write_audio(_audio_window(audio, frame, origin, frame.time - recorded_until))
                recorded_until = frame.time
            if masks is not None:
                masks.write(f"{frame.index:05d}", result.labels)
            if not options.window:
                continue
            fps = (len(fps_times) - 1) / (fps_times[-1] - fps_times[0]) if len(fps_times) > 1 else 0.0
            capture = camera.stats
            lines = [
                f"{fps:.1f} fps  model {stats.model_ms[-1]:.0f} ms  delay {stats.delay_ms[-1]:.0f} ms"
                if stats.delay_ms
                else f"{fps:.1f} fps",
                f"dropped {capture.dropped}  objects {len(result.object_ids)}  audio {stats.audio[:30]}",
            ]
            if not result.object_ids:
                lines.append("press a, then drag a box or click the object and press Enter")
            last_overlay = _draw_status(view, lines)
            cv2.imshow(WINDOW_NAME, last_overlay)
            key = cv2.waitKey(1) & 0xFF
            if key in (ord("q"), 27):
                stats.end_reason = "quit"
                break
            if key == ord(" "):
                paused = True
            elif key == ord("r"):
                session.reset()
                log("reset: all objects forgotten")
            elif key == ord("s") and last_overlay is not None:
                path = Path(f"avvos_snapshot_{int(time.time())}.png")
                cv2.imwrite(str(path), last_overlay)
                log(f"snapshot saved: {path}")
            elif key == ord("a"):
                new_object = _mark_object(image, result.labels, marker)
    except KeyboardInterrupt:
        stats.end_reason = "interrupted"
    finally:
        capture = camera.stats
        stats.dropped, stats.grabbed = capture.dropped, capture.grabbed
        camera.close()
        if isinstance(audio, MicrophoneSource):
            audio.close()
        if recorder is not None:
            recorder.close()
        if options.window:
            cv2.destroyAllWindows()
    return stats


def _mark_object(image: np.ndarray, labels: np.ndarray, marker: _Marker) -> tuple[np.ndarray, int] | None:
    """Freeze the frame until the user drags a box or clicks points (Enter) on a new object."""
    marker.active, marker.done, marker.box, marker.clicks = True, False, None, []
    frozen = np.ascontiguousarray(overlay(image, labels)[:, :, ::-1])
    try:
        while True:
            view = frozen.copy()
            if marker.box is not None:
                x0, y0, x1, y1 = marker.box
                cv2.rectangle(view, (x0, y0), (x1, y1), (0, 255, 255), 2)
            for x, y in marker.clicks:
                cv2.circle(view, (x, y), 4, (0, 255, 255), -1)
            cv2.putText(view, "drag a box or click points + Enter; Esc/q cancels", (6, view.shape[0] - 8),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
            cv2.imshow(WINDOW_NAME, view)
            key = cv2.waitKey(20) & 0xFF
            if key in (27, ord("q")):
                return None
            if marker.done and marker.box is not None:
                new = mask_from_box(image, marker.box)
                break
            if key in (13, 10) and marker.clicks:
                new = mask_from_clicks(image, marker.clicks)
                break
    finally:
        marker.active = False
    return add_object(labels, new)
