"""The training forward pass over a batch of sequences (STCN's 3-frame training generalised to T frames).

Frame 0's memory value comes from its ground truth; every later frame is segmented from the memory of all
frames before it, and its memory value is then encoded from its own *predicted* soft mask (not detached), so
errors propagate as they do at inference. The readout smoother's state is carried from frame to frame.
Training reads memory with the full softmax over all memory positions (STCN uses top-k only at inference).

Audio models also return the *sounding map* of every frame: the sum of its audio key channels times
:data:`SOUNDING_SCALE`, trained (``training.loss.sounding_loss``) to be the log-odds that a position shows the
object that is heard. This gives the audio channels a direct signal; through the affinity alone they learn far
too slowly (measured: a few thousand iterations left them too small to change any mask).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from avvos.config import IMAGENET_MEAN, IMAGENET_STD
from avvos.model.stcn import STCN, FrameFeatures
from training.loss import aggregate_logits

#: The sounding map's log-odds per unit of summed audio key channels: a fixed scale (no free weight could
#: absorb the signal), small enough that confident maps need audio channels comparable to the visual ones.
SOUNDING_SCALE = 0.25


def read_memory(keys: torch.Tensor, values: torch.Tensor, query: torch.Tensor, scale: float) -> torch.Tensor:
    """Full-softmax memory read, in float32.

    ``keys`` (B, C, N) and ``query`` (B, C, HW) give the affinity ``(2·mᵀq − ‖m‖²)·scale`` (B, N, HW), as at
    inference; it is softmaxed over the N memory positions after subtracting each query's maximum.
    ``values`` (B, O, Cv, N) → readout (B, O, Cv, HW).
    """
    with torch.autocast(query.device.type, enabled=False):
        keys, query = keys.float(), query.float()
        affinity = (2 * keys.transpose(1, 2) @ query - keys.pow(2).sum(dim=1).unsqueeze(2)) * scale
        weights = torch.softmax(affinity - affinity.amax(dim=1, keepdim=True), dim=1)
        batch, objects, channels, _ = values.shape
        readout = torch.bmm(values.float().flatten(1, 2), weights)
    return readout.view(batch, objects, channels, -1)


def memory_frames(t: int, every: int) -> list[int]:
    """The earlier frames that frame ``t`` reads: all of them (``every`` 0), or those inference keeps."""
    if every == 0:
        return list(range(t))
    return sorted({0, t - 1, *range(every, t, every)})


def others_sum(probs: torch.Tensor) -> torch.Tensor:
    """For each object slot of (B, O, H, W), the sum of the other slots' maps (zeros for one slot)."""
    count = probs.shape[1]
    if count == 1:
        return torch.zeros_like(probs)
    return torch.stack([probs[:, [j for j in range(count) if j != i]].sum(dim=1) for i in range(count)], dim=1)


