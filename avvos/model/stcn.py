"""The STCN evaluation network, assembled from its encoders and decoder.

State-dict names match the official checkpoints (``key_encoder``, ``value_encoder``, ``key_proj``,
``key_comp``, ``decoder``), so an official ``stcn.pth`` loads strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avvos.config import ModelConfig
from avvos.model.decoder import Decoder
from avvos.model.encoders import KeyEncoder, KeyProjection, ValueEncoder


@dataclass
class FrameFeatures:
    """Everything the key encoder gives for one frame; computed once and reused.

    ``key`` (1, key_dim, h, w) serves as query and memory key; ``query_value`` (1, value_dim, h, w)
    is the frame's own half of the decoder input; ``f16``/``f8``/``f4`` are the trunk features.
    """

    key: torch.Tensor
    query_value: torch.Tensor
    f16: torch.Tensor
    f8: torch.Tensor
    f4: torch.Tensor


class STCN(nn.Module):
    """Space-time correspondence network: shared key encoder, per-object value encoder, decoder."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        if self.config.key_backbone != "resnet50" or self.config.value_backbone != "resnet18":
            raise ValueError(
                f"unsupported backbones {self.config.key_backbone}/{self.config.value_backbone}: "
                "this version builds resnet50/resnet18"
            )
        f16_dim, f8_dim, f4_dim = KeyEncoder.out_channels
        self.key_encoder = KeyEncoder()
        self.value_encoder = ValueEncoder(f16_dim, self.config.value_dim, self.config.use_cbam)
        self.key_proj = KeyProjection(f16_dim, self.config.key_dim)
        self.key_comp = nn.Conv2d(f16_dim, self.config.value_dim, 3, padding=1)
        self.decoder = Decoder(self.config.value_dim, (f8_dim, f4_dim))

    def encode_key(self, image: torch.Tensor) -> FrameFeatures:
        """Encode a normalised, padded frame (1, 3, H, W)."""
        f16, f8, f4 = self.key_encoder(image)
        return FrameFeatures(self.key_proj(f16), self.key_comp(f16), f16, f8, f4)

    def encode_value(self, image: torch.Tensor, features: FrameFeatures, probs: torch.Tensor) -> torch.Tensor:
        """Memory values (K, value_dim, h, w) from the frame and K object probability maps (K, 1, H, W)."""
        num_objects = probs.shape[0]
        if num_objects == 1:
            others = torch.zeros_like(probs)
        else:
            # The sum over the *other* objects, summed directly (not total minus self) as STCN does.
            others = torch.stack(
                [probs[[j for j in range(num_objects) if j != i]].sum(dim=0) for i in range(num_objects)]
            )
        image = image.expand(num_objects, -1, -1, -1)
        f16 = features.f16.expand(num_objects, -1, -1, -1)
        return self.value_encoder(image, f16, probs, others)

    def decode(self, features: FrameFeatures, readout: torch.Tensor) -> torch.Tensor:
        """Per-object foreground probabilities (K, 1, H, W) from the memory readout (K, value_dim, h, w)."""
        query_value = features.query_value.expand(readout.shape[0], -1, -1, -1)
        logits = self.decoder(torch.cat([readout, query_value], dim=1), features.f8, features.f4)
        return torch.sigmoid(logits)


def build_model(config: ModelConfig | None = None) -> STCN:
    """A randomly initialised model for ``config`` (the official STCN layout by default), in eval mode."""
    return STCN(config).eval()
