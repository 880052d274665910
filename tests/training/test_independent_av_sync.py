"""The independent "who is sounding" generator: its layout, the task's properties, determinism, the evaluator."""

from __future__ import annotations

import ast
import json
import shutil
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import training.independent_av_sync as generator
from avvos.metrics import evaluate_av_sync

FRAMES, HEIGHT, WIDTH, FPS = 16, 96, 160, 25
SPLITS = ("crossing", "distinct", "silent")
ARGS = ["--clips", "2", "--seed", "777000", "--frames", str(FRAMES), "--height", str(HEIGHT), "--width", str(WIDTH)]


def generate(root: Path) -> Path:
    """Write the small data set of these tests to ``root``."""
    assert generator.main([str(root), *ARGS]) == 0
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two clips per split, 16 frames of 96 x 160, written once for the module."""
    return generate(tmp_path_factory.mktemp("independent_av_sync") / "data")


def clips(root: Path, split: str) -> list[str]:
    return (root / "ImageSets" / f"{split}.txt").read_text().split()


def meta(root: Path, name: str) -> dict:
    return json.loads((root / "Meta" / f"{name}.json").read_text())


def target_masks(root: Path, name: str) -> np.ndarray:
    return np.stack([np.array(Image.open(p)) for p in sorted((root / "Annotations" / name).glob("*.png"))])


def distractor_masks(root: Path, name: str) -> np.ndarray:
    with np.load(root / "Meta" / f"{name}_distractors.npz") as npz:
        shape = tuple(int(n) for n in npz["shape"])
        return np.unpackbits(npz["packed"], count=int(np.prod(shape))).reshape(shape).astype(bool)


def read_wav(path: Path) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Samples and (channels, sample width, rate) of a WAV file."""
    with wave.open(str(path)) as w:
        params = (w.getnchannels(), w.getsampwidth(), w.getframerate())
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), params


def test_the_generator_imports_nothing_from_avvos() -> None:
    """It must stay independent of the project's own generator: numpy, cv2, PIL, tqdm and the stdlib only."""
    tree = ast.parse(Path(generator.__file__).read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    top = {name.split(".")[0] for name in modules}
    assert top - set(sys.stdlib_module_names) <= {"numpy", "cv2", "PIL", "tqdm"}


def test_every_frame_has_an_image_a_mask_and_the_clip_exact_audio(data: Path) -> None:
    frame_names = [f"{t:05d}" for t in range(FRAMES)]
    for split in SPLITS:
        names = clips(data, split)
        assert names == [f"{split}_777000", f"{split}_777001"]
        for name in names:
            assert sorted(p.stem for p in (data / "JPEGImages" / name).glob("*.jpg")) == frame_names
            assert sorted(p.stem for p in (data / "Annotations" / name).glob("*.png")) == frame_names
            assert Image.open(data / "JPEGImages" / name / "00000.jpg").size == (WIDTH, HEIGHT)
            samples, params = read_wav(data / "Audio" / f"{name}.wav")
            assert params == (1, 2, 16000)
            assert len(samples) == round(FRAMES / FPS * 16000)
            assert np.abs(samples).max() > 0


def test_masks_mark_only_the_target_which_is_visible_in_frame_0(data: Path) -> None:
    for split in SPLITS:
        for name in clips(data, split):
            assert Image.open(data / "Annotations" / name / "00000.png").mode == "P"
            masks = target_masks(data, name)
            assert set(np.unique(masks)) <= {0, 1}
            assert masks[0].any()
            assert meta(data, name)["target"] == 0


def test_crossing_clips_cross_after_frame_5(data: Path) -> None:
    for name in clips(data, "crossing"):
        assert any(t > 5 for t in meta(data, name)["crossing_frames"])


def test_silent_clips_show_the_crossing_clips_without_their_sound(data: Path) -> None:
    for crossing, silent in zip(clips(data, "crossing"), clips(data, "silent"), strict=True):
        for sub in ("JPEGImages", "Annotations"):
            for path in sorted((data / sub / crossing).iterdir()):
                assert path.read_bytes() == (data / sub / silent / path.name).read_bytes()
        assert meta(data, silent)["crossing_frames"] == meta(data, crossing)["crossing_frames"]
        loud, _ = read_wav(data / "Audio" / f"{crossing}.wav")
        quiet, _ = read_wav(data / "Audio" / f"{silent}.wav")
        assert len(loud) == len(quiet) and not np.array_equal(loud, quiet)


def test_the_sound_follows_the_target_envelope_and_not_the_distractors(data: Path) -> None:
    """The loudness around each frame's timestamp correlates with the target's envelope only."""
    hop = 16000 // FPS
    for name in clips(data, "crossing"):
        samples, _ = read_wav(data / "Audio" / f"{name}.wav")
        x = samples.astype(float)
        loudness = [np.sqrt(np.mean(x[max(0, t * hop - hop // 4) : t * hop + hop // 4] ** 2)) for t in range(FRAMES)]
        envelopes = np.array(meta(data, name)["meta"]["envelopes_at_frames"])
        corr = [np.corrcoef(loudness, e)[0, 1] for e in envelopes]
        assert corr[0] > 0.8 and corr[0] > max(corr[1:])


def test_distractor_masks_are_per_frame_and_never_overlap_the_target(data: Path) -> None:
    for split in SPLITS:
        for name in clips(data, split):
            distractors = distractor_masks(data, name)
            objects = meta(data, name)["meta"]["num_objects"]
            assert distractors.shape == (FRAMES, objects - 1, HEIGHT, WIDTH)
            assert distractors[0].any(axis=(1, 2)).all()
            target = target_masks(data, name) == 1
            assert not (distractors & target[:, None]).any()


def test_the_same_seed_writes_the_same_bytes(data: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again")
    files = sorted(p.relative_to(data) for p in data.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (data / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_evaluate_av_sync_scores_ground_truth_predictions_as_perfect(data: Path, tmp_path: Path) -> None:
    predictions = tmp_path / "pred"
    shutil.copytree(data / "Annotations", predictions)
    for split in SPLITS:
        result = evaluate_av_sync(predictions, data, split)
        assert result["clips"] == 2
        assert result["J&F-Mean"] == pytest.approx(1.0, abs=1e-6)
        assert result["identity_switch_fraction"] == 0.0
        assert result["post_crossing_frames"] > 0
