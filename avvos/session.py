"""A segmentation session: owns the objects and the memory, and steps through frames one by one.

Offline segmentation is a loop over :meth:`InferenceSession.step`; live streams use the same
loop. With the default :class:`~avvos.config.InferenceConfig` the results are those of the
official STCN evaluation (memory = the first frame plus every ``mem_every``-th frame).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from avvos.config import IMAGENET_MEAN, IMAGENET_STD, InferenceConfig
from avvos.errors import InputError, MaskError
from avvos.identity import GATE_SAMPLES, SoundIdentity, find_lookalikes, loudness
from avvos.memory import MemoryStore
from avvos.model.aggregate import aggregate, label_map
from avvos.model.audio import WINDOW_SAMPLES, SyncHistory
from avvos.model.stcn import STCN


@dataclass
class StepResult:
    """The segmentation of one frame.

    ``labels``: (H, W) uint8 object ids at the input size (0 = background).
    ``probs``: (K+1, H, W) float32 on the session's device, background first, then
    ``object_ids`` in order.
    ``reannotated``: objects the identity check moved to the look-alike that is heard, at this frame.
    ``revisions``: masks of earlier frames mended by the identity check (:class:`Revision`).
    """

    index: int
    labels: np.ndarray
    probs: torch.Tensor
    object_ids: list[int]
    reannotated: list[int] = field(default_factory=list)
    revisions: list[Revision] = field(default_factory=list)


@dataclass
class Revision:
    """A mended mask of an earlier frame: object ``object_id`` of frame ``index`` is ``mask`` ((H, W) bool at the
    input size), or what was first output for it when ``mask`` is None (an earlier revision undone). The identity
    check finds these once the sound tells that two look-alikes were swapped as they parted, or picks another
    look-alike as the heard one (:attr:`InferenceSession.lookback`; :class:`~avvos.sinks.HeldFrames` applies
    them)."""

    index: int
    object_id: int
    mask: np.ndarray | None


def pad_amounts(height: int, width: int, multiple: int = 16) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) padding to the next multiple, split floor/ceil as STCN does."""
    extra_h = -height % multiple
    extra_w = -width % multiple
    return extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2


def processing_size(height: int, width: int, config: InferenceConfig, model_size: int | None = None) -> tuple[int, int]:
    """The (height, width) frames are processed at: ``config.size`` on the shorter side, or the
    input size when its shorter side is at most ``config.max_size`` and the weights' own
    ``model_size`` (:attr:`ModelConfig.process_size`), else scaled down to the smaller of the two."""
    short = min(height, width)
    cap = min(config.max_size, model_size) if model_size else config.max_size
    target = config.size if config.size is not None else min(short, cap)
    if target == short:
        return height, width
    scale = target / short
    if height <= width:
        return target, int(width * scale)
    return int(height * scale), target


