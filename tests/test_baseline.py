"""The training-free baseline (avvos.baseline): it tracks, keeps object ids, stays bounded and is exact."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from avvos.baseline import FeaturePropagation
from avvos.errors import InputError, MaskError
from avvos.masks import write_mask
from avvos.metrics import region_similarity
from tests.conftest import SHARED

MOBILENET = SHARED / "weights" / "mobilenet_v2-b0353104.pth"


@pytest.fixture()
def imagenet_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A temporary $TORCH_HOME where torchvision finds its ImageNet MobileNetV2 file without a download."""
    if not MOBILENET.is_file():
        pytest.skip(f"ImageNet MobileNetV2 weights not found at {MOBILENET} (set AVVOS_SHARED to the shared folder)")
    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / MOBILENET.name).symlink_to(MOBILENET.resolve())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: these tensors are tiny, and a second thread only waits on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _texture(rng: np.random.Generator, height: int, width: int, blur: float) -> np.ndarray:
    """Smoothed colour noise, stretched to the full 0..255 range."""
    noise = rng.random((height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), blur)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).astype(np.uint8)


def _checks(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    """A noisy checkerboard of two random colours, ``cell`` pixels a square."""
    yy, xx = np.mgrid[0:size, 0:size]
    dark = ((yy // cell + xx // cell) % 2).astype(bool)
    image = np.where(dark[..., None], rng.integers(0, 256, 3), rng.integers(0, 256, 3)).astype(np.float32)
    return np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)


def textured_clip(
    frames: int = 10, height: int = 64, width: int = 96, ids: tuple[int, ...] = (1,), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Checkered discs crossing a smooth-noise background, about 7 pixels a frame: the clip (T, H, W, 3) and
    every frame's ids (T, H, W). One disc goes right, a second (a row lower) goes left."""
    rng = np.random.default_rng(seed)
    background = _texture(rng, height, width, 3.0)
    radius = 15 if len(ids) == 1 else 12
    patterns = [_checks(rng, 2 * radius + 1, 4 + i) for i in range(len(ids))]
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = yy**2 + xx**2 <= radius**2
    clip = np.repeat(background[None], frames, axis=0)
    labels = np.zeros((frames, height, width), np.uint8)
    left, right = radius + 2, width - radius - 3
    for t in range(frames):
        progress = t / max(frames - 1, 1)
        for i, (object_id, pattern) in enumerate(zip(ids, patterns, strict=True)):
            cy = round(height / 2 + (i - (len(ids) - 1) / 2) * 26 + 3 * math.sin(t / 3))
            cx = round(left + (right - left) * progress if i % 2 == 0 else right - (right - left) * progress)
            ys, xs = slice(cy - radius, cy + radius + 1), slice(cx - radius, cx + radius + 1)
            clip[t, ys, xs][disc] = pattern[disc]
            labels[t, ys, xs][disc] = object_id
    return clip, labels


def test_tracks_a_textured_object(imagenet_weights: None) -> None:
    clip, truth = textured_clip()
    method = FeaturePropagation()
    assert method.reset(clip[0], truth[0]).tolist() == truth[0].tolist()
    scores = [region_similarity(method.step(image) == 1, truth[t] == 1) for t, image in enumerate(clip[1:], start=1)]
    assert np.mean(scores) > 0.7, scores
    assert min(scores) > 0.6, scores
    # The object moves by about 7 pixels a frame: a method that only copies the first mask falls far behind.
    assert region_similarity(truth[0] == 1, truth[-1] == 1) < 0.1


def test_keeps_several_object_ids(imagenet_weights: None, tmp_path: Path) -> None:
    clip, truth = textured_clip(ids=(3, 7), seed=1)
    (tmp_path / "frames").mkdir()
    for t, image in enumerate(clip):
        cv2.imwrite(str(tmp_path / "frames" / f"{t:05d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    write_mask(tmp_path / "first.png", truth[0])
    masks = FeaturePropagation().segment_folder(tmp_path / "frames", tmp_path / "first.png")
    assert len(masks) == len(clip)
    assert all(mask.dtype == np.uint8 and mask.shape == truth[0].shape for mask in masks)
    assert set(np.unique(np.stack(masks)).tolist()) == {0, 3, 7}
    for object_id in (3, 7):
        assert region_similarity(masks[-1] == object_id, truth[-1] == object_id) > 0.6


def test_context_is_capped(imagenet_weights: None) -> None:
    clip, truth = textured_clip(frames=8)
    method = FeaturePropagation(context_frames=2)
    method.reset(clip[0], truth[0])
    held = []
    for image in clip[1:]:
        method.step(image)
        held.append(method.memory_frames)
    assert held == [2, 3, 3, 3, 3, 3, 3]
    method.reset(clip[0], truth[0])
    assert method.memory_frames == 1


def test_processing_size_returns_masks_at_the_input_size(imagenet_weights: None) -> None:
    clip, truth = textured_clip(frames=3)
    method = FeaturePropagation(size=48)
    method.reset(clip[0], truth[0])
    assert method.step(clip[1]).shape == truth[0].shape


def test_local_propagation_equals_a_dense_reference() -> None:
    """Tiles, windows and per-frame top-k give exactly the dense top-k of all keys within the radius."""
    torch.manual_seed(0)
    method = FeaturePropagation(pretrained=False, temperature=0.1, top_k=5, radius=3.5, context_frames=2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 104, 152, 3), dtype=np.uint8)
    first = np.zeros((104, 152), np.uint8)
    first[20:60, 30:90], first[70:100, 100:150] = 1, 2
    method.reset(images[0], first)
    for image in images[1:3]:
        method.step(image)
    with torch.inference_mode():
        features = method._encode(images[3])
        got = method._propagate(features)
    h, w = features.shape[-2:]

    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    near = (ys[:, None] - ys[None]) ** 2 + (xs[:, None] - xs[None]) ** 2 <= 3.5**2
    queries = features[0].reshape(features.shape[1], -1).T
    context = [method._first, *method._recent]
    with torch.inference_mode():
        affinity = torch.cat([torch.where(near, queries @ keys[:-1].T, -torch.inf) for keys, _ in context], dim=1)
        labels = torch.cat([labels[:-1] for _, labels in context])
        top, index = affinity.topk(5, dim=1)
        expected = (torch.softmax(top / 0.1, dim=1)[..., None] * labels[index]).sum(dim=1)
    torch.testing.assert_close(got[0].reshape(got.shape[1], -1).T, expected, rtol=1e-5, atol=1e-5)


def test_refuses_bad_input() -> None:
    method = FeaturePropagation(pretrained=False)
    image = np.zeros((32, 48, 3), np.uint8)
    with pytest.raises(RuntimeError, match="reset"):
        method.step(image)
    with pytest.raises(MaskError, match="no object"):
        method.reset(image, np.zeros((32, 48), np.uint8))
    with pytest.raises(MaskError, match="first mask is 40x32"):
        method.reset(image, np.ones((32, 40), np.uint8))
    with pytest.raises(MaskError, match="1..255"):
        method.reset(image, np.full((32, 48), 300))
    method.reset(image, np.ones((32, 48), np.uint8))
    with pytest.raises(InputError, match="one size"):
        method.step(np.zeros((48, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="temperature"):
        FeaturePropagation(pretrained=False, temperature=0)


def _fake_davis(root: Path, names: list[str]) -> None:
    """A DAVIS-2016 style root: generated 5-frame clips with 0/255 masks, listed in ImageSets/dev.txt."""
    (root / "ImageSets").mkdir(parents=True)
    (root / "ImageSets" / "dev.txt").write_text("\n".join(names) + "\n")
    for seed, name in enumerate(names):
        clip, truth = textured_clip(frames=5, seed=seed)
        for folder in ("JPEGImages", "Annotations"):
            (root / folder / "480p" / name).mkdir(parents=True)
        for t in range(len(clip)):
            cv2.imwrite(str(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"), clip[t][:, :, ::-1])
            cv2.imwrite(str(root / "Annotations" / "480p" / name / f"{t:05d}.png"), truth[t] * 255)


def test_cross_validation_script(imagenet_weights: None, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Folds are the sorted halves of dev.txt; the baseline's scores per fold combine into the overall mean."""
    import json

    from training.evaluate_davis_cv import main

    _fake_davis(tmp_path / "davis", ["d", "b", "c", "a"])
    out = tmp_path / "cv"
    assert main(["baseline", "--davis", str(tmp_path / "davis"), "--out", str(out), "--quiet", "--threads", "1"]) == 0
    assert (out / "fold_a.txt").read_text() == "a\nb\n" and (out / "fold_b.txt").read_text() == "c\nd\n"
    results = json.loads((out / "results.json").read_text())
    assert results["folds"] == {"A": ["a", "b"], "B": ["c", "d"]}
    by_fold = {ev["eval_fold"]: ev for ev in results["evaluations"]}
    assert sorted(by_fold["A"]["sequences"]) == ["a", "b"] and sorted(by_fold["B"]["sequences"]) == ["c", "d"]
    per_sequence = [seq["J-Mean"] for ev in results["evaluations"] for seq in ev["sequences"].values()]
    assert results["combined"]["J-Mean"] == pytest.approx(np.mean(per_sequence))
    assert results["combined"]["J-Mean"] > 0.7
    assert "combined (all 4 sequences)" in capsys.readouterr().out

    # OSVOS's command scores any prediction folder on the same folds: the ground truth itself scores 1.
    gt = tmp_path / "davis" / "Annotations" / "480p"
    assert main(["osvos", "--davis", str(tmp_path / "davis"), "--pred", str(gt), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "results.json").read_text())["combined"]["J&F-Mean"] == pytest.approx(1.0)


def test_cross_validation_script_runs_each_folds_weights_on_the_other_fold(tmp_path: Path) -> None:
    """``model``: the weights of fold A segment fold B's sequences and the reverse (random light models here)."""
    import json

    from avvos.checkpoint import save_checkpoint
    from avvos.config import ModelConfig
    from avvos.model.stcn import build_model
    from training.evaluate_davis_cv import main

    _fake_davis(tmp_path / "davis", ["a", "b"])
    torch.manual_seed(0)
    for fold in "ab":
        save_checkpoint(build_model(ModelConfig.light()), tmp_path / f"{fold}.safetensors", description=f"fold {fold}")
    out = tmp_path / "cv"
    argv = ["model", "--weights-a", str(tmp_path / "a.safetensors"), "--weights-b", str(tmp_path / "b.safetensors")]
    assert main([*argv, "--davis", str(tmp_path / "davis"), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    by_fold = {ev["eval_fold"]: ev for ev in results["evaluations"]}
    assert list(by_fold["B"]["sequences"]) == ["b"] and by_fold["B"]["by"].endswith("a.safetensors")
    assert list(by_fold["A"]["sequences"]) == ["a"] and by_fold["A"]["by"].endswith("b.safetensors")
    assert sorted(p.name for p in (out / "masks" / "b").iterdir()) == [f"{t:05d}.png" for t in range(5)]
