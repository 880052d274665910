"""A training-free video object segmentation baseline: label propagation over ImageNet features.

Why: any trained model must beat this to show that training taught it something about video. It is the
protocol that self-supervised correspondence papers use to evaluate features on DAVIS, here run with
torchvision's ImageNet MobileNetV2 (the backbone of our light model) and nothing learnt on video.

How, per frame: features are the stride-8 output of ``features[:7]`` and the stride-16 output of
``features[:14]`` upsampled to stride 8, each L2-normalised per position and concatenated (so that a dot
product is the mean of the two cosine similarities). Every feature cell of the new frame attends to the cells
of the context frames (the first frame with its given mask, and the last ``context_frames`` frames with their
predicted soft labels) that lie within ``radius`` cells of it; it keeps the ``top_k`` most similar over all
context frames, weights them by a softmax of ``similarity / temperature`` and averages their soft labels.
The labels are upsampled bilinearly to the image and the argmax gives the object ids.

Memory stays bounded: queries are processed in square tiles, each against the (tile + 2·radius)² window of
every context frame, one context frame at a time, so no dense (HW × HW) affinity is ever built; the context
holds at most ``1 + context_frames`` frames of features.

The defaults are not tuned on any data: they are the DAVIS label-propagation settings of the self-supervised
correspondence literature (e.g. the contrastive random walk's ImageNet baseline): temperature 0.05, top-k 10,
radius 12 feature cells at stride 8, 20 context frames (the first and the 19 most recent), frames at 480p.
``training/evaluate_davis_cv.py`` scores it with two-fold cross-validation on the dev sequences.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from avvos.config import IMAGENET_MEAN, IMAGENET_STD
from avvos.errors import InputError, MaskError
from avvos.masks import read_mask
from avvos.model.aggregate import label_map
from avvos.sources import open_frames

#: Feature stride of the propagation grid, in pixels.
STRIDE = 8
#: Side, in feature cells, of the square query tiles (a memory/speed trade-off, not a hyperparameter:
#: the results do not depend on it).
TILE = 8
#: Added to the similarity of keys outside the image or outside the radius: never chosen over a real key.
_EXCLUDED = -1e4


class MobileNetFeatures(nn.Module):
    """ImageNet MobileNetV2 features at stride 8: stride-8 and upsampled stride-16 maps, each L2-normalised.

    Inference only: every BatchNorm is folded into the convolution before it (same outputs, fewer passes over
    the large early feature maps).
    """

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        features = mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1 if pretrained else None).features
        self.stride8 = _fold_batchnorm(features[:7].eval())
        self.stride16 = _fold_batchnorm(features[7:14].eval())
        self.channels = 32 + 96

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images, H and W multiples of 16 -> (B, 128, H/8, W/8), unit norm per cell."""
        low = self.stride8(image)
        high = self.stride16(low)
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([F.normalize(low, dim=1), F.normalize(high, dim=1)], dim=1) / 2**0.5