class InferenceSession:
    """Frame-by-frame video object segmentation with an STCN-style model.

    ``step(frame, audio, mask, objects)``: ``frame`` is (H, W, 3) uint8 RGB (numpy or tensor); ``mask``
    (H, W) of object ids introduces or re-annotates objects at that frame; ``objects`` limits the
    ids taken from ``mask``. All frames of a session must have the same size.

    With the identity check on (:attr:`InferenceConfig.audio_identity`; by default for audio-visual
    models) and a single annotated object that has look-alikes, the object gets a
    :class:`~avvos.identity.SoundIdentity` and is re-annotated with the look-alike the sound points to when
    its segmentation strays (see :mod:`avvos.identity`); the memory then keeps only the first frame and the
    re-annotated one. Between re-annotations the check also corrects the output mask: while the heard look-alike
    overlaps others, the mask is its share of the merged region, and otherwise it never takes in another
    look-alike. It assumes the annotated object is the one heard.
    """

    def __init__(
        self, model: STCN, config: InferenceConfig | None = None, device: torch.device | str | None = None
    ) -> None:
        self.model = model.eval()
        self.config = config or InferenceConfig()
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        self._amp_dtype: torch.dtype | None = None
        if self.config.amp and self.device.type == "cuda":
            self._amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        # Compiled versions of the heavy calls live in the session, leaving the shared model untouched.
        self._encode_key = torch.compile(model.encode_key, dynamic=False) if self.config.compile else model.encode_key
        self._decode = torch.compile(model.decode, dynamic=True) if self.config.compile else model.decode
        self.memory = MemoryStore(
            model.config.key_channels,
            model.config.value_dim,
            scale_dim=model.config.key_dim,
            capacity_frames=self.config.memory_frames,
            policy=self.config.memory_policy,
        )
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        wanted = self.config.audio_identity
        self.checks_identity = model.uses_audio if wanted is None else wanted
        lookback = self.config.identity_lookback
        #: How many frames late a consumer should hand masks on, so that :attr:`StepResult.revisions` can still
        #: mend them (0 without the identity check).
        self.lookback = (self.config.identity_window if lookback is None else lookback) if self.checks_identity else 0
        last = self.config.include_last
        self.includes_last = model.uses_audio if last is None else last
        self.reset()

    def reset(self) -> None:
        """Forget all objects, memory and the frame size; the next frame is frame 0."""
        self.memory.clear()
        self.smoothing_state: torch.Tensor | None = None  # (objects, D, h, w) for models with a smoother
        self.sync_history = SyncHistory()  # the last frames and sounds, for the ``sync`` audio design
        self._warned_no_audio = False
        self.identities: dict[int, SoundIdentity] = {}  # objects with look-alikes, for the identity check
        self._revisions: list[tuple[int, int, np.ndarray | None]] = []  # (frame, object, mask at processing size)
        self.object_ids: list[int] = []
        self.frame_index = 0
        self.input_size: tuple[int, int] | None = None

    def delete_objects(self, ids: Sequence[int]) -> None:
        """Stop tracking the given object ids (unknown ids are an error)."""
        unknown = [i for i in ids if i not in self.object_ids]
        if unknown:
            raise MaskError(f"cannot delete objects {unknown}: tracked objects are {self.object_ids}")
        indices = [self.object_ids.index(i) for i in ids]
        self.memory.remove_objects(indices)
        if self.smoothing_state is not None:
            keep = [i for i in range(len(self.object_ids)) if i not in indices]
            self.smoothing_state = self.smoothing_state[keep]
        self.object_ids = [i for i in self.object_ids if i not in set(ids)]
        for i in ids:
            self.identities.pop(i, None)

    @torch.inference_mode()
    def step(
        self,
        frame: np.ndarray | torch.Tensor,
        audio: np.ndarray | torch.Tensor | None = None,
        mask: np.ndarray | torch.Tensor | None = None,
        objects: Sequence[int] | None = None,
        *,
        end: bool = False,
    ) -> StepResult:
        """Segment one frame.

        ``audio``: mono 16 kHz samples of the window that ends at this frame's time (the last 0.96 s
        are used; shorter windows are padded with silence before). ``end=True`` marks the last
        frame (it is then never put in memory).
        """
        image = self._prepare_image(frame)
        mask_tensor = self._prepare_mask(mask, objects) if mask is not None else None
        embedding = self._encode_audio(audio)
        t = self.frame_index
        self.frame_index += 1
        padded = self._pad(self._normalise(image))
        with torch.autocast(self.device.type, dtype=self._amp_dtype, enabled=self._amp_dtype is not None):
            if self.device.type == "cuda":
                padded = padded.contiguous(memory_format=torch.channels_last)
            history = None
            if self.model.config.audio == "sync":
                history = self.sync_history.push(padded, embedding)
            features = self._encode_key(padded, embedding, history)
            probs = None
            if self.object_ids and self.memory.size > 0:
                readout = self.memory.read(features.key[0], self.config.top_k).to(features.query_value.dtype)
                if self.config.smoothing:
                    readout, self.smoothing_state = self.model.smooth(readout, self.smoothing_state)
                probs = aggregate(self._decode(features, readout)[:, 0].float())
            new_ids: list[int] = []
            if mask_tensor is not None:
                ids, onehot = mask_tensor
                new_ids = [i for i in ids if i not in self.object_ids]
                probs = self._merge_mask(probs, ids, onehot)
            if probs is None:
                probs = torch.ones(1, *padded.shape[-2:], device=self.device)
            reannotated: list[int] = []
            if self.checks_identity and (new_ids or self.identities):
                probs, reannotated = self._check_identity(image, probs, audio, new_ids)
                if reannotated:
                    self.memory.forget_unpinned()  # frames since the first may show the look-alike as the object
            annotated = mask_tensor is not None or bool(reannotated)
            is_memory_frame = annotated or t % self.config.mem_every == 0
            if self.object_ids and (annotated or (not end and (is_memory_frame or self.includes_last))):
                temporary = not is_memory_frame
                if new_ids:
                    self._add_objects(len(new_ids))
                values = self.model.encode_value(padded, features, probs[1:, None])
                self.memory.add(features.key[0], values, temporary)
            elif new_ids:
                self._add_objects(len(new_ids))
        return self._output(t, probs, reannotated)

    def _check_identity(
        self, image: torch.Tensor, probs: torch.Tensor, audio: np.ndarray | torch.Tensor | None, new_ids: list[int]
    ) -> tuple[torch.Tensor, list[int]]:
        """Start identity checks for new objects that have look-alikes; step every check with this frame and
        put in the masks they correct (:meth:`SoundIdentity.correct`). Returns the probabilities and the ids
        re-annotated (the heard look-alike replaced a segmentation that strayed)."""
        picture = (image[0].permute(1, 2, 0) * 255).cpu().numpy()
        left, right, top, bottom = self.padding
        height, width = probs.shape[-2:]
        labels = label_map(probs[:, top : height - bottom, left : width - right]).cpu().numpy()
        for object_id in new_ids if len(self.object_ids) == 1 else []:
            finder = find_lookalikes(picture, labels == self.object_ids.index(object_id) + 1)
            if finder is not None:
                self.identities[object_id] = SoundIdentity(finder, self.config.identity_window, lookback=self.lookback)
        if len(self.object_ids) > 1:
            self.identities.clear()  # the sound can point to one object only
        heard = loudness(audio) if audio is not None else None
        level = loudness(audio, GATE_SAMPLES) if audio is not None else None
        masks: dict[int, np.ndarray] = {}
        moved: list[int] = []
        for object_id, identity in self.identities.items():
            identity.push(picture, heard, level)
            if object_id not in new_ids:
                mask, reannotate = identity.correct(labels == self.object_ids.index(object_id) + 1)
                for back, region in identity.take_revisions():
                    self._revisions.append((self.frame_index - 1 - back, object_id, region))
                if mask is not None:
                    masks[object_id] = mask
                    moved += [object_id] if reannotate else []
        if not masks:
            return probs, []
        objects = probs[1:].clone()
        for object_id, mask in masks.items():
            onehot = self._pad(torch.from_numpy(mask).to(self.device).float()[None, None])[0, 0]
            objects = objects * (1 - onehot)
            objects[self.object_ids.index(object_id)] = onehot
        return aggregate(objects), moved

    def _add_objects(self, count: int) -> None:
        """New objects get memory values from now on and a fresh (zero) smoothing state."""
        self.memory.add_objects(count)
        if self.smoothing_state is not None:
            extra = self.smoothing_state.new_zeros(count, *self.smoothing_state.shape[1:])
            self.smoothing_state = torch.cat([self.smoothing_state, extra])

    def _encode_audio(self, audio: np.ndarray | torch.Tensor | None) -> torch.Tensor | None:
        """The audio embedding of the window ending at this frame, or None (zero audio channels)."""
        if not self.model.uses_audio:
            return None
        if audio is None:
            if not self._warned_no_audio:
                warnings.warn(
                    "an audio-visual model is running without audio: its audio key channels are zero",
                    stacklevel=3,
                )
                self._warned_no_audio = True
            return None
        wave = torch.as_tensor(np.asarray(audio, dtype=np.float32) if isinstance(audio, np.ndarray) else audio)
        wave = wave.float().flatten()
        if not torch.isfinite(wave).all():
            warnings.warn("audio window has NaN or infinite samples: they are replaced by silence", stacklevel=3)
            wave = torch.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)
        wave = wave[-WINDOW_SAMPLES:]
        if wave.numel() < WINDOW_SAMPLES:
            wave = F.pad(wave, (WINDOW_SAMPLES - wave.numel(), 0))
        return self.model.encode_audio(wave[None].to(self.device))

    def _merge_mask(self, probs: torch.Tensor | None, ids: list[int], onehot: torch.Tensor) -> torch.Tensor:
        """Write given object masks into this frame's probabilities and register new objects.

        Where a given mask is foreground, every other object's probability is set to zero;
        the result is re-aggregated as STCN does for annotated frames.
        """
        previous = self.object_ids
        order = previous + [i for i in ids if i not in previous]
        objects = torch.zeros(len(order), *onehot.shape[-2:], device=self.device)
        if probs is not None:
            objects[: len(previous)] = probs[1:]
            objects = objects * (onehot.sum(0) == 0)  # no boolean indexing: no host-device sync
        for row, object_id in enumerate(ids):
            objects[order.index(object_id)] = onehot[row]
        self.object_ids = order
        return aggregate(objects)

    def _prepare_image(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(H, W, 3) uint8 RGB → (1, 3, h, w) float in [0, 1] at the processing size, on the device."""
        if isinstance(image, np.ndarray):
            image = np.array(image) if not image.flags.writeable else np.ascontiguousarray(image)
        tensor = torch.as_tensor(image)
        if tensor.dim() != 3 or tensor.shape[2] != 3:
            raise InputError(f"expected an (H, W, 3) RGB frame, got shape {tuple(tensor.shape)}")
        size = (int(tensor.shape[0]), int(tensor.shape[1]))
        if self.input_size is None:
            self.input_size = size
            self.process_size = processing_size(*size, self.config, self.model.config.process_size)
            self.padding = pad_amounts(*self.process_size)
        elif size != self.input_size:
            raise InputError(
                f"frame {self.frame_index} is {size[1]}x{size[0]} but this session's frames are "
                f"{self.input_size[1]}x{self.input_size[0]}; reset the session to change size"
            )
        tensor = tensor.to(self.device, non_blocking=True).permute(2, 0, 1)[None]
        tensor = tensor.float() / 255 if tensor.dtype == torch.uint8 else tensor.float()
        if self.process_size != self.input_size:
            tensor = F.interpolate(tensor, self.process_size, mode="bilinear", align_corners=False, antialias=True)
        return tensor

    def _prepare_mask(
        self, mask: np.ndarray | torch.Tensor, objects: Sequence[int] | None
    ) -> tuple[list[int], torch.Tensor]:
        """Validate a label mask; return the ids taken and their (n, h, w) one-hot, padded."""
        array = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if array.ndim != 2:
            raise MaskError(f"a mask must be a 2-D array of object ids, got shape {array.shape}")
        assert self.input_size is not None
        if tuple(array.shape) != self.input_size:
            raise MaskError(
                f"mask is {array.shape[1]}x{array.shape[0]} but the frame is "
                f"{self.input_size[1]}x{self.input_size[0]} (width x height)"
            )
        if array.dtype.kind not in "iub":
            raise MaskError(f"mask values must be integer object ids, got dtype {array.dtype}")
        if array.size and (array.min() < 0 or array.max() > 255):
            raise MaskError(f"object ids must be in 0..255, got values from {array.min()} to {array.max()}")
        present = [int(v) for v in np.unique(array) if v != 0]
        ids = present if objects is None else [int(i) for i in objects]
        missing = [i for i in ids if i not in present]
        if objects is not None and (missing or 0 in ids):
            raise MaskError(f"objects {missing or [0]} are not object ids present in the mask (present: {present})")
        if not ids:
            raise MaskError("the mask has no object: every pixel is background (0)")
        labels = torch.as_tensor(array.astype(np.int64), device=self.device)
        onehot = torch.stack([(labels == i) for i in ids]).float()[:, None]
        if self.process_size != self.input_size:
            onehot = F.interpolate(onehot, self.process_size, mode="nearest")
        return ids, self._pad(onehot)[:, 0]

    def _normalise(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self._mean) / self._std

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.padding)

    def _output(self, index: int, probs: torch.Tensor, reannotated: list[int]) -> StepResult:
        left, right, top, bottom = self.padding
        height, width = probs.shape[-2:]
        probs = probs[:, top : height - bottom, left : width - right]
        assert self.input_size is not None
        if tuple(probs.shape[-2:]) != self.input_size:
            probs = F.interpolate(probs[None], self.input_size, mode="bilinear", align_corners=False)[0]
        lookup = torch.tensor([0, *self.object_ids], dtype=torch.uint8, device=probs.device)
        labels = lookup[label_map(probs)].cpu().numpy()
        revisions = [
            Revision(t, object_id, None if mask is None else self._to_input_size(mask))
            for t, object_id, mask in self._revisions
        ]
        self._revisions = []
        return StepResult(index, labels, probs, list(self.object_ids), reannotated, revisions)

    def _to_input_size(self, mask: np.ndarray) -> np.ndarray:
        """A (h, w) bool mask at the processing size, at the input size (as the labels are scaled back)."""
        assert self.input_size is not None
        if mask.shape == self.input_size:
            return mask
        scaled = F.interpolate(torch.from_numpy(mask)[None, None].float(), self.input_size, mode="bilinear")
        return (scaled[0, 0] > 0.5).numpy()
