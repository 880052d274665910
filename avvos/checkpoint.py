"""Loading and saving weights without ever unpickling untrusted code.

Two formats load:

* **official STCN** ``.pth`` files (a flat state dict of 405 tensors, e.g. ``stcn.pth``), read with
  ``torch.load(weights_only=True)``; a single-object (stage 0) value encoder is widened from 4 to 5
  input channels with zeros, as the official evaluation scripts do. Resume checkpoints
  (``{"network": ...}``) and DDP ``module.`` prefixes are accepted too;
* **avvos** ``.safetensors`` files, which carry their :class:`~avvos.config.ModelConfig` in the
  header metadata, so every model variant loads with no extra flags.

Everything else gets a :class:`~avvos.errors.CheckpointError` that says what is wrong.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from avvos.config import ModelConfig
from avvos.errors import CheckpointError
from avvos.model.stcn import STCN, build_model

FORMAT_NAME = "avvos"
FORMAT_VERSION = 1
_SAFETENSORS_SUFFIXES = {".safetensors", ".st"}


@dataclass
class CheckpointInfo:
    """Where a model's weights came from, for messages such as "using weights X"."""

    path: Path
    kind: str  # "official-stcn" or "avvos"
    config: ModelConfig
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        extra = f" ({'; '.join(self.notes)})" if self.notes else ""
        label = self.metadata.get("description") or (
            "official STCN checkpoint" if self.kind == "official-stcn" else "avvos checkpoint"
        )
        return f"{label}: {self.path}{extra}"


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[STCN, CheckpointInfo]:
    """Build the model a checkpoint describes and load its weights strictly, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix in _SAFETENSORS_SUFFIXES or _looks_like_safetensors(path):
        state, config, metadata = _read_avvos(path)
        info = CheckpointInfo(path, "avvos", config, metadata=metadata)
    else:
        state = _read_torch(path)
        config = ModelConfig()
        info = CheckpointInfo(path, "official-stcn", config)
        state = _official_to_avvos(state, info)
    model = build_model(config)
    _load_strict(model, state, path)
    return model.to(device).eval(), info


def save_checkpoint(model: STCN, path: str | Path, description: str = "", extra: dict[str, Any] | None = None) -> None:
    """Write an avvos ``.safetensors`` checkpoint atomically (temporary file, then rename)."""
    path = Path(path)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "model_config": json.dumps(model.config.to_dict()),
        "description": description,
        "extra": json.dumps(extra or {}),
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; weights are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _looks_like_safetensors(path: Path) -> bool:
    """safetensors files start with an 8-byte header length followed by ``{``."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_avvos(path: Path) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, Any]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {exc}") from exc
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path} is a safetensors file but not an avvos checkpoint: its header has no "
            f"'format: avvos' entry (found metadata keys: {sorted(metadata) or 'none'})"
        )
    version = int(metadata.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} uses avvos checkpoint format {version}; this avvos reads up to {FORMAT_VERSION}")
    try:
        config = ModelConfig.from_dict(json.loads(metadata["model_config"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path} has an unreadable model configuration: {exc}") from exc
    metadata.pop("model_config")
    return state, config, metadata


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} holds Python objects other than tensors, which avvos refuses to unpickle "
            f"(weights_only loading). Re-save a plain state dict. Details: {str(exc).splitlines()[0]}"
        ) from exc
    except Exception as exc:  # torch.load raises many types for damaged or foreign files
        raise CheckpointError(f"cannot read {path}: the file is truncated or not a PyTorch checkpoint ({exc})") from exc
    if isinstance(obj, dict) and "network" in obj and isinstance(obj["network"], dict):
        obj = obj["network"]  # an official resume checkpoint
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors (found {type(obj).__name__})")
    return obj


def _official_to_avvos(state: dict[str, torch.Tensor], info: CheckpointInfo) -> dict[str, torch.Tensor]:
    """Strip DDP prefixes and widen a single-object value encoder, as the official loader does."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
        info.notes.append("stripped DDP 'module.' prefixes")
    conv1 = state.get("value_encoder.conv1.weight")
    if conv1 is not None and conv1.dim() == 4 and conv1.shape[1] == 4:
        state = dict(state)
        zeros = conv1.new_zeros(conv1.shape[0], 1, *conv1.shape[2:])
        state["value_encoder.conv1.weight"] = torch.cat([conv1, zeros], dim=1)
        info.notes.append("widened the single-object value encoder from 4 to 5 input channels with zeros")
    return state


def _load_strict(model: STCN, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:4])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:4])})")
        hint = ""
        if len(missing) == len(expected):
            hint = " None of the expected keys is there: this is not an STCN or avvos checkpoint."
        raise CheckpointError(f"{path} does not match the model's architecture: {'; '.join(parts)}.{hint}")
    wrong = [
        f"{k} {tuple(state[k].shape)} vs expected {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise CheckpointError(
            f"{path} has tensors of the wrong shape for this architecture: {'; '.join(wrong[:4])}"
            + (f" and {len(wrong) - 4} more" if len(wrong) > 4 else "")
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path} holds NaN or infinite weights in {', '.join(bad[:4])}")
    model.load_state_dict(state, strict=True)
