"""How much the audio channels of a model weigh in its matching, on one held-out clip.

Why: a model can have audio channels that learn yet change no mask; this says by how much they fall short.

    python -m training.audio_influence W.safetensors --data runs/av_eval/data

Prints, for the first clip of ``ImageSets/crossing.txt`` under ``--data`` (written by ``training.evaluate_av``):
the RMS of the visual and of the audio key channels (frame 0 with its sound, normalised as the session
does), and the largest change of any object probability over the clip between running it with its sound
and without audio.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch

from avvos.checkpoint import load_model
from avvos.config import IMAGENET_MEAN, IMAGENET_STD, InferenceConfig
from avvos.errors import InputError
from avvos.masks import read_mask
from avvos.segment import find_audio
from avvos.session import InferenceSession
from avvos.sources import open_frames


def audio_influence(weights: Path, data: Path) -> dict[str, float]:
    """``visual_rms``, ``audio_rms`` (key channels, frame 0) and ``max_prob_change`` (with vs without audio)."""
    model, _ = load_model(weights)
    if not model.uses_audio:
        raise InputError(f"{weights} has no audio channels")
    name = (data / "ImageSets" / "crossing.txt").read_text().split()[0]
    frames_dir = data / "JPEGImages" / name
    audio, _ = find_audio(frames_dir, None, data, name)
    if audio is None:
        raise InputError(f"no Audio/{name}.wav under {data}")
    first = read_mask(data / "Annotations" / name / "00000.png")
    runs: dict[bool, torch.Tensor] = {}
    rms: dict[str, float] = {}
    for with_audio in (True, False):
        session = InferenceSession(model, InferenceConfig(), "cpu")
        probs = []
        with open_frames(frames_dir, fps=25.0) as source, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*running without audio")
            for frame in source:
                window = audio.window(frame.time) if with_audio else None
                probs.append(session.step(frame.image, window, mask=first if frame.index == 0 else None).probs)
                if with_audio and frame.index == 0:
                    image = torch.from_numpy(frame.image).permute(2, 0, 1)[None].float() / 255
                    image = (image - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
                        1, 3, 1, 1
                    )
                    with torch.no_grad():
                        key = model.encode_key(image, model.encode_audio(torch.from_numpy(window)[None])).key[0]
                    visual, heard = key[: model.config.key_dim], key[model.config.key_dim :]
                    rms = {
                        "visual_rms": float(visual.pow(2).mean().sqrt()),
                        "audio_rms": float(heard.pow(2).mean().sqrt()),
                    }
        runs[with_audio] = torch.stack(probs)
    return {**rms, "max_prob_change": float((runs[True] - runs[False]).abs().max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.audio_influence", description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path, help="an audio-visual avvos checkpoint")
    parser.add_argument("--data", type=Path, default=Path("runs/av_eval/data"), help="held-out clips (evaluate_av)")
    args = parser.parse_args(argv)
    figures = audio_influence(args.weights, args.data)
    print(
        f"{args.weights}: key RMS visual {figures['visual_rms']:.3f}, audio {figures['audio_rms']:.3f}; "
        f"largest probability change from the sound {figures['max_prob_change']:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