class TrainingNetwork(nn.Module):
    """Wraps an :class:`STCN` so that one ``forward`` runs a whole batch of sequences (what DDP needs).

    ``forward(frames, masks, selector, audio, has_audio, history_frames, history_audio)`` takes the batched
    sample of
    :mod:`avvos.data.vos` and returns the aggregated log-odds (B, T−1, O+1, H, W) of frames 1..T−1 and the
    sounding map (B, T, h, w) of every frame at the key's stride (zeros for visual-only models).
    Samples without sound get zero audio key channels, exactly what ``encode_key(image, None)`` gives.
    ``memory_every`` > 0 reads, as inference does, only frame 0, every ``memory_every``-th frame and the
    previous frame; 0 reads all earlier frames.
    """

    def __init__(self, model: STCN, memory_every: int = 0) -> None:
        super().__init__()
        if memory_every < 0:
            raise ValueError(f"memory_every must be 0 (all earlier frames) or positive, got {memory_every}")
        self.model = model
        self.memory_every = memory_every
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(
        self,
        frames: torch.Tensor,
        masks: torch.Tensor,
        selector: torch.Tensor,
        audio: torch.Tensor,
        has_audio: torch.Tensor,
        history_frames: torch.Tensor | None = None,
        history_audio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.model
        batch, steps = frames.shape[:2]
        objects = masks.shape[2]
        images = ((frames.flatten(0, 1) - self.mean) / self.std).contiguous()
        embedding = history = None
        if net.uses_audio and bool(has_audio.any()):
            if net.config.audio == "sync" and history_frames is not None and history_audio is not None:
                sounds = net.encode_audio(history_audio.flatten(0, 2)).view(batch * steps, history_audio.shape[2], -1)
                seen = (history_frames.flatten(0, 2) - self.mean) / self.std
                history = (seen.view(batch * steps, history_frames.shape[2], *seen.shape[1:]), sounds)
                embedding = sounds[:, -1]
            else:
                embedding = net.encode_audio(audio.flatten(0, 1))
        features = net.encode_key(images, embedding, history)
        key = features.key
        visual = net.config.key_dim
        if embedding is not None and not bool(has_audio.all()):
            keep = has_audio.repeat_interleave(steps).to(key.dtype).view(-1, 1, 1, 1)
            key = torch.cat([key[:, :visual], key[:, visual:] * keep], dim=1)
        sounding = key[:, visual:].sum(dim=1).float() * SOUNDING_SCALE

        def per_frame(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, steps, *x.shape[1:])

        key, images = per_frame(key), per_frame(images)
        query_value, f16, f8, f4 = (
            per_frame(x) for x in (features.query_value, features.f16, features.f8, features.f4)
        )
        scale = 1 / math.sqrt(net.config.key_dim)
        height, width = key.shape[-2:]
        values = [self._encode_values(images[:, 0], f16[:, 0], masks[:, 0] * selector[:, :, None, None])]
        state = None
        outputs = []
        for t in range(1, steps):
            kept = memory_frames(t, self.memory_every)
            memory_keys = key[:, kept].transpose(1, 2).flatten(2)
            memory_values = torch.stack([values[i] for i in kept], dim=3).flatten(3)
            readout = read_memory(memory_keys, memory_values, key[:, t].flatten(2), scale)
            readout = readout.view(batch * objects, -1, height, width).to(query_value.dtype)
            readout, state = net.smooth(readout, state)
            frame = FrameFeatures(
                key=key[:, t],
                query_value=query_value[:, t].repeat_interleave(objects, 0),
                f16=f16[:, t],
                f8=f8[:, t].repeat_interleave(objects, 0),
                f4=f4[:, t].repeat_interleave(objects, 0),
            )
            logits = net.decode_logits(frame, readout)
            prob = torch.sigmoid(logits.float()).view(batch, objects, *logits.shape[-2:]) * selector[:, :, None, None]
            aggregated = aggregate_logits(prob)
            outputs.append(aggregated)
            if t < steps - 1:
                soft = torch.softmax(aggregated, dim=1)[:, 1:]
                values.append(self._encode_values(images[:, t], f16[:, t], soft))
        return torch.stack(outputs, dim=1), sounding.view(batch, steps, height, width)

    def _encode_values(self, image: torch.Tensor, f16: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Memory values (B, O, Cv, h, w) of one frame per sample, all objects of the batch in one pass.

        Same inputs as :meth:`STCN.encode_value` (the object's map and the sum of the others'), batched over
        samples, which ``encode_value`` (one frame at a time) cannot do.
        """
        batch, objects = probs.shape[:2]
        others = others_sum(probs)
        values = self.model.value_encoder(
            image.repeat_interleave(objects, 0),
            f16.repeat_interleave(objects, 0),
            probs.flatten(0, 1)[:, None].to(image.dtype),
            others.flatten(0, 1)[:, None].to(image.dtype),
        )
        return values.view(batch, objects, *values.shape[1:])
