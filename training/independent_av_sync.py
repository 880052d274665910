"""A second, independent generator for the synthetic "who is sounding" audio-visual VOS task.

It was written from the task's public definition (``../shared/research/av_sync_task.md``) alone, without
reading or importing the project's own generator ``avvos.data.av_sync``, so that a model trained on that
generator's clips can be checked on clips that share none of its implementation choices: a model that scores
well on both learnt the task, not the quirks of its training data. To keep it independent it imports only
numpy, OpenCV, Pillow, tqdm (for the progress bar) and the standard library, nothing from ``avvos``.

    python -m training.independent_av_sync ROOT --clips N --seed S [--frames 40 --height 240 --width 432
                                                                    --fps 25 --splits crossing,distinct,silent]

writes clips ``<split>_<n>`` for n = S .. S+N-1 (six digits) of the splits ``crossing``, ``distinct`` and
``silent``; ``silent_<n>`` has the frames and masks of ``crossing_<n>`` and, as audio, that clip's background
noise alone at the same level. The same arguments write the same bytes (with the same library versions). Layout:

    ROOT/JPEGImages/<clip>/00000.jpg ...     RGB frames (JPEG quality 90)
    ROOT/Annotations/<clip>/00000.png ...    DAVIS palette PNGs of the target's visible pixels (0 = background,
                                             1 = target), one per frame
    ROOT/Audio/<clip>.wav                    mono 16-bit PCM at 16 kHz, exactly T / fps seconds
    ROOT/ImageSets/<split>.txt               one clip name a line
    ROOT/Meta/<clip>.json                    {"name", "target": 0, "fps", "crossing_frames": frames in which the
                                             target and a distractor overlap or come within one object radius,
                                             "meta": {"mapping", "carrier", "shape", "snr_db", "num_objects", ...}}
    ROOT/Meta/<clip>_distractors.npz         the distractors' visible pixels: ``packed`` (np.packbits of a bool
                                             array) and its ``shape`` (T, K-1, H, W)

Object 0 is always the target (the sounding object); objects 1..K-1 are the distractors. The splits are scored
like those of the project's generator, with ``avvos.metrics.evaluate_av_sync(pred_root, ROOT, split)``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import wave
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

#: Audio sample rate (Hz).
SR = 16000
SHAPES = ("disc", "ellipse", "rounded_rect", "polygon", "star")
#: How an object's visible state follows its loudness envelope.
MAPPINGS = ("brightness", "size", "opening")
CARRIERS = ("tone", "harmonic", "bandnoise", "formant")
#: Fixed-point bits for sub-pixel drawing with OpenCV.
SHIFT = 4
FP = float(1 << SHIFT)


def davis_palette() -> np.ndarray:
    """The DAVIS mask palette, (256, 3) uint8: 0 black, 1 red, 2 green, ..."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


PALETTE = davis_palette().ravel().tolist()


def write_mask(path: str, mask: np.ndarray) -> None:
    """Save a label mask as a palette PNG (the DAVIS convention)."""
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette(PALETTE)
    im.save(path)


def write_wav(path: str, x: np.ndarray) -> None:
    """Save float audio in [-1, 1] as mono 16-bit PCM at :data:`SR`."""
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """RGB float32 in [0, 255] of a colour given as hue in degrees and saturation, value in [0, 1]."""
    h = (h % 360.0) / 60.0
    i = int(h) % 6
    f = h - int(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, np.float32) * 255.0


def smooth_field(rng: np.random.Generator, h: int, w: int, cells: float) -> np.ndarray:
    """Smooth random (h, w) field in [-1, 1] with about ``cells`` blobs along the longer side."""
    ch = max(2, int(round(cells * h / max(h, w))) + 2)
    cw = max(2, int(round(cells * w / max(h, w))) + 2)
    coarse = rng.standard_normal((ch, cw)).astype(np.float32)
    f = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    k = max(3, int(0.5 * max(h, w) / cells) | 1)
    f = cv2.GaussianBlur(f, (k, k), 0)
    f -= f.mean()
    f /= np.abs(f).max() + 1e-6
    return f


