"""The synthetic "who is sounding" audio-visual VOS task: clip generator, on-disk layout and training set.

The task (``shared/research/av_sync_task.md``): ``K`` in {2, 3} objects of one shape and one base colour move
over a smooth coloured background; each object's visible state (brightness, size or a "mouth" opening) follows
its own random loudness envelope with no lag, and the audio is the *target's* carrier times its envelope plus
noise. Only the audio tells which object is the target. Splits: ``crossing`` (the target and a distractor
overlap or pass within one radius after frame 5), ``distinct`` (each object its own colour) and ``silent``
(the audio is noise only).

Conventions of this generator (all within what the task page allows):

* One clip is a pure function of its seed and the config; a seed draws the same video in every split
  (``distinct`` changes only the objects' colours, ``silent`` only the audio), so ``crossing_000042`` and
  ``silent_000042`` are a matched pair for the gain from audio.
* Training must use seeds disjoint from evaluation seeds: training from :data:`TRAIN_SEED_START`, evaluation
  from :data:`EVAL_SEED_START`.
* An object's *radius* is its circumradius at the neutral state (the size mapping scales it by 0.8 to 1.2);
  *size* is the diameter, a fraction of the frame's shorter side. Objects stay wholly inside the frame.
* A *crossing frame* is one in which the target's centre is within three radii of a distractor's centre (the
  two overlap or come within one radius of each other). Frame 0 never is one: the first mask shows the
  whole target.
* Frame ``t`` shows every envelope at time ``t / fps``; audio sample ``n`` is at time ``n / sample_rate``; the
  audio has ``round(T * sample_rate / fps)`` samples (exactly ``T / fps`` seconds when that is whole).
* The "mouth" of the opening mapping is drawn on the object and is part of its mask; ground truth is the set
  of pixels where the object covers at least half of the pixel and no nearer object does.
"""

from __future__ import annotations

import colorsys
import json
import math
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from avvos.masks import read_mask, write_mask

SPLITS = ("crossing", "distinct", "silent")
SHAPES = ("disc", "ellipse", "rounded_rectangle", "polygon", "star")
MAPPINGS = ("brightness", "size", "opening")
CARRIERS = ("tone", "harmonic", "noise_band", "vowel")
TEXTURES = ("flat", "radial", "stripes", "blobs")
BACKGROUNDS = ("noise", "gradient", "mixed")
TRAJECTORIES = ("spline", "walk")

#: First seed of training clips; training seeds must stay below :data:`EVAL_SEED_START`.
TRAIN_SEED_START = 0
#: First seed of evaluation clips (disjoint from any training range that stays below it).
EVAL_SEED_START = 10_000_000
#: Target and distractor "cross" when their centres are within this many radii (overlap or gap <= 1 radius).
NEAR_RADII = 3.0

_STREAMS = ("layout", "shape", "motion", "background", "colour", "texture", "envelope", "carrier", "noise")
_VOWELS = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}


@dataclass(frozen=True)
class AVSyncConfig:
    """What a clip may be; each clip draws its own values inside these ranges and families.

    ``frames_range`` (inclusive), ``size_choices`` ((height, width) pairs) and ``fps_choices``, when set,
    replace ``frames``, ``height``/``width`` and ``fps`` by a per-clip draw, for training diversity.
    ``silent_audio`` is "noise" (the clip's own background noise, without the target) or "mute".
    """

    frames: int = 40
    fps: float = 25.0
    height: int = 240
    width: int = 432
    objects: tuple[int, ...] = (2, 3)
    size_range: tuple[float, float] = (0.08, 0.25)
    snr_db_range: tuple[float, float] = (10.0, 30.0)
    split: str = "crossing"
    sample_rate: int = 16000
    burst_rate_range: tuple[float, float] = (2.0, 6.0)
    tone_range: tuple[float, float] = (150.0, 1000.0)
    shapes: tuple[str, ...] = SHAPES
    mappings: tuple[str, ...] = MAPPINGS
    carriers: tuple[str, ...] = CARRIERS
    textures: tuple[str, ...] = TEXTURES
    backgrounds: tuple[str, ...] = BACKGROUNDS
    trajectories: tuple[str, ...] = TRAJECTORIES
    pan_probability: float = 0.5
    crossing_after: int = 5
    silent_audio: str = "noise"
    frames_range: tuple[int, int] | None = None
    size_choices: tuple[tuple[int, int], ...] | None = None
    fps_choices: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _check(self.split in SPLITS, f"split must be one of {SPLITS}, got {self.split!r}")
        _check(self.silent_audio in ("noise", "mute"), "silent_audio must be 'noise' or 'mute'")
        _check(bool(self.objects) and all(k >= 2 for k in self.objects), "objects must be counts >= 2")
        _check(0 < self.size_range[0] <= self.size_range[1] <= 0.3, "size_range must lie in (0, 0.3]")
        _check(self.snr_db_range[0] <= self.snr_db_range[1], "snr_db_range must be (low, high)")
        _check(0 < self.burst_rate_range[0] <= self.burst_rate_range[1], "burst_rate_range must be positive")
        _check(0 < self.tone_range[0] <= self.tone_range[1] < self.sample_rate / 2, "tone_range out of range")
        for name, chosen, known in (
            ("shapes", self.shapes, SHAPES),
            ("mappings", self.mappings, MAPPINGS),
            ("carriers", self.carriers, CARRIERS),
            ("textures", self.textures, TEXTURES),
            ("backgrounds", self.backgrounds, BACKGROUNDS),
            ("trajectories", self.trajectories, TRAJECTORIES),
        ):
            _check(bool(chosen) and set(chosen) <= set(known), f"{name} must be a non-empty subset of {known}")
        minimum = self.crossing_after + 2
        lengths = [self.frames] if self.frames_range is None else list(self.frames_range)
        _check(
            min(lengths) >= minimum,
            f"clips need at least {minimum} frames (a crossing after frame "
            f"{self.crossing_after} and one frame after it)",
        )
        sizes = [(self.height, self.width)] if self.size_choices is None else list(self.size_choices)
        _check(bool(sizes) and min(min(s) for s in sizes) >= 16, "frames must be at least 16 x 16 pixels")
        rates = [self.fps] if self.fps_choices is None else list(self.fps_choices)
        _check(bool(rates) and min(rates) > 0, "fps must be positive")


