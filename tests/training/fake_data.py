"""Tiny data sets on disk in the layouts the training loaders read (DAVIS, YouTube-VOS, static, AVSBench)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
from PIL import Image

from avvos.masks import write_mask


def disc_scene(t: int, height: int, width: int, objects: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``t`` of a scene of moving discs: an RGB image and its label map (ids 1..objects)."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = (xx * 255 // max(width - 1, 1)).astype(np.uint8)
    image[..., 2] = 90
    labels = np.zeros((height, width), np.uint8)
    for obj in range(objects):
        cx = (0.25 + 0.5 * obj) * width + 2 * t * (1 if obj % 2 == 0 else -1)
        cy = height / 2 + 1.5 * t
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= (min(height, width) / 6) ** 2
        image[inside] = (60 + 150 * obj, 220 - 100 * obj, 40)
        labels[inside] = obj + 1
    return image, labels


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000, channels: int = 1) -> None:
    """Write float samples (N,) or (N, channels) in [-1, 1] as 16-bit PCM."""
    data = np.asarray(samples, np.float32).reshape(-1, channels)
    pcm = np.round(np.clip(data, -1, 1) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())


def write_davis_root(
    root: Path,
    names: tuple[str, ...] = ("alpha", "beta"),
    frames: int = 12,
    size: tuple[int, int] = (48, 64),
    davis2016: bool = False,
    audio_for: tuple[str, ...] = (),
) -> Path:
    """A DAVIS-style root (``JPEGImages/480p``, ``Annotations/480p``, ``ImageSets/train.txt``).

    ``davis2016``: single-object 0/255 greyscale masks instead of palette masks with two objects.
    ``audio_for``: videos that get an ``Audio/<seq>.wav`` (a 440 Hz tone of 1 s).
    """
    for name in names:
        for t in range(frames):
            image, labels = disc_scene(t, *size, objects=1 if davis2016 else 2)
            image_path = root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            image_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(image_path, quality=95)
            mask_path = root / "Annotations" / "480p" / name / f"{t:05d}.png"
            if davis2016:
                mask_path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray((labels > 0).astype(np.uint8) * 255, mode="L").save(mask_path)
            else:
                write_mask(mask_path, labels)
    (root / "ImageSets").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "train.txt").write_text("".join(f"{n}\n" for n in names))
    for name in audio_for:
        tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
        write_wav(root / "Audio" / f"{name}.wav", tone)
    return root


def write_youtube_root(root: Path, name: str = "yt0", frames: int = 30, step: int = 5) -> Path:
    """A YouTube-VOS style root: ``JPEGImages/<seq>`` with every frame, masks every ``step``-th frame."""
    for t in range(frames):
        image, labels = disc_scene(t, 40, 56)
        image_path = root / "JPEGImages" / name / f"{t:05d}.jpg"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(image_path)
        if t % step == 0:
            write_mask(root / "Annotations" / name / f"{t:05d}.png", labels)
    return root


def write_avsbench(root: Path, size: int = 32) -> Path:
    """An AVSBench data root with ``Single-source`` (S4: 2 train, 1 val clip) and ``Multi-sources`` (MS3: 1 train)."""
    s4 = root / "Single-source"
    s4.mkdir(parents=True, exist_ok=True)
    rows = [("s4a", 0, "dog_barking", "train"), ("s4b", 2, "dog_barking", "train"), ("s4c", 0, "helicopter", "val")]
    (s4 / "s4_meta_data.csv").write_text(
        "name,start,category,split\n" + "".join(f"{n},{s},{c},{p}\n" for n, s, c, p in rows)
    )
    for name, _, category, split in rows:
        for i in range(1, 6):
            image, labels = disc_scene(i, size, size, objects=1)
            frame = s4 / "s4_data" / "visual_frames" / split / category / name / f"{name}_{i}.png"
            frame.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(frame)
            if split != "train" or i == 1:
                mask = s4 / "s4_data" / "gt_masks" / split / category / name / f"{name}_{i}.png"
                mask.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray((labels > 0).astype(np.uint8) * 255, mode="L").save(mask)
        ramp = np.linspace(-0.5, 0.5, 5 * 16000)
        write_wav(
            s4 / "s4_data" / "audio_wav" / split / category / f"{name}.wav", np.stack([ramp, ramp], 1), channels=2
        )
    ms3 = root / "Multi-sources"
    ms3.mkdir(parents=True, exist_ok=True)
    (ms3 / "ms3_meta_data.csv").write_text("video_id,split\nms3a,train\n")
    for i in range(1, 6):
        image, labels = disc_scene(i, size, size)
        frame = ms3 / "ms3_data" / "visual_frames" / "ms3a" / f"ms3a.mp4_{i}.png"
        frame.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(frame)
        write_mask(ms3 / "ms3_data" / "gt_masks" / "train" / "ms3a" / f"ms3a_{i}.png", (labels > 0).astype(np.uint8))
    return root


def write_static_folder(root: Path, count: int = 3, size: tuple[int, int] = (40, 50)) -> Path:
    """Image + mask pairs side by side (``x.jpg`` + ``x.png``) and a DUTS-like ``*-Image``/``*-Mask`` pair."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, labels = disc_scene(i, *size, objects=1)
        Image.fromarray(image).save(root / f"img{i}.jpg")
        Image.fromarray((labels > 0).astype(np.uint8) * 255, mode="L").save(root / f"img{i}.png")
    image, labels = disc_scene(3, *size, objects=1)
    (root / "DUTS-TR" / "DUTS-TR-Image").mkdir(parents=True, exist_ok=True)
    (root / "DUTS-TR" / "DUTS-TR-Mask").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "DUTS-TR" / "DUTS-TR-Image" / "sun.jpg")
    Image.fromarray((labels > 0).astype(np.uint8) * 255, mode="L").save(root / "DUTS-TR" / "DUTS-TR-Mask" / "sun.png")
    return root