def make_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random smooth coloured texture, (h, w, 3) float32 in [0, 255], in one of three styles."""
    style = str(rng.choice(["blend", "gradient_waves", "plasma"]))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xx /= max(h, w)
    yy /= max(h, w)
    if style == "blend":  # two or three random colours blended by smooth fields
        n = int(rng.integers(2, 4))
        cols = [hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.2, 0.8), rng.uniform(0.25, 0.85)) for _ in range(n)]
        img = np.zeros((h, w, 3), np.float32) + cols[0]
        for c in cols[1:]:
            a = smooth_field(rng, h, w, rng.uniform(2.0, 6.0))
            a = 1.0 / (1.0 + np.exp(-rng.uniform(2.0, 6.0) * a))
            img = img * (1 - a[..., None]) + c * a[..., None]
    elif style == "gradient_waves":  # a linear two-colour gradient plus a few coloured plane waves
        c0 = hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.85))
        c1 = hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8))
        ang = rng.uniform(0, 2 * np.pi)
        g = np.cos(ang) * xx + np.sin(ang) * yy
        g = (g - g.min()) / (g.max() - g.min() + 1e-6)
        img = c0 * (1 - g[..., None]) + c1 * g[..., None]
        for _ in range(int(rng.integers(2, 5))):
            a2 = rng.uniform(0, 2 * np.pi)
            fr = rng.uniform(1.0, 5.0)
            ph = rng.uniform(0, 2 * np.pi)
            wv = np.sin(2 * np.pi * fr * (np.cos(a2) * xx + np.sin(a2) * yy) + ph)
            img += wv[..., None] * rng.uniform(-18, 18, size=3).astype(np.float32)
    else:  # plasma: per-channel multi-octave smooth noise around a base colour
        base = hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.2, 0.7), rng.uniform(0.35, 0.75))
        img = np.zeros((h, w, 3), np.float32) + base
        for c in range(3):
            f = np.zeros((h, w), np.float32)
            amp = 1.0
            cells = rng.uniform(2.0, 4.0)
            for _ in range(3):
                f += amp * smooth_field(rng, h, w, cells)
                amp *= 0.5
                cells *= 2.0
            img[..., c] += rng.uniform(25, 60) * f / 1.75
    return np.clip(img, 0, 255).astype(np.float32)


def shape_outline(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, dict, float]:
    """Unit outline (N, 2) of a shape with half-extent 1, its parameters and its inscribed radius."""
    if kind == "disc":
        t = np.linspace(0, 2 * np.pi, 128, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], 1), {}, 1.0
    if kind == "ellipse":
        b = float(rng.uniform(0.5, 0.8))
        t = np.linspace(0, 2 * np.pi, 128, endpoint=False)
        return np.stack([np.cos(t), b * np.sin(t)], 1), {"aspect": b}, b
    if kind == "rounded_rect":
        b = float(rng.uniform(0.55, 1.0))
        a = 1.0
        rc = float(rng.uniform(0.15, 0.6)) * min(a, b)
        pts = []
        for cx, cy, a0 in ((a - rc, b - rc, 0.0), (-(a - rc), b - rc, 0.5 * np.pi),
                           (-(a - rc), -(b - rc), np.pi), (a - rc, -(b - rc), 1.5 * np.pi)):  # fmt: skip
            t = a0 + np.linspace(0, 0.5 * np.pi, 16)
            pts.append(np.stack([cx + rc * np.cos(t), cy + rc * np.sin(t)], 1))
        return np.concatenate(pts, 0), {"aspect": b, "corner": rc}, b
    if kind == "polygon":
        n = int(rng.integers(3, 9))
        t = np.arange(n) * 2 * np.pi / n - np.pi / 2
        return np.stack([np.cos(t), np.sin(t)], 1), {"sides": n}, math.cos(math.pi / n)
    if kind == "star":
        n = int(rng.integers(4, 8))
        inner = float(rng.uniform(0.42, 0.65))
        t = np.arange(2 * n) * np.pi / n - np.pi / 2
        r = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1), {"points": n, "inner": inner}, inner * math.cos(math.pi / n)
    raise ValueError(kind)


def rotation(theta: float) -> np.ndarray:
    """2-D rotation matrix by ``theta`` radians."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]], np.float64)


def make_envelope(rng: np.random.Generator, dur: float, family: str, n_samples: int) -> tuple[np.ndarray, float]:
    """Loudness envelope in [0, 1] on the audio sample grid (sample n at n / SR) and its bursts per second.

    Bursts (syllable-like, 2 to 6 a second, smooth attack and decay, of shape ``family``: "hann",
    "cos_exp" or "gamma") start on a jittered grid from a little before t = 0, so a clip may begin
    mid-burst; they are combined as a probabilistic OR, which keeps the envelope smooth and within [0, 1].
    """
    rate = rng.uniform(2.0, 6.0)
    t = np.arange(n_samples) / SR
    period = 1.0 / rate
    onsets = []
    o = -rng.uniform(0.0, period)
    while o < dur:
        onsets.append(o + rng.uniform(-0.3, 0.3) * period)
        o += period
    prod = np.ones(n_samples)
    for on in onsets:
        amp = rng.uniform(0.5, 1.0)
        x = t - on
        b = np.zeros(n_samples)
        if family == "hann":
            a, s, d = rng.uniform(0.02, 0.08), rng.uniform(0.0, 0.07), rng.uniform(0.05, 0.22)
            up = (x >= 0) & (x < a)
            b[up] = 0.5 - 0.5 * np.cos(np.pi * x[up] / a)
            st = (x >= a) & (x < a + s)
            b[st] = 1.0
            dn = (x >= a + s) & (x < a + s + d)
            b[dn] = 0.5 + 0.5 * np.cos(np.pi * (x[dn] - a - s) / d)
        elif family == "cos_exp":
            a, tau = rng.uniform(0.015, 0.07), rng.uniform(0.03, 0.12)
            up = (x >= 0) & (x < a)
            b[up] = 0.5 - 0.5 * np.cos(np.pi * x[up] / a)
            dn = x >= a
            b[dn] = np.exp(-(x[dn] - a) / tau)
        else:  # gamma-like: (x/tp)^k exp(k(1-x/tp)), peak 1 at tp
            tp, k = rng.uniform(0.025, 0.08), rng.uniform(1.5, 4.0)
            pos = x > 0
            u = x[pos] / tp
            b[pos] = np.exp(k * (np.log(u) + 1.0 - u))
        prod *= 1.0 - amp * np.clip(b, 0.0, 1.0)
    env = 1.0 - prod
    env /= max(env.max(), 1e-6)
    return env, rate


