"""Static images with masks turned into short fake videos by random warps (STCN's stage 0).

Sources: folders of image + mask pairs that share a name (``x.jpg`` + ``x.png``, searched recursively, as
FSS-1000, DUTS, ECSSD or HRSOD are usually laid out), or the annotated frames of DAVIS / YouTube-VOS style
roots, each frame taken as a static image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from avvos.data.sampling import ItemKey, item_rng
from avvos.data.vos import (
    FILL_RGB,
    MAX_OBJECTS,
    SampleSet,
    audio_windows,
    find_videos,
    load_labels,
    load_rgb,
    make_sample,
)

_FILL = (*FILL_RGB, 0.0)


def find_image_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs under ``root``: every ``.jpg``/``.jpeg`` with a ``.png`` of the same stem beside it,
    or in a sibling folder whose name ends in ``Mask``/``mask`` (DUTS: ``DUTS-TR-Image`` + ``DUTS-TR-Mask``)."""
    pairs = []
    for image in sorted(Path(root).rglob("*")):
        if image.suffix.lower() not in (".jpg", ".jpeg"):
            continue
        beside = image.with_suffix(".png")
        sibling = image.parent.parent / image.parent.name.replace("Image", "Mask") / f"{image.stem}.png"
        mask = beside if beside.is_file() else sibling
        if mask.is_file():
            pairs.append((image, mask))
    return pairs


def frames_as_images(roots: Sequence[str | Path], split: str | None = None) -> list[tuple[Path, Path]]:
    """Every annotated frame of DAVIS / YouTube-VOS style roots as an (image, mask) pair."""
    return [
        pair
        for root in roots
        for video in find_videos(root, split, min_frames=1)
        for pair in zip(video.frames, video.masks, strict=True)
    ]


class StaticDataset(SampleSet):
    """Fake ``num_frames``-frame sequences from single images, as STCN's static pre-training makes them.

    One object of the image is the target (a random one when its mask has several ids); masks stay soft after
    the warps. The image is first scaled to just cover ``size``. Per sequence: a random affine (scale
    0.8–1.5), a flip, colour jitter (0.1, 0.05, 0.05, 0.05) and 5 % greyscale; per frame: a random affine
    (±20°, scale 0.9–1.1, shear 10), a random crop of ``size`` and colour jitter (0.1, 0.05, 0.05). STCN's
    occasional thin-plate spline warp is left out. There is no sound (``has_audio`` false).
    """

    def __init__(
        self, pairs: Sequence[tuple[Path, Path]], size: tuple[int, int], num_frames: int, objects: int = MAX_OBJECTS
    ) -> None:
        if not pairs:
            raise ValueError("no image + mask pairs for the static data set")
        super().__init__(size, num_frames, objects, augment=True)  # static samples are always warped
        self.pairs = list(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: ItemKey) -> dict:
        image_path, mask_path = self.pairs[key.index]
        rng = item_rng(key.seed)
        image = load_rgb(image_path)
        labels = load_labels(mask_path, tuple(image.shape[-2:]))
        ids = [int(v) for v in torch.unique(labels) if v != 0]
        target = (labels == ids[int(rng.integers(len(ids)))]).float() if ids else torch.zeros_like(labels)
        stacked = self._warp(torch.cat([image, target[None]]), int(rng.integers(2**31 - 1)))
        masks = torch.zeros(self.num_frames, self.objects, *self.size)
        masks[:, 0] = stacked[:, 3]
        selector = torch.eye(self.objects)[0]
        audio = audio_windows(None, [0.0] * self.num_frames)
        return make_sample(stacked[:, :3], masks, selector, audio, False, image_path.stem)

    def _warp(self, stacked: torch.Tensor, seed: int) -> torch.Tensor:
        """(4, H, W) image + mask → (T, 4, h, w) warped frames; the mask channel is warped bilinearly (soft)."""
        height, width = stacked.shape[-2:]
        cover = max(self.size[0] / height, self.size[1] / width)
        covering = (max(round(height * cover), self.size[0]), max(round(width * cover), self.size[1]))
        sequence = v2.Compose(
            [
                v2.Resize(covering, antialias=True),
                v2.RandomAffine(degrees=0, scale=(0.8, 1.5), fill=_FILL, interpolation=v2.InterpolationMode.BILINEAR),
                v2.RandomHorizontalFlip(),
            ]
        )
        per_frame = v2.Compose(
            [
                v2.RandomAffine(
                    degrees=20, scale=(0.9, 1.1), shear=10, fill=_FILL, interpolation=v2.InterpolationMode.BILINEAR
                ),
                v2.RandomCrop(self.size, pad_if_needed=True, fill=_FILL),
            ]
        )
        sequence_colour = v2.Compose([v2.ColorJitter(0.1, 0.05, 0.05, 0.05), v2.RandomGrayscale(0.05)])
        frame_colour = v2.ColorJitter(0.1, 0.05, 0.05, 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            base = sequence(tv_tensors.Image(stacked)).as_subclass(torch.Tensor)
            rgb = sequence_colour(tv_tensors.Image(base[:3].clamp(0, 1))).as_subclass(torch.Tensor)
            base = torch.cat([rgb, base[3:]])
            frames = []
            for _ in range(self.num_frames):
                frame = per_frame(tv_tensors.Image(base)).as_subclass(torch.Tensor)
                colour = frame_colour(tv_tensors.Image(frame[:3].clamp(0, 1))).as_subclass(torch.Tensor)
                frames.append(torch.cat([colour, frame[3:].clamp(0, 1)]))
        return torch.stack(frames)
