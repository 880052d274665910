"""Audio in the key space: a log-mel CNN encoder and the audio channels that join STCN's keys.

For the frame at time t the encoder sees the mono 16 kHz audio window that *ends* at t (causal),
so the same code serves offline clips and live streams. The audio channels are appended to the
visual key, so the L2 affinity compares what was seen and heard at once. Their last layer starts
at zero: an untrained audio model matches exactly as the visual model does.

Three designs of the audio channels (``ModelConfig.audio``): ``frame`` and ``pixel`` look at one frame;
``sync`` looks at the last :data:`SYNC_HISTORY` frames and their sounds together, because which object moves
*with* the sound shows only over time (a brighter, larger or more open object in one frame says little).
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

SAMPLE_RATE = 16000
WINDOW_SECONDS = 0.96
WINDOW_SAMPLES = int(SAMPLE_RATE * WINDOW_SECONDS)
#: Frames of history the ``sync`` design compares with their sounds (0.4 s at 25 frames/s).
SYNC_HISTORY = 10
#: The ``sync`` design's sound of a frame: the last 40 ms of its window.
RECENT_SAMPLES = 640
#: Stride of the downscaled frames the ``sync`` design keeps.
SYNC_STRIDE = 4


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


class RecentBands(nn.Module):
    """(B, samples) waveform → (B, 64) log-mel energies of its last :data:`RECENT_SAMPLES` (what is heard *now*).

    No weights: the ``sync`` design's audio encoder. The temporal CNN over successive frames' bands lives in
    :class:`SyncKey`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=400, hop_length=120, n_mels=64, f_min=125.0, f_max=7500.0, center=False
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        with torch.autocast(waveform.device.type, enabled=False):
            mel = torch.log(self.melspec(waveform[..., -RECENT_SAMPLES:].float()) + 1e-6)
        return (mel.mean(dim=-1) + 4.0) / 4.0

    @staticmethod
    def silence(device: torch.device | str = "cpu") -> torch.Tensor:
        """(1, 64): what :meth:`forward` gives for a silent window, without computing a spectrogram."""
        return (torch.log(torch.full((1, 64), 1e-6, device=device)) + 4.0) / 4.0


class SyncKey(nn.Module):
    """Audio channels (B, audio_dim, h, w) from the last :data:`SYNC_HISTORY` frames and their sounds.

    ``frames`` (B, N, 3, H/4, W/4): normalised frames at stride 4, oldest first, this frame last; ``sounds``
    (B, N, 64): their :class:`RecentBands`. Two routes from "what changes here" to "what is heard": the
    normalised correlation, per position and colour, of frame-to-frame changes with the changes of a learnt
    loudness (interiors of a uniform object change only with its own state, not with its motion: measured to
    single out the brightness-mapped target), and the frames' changes meeting the sound trace's changes in a
    product (FiLM). The stride-16 visual features add what is seen there. The last layer starts at zero.
    """

    def __init__(self, feature_dim: int, audio_dim: int, history: int = SYNC_HISTORY) -> None:
        super().__init__()
        hidden = 64
        self.motion = nn.Sequential(
            nn.Conv2d(3 * history + 9, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, hidden, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
        )  # fmt: skip
        self.visual = nn.Conv2d(feature_dim, hidden, 1)
        self.sound = nn.Sequential(
            nn.Conv1d(128, 64, 3, padding=1), nn.ReLU(),
            nn.Conv1d(64, 64, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * history, 2 * hidden),
        )  # fmt: skip
        self.loudness = nn.Conv1d(64, 1, 1)
        nn.init.constant_(self.loudness.weight, 1 / 64)
        nn.init.zeros_(self.loudness.bias)
        self.proj = nn.Conv2d(hidden, audio_dim, 3, padding=1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, frames: torch.Tensor, sounds: torch.Tensor, f16: torch.Tensor) -> torch.Tensor:
        change = frames - frames.mean(dim=1, keepdim=True)
        steps = frames[:, 1:] - frames[:, :-1]  # (B, N-1, 3, h, w)
        loud = self.loudness(sounds.transpose(1, 2))[:, 0]
        louder = (loud[:, 1:] - loud[:, :-1])[:, :, None, None, None]
        norm = (steps.pow(2).sum(dim=1) + 1e-6).sqrt() * (louder.pow(2).sum(dim=1) + 1e-6).sqrt()  # no 0-gradient NaN
        together = (steps * louder).sum(dim=1) / norm  # (B, 3, h, w) in [-1, 1]
        seen = torch.cat([change.flatten(1, 2), frames[:, -1], together, together.abs()], dim=1)
        moving = self.motion(seen)
        moving = moving[..., : f16.shape[-2], : f16.shape[-1]]
        heard = sounds.transpose(1, 2)
        level = heard.mean(dim=2, keepdim=True)
        heard = torch.cat([heard - level, level.expand_as(heard)], dim=1)
        scale, shift = self.sound(heard)[:, :, None, None].chunk(2, dim=1)
        return self.proj(torch.relu((moving + self.visual(f16)) * (1 + scale) + shift))


class SyncHistory:
    """The last :data:`SYNC_HISTORY` frames (at stride 4) and sounds of a stream, for the ``sync`` design.

    ``push`` adds a frame and returns the stacked history (B=1); before N frames have been seen, the first
    is repeated (no change yet), as training does at the start of a clip.
    """

    def __init__(self, history: int = SYNC_HISTORY) -> None:
        self.history = history
        self.frames: list[torch.Tensor] = []
        self.sounds: list[torch.Tensor] = []

    def reset(self) -> None:
        self.frames.clear()
        self.sounds.clear()

    def push(self, image: torch.Tensor, sound: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``image`` (1, 3, H, W) normalised and padded, ``sound`` (1, 64) or None for a frame without audio
        (silence keeps the time axis) → ((1, N, 3, H/4, W/4), (1, N, 64))."""
        small = pool_frames(image)
        if sound is None:
            sound = RecentBands.silence(image.device)
        if self.frames and self.frames[-1].shape != small.shape:
            self.reset()
        if not self.frames:
            self.frames, self.sounds = [small] * self.history, [sound] * self.history
        self.frames = [*self.frames[1:], small]
        self.sounds = [*self.sounds[1:], sound]
        return torch.stack(self.frames, dim=1), torch.stack(self.sounds, dim=1)


def pool_frames(images: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) → (..., 3, H/4, W/4): the frames the ``sync`` design compares (area average)."""
    flat = images.flatten(0, -4) if images.dim() > 4 else images
    small = torch.nn.functional.avg_pool2d(flat.float(), SYNC_STRIDE, ceil_mode=True)
    return small.view(*images.shape[:-2], *small.shape[-2:])