@dataclass
class AVSyncClip:
    """One generated clip; ``meta`` holds every drawn choice (JSON-serialisable)."""

    frames: np.ndarray
    masks: np.ndarray
    audio: np.ndarray
    fps: float
    target: int
    distractor_masks: np.ndarray
    crossing_frames: list[int]
    meta: dict[str, Any]
    envelopes: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    sample_rate: int = 16000


def _check(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``."""
    if not condition:
        raise ValueError(message)


def _rng(seed: int, stream: str) -> np.random.Generator:
    """The generator of one independent random stream of a clip."""
    return np.random.default_rng([seed, _STREAMS.index(stream)])


def clip_name(split: str, seed: int) -> str:
    """The on-disk name of a clip, e.g. ``crossing_000123``."""
    return f"{split}_{seed:06d}"


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into plain Python numbers and lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return round(float(value), 6)
    if isinstance(value, np.str_):
        return str(value)
    return value


# ---------------------------------------------------------------------------------------------------- envelopes


def _bursts(rng: np.random.Generator, duration: float, rate_range: tuple[float, float]) -> tuple[np.ndarray, float]:
    """Syllable-like bursts (onset, attack, hold, decay, peak) at a random rate; the first may start before 0."""
    rate = float(rng.uniform(*rate_range))
    period = 1.0 / rate
    onset = -float(rng.uniform(0.0, period))
    rows = []
    while onset < duration:
        length = period * rng.uniform(0.35, 0.85)
        attack = length * rng.uniform(0.15, 0.4)
        hold = length * rng.uniform(0.0, 0.3)
        rows.append((onset, attack, hold, length - attack - hold, rng.uniform(0.5, 1.0)))
        onset += period * rng.uniform(0.5, 1.5)
    return np.asarray(rows, dtype=np.float64), rate


def _envelope(bursts: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Loudness in [0, 1] at ``times``: raised-cosine attack, hold, raised-cosine decay; bursts combine softly."""
    onset, attack, hold, decay, peak = (bursts[:, i : i + 1] for i in range(5))
    x = times[None, :] - onset
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip(x / attack, 0.0, 1.0))
    fall = 0.5 + 0.5 * np.cos(np.pi * np.clip((x - attack - hold) / decay, 0.0, 1.0))
    return 1.0 - np.prod(1.0 - peak * rise * fall, axis=0)


# ------------------------------------------------------------------------------------------------------- audio


def _unit_rms(signal: np.ndarray) -> np.ndarray:
    """``signal`` scaled to unit root-mean-square."""
    return signal / max(float(np.sqrt(np.mean(signal**2))), 1e-12)


