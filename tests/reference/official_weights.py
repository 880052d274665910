"""Deterministic random STCN weights in the official checkpoint format (spec Appendix A).

The tensors are drawn from ``numpy.random.default_rng(seed)`` using only uniform draws and
basic IEEE arithmetic (no transcendental functions), so the state dict is bit-identical on
any machine (``state_dict_sha256`` lets a test confirm that).

The scales (``SCALES``) were tuned on the official inference over ``make_clip(0)``:

* He-uniform convs; the BN that closes each residual branch has weight 0.2-0.4, so the
  residual streams of the two ResNets do not blow up; running stats near (0, 1).
* ``key_proj`` at 0.4x: max affinity (2 m.q - |m|^2)/8 is about 35, far below the float32
  ``exp`` overflow (~88.7) of the official top-k softmax, while the mean top-1 weight of the
  top-20 softmax is 0.16-0.47 (neither uniform nor one-hot).
* The mask channels of the value encoder (4x) and the object-dependent inputs of the fuser
  and of the decoder (2x) are boosted so the two objects get clearly different logits.
* ``decoder.pred`` at 0.12x with bias +4 keeps the logits within about +-8: probabilities are
  varied, and float32 sigmoids never get so close to 1 that the official aggregation's
  log(p / (1 - p)) becomes ill-conditioned (with logits near 14, float32 vs float64 runs of
  the official code already differed by 1e-3; now by < 1e-5).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

# (key, shape, kind, fan_in); kind says how _draw initialises the entry.
LayoutEntry = tuple[str, tuple[int, ...], str, int]

_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class _Scales:
    """Initialisation scales (gains multiply the He-uniform bound sqrt(6 / fan_in))."""

    conv_gain: float = 1.0
    conv_bias: float = 0.05
    bn_weight: tuple[float, float] = (0.8, 1.2)
    bn_weight_residual: tuple[float, float] = (0.2, 0.4)
    bn_bias: float = 0.1
    bn_mean: float = 0.1
    bn_var: tuple[float, float] = (0.75, 1.25)
    key_proj_gain: float = 0.4
    mask_channel_gain: float = 4.0
    fuser_mask_feature_gain: float = 2.0
    readout_gain: float = 2.0
    pred_gain: float = 0.12
    pred_bias: float = 4.0


SCALES = _Scales()

# Convs whose input starts with the object-dependent channels: the value encoder's layer3
# output (first 256 of 1280) and the memory readout (first 512 of 1024).
_FUSER_INPUT_CONVS = (
    "value_encoder.fuser.block1.downsample.weight",
    "value_encoder.fuser.block1.conv1.weight",
)
_DECODER_INPUT_CONVS = ("decoder.compress.downsample.weight", "decoder.compress.conv1.weight")


def _bn(prefix: str, channels: int, residual: bool = False) -> list[LayoutEntry]:
    kind = "bn_weight_residual" if residual else "bn_weight"
    kinds = (kind, "bn_bias", "bn_mean", "bn_var", "bn_count")
    return [
        (f"{prefix}.{suffix}", () if k == "bn_count" else (channels,), k, 0)
        for suffix, k in zip(_BN_SUFFIXES, kinds, strict=True)
    ]


def _conv(prefix: str, out_ch: int, in_ch: int, kernel: int, bias: bool) -> list[LayoutEntry]:
    fan_in = in_ch * kernel * kernel
    entries = [(f"{prefix}.weight", (out_ch, in_ch, kernel, kernel), "conv_weight", fan_in)]
    if bias:
        entries.append((f"{prefix}.bias", (out_ch,), "conv_bias", fan_in))
    return entries


def _linear(prefix: str, out_f: int, in_f: int) -> list[LayoutEntry]:
    return [
        (f"{prefix}.weight", (out_f, in_f), "conv_weight", in_f),
        (f"{prefix}.bias", (out_f,), "conv_bias", in_f),
    ]


def _key_encoder() -> list[LayoutEntry]:
    """Torchvision ResNet-50 stem and stages 1-3 (no conv biases)."""
    p = "key_encoder"
    entries = _conv(f"{p}.conv1", 64, 3, 7, bias=False) + _bn(f"{p}.bn1", 64)
    in_ch = 64
    for stage, planes, blocks in (("res2", 64, 3), ("layer2", 128, 4), ("layer3", 256, 6)):
        for b in range(blocks):
            q = f"{p}.{stage}.{b}"
            entries += _conv(f"{q}.conv1", planes, in_ch, 1, bias=False) + _bn(f"{q}.bn1", planes)
            entries += _conv(f"{q}.conv2", planes, planes, 3, bias=False) + _bn(f"{q}.bn2", planes)
            entries += _conv(f"{q}.conv3", planes * 4, planes, 1, bias=False)
            entries += _bn(f"{q}.bn3", planes * 4, residual=True)
            if b == 0:
                entries += _conv(f"{q}.downsample.0", planes * 4, in_ch, 1, bias=False)
                entries += _bn(f"{q}.downsample.1", planes * 4)
            in_ch = planes * 4
    return entries


def _res_block(prefix: str, in_ch: int, out_ch: int) -> list[LayoutEntry]:
    """Pre-activation ResBlock: a 3x3 downsample conv (only when in != out), conv1, conv2."""
    entries = _conv(f"{prefix}.downsample", out_ch, in_ch, 3, bias=True) if in_ch != out_ch else []
    return (
        entries + _conv(f"{prefix}.conv1", out_ch, in_ch, 3, True) + _conv(f"{prefix}.conv2", out_ch, out_ch, 3, True)
    )


def _value_encoder() -> list[LayoutEntry]:
    """Modified ResNet-18 (all convs biased, 5 input channels) plus the fusion block."""
    p = "value_encoder"
    entries = _conv(f"{p}.conv1", 64, 5, 7, bias=True) + _bn(f"{p}.bn1", 64)
    in_ch = 64
    for stage, planes in (("layer1", 64), ("layer2", 128), ("layer3", 256)):
        for b in range(2):
            q = f"{p}.{stage}.{b}"
            entries += _conv(f"{q}.conv1", planes, in_ch, 3, bias=True) + _bn(f"{q}.bn1", planes)
            entries += _conv(f"{q}.conv2", planes, planes, 3, bias=True)
            entries += _bn(f"{q}.bn2", planes, residual=True)
            if b == 0 and in_ch != planes:
                entries += _conv(f"{q}.downsample.0", planes, in_ch, 1, bias=True)
                entries += _bn(f"{q}.downsample.1", planes)
            in_ch = planes
    f = f"{p}.fuser"
    entries += _res_block(f"{f}.block1", 1280, 512)
    entries += _linear(f"{f}.attention.ChannelGate.mlp.1", 32, 512)
    entries += _linear(f"{f}.attention.ChannelGate.mlp.3", 512, 32)
    entries += _conv(f"{f}.attention.SpatialGate.spatial.conv", 1, 2, 7, bias=True)
    entries += _res_block(f"{f}.block2", 512, 512)
    return entries


def _decoder() -> list[LayoutEntry]:
    p = "decoder"
    entries = _res_block(f"{p}.compress", 1024, 512)
    entries += _conv(f"{p}.up_16_8.skip_conv", 512, 512, 3, bias=True) + _res_block(f"{p}.up_16_8.out_conv", 512, 256)
    entries += _conv(f"{p}.up_8_4.skip_conv", 256, 256, 3, bias=True) + _res_block(f"{p}.up_8_4.out_conv", 256, 256)
    return entries + _conv(f"{p}.pred", 1, 256, 3, bias=True)


def official_layout() -> list[LayoutEntry]:
    """All 405 official state-dict entries, in file order: (key, shape, kind, fan_in)."""
    return (
        _key_encoder()
        + _value_encoder()
        + _conv("key_proj.key_proj", 64, 1024, 3, bias=True)
        + _conv("key_comp", 512, 1024, 3, bias=True)
        + _decoder()
    )


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
    """Uniform draw on [low, high) using only exact-rounding arithmetic, as float32."""
    u = rng.random(math.prod(shape), dtype=np.float64)
    return (u * (high - low) + low).astype(np.float32).reshape(shape)


def _draw(rng: np.random.Generator, key: str, shape: tuple[int, ...], kind: str, fan_in: int, s: _Scales) -> np.ndarray:
    if kind == "conv_weight":
        gain = s.conv_gain
        if key == "key_proj.key_proj.weight":
            gain *= s.key_proj_gain
        elif key == "decoder.pred.weight":
            gain *= s.pred_gain
        bound = gain * math.sqrt(6.0 / fan_in)
        w = _uniform(rng, shape, -bound, bound)
        if key == "value_encoder.conv1.weight":
            w[:, 3:] *= np.float32(s.mask_channel_gain)
        elif key in _FUSER_INPUT_CONVS:
            w[:, :256] *= np.float32(s.fuser_mask_feature_gain)
        elif key in _DECODER_INPUT_CONVS:
            w[:, :512] *= np.float32(s.readout_gain)
        return w
    if kind == "conv_bias":
        offset = s.pred_bias if key == "decoder.pred.bias" else 0.0
        return _uniform(rng, shape, offset - s.conv_bias, offset + s.conv_bias)
    if kind == "bn_weight":
        return _uniform(rng, shape, *s.bn_weight)
    if kind == "bn_weight_residual":
        return _uniform(rng, shape, *s.bn_weight_residual)
    if kind == "bn_bias":
        return _uniform(rng, shape, -s.bn_bias, s.bn_bias)
    if kind == "bn_mean":
        return _uniform(rng, shape, -s.bn_mean, s.bn_mean)
    if kind == "bn_var":
        return _uniform(rng, shape, *s.bn_var)
    raise ValueError(f"unknown kind {kind!r} for {key}")


def _generate(seed: int, scales: _Scales) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape, kind, fan_in in official_layout():
        if kind == "bn_count":
            state[key] = torch.tensor(0, dtype=torch.int64)
        else:
            state[key] = torch.from_numpy(_draw(rng, key, shape, kind, fan_in, scales))
    return state


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A full random STCN state dict in the official key order, shapes and dtypes."""
    return _generate(seed, SCALES)


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the concatenated tensor bytes (C order, native dtype) in key order."""
    digest = hashlib.sha256()
    for tensor in state.values():
        digest.update(np.ascontiguousarray(tensor.detach().cpu().numpy()).tobytes())
    return digest.hexdigest()
