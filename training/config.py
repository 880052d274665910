"""Training configuration: dataclasses, the stages' defaults, and ``--key value`` overrides.

A configuration is built in three layers: the dataclass defaults, the stage's defaults (:data:`STAGES`), then
command-line overrides. Every field can be overridden with its dotted name: ``--lr 1e-4``,
``--data.height 256``, ``--model.audio pixel``, ``--data.vos_roots a,b`` (tuples are comma-separated),
``--amp false``. ``--preset light|stcn`` picks the model family that ``model.*`` fields change.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avvos.config import ModelConfig

SHARED = Path(os.environ.get("AVVOS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
#: The only real VOS data on this project's machines (10 DAVIS-2016 *val* sequences): see training/README.md.
DAVIS_DEV = str(SHARED / "data" / "davis2016-dev")


@dataclass
class DataConfig:
    """What a stage reads and how samples are cut.

    ``vos_roots``: DAVIS / YouTube-VOS style roots (``main``: videos; ``static``: every annotated frame as an
    image). ``static_roots``: folders of image + mask pairs. ``avsbench_roots``: AVSBench S4/MS3 roots
    (``main``). ``synthetic_ratio``: the fraction of samples drawn from the synthetic AV task (``av``: 1).
    ``max_skip``/``max_skip_at``: the curriculum, skip values and the fractions of training they start at.
    """

    vos_roots: tuple[str, ...] = ()
    vos_split: str = ""
    static_roots: tuple[str, ...] = ()
    avsbench_roots: tuple[str, ...] = ()
    avsbench_split: str = "train"
    synthetic_ratio: float = 0.0
    av_clips: int = 100_000
    av_frames: int = 40
    av_splits: tuple[str, ...] = ("crossing", "distinct")
    height: int = 384
    width: int = 384
    num_frames: int = 8
    objects: int = 2
    fps: float = 24.0
    max_skip: tuple[int, ...] = (5, 10, 15, 20, 25, 5)
    max_skip_at: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.9)
    workers: int = 2


@dataclass
class TrainConfig:
    """One training run. ``batch_size`` is per process; ``lr_steps`` are MultiStepLR milestones (iterations);
    ``bce_*`` is the bootstrapped cross-entropy's warm-up; ``init`` an official STCN or avvos checkpoint to
    start from (else ImageNet backbones when ``pretrained``); ``save_every`` is the resume-checkpoint period;
    ``audio_init_std`` is the random start given to all-zero audio key channels (the STCN-exact initialisation,
    where they cannot learn: see ``training.train.unlock_audio_channels``; 0 leaves them at zero);
    ``reset_audio`` draws that start even when the channels are not zero (to restart a warm-started run whose
    audio channels stayed too small to matter). ``sounding_weight`` weighs the loss that trains the audio key
    channels to mark where the heard object is (``training.loss.sounding_loss``; 0: the segmentation loss alone).
    ``freeze_trunks`` keeps the ImageNet trunks as they are (the key encoder, and the value encoder but for its
    first convolution, which reads the masks): far fewer weights to fit, for training on a handful of videos.
    ``train_only``: parameter-name prefixes to fit, every other weight kept as it is (``smoother.``: fit the
    readout smoother of a trained model, so that switching it off gives that model back exactly).
    ``steady_weight`` weighs the loss on masks changing more from frame to frame than the truth does
    (``training.loss.steady_loss``, the task's flicker made differentiable; 0: off); ``regress_weight`` the loss
    on masks moving away from the truth since the frame before (``training.loss.regress_loss``, which lets a
    mask drop a mistake at no cost; 0: off). ``memory_every``: each frame
    reads the memory inference keeps (frame 0, every ``memory_every``-th frame and the previous one) instead of
    all earlier frames (0)."""

    stage: str = "main"
    preset: str = "light"
    model: ModelConfig = field(default_factory=ModelConfig.light)
    data: DataConfig = field(default_factory=DataConfig)
    iterations: int = 150_000
    batch_size: int = 4
    lr: float = 1e-5
    weight_decay: float = 1e-7
    lr_steps: tuple[int, ...] = (125_000,)
    lr_gamma: float = 0.1
    bce_start_warm: int = 20_000
    bce_end_warm: int = 70_000
    bce_top_p: float = 0.15
    grad_clip: float = 3.0
    amp: bool = True
    seed: int = 14159265
    init: str = ""
    pretrained: bool = True
    out_dir: str = ""
    save_every: int = 1000
    audio_init_std: float = 0.05
    reset_audio: bool = False
    sounding_weight: float = 1.0
    freeze_trunks: bool = False
    train_only: tuple[str, ...] = ()
    steady_weight: float = 0.0
    regress_weight: float = 0.0
    memory_every: int = 0
    log_every: int = 20
    image_every: int = 500
    device: str = "auto"
    threads: int = 0
    progress: bool = True

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["model"] = self.model.to_dict()
        return json.dumps(data, sort_keys=True)


#: Each stage's defaults on top of the dataclass defaults, and what it is for.
STAGES: dict[str, dict[str, Any]] = {
    "static": {
        "about": "STCN stage 0: fake videos warped from static images (here: DAVIS frames as images)",
        "iterations": 150_000,
        "batch_size": 8,
        "lr_steps": (100_000,),
        "data.vos_roots": (DAVIS_DEV,),
        "data.num_frames": 3,
        "data.objects": 1,
        "model.audio": "none",
        "model.smoothing": False,
    },
    "main": {
        "about": "real videos (DAVIS/YouTube-VOS style roots) mixed with the synthetic AV task, 8-frame samples",
        "iterations": 150_000,
        "batch_size": 4,
        "lr_steps": (125_000,),
        "data.vos_roots": (DAVIS_DEV,),
        "data.synthetic_ratio": 0.2,
        "data.num_frames": 8,
        "model.audio": "pixel",
        "model.smoothing": True,
    },
    "av": {
        "about": "the synthetic audio-visual task only, 8-frame samples at 192x320",
        "iterations": 20_000,
        "batch_size": 4,
        "lr_steps": (15_000,),
        "bce_start_warm": 2_000,
        "bce_end_warm": 8_000,
        "data.synthetic_ratio": 1.0,
        "data.height": 192,
        "data.width": 320,
        "data.num_frames": 8,
        "data.objects": 1,
        "model.audio": "pixel",
        "model.smoothing": True,
    },
}


def _convert(text: Any, kind: Any, name: str) -> Any:
    """A command-line string as the field's type (tuples comma-separated, bools true/false)."""
    if not isinstance(text, str):
        return text
    origin = typing.get_origin(kind)
    if origin is tuple:
        args = typing.get_args(kind)
        items = [item.strip() for item in text.split(",") if item.strip()]
        element = args[0] if args else str
        return tuple(_convert(item, element, name) for item in items)
    if kind is bool:
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"--{name} takes true or false, got {text!r}")
        return lowered in ("true", "1", "yes")
    if kind in (int, float, str):
        try:
            return kind(text)
        except ValueError as exc:
            raise ValueError(f"--{name} takes a {kind.__name__}, got {text!r}") from exc
    raise ValueError(f"--{name} cannot be set from the command line")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def make_config(stage: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The configuration of ``stage`` with ``overrides`` (dotted names to values or command-line strings)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: choose one of {', '.join(STAGES)}")
    values = {k: v for k, v in STAGES[stage].items() if k != "about"}
    values.update(overrides or {})
    top_types, data_types = _field_types(TrainConfig), _field_types(DataConfig)
    model_types = _field_types(ModelConfig)
    top: dict[str, Any] = {"stage": stage}
    data: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for name, value in values.items():
        group, _, leaf = name.rpartition(".")
        if group == "data" and leaf in data_types:
            data[leaf] = _convert(value, data_types[leaf], name)
        elif group == "model" and leaf in model_types:
            model[leaf] = _convert(value, model_types[leaf], name)
        elif not group and leaf in top_types and leaf not in ("model", "data", "stage"):
            top[leaf] = _convert(value, top_types[leaf], name)
        else:
            raise ValueError(f"unknown setting --{name}")
    preset = top.get("preset", "light")
    if preset not in ("light", "stcn"):
        raise ValueError(f"--preset must be light or stcn, got {preset!r}")
    top["model"] = (ModelConfig.light if preset == "light" else ModelConfig.stcn)(**model)
    top["data"] = DataConfig(**data)
    config = TrainConfig(**top)
    if not config.out_dir:
        config.out_dir = str(Path("runs") / stage)
    if len(config.data.max_skip) != len(config.data.max_skip_at):
        raise ValueError("data.max_skip and data.max_skip_at need the same number of entries")
    if config.memory_every < 0 or min(config.steady_weight, config.regress_weight) < 0:
        raise ValueError(
            "--memory_every, --steady_weight and --regress_weight cannot be negative: "
            f"{config.memory_every}, {config.steady_weight}, {config.regress_weight}"
        )
    return config


def parse_args(argv: list[str]) -> TrainConfig:
    """``--stage NAME`` and ``--key value`` pairs (or ``--key=value``) to a configuration."""
    pairs: dict[str, str] = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        if not arg.startswith("--"):
            raise ValueError(f"expected --key value, got {arg!r}")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            index += 1
        else:
            if index + 1 >= len(argv):
                raise ValueError(f"{arg} needs a value")
            key, value = arg[2:], argv[index + 1]
            index += 2
        pairs[key.replace("-", "_")] = value
    stage = pairs.pop("stage", None)
    if stage is None:
        raise ValueError(f"--stage is required: one of {', '.join(STAGES)}")
    return make_config(stage, pairs)


def describe_stages() -> str:
    """One line per stage, for ``--help``."""
    return "\n".join(f"  {name:<7} {spec['about']}" for name, spec in STAGES.items())
