"""How strongly does a position's change over time follow the sound? The ``sync`` design's cue, computed by hand.

For each frame of the held-out crossing clips: frames at stride 4, the loudness of each frame's last 40 ms
(log mean energy of :class:`~avvos.model.audio.RecentBands`), and per position and colour the normalised
correlation of the last ``history`` frame-to-frame changes with the loudness changes; its mean absolute value
over the target's cells is compared with that over the silent look-alikes' cells. If the target is not clearly
higher here, no model built on this per-position cue can single it out.

    python -m training.sync_cue --data runs/av_eval/data --history 10
    python -m training.sync_cue --per-object     # the same, per object, following it with its mask
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avvos.data.av_sync import read_distractor_masks, read_meta
from avvos.errors import InputError
from avvos.identity import region_state
from avvos.masks import read_mask
from avvos.model.audio import SYNC_STRIDE, RecentBands
from avvos.segment import find_audio
from avvos.sources import open_frames


def load_clip(
    data: Path, name: str, bands: RecentBands
) -> tuple[list[torch.Tensor], list[float], list[np.ndarray], np.ndarray]:
    """A held-out clip's frames (3, H, W) in [0, 1], each frame's loudness, target masks and look-alike masks
    (T, K, H, W)."""
    audio, _ = find_audio(data / "JPEGImages" / name, None, data, name)
    if audio is None:
        raise InputError(f"no Audio/{name}.wav under {data}")
    images, loudness, targets = [], [], []
    with open_frames(data / "JPEGImages" / name, fps=25.0) as source:
        for frame in source:
            images.append(torch.from_numpy(np.array(frame.image)).permute(2, 0, 1).float() / 255)
            energy = torch.exp(bands(torch.from_numpy(audio.window(frame.time))[None]) * 4 - 4)
            loudness.append(float(torch.log(energy.mean())))
            targets.append(read_mask(data / "Annotations" / name / f"{frame.name}.png") == 1)
    return images, loudness, targets, read_distractor_masks(data, name)


def object_states(images: list[torch.Tensor], masks: list[np.ndarray]) -> np.ndarray:
    """(T, 3) visible state of one object over time: mean brightness inside its mask, its area, and the
    fraction of its pixels darker than half its median (a mouth) (:func:`avvos.identity.region_state`, with the
    area itself rather than its log); NaN where it is not visible."""
    states = np.full((len(images), 3), np.nan)
    for t, (image, mask) in enumerate(zip(images, masks, strict=True)):
        if mask.any():
            states[t] = region_state(image.mean(dim=0).numpy(), mask)
            states[t, 1] = mask.sum()
    return states


def change_correlation(frames: torch.Tensor, loudness: torch.Tensor) -> torch.Tensor:
    """(N, 3, h, w) frames and (N,) loudness → (h, w) mean over colours of |corr(frame changes, loudness changes)|."""
    steps = frames[1:] - frames[:-1]
    louder = (loudness[1:] - loudness[:-1])[:, None, None, None]
    norm = (steps.pow(2).sum(dim=0) + 1e-6).sqrt() * (louder.pow(2).sum(dim=0) + 1e-6).sqrt()
    return ((steps * louder).sum(dim=0) / norm).abs().mean(dim=0)


@torch.no_grad()
def sync_cue(data: Path, history: int = 10) -> dict[str, dict[str, float]]:
    """Per visible mapping: mean cue on ``target`` and on ``lookalikes`` cells, and ``clips_higher`` of ``clips``."""
    names = (data / "ImageSets" / "crossing.txt").read_text().split()
    bands = RecentBands()
    per_mapping: dict[str, list[tuple[float, float]]] = {}
    for name in names:
        images, loudness, targets, distractors = load_clip(data, name, bands)
        lookalikes = distractors.any(axis=1)
        frames = [F.avg_pool2d(image[None], SYNC_STRIDE)[0] for image in images]
        stack, heard = torch.stack(frames), torch.tensor(loudness)
        centre = SYNC_STRIDE // 2
        pairs = []
        for t in range(history, len(frames)):
            cue = change_correlation(stack[t - history : t + 1], heard[t - history : t + 1])
            target, others = (
                torch.from_numpy(np.ascontiguousarray(m[centre::SYNC_STRIDE, centre::SYNC_STRIDE]))[
                    : cue.shape[0], : cue.shape[1]
                ]
                for m in (targets[t], lookalikes[t])
            )
            if target.any() and others.any():
                pairs.append((float(cue[target].mean()), float(cue[others].mean())))
        if pairs:
            mapping = read_meta(data, name)["meta"]["mapping"]
            per_mapping.setdefault(mapping, []).append(tuple(np.mean(pairs, axis=0)))
    return _summary(per_mapping)


@torch.no_grad()
def object_cue(data: Path, history: int = 10) -> dict[str, dict[str, float]]:
    """As :func:`sync_cue`, but per object, following it with its ground-truth mask: the largest over its
    brightness, area and mouth of |corr(state changes, loudness changes)| over the last ``history`` changes,
    for the target against the mean over its look-alikes (windows where all are visible throughout)."""
    bands = RecentBands()
    per_mapping: dict[str, list[tuple[float, float]]] = {}
    for name in (data / "ImageSets" / "crossing.txt").read_text().split():
        images, loudness, targets, distractors = load_clip(data, name, bands)
        heard = np.asarray(loudness)
        states = [object_states(images, targets)]
        states += [object_states(images, list(distractors[:, k])) for k in range(distractors.shape[1])]
        pairs = []
        for t in range(history, len(images)):
            louder = np.diff(heard[t - history : t + 1])
            cues = []
            for state in states:
                steps = np.diff(state[t - history : t + 1], axis=0)
                norm = np.sqrt((steps**2).sum(axis=0) + 1e-12) * np.sqrt((louder**2).sum() + 1e-12)
                cues.append(float(np.max(np.abs((steps * louder[:, None]).sum(axis=0) / norm))))
            if all(np.isfinite(cues)):
                pairs.append((cues[0], float(np.mean(cues[1:]))))
        if pairs:
            mapping = read_meta(data, name)["meta"]["mapping"]
            per_mapping.setdefault(mapping, []).append(tuple(np.mean(pairs, axis=0)))
    return _summary(per_mapping)


def _summary(per_mapping: dict[str, list[tuple[float, float]]]) -> dict[str, dict[str, float]]:
    return {
        mapping: {
            "target": float(np.mean([a for a, _ in values])),
            "lookalikes": float(np.mean([b for _, b in values])),
            "clips_higher": float(sum(a > b for a, b in values)),
            "clips": float(len(values)),
        }
        for mapping, values in sorted(per_mapping.items())
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.sync_cue", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("runs/av_eval/data"), help="held-out clips (evaluate_av)")
    parser.add_argument("--history", type=int, default=10, help="frame-to-frame changes per window (default 10)")
    parser.add_argument("--per-object", action="store_true", help="follow each object with its mask instead")
    args = parser.parse_args(argv)
    measure = object_cue if args.per_object else sync_cue
    for mapping, row in measure(args.data, args.history).items():
        print(
            f"{mapping}: target {row['target']:.3f}, look-alikes {row['lookalikes']:.3f} "
            f"(target higher in {row['clips_higher']:.0f}/{row['clips']:.0f} clips)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
