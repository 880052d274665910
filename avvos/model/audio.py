"""Audio in the key space: a log-mel CNN encoder and the audio channels that join STCN's keys.

For the frame at time t the encoder sees the mono 16 kHz audio window that *ends* at t (causal),
so the same code serves offline clips and live streams. The audio channels are appended to the
visual key, so the L2 affinity compares what was seen and heard at once. Their last layer starts
at zero: an untrained audio model matches exactly as the visual model does.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

SAMPLE_RATE = 16000
WINDOW_SECONDS = 0.96
WINDOW_SAMPLES = int(SAMPLE_RATE * WINDOW_SECONDS)


class AudioEncoder(nn.Module):
    """(B, samples) mono 16 kHz waveform → (B, embed_dim).

    64 log-mel bands from 125 to 7500 Hz (25 ms windows, 10 ms hop), then a small CNN. The last
    100 ms keep their own time resolution, because the loudness *now* is what must match the
    picture *now*.
    """

    def __init__(self, embed_dim: int = 128) -> None:
        super().__init__()
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=64, f_min=125.0, f_max=7500.0
        )
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(),
            nn.MaxPool2d((2, 1)),
            nn.Conv2d(16, 32, 3, padding=1), nn.GroupNorm(8, 32), nn.ReLU(),
            nn.MaxPool2d((2, 1)),
            nn.Conv2d(32, 64, 3, padding=1), nn.GroupNorm(8, 64), nn.ReLU(),
            nn.AdaptiveAvgPool2d((1, 8)),
        )  # fmt: skip
        self.recent = nn.Linear(64 * 10, 64)
        self.out = nn.Linear(64 * 8 + 64, embed_dim)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        with torch.autocast(waveform.device.type, enabled=False):
            mel = torch.log(self.melspec(waveform.float()) + 1e-6)  # (B, 64, frames)
        mel = (mel + 4.0) / 4.0  # a fixed affine map to roughly unit scale; loudness stays absolute
        x = self.cnn(mel[:, None]).flatten(1)
        recent = self.recent(mel[:, :, -10:].flatten(1))
        return self.out(torch.cat([x, torch.relu(recent)], dim=1))


class AudioKey(nn.Module):
    """Audio channels of the joint key, (1, audio_dim, h, w), from the audio embedding.

    ``frame``: one vector from the embedding, the same at every position. ``pixel``: the visual
    stride-16 features modulated by the embedding (FiLM), so each position says whether what is
    seen there goes with what is heard.
    """

    def __init__(self, design: str, feature_dim: int, embed_dim: int, audio_dim: int) -> None:
        super().__init__()
        self.design = design
        if design == "frame":
            self.proj = nn.Linear(embed_dim, audio_dim)
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
        else:
            hidden = 64
            self.visual = nn.Conv2d(feature_dim, hidden, 1)
            self.film = nn.Linear(embed_dim, 2 * hidden)
            self.proj = nn.Conv2d(hidden, audio_dim, 3, padding=1)
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, embedding: torch.Tensor, f16: torch.Tensor) -> torch.Tensor:
        """``embedding`` (B, embed_dim) and ``f16`` (B, C, h, w) → (B, audio_dim, h, w)."""
        if self.design == "frame":
            return self.proj(embedding)[:, :, None, None].expand(-1, -1, *f16.shape[-2:])
        scale, shift = self.film(embedding)[:, :, None, None].chunk(2, dim=1)
        return self.proj(torch.relu(self.visual(f16) * (1 + scale) + shift))