def _fold_batchnorm(module: nn.Module) -> nn.Module:
    """Replace each (Conv2d, BatchNorm2d) pair of the module's Sequentials by one equivalent Conv2d (eval mode)."""
    for sequential in module.modules():
        if not isinstance(sequential, nn.Sequential):
            continue
        for i in range(len(sequential) - 1):
            conv, norm = sequential[i], sequential[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                sequential[i] = fuse_conv_bn_eval(conv, norm)
                sequential[i + 1] = nn.Identity()
    return module


class FeaturePropagation:
    """Semi-supervised VOS without training: propagate the first frame's mask by feature affinity.

    ``reset(first_image, first_mask)`` starts a video from an (H, W, 3) uint8 RGB frame and its (H, W) mask
    of object ids (0 = background); ``step(image)`` returns the (H, W) uint8 ids of the next frame.
    ``size`` is the shorter side to process at (None: as given); masks always come back at the input size.
    """

    def __init__(
        self,
        device: torch.device | str = "cpu",
        temperature: float = 0.05,
        top_k: int = 10,
        radius: float = 12.0,
        context_frames: int = 19,
        size: int | None = None,
        pretrained: bool = True,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        if radius < 0:
            raise ValueError(f"radius must be non-negative, got {radius}")
        if context_frames < 0:
            raise ValueError(f"context_frames must be non-negative, got {context_frames}")
        if size is not None and size < 16:
            raise ValueError(f"size must be at least 16 pixels, got {size}")
        self.device = torch.device(device)
        self.temperature = temperature
        self.top_k = top_k
        self.radius = radius
        self.context_frames = context_frames
        self.size = size
        self.encoder = MobileNetFeatures(pretrained).to(self.device, memory_format=torch.channels_last).eval()
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        self._reach = int(radius)
        window = TILE + 2 * self._reach
        # Offsets of every window cell from every query cell of a tile: (TILE², window²) within the radius.
        qy, qx = torch.meshgrid(torch.arange(TILE), torch.arange(TILE), indexing="ij")
        ky, kx = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        dy = (ky.reshape(1, -1) - self._reach) - qy.reshape(-1, 1)
        dx = (kx.reshape(1, -1) - self._reach) - qx.reshape(-1, 1)
        self._in_radius = (dy**2 + dx**2 <= radius**2).to(self.device)
        self._grid_index: torch.Tensor | None = None
        self._bias: torch.Tensor | None = None
        self.object_ids: list[int] = []
        self.input_size: tuple[int, int] | None = None
        self._first: tuple[torch.Tensor, torch.Tensor] | None = None
        self._recent: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=context_frames)

    @property
    def memory_frames(self) -> int:
        """Frames held as context now (at most ``1 + context_frames``)."""
        return (self._first is not None) + len(self._recent)

    @torch.inference_mode()
    def reset(self, first_image: np.ndarray, first_mask: np.ndarray) -> np.ndarray:
        """Start a video: remember the first frame's features and mask; returns the mask's ids as uint8."""
        first_mask = np.asarray(first_mask)
        if first_mask.shape != first_image.shape[:2]:
            raise MaskError(
                f"the first mask is {first_mask.shape[1]}x{first_mask.shape[0]} but the frame is "
                f"{first_image.shape[1]}x{first_image.shape[0]} (width x height)"
            )
        ids = [int(i) for i in np.unique(first_mask) if i != 0]
        if ids and (min(ids) < 0 or max(ids) > 255):
            raise MaskError(f"the first mask has object ids {min(ids)}..{max(ids)}: ids must be 1..255")
        if not ids:
            raise MaskError("the first mask has no object (every pixel is 0)")
        self.object_ids = ids
        self.input_size = first_image.shape[:2]
        self._recent.clear()
        lookup = np.zeros(256, dtype=np.int64)
        lookup[ids] = np.arange(1, len(ids) + 1)
        index = torch.from_numpy(lookup[first_mask.astype(np.uint8)]).to(self.device)
        onehot = F.one_hot(index, len(ids) + 1).permute(2, 0, 1)[None].float()
        height, width = self._processing_size()
        if (height, width) != onehot.shape[-2:]:
            onehot = F.interpolate(onehot, size=(height, width), mode="area")
        labels = F.avg_pool2d(F.pad(onehot, self._padding(height, width), mode="replicate"), STRIDE)
        features = self._encode(first_image)
        self._grid_index, self._bias = self._grid(*features.shape[-2:])
        self._first = (self._flat(features), self._flat(labels))
        return first_mask.astype(np.uint8)

    @torch.inference_mode()
    def step(self, image: np.ndarray) -> np.ndarray:
        """Segment the next frame: (H, W, 3) uint8 RGB -> (H, W) uint8 object ids."""
        if self._first is None or self.input_size is None:
            raise RuntimeError("call reset(first_image, first_mask) before step()")
        if image.shape[:2] != self.input_size:
            raise InputError(
                f"frame is {image.shape[1]}x{image.shape[0]} but the video started at "
                f"{self.input_size[1]}x{self.input_size[0]}: all frames must have one size"
            )
        features = self._encode(image)
        labels = self._propagate(features)
        if self.context_frames:
            self._recent.append((self._flat(features), self._flat(labels)))
        return self._to_ids(labels)

    def segment_folder(self, frames_dir: str | Path, first_mask: np.ndarray | str | Path) -> list[np.ndarray]:
        """Masks of every frame of a folder (or video), the first being ``first_mask`` itself."""
        mask = read_mask(first_mask) if isinstance(first_mask, str | Path) else np.asarray(first_mask)
        results: list[np.ndarray] = []
        with open_frames(frames_dir) as source:
            for frame in source:
                results.append(self.reset(frame.image, mask) if frame.index == 0 else self.step(frame.image))
        return results

    def _processing_size(self) -> tuple[int, int]:
        """(height, width) frames are encoded at: ``size`` on the shorter side, or the input size."""
        assert self.input_size is not None
        height, width = self.input_size
        if self.size is None or self.size == min(height, width):
            return height, width
        scale = self.size / min(height, width)
        return max(16, round(height * scale)), max(16, round(width * scale))

    @staticmethod
    def _padding(height: int, width: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) replicate padding to multiples of 16 (the encoder's deepest stride)."""
        return 0, -width % 16, 0, -height % 16

    def _encode(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (1, C, h, w) unit-norm features of the padded processing-size frame."""
        height, width = self._processing_size()
        if (height, width) != image.shape[:2]:
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(np.array(image, dtype=np.uint8)).to(self.device).permute(2, 0, 1)[None].float() / 255
        x = F.pad((x - self._mean) / self._std, self._padding(height, width), mode="replicate")
        return self.encoder(x.contiguous(memory_format=torch.channels_last))

    def _grid(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Window indices (tiles, window²) into a flattened (h·w + 1)-row grid whose last row is a zero
        sentinel for cells outside the grid, and the (tiles, TILE², window²) bias that excludes those cells
        and the cells beyond the radius. Tiles are in row-major order."""
        r, window = self._reach, TILE + 2 * self._reach
        rows, cols = -(-h // TILE), -(-w // TILE)
        ty = torch.arange(rows, device=self.device).view(rows, 1, 1, 1) * TILE
        tx = torch.arange(cols, device=self.device).view(1, cols, 1, 1) * TILE
        offsets = torch.arange(window, device=self.device) - r
        y = ty + offsets.view(1, 1, window, 1)
        x = tx + offsets.view(1, 1, 1, window)
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        index = torch.where(inside, y * w + x, h * w).view(rows * cols, window * window)
        keep = inside.view(rows * cols, 1, window * window) & self._in_radius[None]
        return index, torch.where(keep, 0.0, _EXCLUDED)

    @staticmethod
    def _flat(x: torch.Tensor) -> torch.Tensor:
        """(1, D, h, w) map -> (h·w + 1, D) rows with a final zero row (the sentinel of :meth:`_grid`)."""
        rows = x[0].flatten(1).T
        return torch.cat([rows, rows.new_zeros(1, rows.shape[1])]).contiguous()

    def _queries(self, features: torch.Tensor) -> torch.Tensor:
        """(1, C, h, w) -> (tiles, TILE², C), tiles in row-major order, zero beyond the grid."""
        h, w = features.shape[-2:]
        x = F.pad(features, (0, -w % TILE, 0, -h % TILE))[0]
        c, hp, wp = x.shape
        x = x.view(c, hp // TILE, TILE, wp // TILE, TILE).permute(1, 3, 2, 4, 0)
        return x.reshape(-1, TILE * TILE, c)

    def _propagate(self, features: torch.Tensor) -> torch.Tensor:
        """Soft labels (1, K+1, h, w) of a frame from its features and the context frames.

        Each context frame gives its ``top_k`` best keys per query; the ``top_k`` best of those are the
        ``top_k`` best over all context frames, so the result is that of one joint top-k.
        """
        assert self._first is not None and self._grid_index is not None and self._bias is not None
        h, w = features.shape[-2:]
        queries = self._queries(features)
        tiles, per_tile = queries.shape[:2]
        scores, positions = [], []
        for keys, _ in (self._first, *self._recent):
            windows = keys[self._grid_index]  # (tiles, window², C)
            affinity = torch.baddbmm(self._bias, queries, windows.transpose(1, 2))
            top, index = affinity.topk(min(self.top_k, affinity.shape[-1]), dim=-1)
            scores.append(top)
            positions.append(self._grid_index.gather(1, index.view(tiles, -1)).view_as(index))
        all_scores = torch.cat(scores, dim=-1)  # (tiles, TILE², frames · k)
        top, best = all_scores.topk(min(self.top_k, all_scores.shape[-1]), dim=-1)
        weights = torch.softmax(top / self.temperature, dim=-1)
        soft = 0
        k = scores[0].shape[-1]
        for frame, (_, labels) in enumerate((self._first, *self._recent)):
            local = best - frame * k
            mine = (local >= 0) & (local < k)
            position = positions[frame].gather(2, local.clamp(0, k - 1))
            chosen = labels[position]  # (tiles, TILE², k, K+1)
            soft = soft + ((weights * mine)[..., None] * chosen).sum(dim=2)
        rows, cols = -(-h // TILE), -(-w // TILE)
        soft = soft.view(rows, cols, TILE, TILE, -1).permute(4, 0, 2, 1, 3).reshape(1, -1, rows * TILE, cols * TILE)
        return soft[..., :h, :w].contiguous()

    def _to_ids(self, labels: torch.Tensor) -> np.ndarray:
        """Soft labels on the feature grid -> (H, W) uint8 object ids at the input size."""
        assert self.input_size is not None
        height, width = self._processing_size()
        up = F.interpolate(labels, scale_factor=STRIDE, mode="bilinear", align_corners=False)[..., :height, :width]
        if (height, width) != self.input_size:
            up = F.interpolate(up, size=self.input_size, mode="bilinear", align_corners=False)
        index = label_map(up[0]).cpu().numpy()
        lookup = np.array([0, *self.object_ids], dtype=np.uint8)
        return lookup[index]
