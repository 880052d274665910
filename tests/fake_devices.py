"""Fake live devices for tests: an MJPEG-over-HTTP camera and a PulseAudio virtual microphone.

Both are real components seen through the real client paths (``cv2.VideoCapture(url)``, PortAudio
via ALSA's ``pulse`` plugin); nothing is mocked.

* ``MjpegCamera``: an in-process HTTP server on 127.0.0.1 (port 0) that streams synthetic JPEG
  frames at a real frame rate, like an IP camera. Each frame shows a white box at a known place
  (``box_at``) and its own index as a 16-bit bar code along the top (``read_index``), so a test can
  tell which frame it got and when the server sent it (``sent_at``, on ``avvos.capture.now``).
* ``virtual_microphone``: a private PulseAudio daemon (own ``XDG_RUNTIME_DIR``) with a null sink
  ``vmic`` whose monitor is the default source; whatever is played into the sink (``play``) is what
  a recorder of the default input device gets. Only that daemon is stopped on exit.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from avvos.capture import now

# ---------------------------------------------------------------------------------------------
# Fake IP camera

BITS = 16  # width of the frame-index bar code
BAR = 8  # pixel size of one bar-code cell


def box_at(index: int, height: int = 240, width: int = 320) -> tuple[int, int, int, int]:
    """Ground-truth box (top, left, bottom, right; exclusive) of frame ``index``: it moves 4 px a frame."""
    size = height // 4
    top = height // 2 - size // 2
    left = (index * 4) % (width - size)
    return top, left, top + size, left + size


def synthetic_frame(index: int, height: int = 240, width: int = 320) -> np.ndarray:
    """Frame ``index`` as BGR uint8: dark background, a white box, the index as a bar code on top."""
    image = np.full((height, width, 3), 40, np.uint8)
    top, left, bottom, right = box_at(index, height, width)
    image[top:bottom, left:right] = 255
    for bit in range(BITS):
        if (index >> bit) & 1:
            image[0:BAR, bit * BAR : (bit + 1) * BAR] = 255
    return image


def read_index(image: np.ndarray) -> int:
    """Decode the frame index from the bar code of a (possibly JPEG-degraded) frame, RGB or BGR."""
    grey = image.mean(axis=2) if image.ndim == 3 else image
    index = 0
    for bit in range(BITS):
        cell = grey[2 : BAR - 2, bit * BAR + 2 : (bit + 1) * BAR - 2]
        if cell.mean() > 128:
            index |= 1 << bit
    return index


@dataclass
class MjpegCamera:
    """An MJPEG-over-HTTP camera on 127.0.0.1, paced at ``fps``; use as a context manager.

    ``size_after``: (frame index, (H, W)) to switch the frame size mid-stream. ``stop()`` cuts every
    connection and stops serving, as a camera that is unplugged or a stream that goes down;
    ``stop_after`` frames sent, the camera stops itself (a mid-session loss that does not depend on how
    fast the client started).
    """

    fps: float = 30.0
    size: tuple[int, int] = (240, 320)
    size_after: tuple[int, tuple[int, int]] | None = None
    quality: int = 90
    stop_after: int | None = None
    sent_at: dict[int, float] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self._server is not None, "the camera is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/stream.mjpg"

    def frame(self, index: int) -> np.ndarray:
        height, width = self.size
        if self.size_after is not None and index >= self.size_after[0]:
            height, width = self.size_after[1]
        return synthetic_frame(index, height, width)

    def start(self) -> MjpegCamera:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                camera._stream(self)

        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="mjpeg-server", daemon=True).start()
        return self

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        start, index = time.monotonic(), 0
        try:
            while not self._stopping.is_set():
                ok, jpeg = cv2.imencode(".jpg", self.frame(index), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                assert ok
                self.sent_at[index] = now()  # before writing: the client cannot have it earlier
                handler.wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                    + jpeg.tobytes()
                    + b"\r\n"
                )
                handler.wfile.flush()
                index += 1
                if self.stop_after is not None and index >= self.stop_after:
                    threading.Thread(target=self.stop, name="mjpeg-unplug", daemon=True).start()
                    break
                self._stopping.wait(max(0.0, start + index / self.fps - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            # Cut the connection at once (no graceful close), as a camera that goes away.
            with suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Stop streaming and serving: open connections are cut. Safe to call twice, from two threads."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> MjpegCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# Virtual microphone

AUDIO_TOOLS = ("pulseaudio", "pactl", "paplay")


def audio_stack_missing() -> str | None:
    """Why the virtual microphone cannot run here (None when it can)."""
    missing = [tool for tool in AUDIO_TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            f"{', '.join(missing)} not found: install the audio test stack with scripts/system_deps.sh "
            "(Debian: pulseaudio pulseaudio-utils libasound2-plugins libportaudio2)"
        )
    try:
        import sounddevice  # noqa: F401
    except ImportError:
        return "the Python package sounddevice is not installed (pip install sounddevice==0.5.6)"
    except OSError as exc:
        return f"PortAudio is not installed ({exc}): run scripts/system_deps.sh (Debian: libportaudio2)"
    return None


def write_wav(path: Path, signal: np.ndarray, rate: int) -> None:
    """Write a mono float signal in [-1, 1] as a 16-bit PCM WAV file."""
    pcm = (np.clip(signal, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


def refresh_portaudio() -> None:
    """Make an already imported sounddevice re-scan devices (PortAudio lists them once, at start-up)."""
    if "sounddevice" in sys.modules:
        sd = sys.modules["sounddevice"]
        sd._terminate()
        sd._initialize()


@dataclass
class VirtualMicrophone:
    """Handle on a running private PulseAudio daemon (see ``virtual_microphone``)."""

    runtime_dir: Path
    daemon: subprocess.Popen[bytes]
    env: dict[str, str]
    sink: str = "vmic"
    players: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def pactl(self, *args: str) -> str:
        return subprocess.run(
            ["pactl", *args], env=self.env, check=True, capture_output=True, text=True, timeout=10
        ).stdout

    def play(self, signal: np.ndarray, rate: int = 48000) -> subprocess.Popen[bytes]:
        """Play a mono float signal into the null sink (so into the virtual microphone), asynchronously."""
        path = self.runtime_dir / f"play{len(self.players)}.wav"
        write_wav(path, signal, rate)
        player = subprocess.Popen(
            ["paplay", f"--device={self.sink}", str(path)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.players.append(player)
        return player

    def kill(self) -> None:
        """Kill this daemon abruptly, as a microphone that is unplugged mid-session."""
        if self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait(timeout=10)


@contextmanager
def virtual_microphone(rate: int = 48000) -> Iterator[VirtualMicrophone]:
    """Start a private PulseAudio daemon whose default source is the monitor of a null sink ``vmic``.

    Sets ``XDG_RUNTIME_DIR`` (and ``PULSE_RUNTIME_PATH``) of this process to a fresh temporary
    folder so that PortAudio's ALSA ``pulse`` device talks to this daemon only; restores them,
    stops the players and that daemon (by its own process, nothing else) on exit.
    """
    reason = audio_stack_missing()
    if reason is not None:
        raise RuntimeError(reason)
    runtime_dir = Path(tempfile.mkdtemp(prefix="avvos-pulse-"))
    runtime_dir.chmod(0o700)
    saved = {key: os.environ.get(key) for key in ("XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH", "PULSE_SERVER")}
    env = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(runtime_dir),
        "PULSE_RUNTIME_PATH": str(runtime_dir / "pulse"),
        "PULSE_SERVER": f"unix:{runtime_dir / 'pulse' / 'native'}",
        "HOME": str(runtime_dir),  # the daemon keeps its state files here, not in the user's home
    }
    daemon = subprocess.Popen(
        [
            "pulseaudio",
            "--daemonize=no",
            "-n",
            "--exit-idle-time=-1",
            "--use-pid-file=no",
            "--disable-shm=yes",
            "--log-target=stderr",
            "--log-level=error",
            "--load=module-native-protocol-unix auth-anonymous=1",
            f"--load=module-null-sink sink_name=vmic rate={rate} channels=1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    mic = VirtualMicrophone(runtime_dir, daemon, env)
    try:
        _wait_until(lambda: _pactl_ok(env) or daemon.poll() is not None, timeout=10)
        if daemon.poll() is not None:
            raise RuntimeError(f"pulseaudio exited at start-up with status {daemon.returncode}")
        mic.pactl("set-default-sink", "vmic")
        mic.pactl("set-default-source", "vmic.monitor")
        for key in saved:
            os.environ[key] = env[key]
        refresh_portaudio()
        yield mic
    finally:
        for player in mic.players:
            if player.poll() is None:
                player.terminate()
                player.wait(timeout=10)
        if daemon.poll() is None:
            daemon.terminate()
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        refresh_portaudio()
        shutil.rmtree(runtime_dir, ignore_errors=True)


try:  # loaded here, not in the forked child (loading a library after fork can deadlock)
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    """In the daemon's child process: get SIGTERM when the test process dies (Linux), so no daemon outlives it."""
    if _LIBC is not None:
        _LIBC.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _pactl_ok(env: dict[str, str]) -> bool:
    result = subprocess.run(["pactl", "info"], env=env, capture_output=True, timeout=10)
    return result.returncode == 0


def _wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()
