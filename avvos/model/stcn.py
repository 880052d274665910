"""The STCN network, assembled from its encoders and decoder, with avvos's optional extensions.

State-dict names of the STCN parts match the official checkpoints (``key_encoder``,
``value_encoder``, ``key_proj``, ``key_comp``, ``decoder``), so an official ``stcn.pth`` loads
strictly. The audio encoder (``audio_encoder``, ``audio_key``) and the readout smoother
(``smoother``) exist only when the configuration asks for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avvos.config import ModelConfig
from avvos.model.audio import SYNC_HISTORY, AudioEncoder, AudioKey, RecentBands, SyncKey, pool_frames
from avvos.model.decoder import Decoder
from avvos.model.encoders import KeyProjection, build_key_encoder, build_value_encoder
from avvos.model.smoothing import ReadoutSmoother


@dataclass
class FrameFeatures:
    """Everything the key encoder gives for one frame; computed once and reused.

    ``key`` (1, key_channels, h, w) serves as query and memory key (visual channels first, then
    audio channels); ``query_value`` (1, value_dim, h, w) is the frame's own half of the decoder
    input; ``f16``/``f8``/``f4`` are the trunk features.
    """

    key: torch.Tensor
    query_value: torch.Tensor
    f16: torch.Tensor
    f8: torch.Tensor
    f4: torch.Tensor


class STCN(nn.Module):
    """Space-time correspondence network: shared key encoder, per-object value encoder, decoder."""

    def __init__(self, config: ModelConfig | None = None, pretrained: bool = False) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        self.key_encoder = build_key_encoder(config.key_backbone, pretrained)
        f16_dim, f8_dim, f4_dim = self.key_encoder.out_channels
        self.value_encoder = build_value_encoder(
            config.value_backbone, f16_dim, config.value_dim, config.use_cbam, pretrained
        )
        self.key_proj = KeyProjection(f16_dim, config.key_dim)
        self.key_comp = nn.Conv2d(f16_dim, config.value_dim, 3, padding=1)
        self.decoder = Decoder(config.value_dim, (f8_dim, f4_dim), config.decoder_dims)
        if config.audio == "sync":
            self.audio_encoder = RecentBands()
            self.audio_key = SyncKey(f16_dim, config.audio_dim)
        elif config.audio != "none":
            self.audio_encoder = AudioEncoder(config.audio_embed_dim)
            self.audio_key = AudioKey(config.audio, f16_dim, config.audio_embed_dim, config.audio_dim)
        if config.smoothing:
            self.smoother = ReadoutSmoother(config.value_dim, config.smoothing_dim)

    @property
    def uses_audio(self) -> bool:
        return self.config.audio != "none"

    def encode_audio(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) mono 16 kHz windows ending at each frame → (B, audio_embed_dim), or (B, 64) recent
        log-mel bands for the ``sync`` design."""
        return self.audio_encoder(waveform)

    def encode_key(
        self,
        image: torch.Tensor,
        audio_embedding: torch.Tensor | None = None,
        history: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> FrameFeatures:
        """Encode a normalised, padded frame (B, 3, H, W) and, for audio models, its audio embedding.

        An audio model given no embedding gets zero audio channels (the visual-only key). The ``sync`` design
        also takes ``history``: the last frames at stride 4 and their sounds, this frame last (see
        :class:`~avvos.model.audio.SyncHistory`); without it, this frame alone (no change seen).
        """
        f16, f8, f4 = self.key_encoder(image)
        key = self.key_proj(f16)
        if self.uses_audio:
            if audio_embedding is None:
                audio = key.new_zeros(key.shape[0], self.config.audio_dim, *key.shape[-2:])
            elif self.config.audio == "sync":
                if history is None:
                    history = (
                        pool_frames(image)[:, None].expand(-1, SYNC_HISTORY, -1, -1, -1),
                        audio_embedding[:, None].expand(-1, SYNC_HISTORY, -1),
                    )
                frames, sounds = history
                audio = self.audio_key(frames.to(f16.dtype), sounds.to(f16.dtype), f16)
            else:
                audio = self.audio_key(audio_embedding.to(f16.dtype), f16)
            key = torch.cat([key, audio], dim=1)
        return FrameFeatures(key, self.key_comp(f16), f16, f8, f4)

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

    def smooth(self, readout: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Combine this frame's readout with the state of earlier frames (identity without a smoother)."""
        if not self.config.smoothing:
            return readout, None
        return self.smoother(readout, state)

    def decode(self, features: FrameFeatures, readout: torch.Tensor) -> torch.Tensor:
        """Per-object foreground probabilities (K, 1, H, W) from the memory readout (K, value_dim, h, w)."""
        return torch.sigmoid(self.decode_logits(features, readout))

    def decode_logits(self, features: FrameFeatures, readout: torch.Tensor) -> torch.Tensor:
        query_value = features.query_value.expand(readout.shape[0], -1, -1, -1)
        return self.decoder(torch.cat([readout, query_value], dim=1), features.f8, features.f4)


def build_model(config: ModelConfig | None = None, pretrained: bool = False) -> STCN:
    """A model for ``config`` (the official STCN layout by default), in eval mode.

    ``pretrained`` initialises the backbones from torchvision's ImageNet weights (for training).
    """
    return STCN(config, pretrained).eval()