def _harmonic_sum(phase: np.ndarray, amplitudes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum over k of ``amplitudes[k] * sin((k + 1) * phase + offsets[k])``."""
    orders = np.arange(1, len(amplitudes) + 1, dtype=np.float64)[:, None]
    return amplitudes @ np.sin(orders * phase[None, :] + offsets[:, None])


def _carrier(
    rng: np.random.Generator, kind: str, n: int, rate: int, tone_range: tuple[float, float]
) -> tuple[np.ndarray, dict[str, Any]]:
    """A unit-RMS carrier of ``n`` samples of one family, and its parameters."""
    t = np.arange(n) / rate
    nyquist = 0.45 * rate
    if kind == "tone":
        frequency = rng.uniform(*tone_range)
        signal = np.sin(2 * np.pi * frequency * t + rng.uniform(0, 2 * np.pi))
        return _unit_rms(signal), {"kind": kind, "frequency": frequency}
    if kind == "harmonic":
        f0 = rng.uniform(100.0, 500.0)
        count = int(min(rng.integers(3, 16), nyquist // f0))
        tilt = rng.uniform(0.3, 1.5)
        amplitudes = np.arange(1, count + 1) ** -tilt * rng.uniform(0.5, 1.0, count)
        signal = _harmonic_sum(2 * np.pi * f0 * t, amplitudes, rng.uniform(0, 2 * np.pi, count))
        return _unit_rms(signal), {"kind": kind, "f0": f0, "harmonics": count, "tilt": tilt}
    if kind == "noise_band":
        centre = math.exp(rng.uniform(math.log(200.0), math.log(3000.0)))
        octaves = rng.uniform(0.3, 2.0)
        low, high = centre * 2 ** (-octaves / 2), min(centre * 2 ** (octaves / 2), nyquist)
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / rate)
        skirt = 0.1 * (high - low) + 1.0
        gain = np.clip((freqs - low + skirt) / skirt, 0, 1) * np.clip((high + skirt - freqs) / skirt, 0, 1)
        signal = np.fft.irfft(spectrum * gain, n)
        return _unit_rms(signal), {"kind": kind, "low": low, "high": high}
    vowel = str(rng.choice(list(_VOWELS)))
    formants = np.asarray(_VOWELS[vowel]) * rng.uniform(0.9, 1.1, 3)
    bandwidths = np.asarray([rng.uniform(60, 120), rng.uniform(70, 150), rng.uniform(100, 200)])
    f0 = rng.uniform(85.0, 260.0)
    vibrato = rng.uniform(0.0, 0.03) * np.sin(2 * np.pi * rng.uniform(4.0, 7.0) * t + rng.uniform(0, 2 * np.pi))
    glide = rng.uniform(-0.1, 0.1) * t / max(t[-1], 1e-9)
    f0_track = f0 * (1.0 + vibrato + glide)
    phase = 2 * np.pi * np.cumsum(f0_track) / rate
    count = int(nyquist // f0_track.max())
    harmonics = np.arange(1, count + 1) * f0
    resonance = sum(
        gain / (1.0 + ((harmonics - freq) / (bw / 2)) ** 2)
        for freq, bw, gain in zip(formants, bandwidths, (1.0, 0.6, 0.3), strict=True)
    )
    amplitudes = resonance / np.arange(1, count + 1)
    signal = _harmonic_sum(phase, amplitudes, np.zeros(count))
    return _unit_rms(signal), {"kind": "vowel", "vowel": vowel, "f0": f0, "formants": formants}


def _background_noise(rng: np.random.Generator, n: int, rate: int) -> tuple[np.ndarray, float]:
    """Unit-RMS stationary noise with power falling as ``1 / f**beta``, beta from 0 (white) to 2 (brown)."""
    beta = float(rng.uniform(0.0, 2.0))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / rate), 20.0)
    spectrum = np.fft.rfft(rng.standard_normal(n)) * freqs ** (-beta / 2)
    return _unit_rms(np.fft.irfft(spectrum, n)), beta


# ------------------------------------------------------------------------------------------------------ shapes


def _unit_shape(rng: np.random.Generator, family: str) -> tuple[np.ndarray, dict[str, Any]]:
    """A polygon (P, 2) of circumradius 1 around the origin, rotated by a random angle, and its parameters."""
    angle = float(rng.uniform(0, 2 * np.pi))
    params: dict[str, Any] = {"family": family, "angle": angle}
    circle = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    if family == "disc":
        points = np.stack([np.cos(circle), np.sin(circle)], 1)
    elif family == "ellipse":
        params["aspect"] = aspect = rng.uniform(0.45, 0.85)
        points = np.stack([np.cos(circle), aspect * np.sin(circle)], 1)
    elif family == "rounded_rectangle":
        params["aspect"] = aspect = rng.uniform(0.45, 1.0)
        params["corner"] = corner = rng.uniform(0.1, 0.9) * aspect
        arc = np.linspace(0, np.pi / 2, 12)
        corners = []
        for quadrant, (sx, sy) in enumerate(((1, 1), (-1, 1), (-1, -1), (1, -1))):
            theta = arc + quadrant * np.pi / 2
            centre = np.array([sx * (1 - corner), sy * (aspect - corner)])
            corners.append(centre + corner * np.stack([np.cos(theta), np.sin(theta)], 1))
        points = np.concatenate(corners)
    elif family == "polygon":
        params["sides"] = sides = int(rng.integers(3, 9))
        theta = np.arange(sides) * 2 * np.pi / sides
        points = np.stack([np.cos(theta), np.sin(theta)], 1)
    else:
        params["points"] = tips = int(rng.integers(4, 9))
        params["inner"] = inner = rng.uniform(0.35, 0.65)
        theta = np.arange(2 * tips) * np.pi / tips
        radii = np.where(np.arange(2 * tips) % 2 == 0, 1.0, inner)
        points = np.stack([radii * np.cos(theta), radii * np.sin(theta)], 1)
    points /= np.linalg.norm(points, axis=1).max()
    return points @ _rotation(angle).T, params


def _rotation(angle: float) -> np.ndarray:
    """2x2 rotation matrix."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _texture_params(rng: np.random.Generator, kind: str) -> dict[str, Any]:
    """Parameters of the objects' shared texture (a brightness factor around 1 in object coordinates)."""
    if kind == "flat":
        return {"kind": kind}
    if kind == "radial":
        return {"kind": kind, "amplitude": rng.uniform(0.2, 0.5)}
    if kind == "stripes":
        return {
            "kind": kind,
            "amplitude": rng.uniform(0.06, 0.15),
            "frequency": rng.uniform(1.0, 3.0),
            "angle": rng.uniform(0, np.pi),
            "phase": rng.uniform(0, 2 * np.pi),
        }
    wave_angles = rng.uniform(0, 2 * np.pi, 3)
    norms = rng.uniform(1.5, 4.0, 3) * 2 * np.pi
    return {
        "kind": kind,
        "amplitude": rng.uniform(0.06, 0.15),
        "waves": np.stack([norms * np.cos(wave_angles), norms * np.sin(wave_angles)], 1),
        "phases": rng.uniform(0, 2 * np.pi, 3),
    }


def _texture(params: dict[str, Any], u: np.ndarray, v: np.ndarray) -> np.ndarray | float:
    """The texture's brightness factor at object coordinates (u, v) (circumradius 1)."""
    kind = params["kind"]
    if kind == "flat":
        return 1.0
    if kind == "radial":
        return 1.0 + params["amplitude"] * (0.5 - (u * u + v * v))
    if kind == "stripes":
        along = u * math.cos(params["angle"]) + v * math.sin(params["angle"])
        return 1.0 + params["amplitude"] * np.sin(2 * np.pi * params["frequency"] * along + params["phase"])
    total = sum(np.sin(k[0] * u + k[1] * v + p) for k, p in zip(params["waves"], params["phases"], strict=True))
    return 1.0 + params["amplitude"] * total / 3.0


# -------------------------------------------------------------------------------------------------- appearance


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """An RGB colour (0..255 floats) from HSV in [0, 1]."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


def _background(rng: np.random.Generator, kind: str, height: int, width: int) -> np.ndarray:
    """A smooth random coloured texture (float32 RGB 0..255) of the given size."""
    hue = rng.uniform(0, 1)
    spread = rng.uniform(0.02, 0.5)

    def colour() -> np.ndarray:
        return _hsv(hue + rng.normal(0, spread), rng.uniform(0.1, 0.8), rng.uniform(0.2, 0.95))

    def noise() -> np.ndarray:
        rows = int(rng.integers(2, 8))
        cols = max(2, round(rows * width / height))
        grid = np.stack([colour() for _ in range(rows * cols)]).reshape(rows, cols, 3).astype(np.float32)
        coarse = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        fine_grid = rng.normal(0, 1, (rows * 3, cols * 3, 3)).astype(np.float32)
        fine = cv2.resize(fine_grid, (width, height), interpolation=cv2.INTER_CUBIC)
        return coarse + rng.uniform(0, 15) * fine

    def gradient() -> np.ndarray:
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        along = xs * math.cos(angle) + ys * math.sin(angle)
        along = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
        stops = np.stack([colour() for _ in range(int(rng.integers(2, 4)))]).astype(np.float32)
        position = along * (len(stops) - 1)
        index = np.minimum(position.astype(np.int64), len(stops) - 2)
        frac = (position - index)[..., None]
        return stops[index] * (1 - frac) + stops[index + 1] * frac

    if kind == "noise":
        image = noise()
    elif kind == "gradient":
        image = gradient()
    else:
        texture = noise()
        image = gradient() + rng.uniform(0.3, 0.7) * (texture - texture.mean(axis=(0, 1)))
    return np.clip(image, 0, 255).astype(np.float32)


def _object_colours(rng: np.random.Generator, count: int, distinct: bool, background_mean: np.ndarray) -> np.ndarray:
    """Base colours (count, 3): one shared colour, or ``count`` distinct ones, all set off from the background."""

    def draw() -> np.ndarray:
        return _hsv(rng.uniform(0, 1), rng.uniform(0.3, 1.0), rng.uniform(0.25, 0.7))

    def pick(score: Callable[[np.ndarray], float], good: float) -> np.ndarray:
        best, best_score = draw(), -1.0
        for _ in range(100):
            candidate = draw()
            value = score(candidate)
            if value > best_score:
                best, best_score = candidate, value
            if best_score >= good:
                break
        return best

    def contrast(c: np.ndarray) -> float:
        return float(np.linalg.norm(c - background_mean))

    if not distinct:
        return np.repeat(pick(contrast, 70.0)[None], count, 0)
    chosen: list[np.ndarray] = []

    def separation(c: np.ndarray) -> float:
        return min([contrast(c) * 70.0 / 60.0] + [float(np.linalg.norm(c - o)) for o in chosen])

    for _ in range(count):
        chosen.append(pick(separation, 70.0))
    return np.stack(chosen)


# ------------------------------------------------------------------------------------------------------ motion


def _spline_paths(rng: np.random.Generator, k: int, t: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Uniform cubic B-splines through random-walk control points inside the box (T, K, 2)."""
    step = rng.uniform(6.0, 24.0)
    reach = rng.uniform(0.15, 0.8) * (high - low)
    out = np.empty((t, k, 2))
    for obj in range(k):
        step_k = step * rng.uniform(0.8, 1.25)
        count = int(np.ceil((t - 1) / step_k)) + 5
        control = np.empty((count, 2))
        control[0] = rng.uniform(low, high)
        for i in range(1, count):
            control[i] = np.clip(control[i - 1] + rng.normal(0, 1, 2) * reach, low, high)
        u = np.arange(t) / step_k + rng.uniform(0, 1)
        index = np.floor(u).astype(np.int64)
        s = (u - index)[:, None]
        basis = ((1 - s) ** 3, 3 * s**3 - 6 * s**2 + 4, -3 * s**3 + 3 * s**2 + 3 * s + 1, s**3)
        out[:, obj] = sum(b * control[index + j] for j, b in enumerate(basis)) / 6.0
    return out


def _walk_paths(rng: np.random.Generator, k: int, t: int, low: np.ndarray, high: np.ndarray, short: int) -> np.ndarray:
    """Damped random walks (Ornstein-Uhlenbeck velocities) kept inside the box by soft walls (T, K, 2)."""
    speed = rng.uniform(0.01, 0.05) * short * rng.uniform(0.7, 1.3, (k, 1))
    keep = math.exp(-1.0 / rng.uniform(4.0, 20.0))
    margin = 0.15 * (high - low)
    position = rng.uniform(low, high, (k, 2))
    heading = rng.uniform(0, 2 * np.pi, k)
    velocity = speed * np.stack([np.cos(heading), np.sin(heading)], 1)
    out = np.empty((t, k, 2))
    for frame in range(t):
        out[frame] = position
        velocity = keep * velocity + math.sqrt(1 - keep**2) * speed * rng.normal(0, 1, (k, 2))
        push = np.clip(low + margin - position, 0, None) - np.clip(position - (high - margin), 0, None)
        velocity = velocity + 0.3 * speed * push / margin
        position = np.clip(position + velocity, low, high)
    return out


def _distances(centres: np.ndarray, target: int) -> np.ndarray:
    """Per frame, the distance from the target's centre to the nearest distractor's centre."""
    others = [j for j in range(centres.shape[1]) if j != target]
    return np.linalg.norm(centres[:, others] - centres[:, target : target + 1], axis=-1).min(axis=1)


def _force_crossings(
    rng: np.random.Generator,
    centres: np.ndarray,
    target: int,
    radius: float,
    after: int,
    low: np.ndarray,
    high: np.ndarray,
    max_speed: float,
) -> list[dict[str, Any]]:
    """Bend the paths (in place) so that the target meets a distractor within ``NEAR_RADII`` radii after ``after``.

    Each meeting adds a smooth raised-cosine bump towards two nearby points at a random frame; at that frame
    the objects keep their own velocities, so they pass (or cross) rather than stop.
    """
    frames = centres.shape[0]
    first, last = after + 1, max(after + 1, frames - 2)
    count = 2 if last - first >= 10 and rng.random() < 0.3 else 1
    planned = []
    time = np.arange(frames)
    for _ in range(count):
        tc = int(rng.integers(first, last + 1))
        others = [j for j in range(centres.shape[1]) if j != target]
        gaps = [float(np.linalg.norm(centres[tc, j] - centres[tc, target])) for j in others]
        other = others[int(np.argmin(gaps))] if rng.random() < 0.7 else int(rng.choice(others))
        gap = rng.uniform(0.0, NEAR_RADII) * radius
        heading = rng.uniform(0, 2 * np.pi)
        offset = 0.5 * gap * np.array([math.cos(heading), math.sin(heading)])
        middle = 0.5 * (centres[tc, target] + centres[tc, other]) + rng.normal(0, radius, 2)
        meet_target = np.clip(middle - offset, low, high)
        meet_other = np.clip(middle + offset, low, high)
        shift = max(np.linalg.norm(meet_target - centres[tc, target]), np.linalg.norm(meet_other - centres[tc, other]))
        half = max(rng.uniform(4.0, 14.0), math.pi * shift / (2 * max_speed))
        weight = np.where(np.abs(time - tc) < half, 0.5 + 0.5 * np.cos(np.pi * (time - tc) / half), 0.0)[:, None]
        centres[:, target] = (1 - weight) * centres[:, target] + weight * meet_target
        centres[:, other] = (1 - weight) * centres[:, other] + weight * meet_other
        planned.append({"frame": tc, "distractor": other, "gap_radii": gap / radius})
    return planned


def _motion(
    rng: np.random.Generator,
    kind: str,
    k: int,
    t: int,
    target: int,
    radius: float,
    height: int,
    width: int,
    after: int,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Object centres (T, K, 2) as (x, y) pixels, separated at frame 0 and with a crossing after ``after``."""
    short = min(height, width)
    margin = 1.2 * radius + 1.0
    low = np.array([margin, margin])
    high = np.array([width - 1 - margin, height - 1 - margin])
    for _ in range(500):
        spline = kind == "spline"
        centres = _spline_paths(rng, k, t, low, high) if spline else _walk_paths(rng, k, t, low, high, short)
        planned = _force_crossings(rng, centres, target, radius, after, low, high, 0.06 * short)
        start = centres[0]
        pairwise = np.linalg.norm(start[:, None] - start[None], axis=-1) + np.eye(k) * 1e9
        near = _distances(centres, target) <= NEAR_RADII * radius
        if pairwise.min() > NEAR_RADII * radius and near[after + 1 :].any():
            return centres, planned
    raise RuntimeError(f"could not place {k} objects of radius {radius:.1f} in a {width}x{height} frame")


# --------------------------------------------------------------------------------------------------- rendering


def _draw_object(
    canvas: np.ndarray,
    labels: np.ndarray,
    label: int,
    centre: np.ndarray,
    radius: float,
    shape: np.ndarray,
    colour: np.ndarray,
    texture: dict[str, Any],
    angle: float,
    mouth: tuple[float, float, np.ndarray] | None,
) -> None:
    """Composite one object (anti-aliased) onto ``canvas`` and mark its covered pixels in ``labels``.

    ``mouth`` is (half-width, half-height) in radii and the mouth colour, or None.
    """
    height, width = labels.shape
    points = centre + radius * shape
    x0, y0 = np.maximum(np.floor(points.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(points.max(0)).astype(int) + 2, (width, height))
    if x1 <= x0 or y1 <= y0:
        return
    origin = np.array([x0, y0])
    alpha = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(alpha, [np.round((points - origin) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xs - centre[0], ys - centre[1]
    c, s = math.cos(angle), math.sin(angle)
    u, v = (dx * c + dy * s) / radius, (-dx * s + dy * c) / radius
    factor = np.broadcast_to(np.asarray(_texture(texture, u, v), np.float32), alpha.shape)
    pixels = factor[..., None] * colour.astype(np.float32)
    if mouth is not None:
        half_w, half_h, mouth_colour = mouth
        if half_h * radius >= 0.25:
            circle = np.linspace(0, 2 * np.pi, 48, endpoint=False)
            slit = np.stack([half_w * np.cos(circle), half_h * np.sin(circle)], 1) @ _rotation(angle).T
            opening = np.zeros_like(alpha)
            slit_points = np.round((centre + radius * slit - origin) * 16).astype(np.int32)
            cv2.fillPoly(opening, [slit_points], 255, cv2.LINE_AA, shift=4)
            m = (opening.astype(np.float32) / 255.0)[..., None]
            pixels = pixels * (1 - m) + mouth_colour.astype(np.float32) * m
    a = (alpha.astype(np.float32) / 255.0)[..., None]
    region = canvas[y0:y1, x0:x1]
    region *= 1 - a
    region += a * pixels
    labels[y0:y1, x0:x1][alpha >= 128] = label


# ------------------------------------------------------------------------------------------------------ clips


def generate_clip(seed: int, config: AVSyncConfig | None = None) -> AVSyncClip:
    """Generate one clip of ``config.split``, a deterministic function of ``seed`` (>= 0) and ``config``."""
    config = config or AVSyncConfig()
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    layout = _rng(seed, "layout")
    frames = config.frames if config.frames_range is None else int(layout.integers(*config.frames_range, endpoint=True))
    if config.size_choices is None:
        height, width = config.height, config.width
    else:
        height, width = config.size_choices[int(layout.integers(len(config.size_choices)))]
    fps = config.fps if config.fps_choices is None else float(layout.choice(config.fps_choices))
    k = int(layout.choice(config.objects))
    target = int(layout.integers(k))
    depth = layout.permutation(k)
    size_fraction = float(layout.uniform(*config.size_range))
    radius = size_fraction * min(height, width) / 2
    mapping = str(layout.choice(config.mappings))
    family = str(layout.choice(config.shapes))
    carrier_kind = str(layout.choice(config.carriers))
    texture_kind = str(layout.choice(config.textures))
    background_kind = str(layout.choice(config.backgrounds))
    trajectory = str(layout.choice(config.trajectories))
    snr_db = float(layout.uniform(*config.snr_db_range))
    rate = config.sample_rate
    samples = round(frames * rate / fps)

    envelope_rng = _rng(seed, "envelope")
    frame_times = np.arange(frames) / fps
    bursts, burst_rates = [], []
    for _ in range(k):
        rows, burst_rate = _bursts(envelope_rng, frames / fps, config.burst_rate_range)
        bursts.append(rows)
        burst_rates.append(burst_rate)
    envelopes = np.stack([_envelope(rows, frame_times) for rows in bursts]).astype(np.float32)

    shape_rng = _rng(seed, "shape")
    shape, shape_params = _unit_shape(shape_rng, family)
    mouth_size = (float(shape_rng.uniform(0.3, 0.55)), float(shape_rng.uniform(0.2, 0.45)))
    mouth_darkness = float(shape_rng.uniform(0.05, 0.25))

    centres, planned = _motion(
        _rng(seed, "motion"), trajectory, k, frames, target, radius, height, width, config.crossing_after
    )

    background_rng = _rng(seed, "background")
    short = min(height, width)
    pan = background_rng.random() < config.pan_probability
    pan_velocity = np.zeros(2)
    if pan:
        heading = background_rng.uniform(0, 2 * np.pi)
        pan_velocity = background_rng.uniform(0.1, 1.0) * short / 240 * np.array([math.cos(heading), math.sin(heading)])
    pad = int(math.ceil(np.abs(pan_velocity).max() * frames / 2)) + 2 if pan else 0
    backdrop = _background(background_rng, background_kind, height + 2 * pad, width + 2 * pad)
    colours = _object_colours(_rng(seed, "colour"), k, config.split == "distinct", backdrop.reshape(-1, 3).mean(axis=0))
    texture = _texture_params(_rng(seed, "texture"), texture_kind)

    video = np.empty((frames, height, width, 3), np.uint8)
    labels = np.zeros((frames, height, width), np.uint8)
    middle = np.array([(width + 2 * pad - 1) / 2, (height + 2 * pad - 1) / 2])
    for t in range(frames):
        if pan:
            view = middle + pan_velocity * (t - (frames - 1) / 2)
            canvas = cv2.getRectSubPix(backdrop, (width, height), (float(view[0]), float(view[1])))
        else:
            canvas = backdrop.copy()
        for obj in depth:
            e = float(envelopes[obj, t])
            scale = 0.8 + 0.4 * e if mapping == "size" else 1.0
            brightness = 0.6 + 0.8 * e if mapping == "brightness" else 1.0
            mouth = None
            if mapping == "opening":
                mouth = (mouth_size[0], mouth_size[1] * e, colours[obj] * mouth_darkness)
            _draw_object(
                canvas,
                labels[t],
                int(obj) + 1,
                centres[t, obj],
                radius * scale,
                shape,
                colours[obj] * brightness,
                texture,
                shape_params["angle"],
                mouth,
            )
        video[t] = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)

    carrier, carrier_params = _carrier(_rng(seed, "carrier"), carrier_kind, samples, rate, config.tone_range)
    signal = carrier * _envelope(bursts[target], np.arange(samples) / rate)
    noise_rng = _rng(seed, "noise")
    noise, noise_beta = _background_noise(noise_rng, samples, rate)
    noise *= math.sqrt(max(float(np.mean(signal**2)), 1e-12) / 10 ** (snr_db / 10))
    mix = signal + noise
    gain = noise_rng.uniform(0.25, 0.9) / max(float(np.abs(mix).max()), 1e-12)
    if config.split != "silent":
        audio = gain * mix
    elif config.silent_audio == "noise":
        audio = gain * noise
    else:
        audio = np.zeros(samples)

    distractors = [j for j in range(k) if j != target]
    meta = _jsonable(
        {
            "split": config.split,
            "seed": seed,
            "frames": frames,
            "height": height,
            "width": width,
            "fps": fps,
            "sample_rate": rate,
            "objects": k,
            "target": target,
            "distractors": distractors,
            "depth_order": depth,
            "shape": shape_params,
            "mapping": mapping,
            "mouth": {"half_width": mouth_size[0], "max_half_height": mouth_size[1], "darkness": mouth_darkness},
            "size_fraction": size_fraction,
            "radius": radius,
            "carrier": carrier_params,
            "snr_db": snr_db,
            "noise_beta": noise_beta,
            "audio_gain": gain,
            "burst_rates": burst_rates,
            "texture": texture,
            "background": {"kind": background_kind, "pan_velocity": pan_velocity},
            "colours": colours,
            "trajectory": trajectory,
            "planned_crossings": planned,
            "centres": np.round(centres, 2),
        }
    )
    return AVSyncClip(
        frames=video,
        masks=(labels == target + 1).astype(np.uint8),
        audio=audio.astype(np.float32),
        fps=fps,
        target=target,
        distractor_masks=np.stack([labels == j + 1 for j in distractors], axis=1),
        crossing_frames=np.flatnonzero(_distances(centres, target) <= NEAR_RADII * radius).tolist(),
        meta=meta,
        envelopes=envelopes,
        sample_rate=rate,
    )


# -------------------------------------------------------------------------------------------------- disk I/O


def write_wav(path: Path | str, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono float audio in [-1, 1] as 16-bit PCM WAV."""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm.tobytes())


def read_wav(path: Path | str) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV as float32 in [-1, 1] (channels averaged) and its sample rate."""
    with wave.open(str(path), "rb") as handle:
        if handle.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        channels, rate = handle.getnchannels(), handle.getframerate()
        data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return (data.reshape(-1, channels).astype(np.float32) / 32767.0).mean(axis=1), rate


def read_meta(root: Path | str, name: str) -> dict[str, Any]:
    """The ``Meta/<clip>.json`` record of a written clip."""
    return json.loads((Path(root) / "Meta" / f"{name}.json").read_text())


def read_distractor_masks(root: Path | str, name: str) -> np.ndarray:
    """The visible pixels of each distractor of a written clip, (T, K-1, H, W) bool."""
    with np.load(Path(root) / "Meta" / f"{name}_distractors.npz") as data:
        shape = tuple(int(x) for x in data["shape"])
        bits = np.unpackbits(data["packed"], count=int(np.prod(shape)))
    return bits.reshape(shape).astype(bool)


def _write_clip(root: Path, name: str, clip: AVSyncClip, jpeg_quality: int) -> None:
    """Write one clip in the DAVIS-like layout plus its Meta records."""
    image_dir, mask_dir = root / "JPEGImages" / name, root / "Annotations" / name
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for t, (frame, mask) in enumerate(zip(clip.frames, clip.masks, strict=True)):
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(image_dir / f"{t:05d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
            raise OSError(f"cannot write {image_dir / f'{t:05d}.jpg'}")
        write_mask(mask_dir / f"{t:05d}.png", mask)
    write_wav(root / "Audio" / f"{name}.wav", clip.audio, clip.sample_rate)
    meta_dir = root / "Meta"
    meta_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "name": name,
        "target": clip.target,
        "fps": clip.fps,
        "crossing_frames": clip.crossing_frames,
        "envelopes": np.round(clip.envelopes, 4),
        "meta": clip.meta,
    }
    (meta_dir / f"{name}.json").write_text(json.dumps(_jsonable(record)))
    np.savez_compressed(
        meta_dir / f"{name}_distractors.npz",
        packed=np.packbits(clip.distractor_masks.reshape(-1)),
        shape=np.asarray(clip.distractor_masks.shape, np.int64),
    )


def write_dataset(
    root: Path | str,
    split: str,
    clips: int,
    seed: int,
    config: AVSyncConfig | None = None,
    progress: bool = True,
    jpeg_quality: int = 90,
) -> list[str]:
    """Write ``clips`` clips of ``split`` from seeds ``seed, seed + 1, ...`` under ``root``; return their names.

    Layout: ``JPEGImages/<clip>/00000.jpg``, ``Annotations/<clip>/00000.png`` (palette, 1 = target),
    ``Audio/<clip>.wav`` (mono 16-bit PCM), ``ImageSets/<split>.txt`` (names appended to any already there),
    ``Meta/<clip>.json`` (target, fps, crossing frames, frame-rate envelopes, drawn parameters) and
    ``Meta/<clip>_distractors.npz`` (distractors' visible pixels, bit-packed).
    """
    root = Path(root)
    config = replace(config or AVSyncConfig(), split=split)
    names = []
    for clip_seed in tqdm(range(seed, seed + clips), desc=f"av_sync {split}", unit="clip", disable=not progress):
        name = clip_name(split, clip_seed)
        _write_clip(root, name, generate_clip(clip_seed, config), jpeg_quality)
        names.append(name)
    listing = root / "ImageSets" / f"{split}.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    existing = [line.strip() for line in listing.read_text().splitlines() if line.strip()] if listing.exists() else []
    listing.write_text("".join(f"{n}\n" for n in existing + [n for n in names if n not in set(existing)]))
    return names


def read_clip(root: Path | str, name: str) -> AVSyncClip:
    """Read a clip written by :func:`write_dataset` (frames as decoded from the JPEGs)."""
    root = Path(root)
    record = read_meta(root, name)
    image_paths = sorted((root / "JPEGImages" / name).glob("*.jpg"))
    frames = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in image_paths])
    masks = np.stack([read_mask(p) for p in sorted((root / "Annotations" / name).glob("*.png"))])
    audio, rate = read_wav(root / "Audio" / f"{name}.wav")
    return AVSyncClip(
        frames=frames,
        masks=masks,
        audio=audio,
        fps=float(record["fps"]),
        target=int(record["target"]),
        distractor_masks=read_distractor_masks(root, name),
        crossing_frames=[int(t) for t in record["crossing_frames"]],
        meta=record["meta"],
        envelopes=np.asarray(record["envelopes"], np.float32),
        sample_rate=rate,
    )


# ------------------------------------------------------------------------------------------------- training


class AVSyncDataset(Dataset):
    """Clips generated on the fly, one per seed, as tensors for training.

    Item ``i`` is clip ``seeds[i]`` of split ``splits[seed % len(splits)]`` (default: ``config.split``),
    optionally passed through a JPEG round trip of a quality drawn from ``jpeg_quality`` (as the on-disk
    frames are). Keys: ``frames`` (T, 3, H, W) float32 in [0, 1], ``masks`` (T, H, W) uint8,
    ``audio`` (N,) float32, ``envelope`` (T,) the target's envelope, ``crossing`` (T,) bool, ``fps``,
    ``seed``, ``target``, ``split``. With ``frames_range``/``size_choices`` set, batch with size 1 or a
    collate function of your own. Use seeds below :data:`EVAL_SEED_START` for training.
    """

    def __init__(
        self,
        config: AVSyncConfig | None = None,
        seeds: Sequence[int] = range(TRAIN_SEED_START, TRAIN_SEED_START + 100_000),
        splits: Sequence[str] | None = None,
        jpeg_quality: tuple[int, int] | None = (75, 95),
    ) -> None:
        self.config = config or AVSyncConfig()
        self.seeds = seeds
        self.splits = tuple(splits) if splits else (self.config.split,)
        for split in self.splits:
            _check(split in SPLITS, f"unknown split {split!r}")
        self.configs = {split: replace(self.config, split=split) for split in self.splits}
        self.jpeg_quality = jpeg_quality

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seed = int(self.seeds[index])
        split = self.splits[seed % len(self.splits)]
        clip = generate_clip(seed, self.configs[split])
        frames = clip.frames
        if self.jpeg_quality is not None:
            quality = int(np.random.default_rng([seed, len(_STREAMS)]).integers(*self.jpeg_quality, endpoint=True))
            frames = np.stack([_jpeg_round_trip(frame, quality) for frame in frames])
        crossing = np.zeros(len(frames), bool)
        crossing[clip.crossing_frames] = True
        return {
            "frames": torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0),
            "masks": torch.from_numpy(clip.masks),
            "lookalikes": torch.from_numpy(clip.distractor_masks.any(axis=1)),
            "audio": torch.from_numpy(clip.audio),
            "envelope": torch.from_numpy(clip.envelopes[clip.target].copy()),
            "crossing": torch.from_numpy(crossing),
            "fps": clip.fps,
            "seed": seed,
            "target": clip.target,
            "split": split,
        }


def _jpeg_round_trip(frame: np.ndarray, quality: int) -> np.ndarray:
    """An RGB frame after JPEG encoding and decoding at ``quality``."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
