"""How much the audio channels of a model weigh in its matching, on one held-out clip.

Why: a model can have audio channels that learn yet change no mask; this says by how much they fall short.

    python -m training.audio_influence W.safetensors --data runs/av_eval/data

Prints, for the first clip of ``ImageSets/crossing.txt`` under ``--data`` (written by ``training.evaluate_av``):
the RMS of the visual and of the audio key channels (frame 0 with its sound, normalised as the session
does), and the largest change of any object probability over the clip between running it with its sound
and without audio, with the identity check (:mod:`avvos.identity`, which also uses the sound) switched off.
Then, over every crossing clip, the *sounding contrast*: the clip's sounding map (what
``training.loss.sounding_loss`` trains: the audio key channels' sum times ``SOUNDING_SCALE``) averaged over
the target's cells minus over the distractors' cells, per visible mapping. Zero means the audio channels
do not tell the heard object from its look-alikes, whatever their size.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avvos.checkpoint import load_model
from avvos.config import IMAGENET_MEAN, IMAGENET_STD, InferenceConfig
from avvos.data.av_sync import read_distractor_masks, read_meta
from avvos.errors import InputError
from avvos.masks import read_mask
from avvos.model.audio import SyncHistory
from avvos.model.stcn import STCN
from avvos.segment import find_audio
from avvos.session import InferenceSession
from avvos.sources import open_frames
from training.forward import SOUNDING_SCALE


def load_audio_model(weights: Path) -> STCN:
    """An audio-visual checkpoint in eval mode (a clear error for a visual-only one)."""
    model, _ = load_model(weights)
    if not model.uses_audio:
        raise InputError(f"{weights} has no audio channels")
    return model.eval()


def audio_influence(model: STCN, data: Path) -> dict[str, float]:
    """``visual_rms``, ``audio_rms`` (key channels, frame 0) and ``max_prob_change`` (with vs without audio)."""
    name = (data / "ImageSets" / "crossing.txt").read_text().split()[0]
    frames_dir = data / "JPEGImages" / name
    audio, _ = find_audio(frames_dir, None, data, name)
    if audio is None:
        raise InputError(f"no Audio/{name}.wav under {data}")
    first = read_mask(data / "Annotations" / name / "00000.png")
    runs: dict[bool, torch.Tensor] = {}
    rms: dict[str, float] = {}
    for with_audio in (True, False):
        session = InferenceSession(model, InferenceConfig(audio_identity=False), "cpu")  # the channels alone
        probs = []
        with open_frames(frames_dir, fps=25.0) as source, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*running without audio")
            for frame in source:
                window = audio.window(frame.time) if with_audio else None
                probs.append(session.step(frame.image, window, mask=first if frame.index == 0 else None).probs)
                if with_audio and frame.index == 0:
                    with torch.no_grad():
                        key = frame_key(model, _normalised(frame.image), window, SyncHistory())
                    visual, heard = key[: model.config.key_dim], key[model.config.key_dim :]
                    rms = {
                        "visual_rms": float(visual.pow(2).mean().sqrt()),
                        "audio_rms": float(heard.pow(2).mean().sqrt()),
                    }
        runs[with_audio] = torch.stack(probs)
    return {**rms, "max_prob_change": float((runs[True] - runs[False]).abs().max())}


def frame_key(model: STCN, image: torch.Tensor, window: np.ndarray | None, history: SyncHistory) -> torch.Tensor:
    """The joint key (C, h, w) of one frame of a clip played in order (``window`` None: no audio)."""
    embedding = None if window is None else model.encode_audio(torch.from_numpy(window)[None])
    frames = None
    if model.config.audio == "sync":
        frames = history.push(image, embedding)
    return model.encode_key(image, embedding, frames).key[0]


def _normalised(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 → (1, 3, H', W') normalised, padded on the right and bottom to multiples of 16."""
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return F.pad(x, (0, -x.shape[-1] % 16, 0, -x.shape[-2] % 16))


def cell_mean(values: torch.Tensor, mask: np.ndarray) -> float:
    """Mean of an (h, w) map over the cells a full-size boolean mask covers, weighted by its coverage."""
    height, width = mask.shape
    padded = torch.from_numpy(np.pad(mask, ((0, -height % 16), (0, -width % 16)))).float()[None, None]
    weight = F.adaptive_avg_pool2d(padded, values.shape)[0, 0]
    return float((values * weight).sum() / weight.sum()) if weight.sum() > 0 else float("nan")


@torch.no_grad()
def sounding_contrast(model: STCN, data: Path) -> dict[str, float]:
    """Mean over crossing clips of (sounding map on the target − on the distractors), overall and per mapping."""
    per_mapping: dict[str, list[float]] = {}
    for name in (data / "ImageSets" / "crossing.txt").read_text().split():
        audio, _ = find_audio(data / "JPEGImages" / name, None, data, name)
        if audio is None:
            raise InputError(f"no Audio/{name}.wav under {data}")
        distractors = read_distractor_masks(data, name).any(axis=1)
        gaps = []
        history = SyncHistory()
        with open_frames(data / "JPEGImages" / name, fps=25.0) as source:
            for frame in source:
                key = frame_key(model, _normalised(frame.image), audio.window(frame.time), history)
                sounding = key[model.config.key_dim :].sum(dim=0) * SOUNDING_SCALE
                target = read_mask(data / "Annotations" / name / f"{frame.name}.png") == 1
                gaps.append(cell_mean(sounding, target) - cell_mean(sounding, distractors[frame.index]))
        mapping = read_meta(data, name)["meta"]["mapping"]
        per_mapping.setdefault(mapping, []).append(float(np.nanmean(gaps)))
    every = [gap for gaps in per_mapping.values() for gap in gaps]
    return {"all": float(np.mean(every)), **{m: float(np.mean(g)) for m, g in sorted(per_mapping.items())}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.audio_influence", description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path, help="an audio-visual avvos checkpoint")
    parser.add_argument("--data", type=Path, default=Path("runs/av_eval/data"), help="held-out clips (evaluate_av)")
    args = parser.parse_args(argv)
    model = load_audio_model(args.weights)
    figures = audio_influence(model, args.data)
    print(
        f"{args.weights}: key RMS visual {figures['visual_rms']:.3f}, audio {figures['audio_rms']:.3f}; "
        f"largest probability change from the sound {figures['max_prob_change']:.4f}"
    )
    contrast = sounding_contrast(model, args.data)
    shown = ", ".join(f"{mapping} {value:+.3f}" for mapping, value in contrast.items() if mapping != "all")
    print(f"sounding contrast (target minus distractors, log-odds): {contrast['all']:+.3f} ({shown})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