def env_at_frames(env: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """The envelope at each frame's timestamp t / fps (no lag), linearly interpolated from the sample grid."""
    ts = np.arange(n_frames) / fps * SR
    return np.interp(ts, np.arange(len(env)), env)


def fft_filter(x: np.ndarray, gain_fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Filter a signal by a zero-phase gain given as a function of frequency in Hz."""
    spectrum = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / SR)
    return np.fft.irfft(spectrum * gain_fn(f), n=len(x))


def unit_rms(x: np.ndarray) -> np.ndarray:
    """The signal scaled to an RMS of 1."""
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def make_carrier(rng: np.random.Generator, kind: str, n: int) -> tuple[np.ndarray, dict]:
    """A unit-RMS sound of ``n`` samples from one carrier family, and its parameters.

    Families: "tone" (150 to 1000 Hz, slight vibrato), "harmonic" (gliding harmonic complex), "bandnoise"
    (band-limited noise) and "formant" (vowel-like buzz: a jittered sawtooth through three resonances).
    """
    t = np.arange(n) / SR
    if kind == "tone":
        f0 = rng.uniform(150, 1000)
        vib_d, vib_r = rng.uniform(0, 0.01), rng.uniform(3, 6)
        inst = f0 * (1 + vib_d * np.sin(2 * np.pi * vib_r * t))
        x = np.sin(2 * np.pi * np.cumsum(inst) / SR + rng.uniform(0, 2 * np.pi))
        p = {"f0": round(float(f0), 2), "vibrato": round(float(vib_d), 4)}
    elif kind == "harmonic":
        f0 = rng.uniform(100, 400)
        glide = rng.uniform(-0.06, 0.06)
        inst = f0 * (1 + glide * t / t[-1])
        phase = 2 * np.pi * np.cumsum(inst) / SR
        nh = int(min(12, 7000 // (f0 * (1 + abs(glide)))))
        nh = max(nh, 3)
        tilt = rng.uniform(0.5, 1.5)
        x = np.zeros(n)
        for k in range(1, nh + 1):
            x += k ** (-tilt) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
        p = {"f0": round(float(f0), 2), "harmonics": nh, "tilt": round(float(tilt), 3)}
    elif kind == "bandnoise":
        fc = rng.uniform(300, 3000)
        bw_oct = rng.uniform(0.3, 1.2)
        lo, hi = fc * 2 ** (-bw_oct / 2), min(fc * 2 ** (bw_oct / 2), 7800)
        edge = 0.15 * (hi - lo)

        def band_gain(f: np.ndarray) -> np.ndarray:
            a = np.clip((f - (lo - edge)) / edge, 0, 1) * np.clip(((hi + edge) - f) / edge, 0, 1)
            return np.sin(0.5 * np.pi * a) ** 2

        x = fft_filter(rng.standard_normal(n), band_gain)
        p = {"fc": round(float(fc), 1), "bw_oct": round(float(bw_oct), 3)}
    else:  # formant
        vowels = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (300, 2250, 3000),
                  "o": (570, 840, 2410), "u": (320, 900, 2300)}  # fmt: skip
        v = str(rng.choice(list(vowels)))
        fm = np.array(vowels[v], float) * rng.uniform(0.92, 1.08, size=3)
        bws = rng.uniform(60, 160, size=3)
        amps = np.array([1.0, rng.uniform(0.4, 0.8), rng.uniform(0.15, 0.4)])
        f0 = rng.uniform(90, 250)
        jit = 1 + 0.01 * np.convolve(rng.standard_normal(n), np.ones(400) / 20.0, "same")
        inst = f0 * jit * (1 + rng.uniform(-0.05, 0.05) * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
        ph = np.cumsum(inst) / SR
        src = 1.0 - 2.0 * (ph % 1.0)  # sawtooth
        src += 0.02 * rng.standard_normal(n)  # breathiness

        def formant_gain(f: np.ndarray) -> np.ndarray:
            h = np.zeros_like(f)
            for freq, bw, amp in zip(fm, bws, amps, strict=True):
                h += amp / np.sqrt(1 + ((f - freq) / (bw / 2)) ** 2)
            return h * (f > 60)

        x = fft_filter(src, formant_gain)
        p = {"vowel": v, "f0": round(float(f0), 2), "formants": [round(float(a), 1) for a in fm]}
    return unit_rms(x), p


def make_noise(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """Unit-RMS background noise: "white", "pink" or "brown" (high-passed so it is not just DC drift)."""
    w = rng.standard_normal(n)
    if kind == "white":
        x = w
    elif kind == "pink":
        x = fft_filter(w, lambda f: 1.0 / np.sqrt(np.maximum(f, 20.0)))
    else:
        x = fft_filter(w, lambda f: (f > 30) / np.maximum(f, 30.0))
    return unit_rms(x)


def fit_into(path: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Scale a (T, 2) path about its centre and shift it so it lies within [lo, hi] per axis (stays smooth)."""
    out = path.copy()
    for a in range(2):
        mn, mx = out[:, a].min(), out[:, a].max()
        span, room = mx - mn, hi[a] - lo[a]
        if span > room:
            c = 0.5 * (mn + mx)
            out[:, a] = c + (out[:, a] - c) * (room / span)
            mn, mx = out[:, a].min(), out[:, a].max()
        if mn < lo[a]:
            out[:, a] += lo[a] - mn
        elif mx > hi[a]:
            out[:, a] -= mx - hi[a]
    return out


def catmull_rom(times: np.ndarray, pts: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames, 2) positions of the Catmull-Rom spline through waypoints ``pts`` at frame ``times``."""
    padded = np.concatenate([2 * pts[:1] - pts[1:2], pts, 2 * pts[-1:] - pts[-2:-1]], 0)
    out = np.zeros((n_frames, 2))
    for t in range(n_frames):
        j = int(np.searchsorted(times, t, side="right") - 1)
        j = min(max(j, 0), len(times) - 2)
        u = (t - times[j]) / (times[j + 1] - times[j])
        p0, p1, p2, p3 = padded[j], padded[j + 1], padded[j + 2], padded[j + 3]
        out[t] = 0.5 * (2 * p1 + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u ** 2
                        + (-p0 + 3 * p1 - 3 * p2 + p3) * u ** 3)  # fmt: skip
    return out


def random_path(
    rng: np.random.Generator, model: str, n_frames: int, lo: np.ndarray, hi: np.ndarray, speed: float
) -> np.ndarray:
    """A smooth random (n_frames, 2) trajectory within [lo, hi] of about ``speed`` px per frame.

    ``model`` is "spline" (Catmull-Rom through random waypoints), "ou" (damped random walk on the
    velocity) or "fourier" (a few low-frequency sinusoids per axis).
    """
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    start = rng.uniform(lo, hi)
    if model == "spline":
        n = int(rng.integers(3, 6))
        times = np.linspace(0, n_frames - 1, n)
        times[1:-1] += rng.uniform(-0.2, 0.2, n - 2) * (n_frames - 1) / (n - 1)
        pts = [start]
        for j in range(1, n):
            dt = times[j] - times[j - 1]
            ang = rng.uniform(0, 2 * np.pi)
            step = speed * dt * rng.uniform(0.6, 1.4)
            q = pts[-1] + step * np.array([math.cos(ang), math.sin(ang)])
            for a in range(2):  # reflect the waypoint into the box
                if q[a] < lo[a]:
                    q[a] = 2 * lo[a] - q[a]
                if q[a] > hi[a]:
                    q[a] = 2 * hi[a] - q[a]
            pts.append(np.clip(q, lo, hi))
        path = catmull_rom(times, np.array(pts), n_frames)
    elif model == "ou":
        rho = rng.uniform(0.85, 0.97)
        ang = rng.uniform(0, 2 * np.pi)
        v = speed * np.array([math.cos(ang), math.sin(ang)])
        vs = []
        for _ in range(n_frames):
            vs.append(v.copy())
            v = rho * v + math.sqrt(1 - rho**2) * speed * rng.standard_normal(2)
        vs = np.array(vs)
        k = np.array([1, 4, 6, 4, 1], float) / 16
        vs = np.stack([np.convolve(np.pad(vs[:, a], 2, mode="edge"), k, "valid") for a in range(2)], 1)
        vs *= speed / (np.linalg.norm(vs, axis=1).mean() + 1e-9)
        path = start + np.cumsum(vs, 0) - vs[0]
    else:
        tt = np.arange(n_frames) / max(n_frames - 1, 1)
        path = np.zeros((n_frames, 2)) + start
        for a in range(2):
            for _ in range(int(rng.integers(1, 3))):
                f = rng.uniform(0.25, 1.0)
                amp = speed * (n_frames - 1) / (2 * np.pi * f) * rng.uniform(0.3, 0.7)
                path[:, a] += amp * np.sin(2 * np.pi * f * tt + rng.uniform(0, 2 * np.pi))
    return fit_into(path, lo, hi)


class Scene:
    """Everything sampled for one clip (set by :func:`build_clip`), enough to render and write it.

    Per-object arrays are indexed [object, frame]; object 0 is the target. ``pos`` (K, T, 2) holds the
    centres in pixels (x, y), ``radius`` (K, T) the half-extents, ``env`` (K, samples) and ``env_f``
    (K, T) the loudness envelopes on the audio and frame grids, ``depth`` (K, T) the drawing order
    (larger is nearer) and ``alphas_all`` the anti-aliased silhouettes of every frame.
    """

    frames: int
    height: int
    width: int
    fps: float
    num_objects: int
    mapping: str
    shape: str
    shape_params: dict
    outline: np.ndarray
    pattern: str
    pat_freq: float
    pat_phase: float
    shading: float
    light: tuple[float, float]
    bg: np.ndarray
    col_a: list[np.ndarray]
    col_b: list[np.ndarray]
    mouth_col: np.ndarray
    mouth_w: float
    mouth_h: float
    mouth_dy: float
    pan: float
    pan_off: np.ndarray
    theta: np.ndarray
    n_samp: int
    burst_family: str
    env: np.ndarray
    env_f: np.ndarray
    rates: list[float]
    radius: np.ndarray
    traj_model: str
    pos: np.ndarray
    alphas_all: list[list[np.ndarray]]
    crossing_frames: list[int]
    depth_mode: str
    depth: np.ndarray
    sensor_noise: float
    noise_rng: np.random.Generator
    carrier: str
    carrier_params: dict
    snr_db: float
    noise_kind: str
    audio: np.ndarray
    audio_silent: np.ndarray


def silhouettes(sc: Scene, t: int) -> list[np.ndarray]:
    """Anti-aliased alpha (full-frame uint8, 255 inside) of each object at frame ``t``, ignoring occlusion."""
    out = []
    rmat = rotation(sc.theta[t])
    for i in range(sc.num_objects):
        r = sc.radius[i, t]
        pts = (sc.outline * r) @ rmat.T + sc.pos[i, t]
        a = np.zeros((sc.height, sc.width), np.uint8)
        cv2.fillPoly(a, [np.round(pts * FP).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=SHIFT)
        out.append(a)
    return out


def crossing_frames_of(sc: Scene, alphas_all: list[list[np.ndarray]]) -> list[int]:
    """Frames in which the target and some distractor overlap or come within one object radius."""
    frames = []
    for t in range(sc.frames):
        al = alphas_all[t]
        tgt = al[0] >= 128
        if not tgt.any():
            continue
        dist = cv2.distanceTransform((~tgt).astype(np.uint8), cv2.DIST_L2, 5)
        for d in range(1, sc.num_objects):
            m = al[d] >= 128
            if m.any() and float(dist[m].min()) <= 0.5 * (sc.radius[0, t] + sc.radius[d, t]):
                frames.append(t)
                break
    return frames


def pattern_field(sc: Scene, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Two-tone mix weight in [0, 1] of the clip's surface pattern at local (rotated, radius-normalised) u, v."""
    p = sc.pattern
    f, ph = sc.pat_freq, sc.pat_phase
    if p == "stripes":
        m = 0.5 + 0.5 * np.tanh(3.0 * np.sin(2 * np.pi * f * u + ph))
    elif p == "checker":
        m = 0.5 + 0.5 * np.tanh(3.0 * np.sin(np.pi * f * u + ph) * np.sin(np.pi * f * v + ph))
    elif p == "rings":
        m = 0.5 + 0.5 * np.sin(2 * np.pi * f * np.sqrt(u * u + v * v) + ph)
    elif p == "spots":
        m = np.clip(2.5 * (np.cos(2 * np.pi * f * u) * np.cos(2 * np.pi * f * v) - 0.3), 0, 1)
    else:  # gradient (also used, with equal tones, for "flat")
        m = np.clip(0.5 + 0.5 * (math.cos(ph) * u + math.sin(ph) * v), 0, 1)
    return m


def render_frame(sc: Scene, t: int, alphas: list[np.ndarray]) -> np.ndarray:
    """RGB uint8 frame ``t``: the (panned) background with the objects drawn far to near, in sync states."""
    ox, oy = sc.pan_off[t]
    shift = np.array([[1, 0, -ox], [0, 1, -oy]], np.float32)
    frame = cv2.warpAffine(sc.bg, shift, (sc.width, sc.height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    order = np.argsort(sc.depth[:, t], kind="stable")  # far (small depth) first
    rmat = rotation(sc.theta[t])
    rinv = rmat.T
    for i in order:
        a = alphas[i]
        r = sc.radius[i, t]
        c = sc.pos[i, t]
        ext = r * 1.05 + 2
        x0, x1 = max(0, int(c[0] - ext)), min(sc.width, int(c[0] + ext) + 2)
        y0, y1 = max(0, int(c[1] - ext)), min(sc.height, int(c[1] + ext) + 2)
        if x1 <= x0 or y1 <= y0:
            continue
        aa = a[y0:y1, x0:x1].astype(np.float32) / 255.0
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = (xx - c[0]) / r, (yy - c[1]) / r
        u = rinv[0, 0] * dx + rinv[0, 1] * dy
        v = rinv[1, 0] * dx + rinv[1, 1] * dy
        m = pattern_field(sc, u, v)[..., None]
        col = sc.col_a[i] * (1 - m) + sc.col_b[i] * m
        if sc.shading > 0:  # mild "lit from one side" shading, the same for all objects
            sh = 1.0 + sc.shading * (sc.light[0] * u + sc.light[1] * v) - 0.5 * sc.shading * (u * u + v * v)
            col = col * sh[..., None]
        e = sc.env_f[i, t]
        if sc.mapping == "brightness":
            col = col * (0.6 + 0.8 * e)
        elif sc.mapping == "opening":
            hh = e * (sc.mouth_h * r)
            if hh > 0.25:
                mo = np.zeros(aa.shape, np.uint8)
                ctr = (c + rmat @ np.array([0.0, sc.mouth_dy * r]) - np.array([x0, y0])) * FP
                ang = math.degrees(sc.theta[t])
                cv2.ellipse(mo, (int(round(ctr[0])), int(round(ctr[1]))),
                            (int(round(sc.mouth_w * r * FP)), max(1, int(round(hh * FP)))),
                            ang, 0, 360, 255, -1, cv2.LINE_AA, SHIFT)  # fmt: skip
                am = (mo.astype(np.float32) / 255.0)[..., None]
                col = col * (1 - am) + sc.mouth_col * am
        col = np.clip(col, 0, 255)
        fa = frame[y0:y1, x0:x1]
        frame[y0:y1, x0:x1] = fa * (1 - aa[..., None]) + col * aa[..., None]
    if sc.sensor_noise > 0:
        frame = frame + sc.noise_rng.normal(0, sc.sensor_noise, frame.shape).astype(np.float32)
    return np.clip(np.round(frame), 0, 255).astype(np.uint8)


def visible_masks(sc: Scene, t: int, alphas: list[np.ndarray]) -> list[np.ndarray]:
    """Each object's visible pixels at frame ``t`` (bool), nearer objects hiding farther ones."""
    order = np.argsort(-sc.depth[:, t], kind="stable")  # nearest first
    covered = np.zeros((sc.height, sc.width), bool)
    vis: list[np.ndarray] = [np.zeros(0, bool)] * sc.num_objects
    for i in order:
        m = alphas[i] >= 128
        vis[i] = m & ~covered
        covered |= m
    return vis


def sample_appearance(sc: Scene, rng: np.random.Generator, split: str, inscribed: float) -> None:
    """Background and object colours, surface pattern and mouth slit.

    All objects share one colour in ``crossing`` / ``silent``; in ``distinct`` each gets its own hue. The
    colours are redrawn (with the background) until they stand out from the background's mean colour.
    """
    side = min(sc.height, sc.width)
    k = sc.num_objects
    sc.pattern = str(rng.choice(["stripes", "checker", "rings", "spots", "gradient", "flat"]))
    sc.pat_freq = rng.uniform(1.0, 2.5)
    sc.pat_phase = rng.uniform(0, 2 * np.pi)
    sc.shading = rng.uniform(0.0, 0.3) if rng.random() < 0.6 else 0.0
    la = rng.uniform(0, 2 * np.pi)
    sc.light = (math.cos(la), math.sin(la))
    tone_ratio = rng.uniform(0.55, 0.8)
    sat = rng.uniform(0.5, 0.9)
    val = rng.uniform(0.45, 0.68)  # so that x1.4 brightness mostly does not clip
    for _ in range(20):
        bg = make_background(rng, sc.height + 2 * int(0.2 * side), sc.width + 2 * int(0.2 * side))
        bg_mean = bg.reshape(-1, 3).mean(0)
        if split == "distinct":
            h0 = rng.uniform(0, 360)
            hues = [h0 + j * 360.0 / k + rng.uniform(-12, 12) for j in range(k)]
            rng.shuffle(hues)
            cols = [hsv_to_rgb(h, max(sat, 0.65), val) for h in hues]
        else:
            cols = [hsv_to_rgb(rng.uniform(0, 360), sat, val)] * k
        if min(np.linalg.norm(c - bg_mean) for c in cols) > 70:
            break
    sc.bg = bg
    sc.col_a = [c.copy() for c in cols]
    sc.col_b = [c * tone_ratio if sc.pattern != "flat" else c.copy() for c in cols]
    mouth_dark = rng.uniform(0.05, 0.2)
    sc.mouth_col = np.array([mouth_dark * 255, mouth_dark * 120, mouth_dark * 130], np.float32)
    sc.mouth_w = rng.uniform(0.55, 0.75) * inscribed  # half-width of the slit
    sc.mouth_h = rng.uniform(0.25, 0.4) * inscribed  # half-height at e = 1
    sc.mouth_dy = rng.uniform(0.0, 0.3) * inscribed  # the slit sits at or a little below the centre


def sample_camera(sc: Scene, rng: np.random.Generator) -> None:
    """An optional slow background pan and a rotation shared by all objects (so it tells no identity)."""
    side = min(sc.height, sc.width)
    margin = int(0.2 * side)
    if rng.random() < 0.5:
        ang = rng.uniform(0, 2 * np.pi)
        spd = rng.uniform(0.1, 0.6) * side / 240.0  # px / frame
        off = np.arange(sc.frames)[:, None] * spd * np.array([math.cos(ang), math.sin(ang)])
        off = np.clip(off, -margin + 1, margin - 1)
        sc.pan = round(float(spd), 3)
    else:
        off = np.zeros((sc.frames, 2))
        sc.pan = 0.0
    sc.pan_off = off + margin
    th0 = rng.uniform(0, 2 * np.pi)
    om = rng.uniform(-0.03, 0.03) if rng.random() < 0.4 else 0.0
    sc.theta = th0 + om * np.arange(sc.frames)


def sample_envelopes(sc: Scene, rng: np.random.Generator, r0: float) -> None:
    """Independent loudness envelopes per object, and the radii they drive under the "size" mapping.

    Redrawn (up to 50 times) until every envelope varies visibly across frames and no distractor's
    envelope correlates with the target's by 0.6 or more.
    """
    k = sc.num_objects
    dur = sc.frames / sc.fps
    sc.n_samp = int(round(dur * SR))
    sc.burst_family = str(rng.choice(["hann", "cos_exp", "gamma"]))
    for _ in range(50):
        envs, rates = [], []
        for _ in range(k):
            e, rt = make_envelope(rng, dur, sc.burst_family, sc.n_samp)
            envs.append(e)
            rates.append(rt)
        env_f = np.stack([env_at_frames(e, sc.frames, sc.fps) for e in envs])
        ok = all(env_f[i].std() > 0.12 for i in range(k))
        for d in range(1, k):
            cc = np.corrcoef(env_f[0], env_f[d])[0, 1]
            ok = ok and (not np.isfinite(cc) or cc < 0.6)
        if ok:
            break
    sc.env = np.stack(envs)
    sc.env_f = env_f
    sc.rates = rates
    if sc.mapping == "size":
        sc.radius = r0 * (0.8 + 0.4 * env_f)
    else:
        sc.radius = np.full((k, sc.frames), r0)


def sample_trajectories(sc: Scene, rng: np.random.Generator, split: str, r0: float) -> None:
    """Object trajectories, redrawn until valid, then the drawing depths.

    Valid: no jump above 7% of the shorter side per frame; at frame 0 every object visible, the distractors
    more than 1.2 base radii from the target and apart from each other; in ``crossing`` and ``distinct``
    (where one distractor is pulled towards the target around a random frame) a crossing after frame 5.
    """
    k, n_frames = sc.num_objects, sc.frames
    side = min(sc.height, sc.width)
    rmax = sc.radius.max() * 1.02 + 2
    lo, hi = np.array([rmax, rmax]), np.array([sc.width - rmax, sc.height - rmax])
    sc.traj_model = str(rng.choice(["spline", "ou", "fourier"]))
    need_cross = split in ("crossing", "distinct")
    for _ in range(2000):
        pos = np.zeros((k, n_frames, 2))
        speeds = rng.uniform(0.01, 0.035, size=k) * side
        for i in range(k):
            pos[i] = random_path(rng, sc.traj_model, n_frames, lo, hi, speeds[i])
        if need_cross:
            d = int(rng.integers(1, k))
            tc = int(rng.integers(7, max(8, n_frames - 3)))
            ang = rng.uniform(0, 2 * np.pi)
            offl = rng.uniform(0.0, 0.9) * 0.5 * (sc.radius[0, tc] + sc.radius[d, tc]) * 2
            goal = pos[0, tc] + offl * np.array([math.cos(ang), math.sin(ang)])
            delta = goal - pos[d, tc]
            s = rng.uniform(0.15, 0.8) * n_frames
            w = np.exp(-0.5 * ((np.arange(n_frames) - tc) / s) ** 2)
            q = pos[d] + w[:, None] * delta
            if (q < lo - 1e-6).any() or (q > hi + 1e-6).any():
                q = np.clip(q, lo, hi)
            pos[d] = q
        sp = np.linalg.norm(np.diff(pos, axis=1), axis=2)
        if sp.max() > 0.07 * side:
            continue
        sc.pos = pos
        al0 = silhouettes(sc, 0)
        t0 = al0[0] >= 128
        dist0 = cv2.distanceTransform((~t0).astype(np.uint8), cv2.DIST_L2, 5)
        good0 = t0.sum() > 0
        for j in range(1, k):
            mj = al0[j] >= 128
            good0 = good0 and mj.any() and dist0[mj].min() > 1.2 * r0
        for a in range(1, k):
            for b in range(a + 1, k):
                good0 = good0 and not ((al0[a] >= 128) & (al0[b] >= 128)).any()
        if not good0:
            continue
        alphas_all = [silhouettes(sc, t) for t in range(n_frames)]
        cf = crossing_frames_of(sc, alphas_all)
        if need_cross and not any(t > 5 for t in cf):
            continue
        break
    else:
        raise RuntimeError("could not sample valid trajectories (frame too small for the objects?)")
    sc.alphas_all = alphas_all
    sc.crossing_frames = cf
    tt = np.arange(n_frames) / max(n_frames - 1, 1)
    if rng.random() < 0.5:  # a static random order, or smoothly varying depths (the order may swap)
        sc.depth_mode = "static"
        sc.depth = np.repeat(rng.permutation(k).astype(float)[:, None], n_frames, 1)
    else:
        sc.depth_mode = "varying"
        sc.depth = np.stack([rng.uniform(-1, 1) + rng.uniform(0.5, 1.5) *
                             np.sin(2 * np.pi * rng.uniform(0.3, 1.2) * tt + rng.uniform(0, 2 * np.pi))
                             for _ in range(k)])  # fmt: skip


def sample_audio(sc: Scene, rng: np.random.Generator) -> None:
    """The target's carrier times its envelope plus background noise at 10 to 30 dB SNR, and the noise alone.

    Both are scaled by the same gain (a random peak of 0.3 to 0.9 for the mix), so the ``silent`` audio is
    exactly the noise that the ``crossing`` audio contains.
    """
    sc.carrier = str(rng.choice(CARRIERS))
    car, sc.carrier_params = make_carrier(rng, sc.carrier, sc.n_samp)
    sig = car * sc.env[0]
    sc.snr_db = float(rng.uniform(10.0, 30.0))
    sc.noise_kind = str(rng.choice(["white", "pink", "brown"]))
    noise = make_noise(rng, sc.noise_kind, sc.n_samp)
    sig_rms = math.sqrt(float(np.mean(sig**2)))
    noise = noise * sig_rms / (10 ** (sc.snr_db / 20))
    mix = sig + noise
    peak = rng.uniform(0.3, 0.9)
    g = peak / (np.abs(mix).max() + 1e-9)
    sc.audio = mix * g
    sc.audio_silent = noise * g


def build_clip(rng: np.random.Generator, split: str, n_frames: int, height: int, width: int, fps: float) -> Scene:
    """Sample one clip of ``split`` ("crossing" or "distinct"): its look, motion, envelopes and audio."""
    sc = Scene()
    sc.frames, sc.height, sc.width, sc.fps = n_frames, height, width, fps
    side = min(height, width)
    sc.num_objects = int(rng.choice([2, 3]))
    sc.mapping = str(rng.choice(MAPPINGS))
    sc.shape = str(rng.choice(SHAPES))
    sc.outline, sc.shape_params, inscribed = shape_outline(rng, sc.shape)
    # Object size = diameter of the bounding extent, 8-25% of the shorter side (scaled sizes included).
    low, high = (0.08 / 0.8, 0.25 / 1.2) if sc.mapping == "size" else (0.08, 0.25)
    diam = rng.uniform(low, high) * side
    r0 = 0.5 * diam
    sample_appearance(sc, rng, split, inscribed)
    sample_camera(sc, rng)
    sample_envelopes(sc, rng, r0)
    sample_trajectories(sc, rng, split, r0)
    sc.sensor_noise = rng.uniform(0.0, 2.5) if rng.random() < 0.5 else 0.0
    sc.noise_rng = np.random.default_rng(rng.integers(1 << 62))
    sample_audio(sc, rng)
    return sc


def write_clip(sc: Scene, root: str, name: str, audio: np.ndarray, split: str) -> None:
    """Render and write one clip's frames, target masks, audio and metadata under ``root``."""
    jd = os.path.join(root, "JPEGImages", name)
    ad = os.path.join(root, "Annotations", name)
    os.makedirs(jd, exist_ok=True)
    os.makedirs(ad, exist_ok=True)
    vis_d = np.zeros((sc.frames, sc.num_objects - 1, sc.height, sc.width), bool)
    for t in range(sc.frames):
        al = sc.alphas_all[t]
        rgb = render_frame(sc, t, al)
        cv2.imwrite(os.path.join(jd, f"{t:05d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])  # fmt: skip
        vis = visible_masks(sc, t, al)
        write_mask(os.path.join(ad, f"{t:05d}.png"), vis[0])
        for d in range(1, sc.num_objects):
            vis_d[t, d - 1] = vis[d]
    write_wav(os.path.join(root, "Audio", name + ".wav"), audio)
    write_meta(sc, root, name, split, vis_d)


def write_meta(sc: Scene, root: str, name: str, split: str, vis_d: np.ndarray) -> None:
    """Write ``Meta/<name>.json`` and the distractors' visible masks ``Meta/<name>_distractors.npz``."""
    base_radius = sc.radius.mean() if sc.mapping != "size" else sc.radius.max() / 1.2
    meta = {
        "name": name, "target": 0, "fps": sc.fps, "crossing_frames": [int(t) for t in sc.crossing_frames],
        "meta": {
            "mapping": sc.mapping, "carrier": sc.carrier, "shape": sc.shape,
            "snr_db": round(sc.snr_db, 3), "num_objects": sc.num_objects,
            "split": split, "audio": "noise_only" if split == "silent" else "target_plus_noise",
            "carrier_params": sc.carrier_params, "shape_params": sc.shape_params,
            "noise": sc.noise_kind, "burst_family": sc.burst_family,
            "burst_rates": [round(float(r), 3) for r in sc.rates], "trajectory": sc.traj_model,
            "depth_mode": sc.depth_mode, "pattern": sc.pattern, "pan_px_per_frame": sc.pan,
            "base_radius_px": round(float(base_radius), 2),
            "envelopes_at_frames": np.round(sc.env_f, 4).tolist(),
        },
    }  # fmt: skip
    with open(os.path.join(root, "Meta", name + ".json"), "w") as f:
        json.dump(meta, f)
    np.savez_compressed(os.path.join(root, "Meta", name + "_distractors.npz"),
                        shape=np.array(vis_d.shape), packed=np.packbits(vis_d.ravel()))  # fmt: skip


def write_silent_copy(root: str, crossing_name: str, silent_name: str, audio: np.ndarray) -> None:
    """Write a ``silent`` clip as a copy of the written ``crossing`` clip with the noise-only audio."""
    for sub in ("JPEGImages", "Annotations"):
        d = os.path.join(root, sub, silent_name)
        if os.path.isdir(d):
            shutil.rmtree(d)
        shutil.copytree(os.path.join(root, sub, crossing_name), d)
    write_wav(os.path.join(root, "Audio", silent_name + ".wav"), audio)
    meta_dir = os.path.join(root, "Meta")
    shutil.copyfile(os.path.join(meta_dir, crossing_name + "_distractors.npz"),
                    os.path.join(meta_dir, silent_name + "_distractors.npz"))  # fmt: skip
    with open(os.path.join(meta_dir, crossing_name + ".json")) as f:
        meta = json.load(f)
    meta["name"] = silent_name
    meta["meta"]["split"] = "silent"
    meta["meta"]["audio"] = "noise_only"
    with open(os.path.join(meta_dir, silent_name + ".json"), "w") as f:
        json.dump(meta, f)


def main(argv: list[str] | None = None) -> int:
    """Write the requested splits (see the module docstring)."""
    ap = argparse.ArgumentParser(
        prog="python -m training.independent_av_sync",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("root", help="folder to write (JPEGImages/, Annotations/, Audio/, ImageSets/, Meta/)")
    ap.add_argument("--clips", type=int, default=48, help="clips per split (default 48)")
    ap.add_argument("--seed", type=int, default=0, help="random seed and number of the first clip (default 0)")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=432)
    ap.add_argument("--fps", type=float, default=25)
    ap.add_argument("--splits", default="crossing,distinct,silent", help="comma-separated splits (default: all)")
    args = ap.parse_args(argv)
    fps = int(args.fps) if float(args.fps).is_integer() else args.fps
    splits = [s for s in args.splits.split(",") if s]
    for sub in ("JPEGImages", "Annotations", "Audio", "ImageSets", "Meta"):
        os.makedirs(os.path.join(args.root, sub), exist_ok=True)
    lists: dict[str, list[str]] = {s: [] for s in splits}
    size = (args.frames, args.height, args.width, fps)
    for i in tqdm(range(args.clips), desc="independent av_sync", unit="clip"):
        cid = args.seed + i
        if "crossing" in splits or "silent" in splits:
            sc = build_clip(np.random.default_rng([args.seed, i, 0]), "crossing", *size)
            cname, sname = f"crossing_{cid:06d}", f"silent_{cid:06d}"
            if "crossing" in splits:
                write_clip(sc, args.root, cname, sc.audio, "crossing")
                lists["crossing"].append(cname)
            if "silent" in splits:
                if "crossing" in splits:
                    write_silent_copy(args.root, cname, sname, sc.audio_silent)
                else:
                    write_clip(sc, args.root, sname, sc.audio_silent, "silent")
                lists["silent"].append(sname)
        if "distinct" in splits:
            sc = build_clip(np.random.default_rng([args.seed, i, 1]), "distinct", *size)
            dname = f"distinct_{cid:06d}"
            write_clip(sc, args.root, dname, sc.audio, "distinct")
            lists["distinct"].append(dname)
    for s, names in lists.items():
        with open(os.path.join(args.root, "ImageSets", s + ".txt"), "w") as f:
            f.write("".join(n + "\n" for n in names))
        print(f"{s}: {len(names)} clips in {args.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
