"""Static images turned into fake videos (STCN's stage 0)."""

from __future__ import annotations

from pathlib import Path

import torch

from avvos.data.sampling import ItemKey
from avvos.data.static import StaticDataset, find_image_pairs, frames_as_images
from tests.training.fake_data import write_davis_root, write_static_folder


def test_find_image_pairs_beside_and_duts_layout(tmp_path: Path) -> None:
    root = write_static_folder(tmp_path / "static", count=3)
    (root / "lonely.jpg").write_bytes((root / "img0.jpg").read_bytes())  # no mask: left out
    pairs = find_image_pairs(root)
    names = sorted(image.name for image, _ in pairs)
    assert names == ["img0.jpg", "img1.jpg", "img2.jpg", "sun.jpg"]
    assert all(mask.suffix == ".png" and mask.stem == image.stem for image, mask in pairs)


def test_frames_of_video_roots_as_images(tmp_path: Path) -> None:
    root = write_davis_root(tmp_path / "davis", names=("a", "b"), frames=3)
    pairs = frames_as_images([root])
    assert len(pairs) == 6 and all(image.stem == mask.stem for image, mask in pairs)


def test_static_sequences_are_warped_soft_and_keyed(tmp_path: Path) -> None:
    root = write_static_folder(tmp_path / "static", count=2, size=(60, 80))
    dataset = StaticDataset(find_image_pairs(root), (48, 64), num_frames=3, objects=2)
    sample = dataset[ItemKey(0, 1, 5, 5)]
    assert sample["frames"].shape == (3, 3, 48, 64) and sample["masks"].shape == (3, 2, 48, 64)
    assert sample["selector"].tolist() == [1.0, 0.0] and not sample["has_audio"]
    masks = sample["masks"][:, 0]
    assert float(masks.min()) >= 0 and float(masks.max()) <= 1
    assert ((masks > 0.05) & (masks < 0.95)).any()  # warped masks are soft at the edges
    assert (masks > 0.5).any(dim=(1, 2)).all()  # the object stays in view
    assert not torch.equal(sample["frames"][0], sample["frames"][1])  # each frame gets its own warp
    again = dataset[ItemKey(0, 1, 5, 5)]
    assert torch.equal(sample["frames"], again["frames"]) and torch.equal(sample["masks"], again["masks"])
