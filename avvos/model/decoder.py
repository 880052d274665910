"""STCN's decoder: memory readout + query features, refined with stride-8 and stride-4 skips."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avvos.model.blocks import ResBlock, UpsampleBlock


class Decoder(nn.Module):
    """Maps (K, 2·value_dim, h, w) to per-object logits (K, 1, 16h, 16w).

    ``f8`` and ``f4`` are the query frame's key-encoder skips with batch 1, shared by all objects.
    """

    def __init__(
        self,
        value_dim: int = 512,
        skip_dims: tuple[int, int] = (512, 256),
        dims: tuple[int, int, int] = (512, 256, 256),
    ) -> None:
        super().__init__()
        self.compress = ResBlock(2 * value_dim, dims[0])
        self.up_16_8 = UpsampleBlock(skip_dims[0], dims[0], dims[1])
        self.up_8_4 = UpsampleBlock(skip_dims[1], dims[1], dims[2])
        self.pred = nn.Conv2d(dims[2], 1, 3, padding=1)

    def forward(self, x: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
        x = self.compress(x)
        x = self.up_16_8(f8, x)
        x = self.up_8_4(f4, x)
        x = self.pred(F.relu(x))
        return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
