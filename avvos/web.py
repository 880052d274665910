"""``avvos web``: a Gradio demo that segments a visitor's webcam (and microphone) stream live.

A visitor streams the camera and the microphone, freezes a frame, marks objects on it (a box refined
by OpenCV GrabCut, a brush, or an uploaded mask) and gets the overlay back while streaming, with a
frames-per-second readout. An offline tab segments an uploaded video from a first-frame mask and
returns the overlay video and a zip of masks.

Design (why it is safe to put in front of several people):

* one model in memory per model choice, loaded once and shared read-only; each visitor has their
  own :class:`~avvos.session.InferenceSession` (objects, bounded memory, audio buffer), keyed by
  Gradio's per-tab ``session_hash`` and freed when the tab closes (``Blocks.unload``) or after
  ``idle_timeout_s`` without activity;
* at most ``max_streams`` live streams are processed at once; a visitor past that gets a clear
  "busy" message at once instead of waiting silently in a queue;
* it binds to 127.0.0.1 unless told otherwise, shares a public link only with ``share=True``,
  limits upload size and video length, never takes a path from a visitor (files come only through
  Gradio's upload handling, models only by the names it lists), and loads checkpoints without
  unpickling (:func:`avvos.checkpoint.load_model`).

Gradio is imported only when an app is built, so ``avvos`` commands that do not serve the demo
do not need it. The module deliberately does not use ``from __future__ import annotations``:
Gradio finds ``gr.Request`` / ``gr.SelectData`` parameters by evaluating the handlers' annotations.
"""

import argparse
import collections
import ipaddress
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import cv2
import numpy as np
import torch

from avvos.audio import AudioBuffer, FileAudio, to_mono_16k
from avvos.capture import now
from avvos.config import InferenceConfig, config_from_options, resolve_device
from avvos.errors import AvvosError, CheckpointError, InputError, MaskError
from avvos.masks import read_mask, write_mask
from avvos.model.stcn import STCN
from avvos.session import InferenceSession
from avvos.sinks import HeldFrames, VideoWriter, overlay
from avvos.sources import Frame, open_frames

if TYPE_CHECKING:
    import gradio as gr

HELP = "serve the live web demo (webcam + microphone, Gradio)"
DESCRIPTION = (
    "A Gradio web app: stream the webcam and microphone, freeze a frame, mark objects (box + GrabCut, brush "
    "or mask upload) and watch them being segmented live; an offline tab segments an uploaded video. Binds "
    "to 127.0.0.1 unless --host says otherwise; --share makes a public link."
)
DEFAULT_MODEL = "default"
MODEL_SUFFIXES = (".safetensors", ".pth")
MAX_OBJECTS = 10
JOB_MAX_AGE_S = 3600.0
MARK_COLOUR = (255, 64, 160)  # the candidate (GrabCut) region and box on the frozen frame

# Shown by the browser when the camera or microphone cannot be opened (denied, missing, in use).
# It wraps getUserMedia, so it sees exactly the errors the Gradio components get.
MEDIA_SCRIPT = """
<script>
(() => {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia || md.__avvosWrapped) return;
  md.__avvosWrapped = true;
  const original = md.getUserMedia.bind(md);
  const show = (kind, text) => {
    let box = document.getElementById("avvos-media-msg");
    if (!box) {
      box = document.createElement("div");
      box.id = "avvos-media-msg";
      box.setAttribute("role", "alert");
      document.body.prepend(box);
    }
    box.dataset[kind] = text;
    box.textContent = Object.values(box.dataset).join("  ");
  };
  md.getUserMedia = async (constraints) => {
    try {
      const stream = await original(constraints);
      if (constraints && constraints.video) show("camera", "");
      return stream;
    } catch (err) {
      const why = err && err.name ? err.name : "error";
      if (constraints && constraints.video) {
        show("camera", "Camera unavailable (" + why + "): the live demo needs a camera. Allow camera " +
          "access for this page and click the webcam box again, or use the Offline video tab.");
      } else {
        show("microphone", "Microphone unavailable (" + why + "): the live demo runs video-only " +
          "(no audio). Allow microphone access and press Record to add audio.");
      }
      throw err;
    }
  };
})();
</script>
"""

CSS = """
#avvos-media-msg { position: sticky; top: 0; z-index: 1000; background: #fff4e5; color: #663c00;
  border-bottom: 1px solid #ffb74d; padding: 8px 16px; font: 15px sans-serif; }
#avvos-media-msg:empty { display: none; }
#out img { object-fit: contain; }
"""

INTRO = """
# avvos: live object segmentation from your webcam and microphone
1. In **Camera**, click the box to allow the webcam, then **Record**. Optionally press **Record** under
   **Microphone** (audio-visual models use it; without it the demo runs video-only).
2. Press **Freeze frame**, then mark an object on the frozen frame: click two opposite corners of a box
   (**Box**), paint it (**Brush**) or upload its mask (**Upload mask**), and press the tab's **Add** button.
3. The **Overlay** follows your objects live. Add more objects the same way; **Reset** forgets them all.
"""


