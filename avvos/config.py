"""All configuration in one place: dataclasses shared by the CLI, the demos and training."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar

import torch

from avvos.errors import DeviceError

#: ImageNet normalisation used by every encoder (STCN uses the same constants).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Config = TypeVar("Config")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a model. Stored inside avvos checkpoints so they load with no extra flags.

    The defaults are the official STCN evaluation network; :meth:`light` is the small CPU variant.

    * ``key_backbone``: ``resnet50`` (STCN) or ``mobilenet_v2``; ``value_backbone``: ``resnet18``
      (STCN) or ``mobilenet_v2``.
    * ``decoder_dims``: widths after the stride-16 compression and the stride-8 and stride-4 stages.
    * ``audio``: ``none``, ``frame`` (one audio vector appended to every key position), ``pixel``
      (per-position channels from the visual features modulated by the audio embedding) or ``sync``
      (per-position channels from the last frames' changes modulated by their sounds' changes). The
      ``audio_dim`` channels join the visual key; they start at zero, so an untrained audio model
      matches exactly as the visual model does.
    * ``smoothing``: a per-object convolutional GRU over successive memory readouts; its output
      starts at zero, so an untrained smoother changes nothing.
    * ``process_size``: the shorter side these weights work at (set when they are exported, from the
      resolution they were trained and measured at); larger frames are scaled down to it unless
      :attr:`InferenceConfig.size` says otherwise. None: STCN's rule (as is up to 480p).
    """

    key_backbone: str = "resnet50"
    value_backbone: str = "resnet18"
    key_dim: int = 64
    value_dim: int = 512
    decoder_dims: tuple[int, int, int] = (512, 256, 256)
    use_cbam: bool = True
    audio: str = "none"
    audio_dim: int = 16
    audio_embed_dim: int = 128
    smoothing: bool = False
    smoothing_dim: int = 64
    process_size: int | None = None

    def __post_init__(self) -> None:
        if self.process_size is not None and self.process_size < 16:
            raise ValueError(f"process_size must be at least 16 pixels, got {self.process_size}")
        if self.key_backbone not in ("resnet50", "mobilenet_v2"):
            raise ValueError(f"key_backbone must be resnet50 or mobilenet_v2, got {self.key_backbone!r}")
        if self.value_backbone not in ("resnet18", "mobilenet_v2"):
            raise ValueError(f"value_backbone must be resnet18 or mobilenet_v2, got {self.value_backbone!r}")
        if self.audio not in ("none", "frame", "pixel", "sync"):
            raise ValueError(f"audio must be none, frame, pixel or sync, got {self.audio!r}")
        object.__setattr__(self, "decoder_dims", tuple(self.decoder_dims))

    @property
    def key_channels(self) -> int:
        """Channels of the joint key: visual key plus audio channels."""
        return self.key_dim + (self.audio_dim if self.audio != "none" else 0)

    @classmethod
    def stcn(cls, **changes: Any) -> ModelConfig:
        """The official STCN network (optionally with audio or smoothing switched on)."""
        return cls(**changes)

    @classmethod
    def light(cls, **changes: Any) -> ModelConfig:
        """MobileNetV2 encoders and a narrow decoder: the fast CPU variant."""
        base = dict(
            key_backbone="mobilenet_v2",
            value_backbone="mobilenet_v2",
            value_dim=128,
            decoder_dims=(128, 64, 32),
            smoothing_dim=32,
        )
        return cls(**{**base, **changes})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["decoder_dims"] = list(self.decoder_dims)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model configuration fields: {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class InferenceConfig:
    """How a video is propagated. The defaults reproduce the official STCN evaluation.

    ``size``: shorter side to process at. ``None`` processes frames up to ``max_size`` as they
    are and scales larger ones down to ``max_size``; masks always come back at the input size.
    ``memory_frames``: bound on the memory, in frames (None: unbounded, as STCN); the first frame
    stays pinned and ``memory_policy`` (``usage`` or ``fifo``) chooses what else is kept.
    ``amp``: bf16 (or fp16) autocast on CUDA; ``compile``: ``torch.compile`` the key encoder and decoder.
    ``smoothing``: use the model's readout smoother when it has one (False reads each frame on its own, as
    STCN does: for ablations).
    ``audio_identity``: when a single annotated object has look-alikes, let the sound decide, over the last
    ``identity_window`` frames, which of them is the object, assuming the annotated object is the one heard
    (:mod:`avvos.identity`). None: on for audio-visual models, off for visual ones (so STCN weights give STCN's
    results).
    ``include_last``: also match against the previous frame (kept in a one-frame temporary memory slot), so
    that a frame is not matched only against frames up to ``mem_every`` back. None: on for audio-visual
    models (measured on the synthetic task: higher J&F and steadier masks where look-alikes cross), off for
    visual ones (STCN's evaluation). It encodes a memory value every frame, which halves the frame rate on CPU,
    so live streams (``avvos live``, the web demo's webcam tab) leave it off unless asked.
    ``identity_lookback``: how many frames back the identity check may mend the object's mask once the sound
    tells that two look-alikes were swapped as they parted (masks are handed on that many frames late). None:
    ``identity_window`` frames. Live streams (:meth:`for_live`) show each mask as it comes: 0.
    """

    top_k: int = 20
    mem_every: int = 5
    include_last: bool | None = None
    size: int | None = None
    max_size: int = 480
    amp: bool = False
    memory_frames: int | None = None
    memory_policy: str = "usage"
    compile: bool = False
    smoothing: bool = True
    audio_identity: bool | None = None
    identity_window: int = 12
    identity_lookback: int | None = None

    def __post_init__(self) -> None:
        if self.identity_lookback is not None and self.identity_lookback < 0:
            raise ValueError(f"identity_lookback must be at least 0 frames, got {self.identity_lookback}")
        if self.identity_window < 4:
            raise ValueError(f"identity_window must be at least 4 frames, got {self.identity_window}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.mem_every < 1:
            raise ValueError(f"mem_every must be at least 1, got {self.mem_every}")
        if self.memory_frames is not None and self.memory_frames < 2:
            raise ValueError(f"memory_frames must be at least 2 (the pinned first frame + 1), got {self.memory_frames}")
        if self.memory_policy not in ("usage", "fifo"):
            raise ValueError(f"memory_policy must be usage or fifo, got {self.memory_policy!r}")
        if self.size is not None and self.size < 16:
            raise ValueError(f"size must be at least 16 pixels, got {self.size}")

    def for_live(self) -> InferenceConfig:
        """These settings for a live stream: the previous frame is matched only when asked for (``True``), since
        it halves the frame rate on CPU; masks are shown as they come, never held back to be mended."""
        return replace(self, include_last=bool(self.include_last), identity_lookback=0)


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N`` into a device, failing clearly if it is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {name!r}: use auto, cpu or cuda") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} was asked for but CUDA is not available here; use --device cpu")
    return device


def config_from_options(cls: type[Config], options: Any, **values: Any) -> Config:
    """A configuration dataclass from parsed command-line options: every field named like an option takes its
    value, ``values`` set the rest (options named otherwise, or converted)."""
    given = vars(options)
    taken = {f.name: given[f.name] for f in fields(cls) if f.name in given and f.name not in values}
    return cls(**taken, **values)
