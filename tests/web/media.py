"""Synthetic media for the browser tests: a Y4M clip for Chromium's fake webcam, a WAV for its fake
microphone, and a small mp4 (with an audio track) for the offline tab.

The clip shows a bright square moving to and fro over a dark background. Each frame also carries its
index as ``CODE_BITS`` black/white blocks along the top edge, so that the page can tell which camera
frame an overlay came from (for the round-trip latency) and the test knows where the square is.
"""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT, FPS, FRAMES = 320, 240, 15, 104
BACKGROUND, FOREGROUND = 40, 235
SQUARE = 80  # side, in pixels
SQUARE_TOP = 90
CODE_BITS, CODE_BLOCK, CODE_LEFT = 7, 16, 16  # blocks of CODE_BLOCK px from x = CODE_LEFT, y = 0
CODE_ON, CODE_OFF = 235, 16


def square_box(index: int, width: int = WIDTH, height: int = HEIGHT) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), exclusive ends, of the square in frame ``index`` of a ``width`` x ``height`` clip.

    The square goes right for half the clip and back for the other half, so the looped clip has no jump.
    """
    half = FRAMES // 2
    step = index % FRAMES
    position = step if step < half else FRAMES - 1 - step
    scale = width / WIDTH
    side = round(SQUARE * scale)
    x0 = round((16 + 4 * position) * scale)
    y0 = round(SQUARE_TOP * height / HEIGHT)
    return x0, y0, x0 + side, y0 + side


def luma_frame(index: int, width: int = WIDTH, height: int = HEIGHT, code: bool = True) -> np.ndarray:
    """The (H, W) uint8 luma of frame ``index``: the square, and the frame code when ``code``."""
    y = np.full((height, width), BACKGROUND, np.uint8)
    x0, y0, x1, y1 = square_box(index, width, height)
    y[y0:y1, x0:x1] = FOREGROUND
    if code:
        for bit in range(CODE_BITS):
            left = CODE_LEFT + bit * CODE_BLOCK
            y[:CODE_BLOCK, left : left + CODE_BLOCK] = CODE_ON if (index >> bit) & 1 else CODE_OFF
    return y


def decode_code(image: np.ndarray) -> int:
    """The frame code of an RGB image of the clip at any size (inverse of ``luma_frame``'s blocks)."""
    height, width = image.shape[:2]
    grey = image.astype(np.float32).mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
    code = 0
    for bit in range(CODE_BITS):
        cx = round((CODE_LEFT + (bit + 0.5) * CODE_BLOCK) * width / WIDTH)
        cy = round(CODE_BLOCK / 2 * height / HEIGHT)
        if grey[cy - 1 : cy + 2, cx - 1 : cx + 2].mean() > 90:
            code |= 1 << bit
    return code


def write_y4m(path: str | Path, frames: int = FRAMES, fps: int = FPS) -> Path:
    """The webcam clip as YUV4MPEG2 4:2:0 (grey: chroma 128), which Chromium loops as its fake camera."""
    path = Path(path)
    chroma = np.full((HEIGHT // 2) * (WIDTH // 2), 128, np.uint8).tobytes()
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(frames):
            handle.write(b"FRAME\n" + luma_frame(index).tobytes() + chroma + chroma)
    return path


def tone(seconds: float, rate: int = 48000, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    """A sine tone as float32 samples."""
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: str | Path, seconds: float = 10.0, rate: int = 48000) -> Path:
    """A 48 kHz mono 16-bit tone, which Chromium loops as its fake microphone."""
    path = Path(path)
    samples = (tone(seconds, rate) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path


def write_mp4(
    path: str | Path, frames: int = 12, width: int = 160, height: int = 120, fps: int = 10, audio: bool = True
) -> Path:
    """A small H.264 mp4 of the moving square (no frame code), with an AAC tone track when ``audio``."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=48000) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for index in range(frames):
            rgb = np.repeat(luma_frame(index, width, height, code=False)[:, :, None], 3, axis=2)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if sound is not None:
            samples = tone(frames / fps)
            for start in range(0, len(samples), 1024):
                chunk = samples[start : start + 1024]
                if len(chunk) < 1024:
                    chunk = np.pad(chunk, (0, 1024 - len(chunk)))
                aframe = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                aframe.sample_rate = 48000
                aframe.pts = start
                aframe.time_base = Fraction(1, 48000)
                for packet in sound.encode(aframe):
                    container.mux(packet)
            for packet in sound.encode(None):
                container.mux(packet)
    return path


def first_mask(width: int = 160, height: int = 120) -> np.ndarray:
    """The (H, W) uint8 mask of the square in frame 0 (object id 1)."""
    mask = np.zeros((height, width), np.uint8)
    x0, y0, x1, y1 = square_box(0, width, height)
    mask[y0:y1, x0:x1] = 1
    return mask
