"""Turn a training run's resume checkpoint into shippable avvos weights (``.safetensors``).

Useful to publish the weights of a run stopped before its last iteration:

    python -m training.export runs/default/resume.pt avvos/weights/default.safetensors \\
        --description "light avvos model, 1500 iterations on DAVIS-2016 dev + synthetic AV"

The resume file is read with ``weights_only=True``; its stored configuration gives the architecture.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from avvos.checkpoint import save_checkpoint
from avvos.config import ModelConfig
from avvos.model.stcn import build_model


def export(resume: Path, out: Path, description: str = "", process_size: int | None = None) -> dict:
    """Write the model of ``resume`` to ``out``; returns what was stored in the checkpoint's ``extra``.

    ``process_size`` records the shorter side the weights should work at (:attr:`ModelConfig.process_size`).
    """
    state = torch.load(resume, map_location="cpu", weights_only=True)
    config = json.loads(state["config"])
    model_config = ModelConfig.from_dict(config["model"])
    if process_size is not None:
        model_config = replace(model_config, process_size=process_size)
    model = build_model(model_config)
    model.load_state_dict(state["model"])
    extra = {"iterations": int(state["iteration"]), "training_config": config}
    save_checkpoint(model, out, description=description, extra=extra)
    return extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("resume", type=Path, help="a run's resume.pt")
    parser.add_argument("out", type=Path, help="the .safetensors file to write")
    parser.add_argument("--description", default="", help="a sentence saying what the weights are")
    parser.add_argument(
        "--process-size", type=int, help="shorter side the weights should work at (default: STCN's rule, up to 480p)"
    )
    args = parser.parse_args(argv)
    extra = export(args.resume, args.out, args.description, args.process_size)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB) from iteration {extra['iterations']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