@dataclass
class WebConfig:
    """Options of the web demo (the ``avvos web`` flags).

    ``size``: shorter side frames are processed at (frames larger than that are scaled down first;
    240 suits a CPU). ``stream_every``: seconds between the webcam frames the browser sends.
    ``stream_gap_s``: a stream slot is given back when no frame came for that long (a visitor who
    stopped recording). ``memory_frames``: bound on each live session's memory, first frame pinned.
    """

    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    max_streams: int = 2
    idle_timeout_s: float = 600.0
    max_upload_mb: float = 50.0
    max_video_seconds: float = 60.0
    models_dir: Path | None = None
    weights: str | None = None
    device: str = "auto"
    stream_every: float = 0.1
    size: int = 240
    mem_every: int = 5
    top_k: int = 20
    memory_frames: int = 20
    stream_gap_s: float = 3.0

    def __post_init__(self) -> None:
        if self.models_dir is not None:
            self.models_dir = Path(self.models_dir)
        checks = [
            (self.max_streams >= 1, f"max_streams must be at least 1, got {self.max_streams}"),
            (self.idle_timeout_s > 0, f"idle_timeout_s must be positive, got {self.idle_timeout_s}"),
            (self.max_upload_mb > 0, f"max_upload_mb must be positive, got {self.max_upload_mb}"),
            (self.max_video_seconds > 0, f"max_video_seconds must be positive, got {self.max_video_seconds}"),
            (0.02 <= self.stream_every <= 5, f"stream_every must be in [0.02, 5] seconds, got {self.stream_every}"),
            (self.size >= 32, f"size must be at least 32 pixels, got {self.size}"),
            (self.memory_frames >= 2, f"memory_frames must be at least 2, got {self.memory_frames}"),
            (self.stream_gap_s > 0, f"stream_gap_s must be positive, got {self.stream_gap_s}"),
            (0 <= self.port <= 65535, f"port must be in 0..65535, got {self.port}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.models_dir is not None and not self.models_dir.is_dir():
            raise ValueError(f"--models {self.models_dir} is not a folder")

    def inference_config(self) -> InferenceConfig:
        """Live sessions: frames arrive already at the processing size; memory is bounded; live defaults
        (:meth:`InferenceConfig.for_live`)."""
        return InferenceConfig(
            top_k=self.top_k, mem_every=self.mem_every, size=None, max_size=self.size, memory_frames=self.memory_frames
        ).for_live()

    def offline_config(self) -> InferenceConfig:
        """Offline videos: processed at ``size`` (shorter side), masks at the video's own size."""
        return InferenceConfig(top_k=self.top_k, mem_every=self.mem_every, size=None, max_size=self.size)


# ---- models ----------------------------------------------------------------------------------


class ModelStore:
    """The models a visitor may choose, by name; each is loaded once and shared read-only.

    Names come from the server's own files only: ``default`` (the bundled weights, or a random STCN
    while none is bundled), ``--weights`` and the ``.safetensors``/``.pth`` files directly in ``--models``.
    """

    def __init__(self, config: WebConfig, device: torch.device) -> None:
        self.device = device
        self.paths: dict[str, Path | None] = {DEFAULT_MODEL: None}
        extra = [Path(config.weights)] if config.weights else []
        if config.models_dir is not None:
            extra += sorted(p for p in config.models_dir.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)
        for path in extra:
            name, n = path.name, 2
            while name in self.paths:
                name, n = f"{path.name} ({n})", n + 1
            self.paths[name] = path
        self._models: dict[str, tuple[STCN, str]] = {}
        self._lock = threading.Lock()
        self.default = DEFAULT_MODEL
        if config.weights:
            self.default = next(n for n, p in self.paths.items() if p == Path(config.weights))

    @property
    def names(self) -> list[str]:
        """The model names offered, the default first."""
        return list(self.paths)

    def get(self, name: str) -> tuple[STCN, str]:
        """The model called ``name`` and a sentence saying which weights it runs (loads it the first time)."""
        if name not in self.paths:
            raise CheckpointError(f"unknown model {name!r}; choose one of: {', '.join(self.paths)}")
        with self._lock:
            if name not in self._models:
                from avvos.cli import BUNDLED_WEIGHTS, get_model  # avvos.cli may import this module: late

                path = self.paths[name]
                shown = BUNDLED_WEIGHTS if path is None else path
                try:
                    model, sentence = get_model(str(path) if path is not None else None, self.device)
                except AvvosError as exc:  # visitors see the file's name, not where the server keeps it
                    raise CheckpointError(_strip_path(str(exc), shown)) from exc
                self._models[name] = (model.eval(), _strip_path(sentence, shown).removeprefix("weights: "))
            return self._models[name]


# ---- visitors --------------------------------------------------------------------------------


class SessionEndedError(AvvosError):
    """An event for a browser tab that was closed (an in-flight frame, or a forged session hash)."""


@dataclass
class Annotation:
    """Objects marked on a frozen frame: replayed into a new session when the visitor switches model."""

    frame: np.ndarray
    mask: np.ndarray
    ids: list[int]


@dataclass
class Visitor:
    """Everything one browser tab owns: its session, marks, audio and stream statistics."""

    key: str
    model_name: str
    session: InferenceSession
    lock: threading.RLock = field(default_factory=threading.RLock)
    audio: AudioBuffer = field(default_factory=lambda: AudioBuffer(capacity=4.0))
    annotations: list[Annotation] = field(default_factory=list)
    next_id: int = 1
    last_frame: np.ndarray | None = None
    camera_size: tuple[int, int] | None = None
    frozen: np.ndarray | None = None
    frozen_camera_size: tuple[int, int] | None = None
    frozen_marks: np.ndarray | None = None
    corner: tuple[int, int] | None = None
    box: tuple[int, int, int, int] | None = None
    candidate: np.ndarray | None = None
    last_seen: float = field(default_factory=now)
    last_frame_at: float | None = None
    last_output_at: float | None = None
    last_audio_at: float | None = None
    streaming: bool = False
    frames: int = 0
    fps: float = 0.0
    step_ms: float = 0.0

    @property
    def object_ids(self) -> list[int]:
        return list(self.session.object_ids)

    def clear_objects(self) -> None:
        """Forget every object and mark (the stream goes on unsegmented)."""
        self.session.reset()
        self.annotations.clear()
        self.next_id = 1
        self.corner = self.box = self.candidate = None


class VisitorRegistry:
    """Visitors by Gradio session hash, the stream slots they hold and their clean-up.

    A visitor is removed when the tab closes (``remove``, from Gradio's unload event) or after
    ``idle_timeout_s`` without any event; a stream slot is given back when the visitor leaves or when
    no frame came for ``stream_gap_s``. A background thread sweeps; it ends with the registry.

    The hash of a closed tab is remembered for a while, so that a frame or audio chunk still in flight
    when the tab closed cannot bring its visitor back (``get`` raises :class:`SessionEndedError`). A visitor
    removed for idleness may come back: the tab is still open and just gets a fresh session.
    """

    CLOSED_MEMORY = 10000  # closed hashes remembered

    def __init__(
        self,
        make_session: Any,
        max_streams: int,
        idle_timeout_s: float,
        stream_gap_s: float,
        sweep_every_s: float = 1.0,
    ) -> None:
        self.make_session = make_session
        self.max_streams = max_streams
        self.idle_timeout_s = idle_timeout_s
        self.stream_gap_s = stream_gap_s
        self.removed = 0
        self._visitors: dict[str, Visitor] = {}
        self._closed: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        thread = threading.Thread(
            target=_sweep_loop, args=(weakref.ref(self), self._stop, sweep_every_s), name="avvos-web-sweeper"
        )
        thread.daemon = True
        thread.start()

    def get(self, key: str) -> Visitor:
        """The visitor of this session hash, created on first use; marks it active."""
        with self._lock:
            if key in self._closed:
                raise SessionEndedError("this page's session has ended (the tab was closed): reload the page")
            visitor = self._visitors.get(key)
        if visitor is None:
            model_name, session = self.make_session(None)
            created = Visitor(key=key, model_name=model_name, session=session)
            with self._lock:
                visitor = self._visitors.setdefault(key, created)
        visitor.last_seen = now()
        return visitor

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._visitors

    def __len__(self) -> int:
        with self._lock:
            return len(self._visitors)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._visitors)

    def peek(self, key: str) -> Visitor | None:
        """The visitor of this hash without creating it or marking it active (for tests and tools)."""
        with self._lock:
            return self._visitors.get(key)

    @property
    def active_streams(self) -> int:
        with self._lock:
            return sum(v.streaming for v in self._visitors.values())

    def try_stream(self, visitor: Visitor) -> bool:
        """Take (or keep) a stream slot for this visitor; False when all slots are in use."""
        t = now()
        with self._lock:
            if not visitor.streaming:
                used = sum(v.streaming for v in self._visitors.values())
                if used >= self.max_streams:
                    return False
                visitor.streaming = True
            visitor.last_frame_at = t
            return True

    def remove(self, key: str, closed: bool = True) -> bool:
        """Drop a visitor and free its session and stream slot (True when it existed).

        ``closed``: the tab is gone (remember the hash, so late events cannot recreate the visitor).
        """
        with self._lock:
            visitor = self._visitors.pop(key, None)
            if closed:
                self._closed[key] = None
                while len(self._closed) > self.CLOSED_MEMORY:
                    self._closed.popitem(last=False)
        if visitor is None:
            return False
        visitor.streaming = False
        with visitor.lock:
            visitor.session.reset()
        self.removed += 1
        return True

    def sweep(self) -> None:
        """Remove idle visitors and give back the slots of streams that stopped sending frames."""
        t = now()
        with self._lock:
            idle = [k for k, v in self._visitors.items() if t - v.last_seen > self.idle_timeout_s]
            for visitor in self._visitors.values():
                if visitor.streaming and (
                    visitor.last_frame_at is None or t - visitor.last_frame_at > self.stream_gap_s
                ):
                    visitor.streaming = False
        for key in idle:
            self.remove(key, closed=False)

    def close(self) -> None:
        """Stop the sweeper and drop every visitor."""
        self._stop.set()
        for key in self.keys():
            self.remove(key, closed=False)


def _sweep_loop(registry_ref: "weakref.ref[VisitorRegistry]", stop: threading.Event, every: float) -> None:
    """The registry's clean-up thread; holds only a weak reference, so it ends with the registry."""
    while not stop.wait(every):
        registry = registry_ref()
        if registry is None:
            return
        try:
            registry.sweep()
        except Exception as exc:  # the sweeper must never die: report and go on
            print(f"avvos web: visitor clean-up failed: {exc!r}", file=sys.stderr)
        del registry


# ---- image helpers ---------------------------------------------------------------------------


def fit_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """An (H, W, 3) uint8 RGB frame whose shorter side is at most ``size`` (area-averaged when shrunk)."""
    image = np.asarray(frame)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InputError(f"expected an RGB camera frame, got shape {image.shape}")
    image = image[:, :, :3]
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    height, width = image.shape[:2]
    short = min(height, width)
    if short > size:
        scale = size / short
        image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def grabcut_box(image: np.ndarray, box: tuple[int, int, int, int], iterations: int = 5) -> np.ndarray:
    """Foreground (H, W) bool inside ``box`` = (x0, y0, x1, y1), refined by OpenCV GrabCut.

    Falls back to the box itself when GrabCut finds nothing (e.g. a flat image), so a box always marks
    something.
    """
    x0, y0, x1, y1 = box
    height, width = image.shape[:2]
    x0, x1 = max(0, min(x0, x1)), min(width - 1, max(x0, x1))
    y0, y1 = max(0, min(y0, y1)), min(height - 1, max(y0, y1))
    box_mask = np.zeros((height, width), bool)
    box_mask[y0 : y1 + 1, x0 : x1 + 1] = True
    mask = np.zeros((height, width), np.uint8)
    rect = (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
    background = np.zeros((1, 65), np.float64)
    foreground = np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(
            cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
            mask,
            rect,
            background,
            foreground,
            iterations,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error:
        return box_mask
    result = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    return result if result.any() else box_mask


def preview(
    image: np.ndarray,
    labels: np.ndarray | None = None,
    candidate: np.ndarray | None = None,
    box: tuple[int, int, int, int] | None = None,
    corner: tuple[int, int] | None = None,
) -> np.ndarray:
    """The frozen frame with the objects marked so far, the candidate region, its box and a first corner."""
    out = overlay(image, labels) if labels is not None and labels.any() else image.copy()
    if candidate is not None and candidate.any():
        tint = np.array(MARK_COLOUR, np.float32)
        out[candidate] = np.rint(0.5 * out[candidate] + 0.5 * tint).astype(np.uint8)
    if box is not None:
        cv2.rectangle(out, box[:2], box[2:], MARK_COLOUR, 1)
    if corner is not None:
        cv2.circle(out, corner, 3, MARK_COLOUR, -1)
    return out


def painted_mask(value: Any, shape: tuple[int, int]) -> np.ndarray:
    """The pixels painted in a ``gr.ImageEditor`` value (any layer, alpha > 0) at ``shape`` (H, W)."""
    painted = np.zeros(shape, bool)
    layers = value.get("layers") if isinstance(value, dict) else None
    for layer in layers or []:
        array = np.asarray(layer)
        if array.ndim == 3 and array.shape[2] == 4:
            hit = array[:, :, 3] > 0
        elif array.ndim == 3:
            hit = array.max(axis=2) > 0
        else:
            continue
        if hit.shape != shape:
            hit = cv2.resize(hit.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        painted |= hit
    return painted


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for ``--port 0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host if host not in ("", "0.0.0.0") else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def video_duration(path: str | Path) -> float | None:
    """Seconds a video file declares (container, else its video stream), None when it says nothing."""
    try:
        with av.open(str(path), mode="r") as container:
            if container.duration is not None:
                return container.duration / av.time_base
            for stream in container.streams.video:
                if stream.duration is not None and stream.time_base is not None:
                    return float(stream.duration * stream.time_base)
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    return None


# ---- the app ---------------------------------------------------------------------------------


class WebRuntime:
    """What one app instance holds: the configuration, the models, the visitors and a work folder."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.models = ModelStore(config, self.device)
        self.models.get(self.models.default)  # fail at start, not at the first visitor, on bad weights
        self.work_dir = Path(tempfile.mkdtemp(prefix="avvos-web-"))
        self._session_lock = threading.Lock()
        self.registry = VisitorRegistry(
            self.new_session, config.max_streams, config.idle_timeout_s, config.stream_gap_s
        )
        weakref.finalize(self, shutil.rmtree, self.work_dir, True)

    def new_session(self, model_name: str | None) -> tuple[str, InferenceSession]:
        """A fresh session on the named model (the default when None)."""
        name = model_name or self.models.default
        model, _ = self.models.get(name)
        with self._session_lock:  # sessions may touch the shared model (.eval(), .to()): one at a time
            return name, InferenceSession(model, self.config.inference_config(), self.device)

    def new_job_dir(self) -> Path:
        """A fresh folder for one offline job; folders older than an hour are removed."""
        cutoff = time.time() - JOB_MAX_AGE_S
        for old in self.work_dir.iterdir():
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix="job-", dir=self.work_dir))

    # ---- live stream -------------------------------------------------------------------------

    def stream_frame(self, key: str, frame: np.ndarray | None, use_audio: bool) -> tuple[np.ndarray | None, str]:
        """Segment a visitor's newest webcam frame: (overlay or frame, status line)."""
        visitor = self.registry.get(key)
        if frame is None:
            return None, "Waiting for the camera..."
        if not self.registry.try_stream(visitor):
            return None, (
                f"Busy: all {self.config.max_streams} live streams are in use by other visitors. Your camera "
                "works; keep this page open and your stream starts as soon as one frees up (the Offline video "
                "tab works meanwhile)."
            )
        start = now()
        with visitor.lock:
            image = fit_frame(frame, self.config.size)
            camera_size = (int(frame.shape[0]), int(frame.shape[1]))
            note = ""
            if visitor.camera_size is not None and camera_size != visitor.camera_size and visitor.object_ids:
                visitor.clear_objects()
                note = " The camera size changed, so the objects were cleared: mark them again."
            visitor.camera_size = camera_size
            visitor.last_frame = image
            audio, audio_note = self._audio_window(visitor, use_audio, start)
            if not visitor.object_ids:
                return image, (
                    "Live, no object marked yet: press Freeze frame, then mark an object on the frozen frame. "
                    f"| audio: {audio_note}{note}"
                )
            try:
                result = visitor.session.step(image, audio)
            except InputError as exc:
                visitor.clear_objects()
                return image, f"The objects were cleared ({exc}). Mark them again."
            shown = overlay(image, result.labels)
            end = now()
            if visitor.last_output_at is not None and end - visitor.last_output_at < self.config.stream_gap_s:
                interval = max(end - visitor.last_output_at, 1e-3)
                visitor.fps = 1 / interval if visitor.fps == 0 else 0.8 * visitor.fps + 0.2 / interval
            visitor.step_ms = (
                1000 * (end - start) if visitor.frames == 0 else 0.8 * visitor.step_ms + 200 * (end - start)
            )
            visitor.frames += 1
            visitor.last_output_at = end
            ids = ", ".join(str(i) for i in result.object_ids)
            status = (
                f"{visitor.fps:.1f} frames/s | {visitor.step_ms:.0f} ms per frame on the server | "
                f"objects {ids} | audio: {audio_note} | {image.shape[1]}x{image.shape[0]}"
            )
            return shown, status

    def _audio_window(self, visitor: Visitor, use_audio: bool, t: float) -> tuple[np.ndarray | None, str]:
        """The visitor's last 0.96 s of microphone audio (None when off or absent) and a word on it."""
        model_uses_audio = visitor.session.model.uses_audio
        if not use_audio:
            return None, "off"
        if visitor.last_audio_at is None or t - visitor.last_audio_at > 2.0:
            return None, "no microphone audio (video only)"
        if not model_uses_audio:
            return None, "microphone on (this model does not use audio)"
        return visitor.audio.window(t), "microphone on"

    def add_audio(self, key: str, chunk: Any) -> None:
        """Store a microphone chunk ``(rate, samples)`` in the visitor's audio buffer, as mono 16 kHz."""
        if chunk is None:
            return
        visitor = self.registry.get(key)
        rate, samples = chunk
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mono = to_mono_16k(np.asarray(samples), rate)
        except InputError:
            return
        t = now()
        visitor.audio.append(mono, t)
        visitor.last_audio_at = t

    # ---- marking -----------------------------------------------------------------------------

    def freeze(self, key: str) -> tuple[np.ndarray | None, str]:
        """Freeze the visitor's newest frame for marking."""
        visitor = self.registry.get(key)
        with visitor.lock:
            if visitor.last_frame is None:
                return (
                    None,
                    "No camera frame yet: start the camera (click the Camera box, then Record) and freeze again.",
                )
            visitor.frozen = visitor.last_frame.copy()
            visitor.frozen_camera_size = visitor.camera_size
            visitor.frozen_marks = np.zeros(visitor.frozen.shape[:2], np.uint8)
            visitor.corner = visitor.box = visitor.candidate = None
            height, width = visitor.frozen.shape[:2]
            return visitor.frozen, (
                f"Frozen a {width}x{height} frame. Box: click two opposite corners of the object. Brush: paint it. "
                "Upload mask: a PNG of the frame's size. Then press the tab's Add button."
            )

    def click(self, key: str, x: int, y: int) -> tuple[np.ndarray | None, str]:
        """A click on the frozen frame: first corner, then the opposite corner (box + GrabCut)."""
        visitor = self.registry.get(key)
        with visitor.lock:
            frozen = visitor.frozen
            if frozen is None:
                return None, "Freeze a frame first."
            height, width = frozen.shape[:2]
            x, y = int(np.clip(x, 0, width - 1)), int(np.clip(y, 0, height - 1))
            if visitor.corner is None or visitor.box is not None:
                visitor.corner, visitor.box, visitor.candidate = (x, y), None, None
                return preview(frozen, corner=(x, y)), f"First corner at ({x}, {y}): click the opposite corner."
            x0, y0 = visitor.corner
            box = (min(x0, x), min(y0, y), max(x0, x), max(y0, y))
            if box[2] - box[0] < 4 or box[3] - box[1] < 4:
                visitor.corner = (x, y)
                return preview(frozen, corner=(x, y)), "That box is too small: click the opposite corner further away."
            visitor.box = box
            visitor.candidate = grabcut_box(frozen, box)
            share = visitor.candidate.mean() * 100
            return preview(frozen, candidate=visitor.candidate, box=box), (
                f"GrabCut marked {share:.1f}% of the frame inside the box. Press 'Add boxed object' to track it, "
                "or click two new corners."
            )

    def add_box(self, key: str) -> tuple[np.ndarray | None, str]:
        """Track the GrabCut region of the visitor's box as a new object."""
        visitor = self.registry.get(key)
        with visitor.lock:
            if visitor.frozen is None:
                return None, "Freeze a frame first."
            if visitor.candidate is None:
                return visitor.frozen, "No box yet: click two opposite corners of the object on the frozen frame."
            return self._commit(visitor, [visitor.candidate])

    def add_painted(self, key: str, value: Any) -> tuple[np.ndarray | None, str]:
        """Track the pixels painted in the Brush tab's editor as a new object."""
        visitor = self.registry.get(key)
        with visitor.lock:
            if visitor.frozen is None:
                return None, "Freeze a frame first."
            painted = painted_mask(value, visitor.frozen.shape[:2])
            if not painted.any():
                return visitor.frozen, "Nothing painted: choose the brush and paint over the object, then press Add."
            return self._commit(visitor, [painted])

    def add_mask_file(self, key: str, path: str | None) -> tuple[np.ndarray | None, str]:
        """Objects from an uploaded mask PNG (ids or 0/255) of the frozen frame's size (or the camera's)."""
        visitor = self.registry.get(key)
        with visitor.lock:
            if visitor.frozen is None:
                return None, "Freeze a frame first: the mask marks objects on the frozen frame."
            if not path:
                return visitor.frozen, "No mask uploaded: choose a PNG first."
            try:
                mask = read_mask(path)
            except MaskError as exc:
                return visitor.frozen, f"Cannot use that mask: {_strip_path(str(exc), path)}"
            frame_size = visitor.frozen.shape[:2]
            allowed = {frame_size, visitor.frozen_camera_size}
            if mask.shape not in allowed:
                sizes = " or ".join(f"{w}x{h}" for h, w in sorted(s for s in allowed if s is not None))
                return visitor.frozen, (
                    f"Wrong mask size: the mask is {mask.shape[1]}x{mask.shape[0]} but the frozen frame is {sizes} "
                    "(width x height). Upload a mask of the frame's size."
                )
            if mask.shape != frame_size:
                mask = cv2.resize(mask, (frame_size[1], frame_size[0]), interpolation=cv2.INTER_NEAREST)
            ids = [int(i) for i in np.unique(mask) if i != 0]
            if not ids:
                return visitor.frozen, "The mask has no object: every pixel is background (0)."
            return self._commit(visitor, [mask == i for i in ids])

    def _commit(self, visitor: Visitor, masks: list[np.ndarray]) -> tuple[np.ndarray, str]:
        """Add objects (one bool mask each) on the frozen frame to the visitor's session."""
        frozen = visitor.frozen
        assert frozen is not None
        if len(visitor.object_ids) + len(masks) > MAX_OBJECTS:
            return frozen, f"At most {MAX_OBJECTS} objects at once: press Reset to start over."
        labels = np.zeros(frozen.shape[:2], np.uint8)
        ids: list[int] = []
        for mask in masks:
            if mask.any():
                labels[mask] = visitor.next_id
                ids.append(visitor.next_id)
                visitor.next_id += 1
        ids = [i for i in ids if (labels == i).any()]
        if not ids:
            return frozen, "The marked region is empty: mark the object again."
        note = ""
        if visitor.session.input_size not in (None, frozen.shape[:2]):
            visitor.clear_objects()
            visitor.next_id = max(ids) + 1
            note = " (the camera size changed, so earlier objects were cleared)"
        try:
            visitor.session.step(frozen, mask=labels, objects=ids)
        except AvvosError as exc:
            return frozen, f"Could not add the object: {exc}"
        visitor.annotations.append(Annotation(frozen.copy(), labels, ids))
        visitor.corner = visitor.box = visitor.candidate = None
        previous = visitor.frozen_marks if visitor.frozen_marks is not None else np.zeros_like(labels)
        visitor.frozen_marks = marked = np.where(labels > 0, labels, previous)
        names = ", ".join(str(i) for i in ids)
        return preview(frozen, marked), (
            f"Added object {names}{note}. Tracking {len(visitor.object_ids)} object(s): watch the Overlay. "
            "Mark another one or press Reset."
        )

    def reset(self, key: str) -> tuple[None, str]:
        """Forget the visitor's objects and frozen frame; the stream goes on unsegmented."""
        visitor = self.registry.get(key)
        with visitor.lock:
            visitor.clear_objects()
            visitor.frozen = visitor.frozen_marks = None
        return None, "Reset: no objects. Freeze a frame and mark an object to start again."

    def choose_model(self, key: str, name: str) -> str:
        """Switch a visitor to another model, replaying their marks into the new session."""
        visitor = self.registry.get(key)
        try:
            _, sentence = self.models.get(name)
            model_name, session = self.new_session(name)
        except AvvosError as exc:
            return f"Cannot use model {name!r}: {exc}. Still using {visitor.model_name!r}."
        with visitor.lock:
            visitor.model_name, visitor.session = model_name, session
            for annotation in list(visitor.annotations):
                try:
                    session.step(annotation.frame, mask=annotation.mask, objects=annotation.ids)
                except AvvosError:
                    visitor.annotations.remove(annotation)
        return f"{name}: {sentence}"

    def model_sentence(self, name: str) -> str:
        """The line shown in the Weights box: the model name and which weights it runs (or why it cannot load)."""
        try:
            return f"{name}: {self.models.get(name)[1]}"
        except AvvosError as exc:
            return f"{name}: {exc}"

    # ---- offline -----------------------------------------------------------------------------

    def segment_video(
        self, video_path: str | None, mask_path: str | None, model_name: str, use_audio: bool, progress: Any = None
    ) -> tuple[str | None, str | None, str]:
        """Segment an uploaded video from its first-frame mask: (overlay mp4, zip of masks, message)."""
        if not video_path:
            return None, None, "Upload a video first."
        if not mask_path:
            return None, None, "Upload the first frame's mask (a PNG of object ids, or black and white) first."
        limit = self.config.max_video_seconds
        try:
            source = open_frames(video_path)
        except InputError as exc:
            return None, None, f"That file is not a video avvos can read: {_strip_path(str(exc), video_path)}"
        with source:
            declared = video_duration(video_path)
            if declared is None and source.num_frames is not None:
                declared = source.num_frames / source.fps
            if declared is not None and declared > limit + 1e-3:
                return None, None, f"The video is {declared:.1f} s long; this server takes videos up to {limit:g} s."
            try:
                mask = read_mask(mask_path)
            except MaskError as exc:
                return None, None, f"Cannot use that mask: {_strip_path(str(exc), mask_path)}"
            if mask.shape != source.size:
                return (
                    None,
                    None,
                    (
                        f"Wrong mask size: the mask is {mask.shape[1]}x{mask.shape[0]} but the video is "
                        f"{source.size[1]}x{source.size[0]} (width x height). Give a mask of the first frame's size."
                    ),
                )
            if not mask.any():
                return None, None, "The mask has no object: every pixel is background (0)."
            try:
                model, sentence = self.models.get(model_name)
            except AvvosError as exc:
                return None, None, str(exc)
            audio, audio_note = None, "audio: off"
            if use_audio and model.uses_audio:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        audio = FileAudio(video_path)
                    audio_note = "audio: the video's own track"
                except InputError:
                    audio_note = "audio: none (the video has no readable audio track)"
            elif use_audio:
                audio_note = "audio: not used by this model"
            return self._run_offline(source, mask, model, audio, f"{sentence}; {audio_note}", progress)

    def _run_offline(
        self, source: Any, mask: np.ndarray, model: STCN, audio: FileAudio | None, note: str, progress: Any
    ) -> tuple[str | None, str | None, str]:
        limit = self.config.max_video_seconds
        with self._session_lock:
            session = InferenceSession(model, self.config.offline_config(), self.device)
        job = self.new_job_dir()
        video_path, zip_path = job / "overlay.mp4", job / "masks.zip"
        start = time.perf_counter()
        frames = 0
        total = source.num_frames
        try:
            with VideoWriter(video_path, source.fps) as video, zipfile.ZipFile(zip_path, "w") as archive:

                def emit(frame: Frame, labels: np.ndarray) -> None:
                    video.write(overlay(frame.image, labels))
                    png = job / f"{frame.name}.png"
                    write_mask(png, labels)
                    archive.write(png, f"masks/{frame.name}.png")
                    png.unlink()

                held = HeldFrames(session.lookback, emit)  # the sound may still mend the last few masks
                for frame in source:
                    if frame.time > limit + 1e-6:
                        raise InputError(f"the video is longer than this server's limit of {limit:g} s")
                    window = audio.window(frame.time) if audio is not None else None
                    last = total is not None and frame.index == total - 1
                    result = session.step(frame.image, window, mask=mask if frame.index == 0 else None, end=last)
                    held.push(frame.index, frame, result.labels, result.revisions)
                    frames += 1
                    if progress is not None and total:
                        progress(frames / total, desc=f"frame {frames} of {total}")
                held.flush()
        except AvvosError as exc:
            shutil.rmtree(job, ignore_errors=True)
            return None, None, f"Stopped after {frames} frames: {_strip_path(str(exc), str(source.path))}"
        seconds = time.perf_counter() - start
        return (
            str(video_path),
            str(zip_path),
            (
                f"Segmented {frames} frames ({source.size[1]}x{source.size[0]}) in {seconds:.1f} s "
                f"({frames / max(seconds, 1e-9):.1f} frames/s), {int(mask.max())} object id(s) max. {note}"
            ),
        )


def _strip_path(message: str, path: str | Path | None) -> str:
    """A message without the server-side path of a file (visitors know uploads and models by name)."""
    if path is None:
        return message
    return message.replace(str(path), f"'{Path(path).name}'")


def build_app(config: WebConfig) -> "gr.Blocks":
    """The Gradio app (not launched). ``app.avvos_runtime`` holds its :class:`WebRuntime`."""
    try:
        import gradio as gr
    except ImportError as exc:
        raise AvvosError("the web demo needs Gradio: pip install gradio==6.31.0") from exc

    runtime = WebRuntime(config)
    models = runtime.models

    def key_of(request: gr.Request | None) -> str:
        if request is None or not request.session_hash:
            raise gr.Error("This action needs a browser session (open the page in a browser).")
        return request.session_hash

    def on_frame(frame: np.ndarray | None, use_audio: bool, request: gr.Request) -> tuple[Any, str]:
        try:
            return runtime.stream_frame(key_of(request), frame, bool(use_audio))
        except SessionEndedError as exc:
            return None, str(exc)

    def on_audio(chunk: Any, request: gr.Request) -> None:
        try:
            runtime.add_audio(key_of(request), chunk)
        except SessionEndedError:
            return

    def on_freeze(request: gr.Request) -> tuple[Any, Any, str]:
        image, message = runtime.freeze(key_of(request))
        editor = {"background": image, "layers": [], "composite": image} if image is not None else None
        return image, editor, message

    def on_click(evt: gr.SelectData, request: gr.Request) -> tuple[Any, str]:
        x, y = evt.index if isinstance(evt.index, (list, tuple)) and len(evt.index) == 2 else (0, 0)
        image, message = runtime.click(key_of(request), int(x), int(y))
        return (image if image is not None else gr.skip()), message

    def on_add_box(request: gr.Request) -> tuple[Any, str]:
        image, message = runtime.add_box(key_of(request))
        return (image if image is not None else gr.skip()), message

    def on_add_brush(value: Any, request: gr.Request) -> tuple[Any, str]:
        image, message = runtime.add_painted(key_of(request), value)
        return (image if image is not None else gr.skip()), message

    def on_add_mask(path: str | None, request: gr.Request) -> tuple[Any, str]:
        image, message = runtime.add_mask_file(key_of(request), path)
        return (image if image is not None else gr.skip()), message

    def on_reset(request: gr.Request) -> tuple[Any, str]:
        return runtime.reset(key_of(request))

    def on_model(name: str, request: gr.Request) -> str:
        return runtime.choose_model(key_of(request), name)

    def on_offline(
        video: str | None,
        mask: str | None,
        name: str,
        use_audio: bool,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio finds its progress tracker by this default
    ) -> tuple[Any, Any, str]:
        return runtime.segment_video(video, mask, name, bool(use_audio), progress)

    def on_unload(request: gr.Request) -> None:
        if request is not None and request.session_hash:
            runtime.registry.remove(request.session_hash)

    busy_limit = config.max_streams + 2
    with gr.Blocks(title="avvos live segmentation", delete_cache=(300, 1800)) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            model = gr.Dropdown(models.names, value=models.default, label="Model", elem_id="model", scale=1)
            model_info = gr.Textbox(
                runtime.model_sentence(models.default),
                label="Weights",
                elem_id="model_info",
                interactive=False,
                scale=3,
            )
        with gr.Tab("Live", elem_id="tab_live"):
            with gr.Row():
                cam = gr.Image(
                    sources=["webcam"],
                    streaming=True,
                    type="numpy",
                    label="Camera",
                    elem_id="cam",
                    webcam_options=gr.WebcamOptions(mirror=False),
                    height=360,
                )
                out = gr.Image(label="Overlay", elem_id="out", format="jpeg", interactive=False, height=360)
            status = gr.Textbox(label="Live status", elem_id="status", interactive=False)
            with gr.Row():
                mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone", elem_id="mic")
                with gr.Column():
                    use_audio = gr.Checkbox(True, label="Use audio", elem_id="use_audio")
                    freeze = gr.Button("Freeze frame", variant="primary", elem_id="freeze")
                    reset = gr.Button("Reset", elem_id="reset")
            mark_status = gr.Textbox(label="Marking", elem_id="mark_status", interactive=False)
            with gr.Tab("Box", elem_id="tab_box"):
                frozen = gr.Image(
                    label="Frozen frame: click two corners", elem_id="frozen", interactive=False, height=360
                )
                add_box = gr.Button("Add boxed object", elem_id="add_box")
            with gr.Tab("Brush", elem_id="tab_brush"):
                brush = gr.ImageEditor(
                    label="Paint the object",
                    elem_id="brush",
                    type="numpy",
                    sources=[],
                    layers=False,
                    transforms=[],
                    brush=gr.Brush(default_size=12, colors=["#ff3030"], color_mode="fixed"),
                )
                add_brush = gr.Button("Add painted object", elem_id="add_brush")
            with gr.Tab("Upload mask", elem_id="tab_mask"):
                mask_file = gr.File(label="Mask PNG of the frozen frame", file_types=[".png"], elem_id="mask_file")
                add_mask = gr.Button("Add objects from mask", elem_id="add_mask")
        with gr.Tab("Offline video", elem_id="tab_offline"):
            gr.Markdown(
                f"Upload a video (up to {config.max_video_seconds:g} s, {config.max_upload_mb:g} MB) and the mask "
                "of its first frame: get the overlay video and a zip with one mask PNG per frame."
            )
            with gr.Row():
                off_video = gr.Video(label="Video", sources=["upload"], elem_id="off_video")
                off_mask = gr.File(label="First-frame mask (PNG)", file_types=[".png"], elem_id="off_mask")
            off_run = gr.Button("Segment video", variant="primary", elem_id="off_run")
            off_status = gr.Textbox(label="Result", elem_id="off_status", interactive=False)
            with gr.Row():
                off_out = gr.Video(label="Overlay video", elem_id="off_out", interactive=False)
                off_zip = gr.File(label="Masks (zip)", elem_id="off_zip", interactive=False)

        cam.stream(
            on_frame,
            [cam, use_audio],
            [out, status],
            stream_every=config.stream_every,
            concurrency_limit=None,
            show_progress="hidden",
        )
        mic.stream(on_audio, [mic], None, stream_every=0.25, concurrency_limit=None, show_progress="hidden")
        freeze.click(on_freeze, None, [frozen, brush, mark_status], concurrency_limit=busy_limit)
        frozen.select(on_click, None, [frozen, mark_status], concurrency_limit=busy_limit)
        add_box.click(on_add_box, None, [frozen, mark_status], concurrency_limit=busy_limit)
        add_brush.click(on_add_brush, [brush], [frozen, mark_status], concurrency_limit=busy_limit)
        add_mask.click(on_add_mask, [mask_file], [frozen, mark_status], concurrency_limit=busy_limit)
        reset.click(on_reset, None, [frozen, mark_status], concurrency_limit=busy_limit)
        model.change(on_model, [model], [model_info], concurrency_limit=busy_limit)
        off_run.click(
            on_offline, [off_video, off_mask, model, use_audio], [off_out, off_zip, off_status], concurrency_limit=1
        )
        demo.unload(on_unload)
    demo.queue(default_concurrency_limit=busy_limit)
    demo.avvos_runtime = runtime
    return demo


def launch_options(config: WebConfig) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch``: address, sharing, upload limit, the page's script and style."""
    port = config.port or free_port(config.host)
    return {
        "server_name": config.host,
        "server_port": port,
        "share": config.share,
        "max_file_size": int(config.max_upload_mb * 1024 * 1024),
        "head": MEDIA_SCRIPT,
        "css": CSS,
        "footer_links": ["gradio", "settings"],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``avvos web`` options to ``parser``."""
    d = WebConfig()
    net = parser.add_argument_group("serving")
    net.add_argument("--host", default=d.host, help=f"address to bind (default {d.host}: this machine only)")
    net.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port}; 0 picks a free one)")
    net.add_argument("--share", action="store_true", help="also make a public gradio.live link (off by default)")
    net.add_argument(
        "--max-streams",
        type=int,
        default=d.max_streams,
        help=f"live streams processed at once (default {d.max_streams})",
    )
    net.add_argument(
        "--idle-timeout",
        type=float,
        default=d.idle_timeout_s,
        help=f"seconds without activity before a visitor's session is freed (default {d.idle_timeout_s:g})",
    )
    net.add_argument(
        "--max-upload-mb", type=float, default=d.max_upload_mb, help=f"upload size limit (default {d.max_upload_mb:g})"
    )
    net.add_argument(
        "--max-video-seconds",
        type=float,
        default=d.max_video_seconds,
        help=f"longest video the offline tab takes (default {d.max_video_seconds:g})",
    )
    model = parser.add_argument_group("model and processing")
    model.add_argument("--models", metavar="DIR", help="also offer every .safetensors/.pth file in DIR")
    model.add_argument("--weights", help="weights to start with (default: the bundled weights)")
    model.add_argument("--device", default=d.device, help="auto (CUDA when available), cpu, cuda or cuda:N")
    model.add_argument(
        "--size", type=int, default=d.size, help=f"shorter side frames are processed at (default {d.size})"
    )
    model.add_argument(
        "--stream-every",
        type=float,
        default=d.stream_every,
        help=f"seconds between webcam frames sent by the browser (default {d.stream_every:g})",
    )
    model.add_argument(
        "--mem-every", type=int, default=d.mem_every, help=f"memory frame every N (default {d.mem_every})"
    )
    model.add_argument(
        "--top-k", type=int, default=d.top_k, help=f"memory positions each query reads (default {d.top_k})"
    )
    model.add_argument(
        "--memory-frames",
        type=int,
        default=d.memory_frames,
        help=f"memory bound of a live session, in frames (default {d.memory_frames})",
    )


def config_from_args(args: argparse.Namespace) -> WebConfig:
    """A :class:`WebConfig` from parsed ``avvos web`` options."""
    return config_from_options(
        WebConfig,
        args,
        idle_timeout_s=args.idle_timeout,
        models_dir=Path(args.models) if args.models else None,
    )


def run(args: argparse.Namespace) -> None:
    """Build the app from ``avvos web`` options and serve it until interrupted."""
    config = config_from_args(args)
    demo = build_app(config)
    runtime: WebRuntime = demo.avvos_runtime
    print(runtime.model_sentence(runtime.models.default), file=sys.stderr)
    print(f"models offered: {', '.join(runtime.models.names)}; device: {runtime.device}", file=sys.stderr)
    if not _is_loopback(config.host):
        print(
            f"warning: binding to {config.host}: anyone who can reach this machine can use the demo",
            file=sys.stderr,
        )
    if config.share:
        print("warning: --share makes a public link: anyone with the link can stream to this server", file=sys.stderr)
    demo.launch(**launch_options(config))
