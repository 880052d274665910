"""Tests for avvos.sinks: overlay colours, palette mask files, and mp4 videos that survive errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import avvos.sinks
from avvos.masks import davis_palette, read_mask
from avvos.session import Revision
from avvos.sinks import HeldFrames, MaskWriter, VideoWriter, overlay
from avvos.sources import open_frames


def _two_squares() -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((64, 64, 3), np.uint8)
    image[...] = (100, 150, 200)
    labels = np.zeros((64, 64), np.uint8)
    labels[10:30, 10:30] = 1
    labels[30:50, 30:60] = 2
    return image, labels


def test_overlay_blends_objects_draws_2_pixel_contours_and_keeps_background() -> None:
    image, labels = _two_squares()
    before = image.copy()
    out = overlay(image, labels, alpha=0.25)
    palette = davis_palette().astype(float)

    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(image, before)
    np.testing.assert_array_equal(out[labels == 0], image[labels == 0])
    expected = np.rint(0.75 * image[20, 20] + 0.25 * palette[1])
    np.testing.assert_array_equal(out[20, 20], expected)
    np.testing.assert_array_equal(out[12:28, 12:28], np.broadcast_to(expected, (16, 16, 3)))
    for row, col in [(10, 20), (11, 20), (20, 10), (20, 11), (29, 20), (28, 20), (20, 29)]:
        np.testing.assert_array_equal(out[row, col], davis_palette()[1])
    np.testing.assert_array_equal(out[30, 45], davis_palette()[2])
    np.testing.assert_array_equal(out[40, 45], np.rint(0.75 * image[40, 45] + 0.25 * palette[2]))


def test_overlay_alpha_bounds_and_custom_palette() -> None:
    image, labels = _two_squares()
    np.testing.assert_array_equal(overlay(image, labels, alpha=0.0)[20, 20], image[20, 20])
    palette = np.zeros((256, 3), np.uint8)
    palette[1] = (1, 2, 3)
    np.testing.assert_array_equal(overlay(image, labels, alpha=1.0, palette=palette)[20, 20], (1, 2, 3))
    with pytest.raises(ValueError, match="do not match"):
        overlay(image, labels[:, :10])
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, labels, alpha=1.5)


def test_mask_writer_writes_palette_pngs_into_a_new_folder(tmp_path: Path) -> None:
    _, labels = _two_squares()
    writer = MaskWriter(tmp_path / "out" / "seq")
    path = writer.write("00007", labels)
    assert path == tmp_path / "out" / "seq" / "00007.png"
    with Image.open(path) as written:
        assert written.mode == "P"
    np.testing.assert_array_equal(read_mask(path), labels)
    with pytest.raises(ValueError, match="plain file name"):
        writer.write("../escape", labels)


def _gradient_frames(count: int, height: int, width: int) -> list[np.ndarray]:
    rows = np.linspace(0, 255, height)[:, None]
    cols = np.linspace(0, 255, width)[None, :]
    frames = []
    for i in range(count):
        frame = np.stack(
            [
                np.broadcast_to(rows, (height, width)),
                np.broadcast_to(cols, (height, width)),
                np.full((height, width), 20.0 * i),
            ],
            axis=2,
        )
        frames.append(frame.astype(np.uint8))
    return frames


def _check_round_trip(path: Path, frames: list[np.ndarray], fps: float) -> None:
    height, width = frames[0].shape[:2]
    with open_frames(path) as source:
        assert source.fps == pytest.approx(fps)
        assert source.size == (height + height % 2, width + width % 2)
        back = [f.image for f in source]
    assert len(back) == len(frames)
    for written, read in zip(frames, back, strict=True):
        error = np.abs(read[:height, :width].astype(int) - written.astype(int)).mean()
        assert error < 8


def test_video_writer_round_trip_at_an_odd_size(tmp_path: Path) -> None:
    frames = _gradient_frames(10, 47, 63)
    path = tmp_path / "videos" / "out.mp4"
    with VideoWriter(path, fps=12.5) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.frames_written == 10
    _check_round_trip(path, frames, 12.5)


def test_video_writer_mpeg4_fallback_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(avvos.sinks, "_video_codec", lambda: "mpeg4")
    frames = _gradient_frames(6, 48, 64)
    with VideoWriter(tmp_path / "out.mp4", fps=25) as writer:
        assert writer.codec == "mpeg4"
        for frame in frames:
            writer.write(frame)
    _check_round_trip(tmp_path / "out.mp4", frames, 25)


def test_video_writer_interrupted_by_an_exception_leaves_a_playable_file(tmp_path: Path) -> None:
    frames = _gradient_frames(10, 48, 64)
    path = tmp_path / "interrupted.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(path, fps=25) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame)
            if i == 4:
                raise RuntimeError("boom")
    _check_round_trip(path, frames[:5], 25)


def test_video_writer_refuses_other_sizes_and_writes_no_file_without_frames(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "empty.mp4", fps=25):
        pass
    assert not (tmp_path / "empty.mp4").exists()
    with VideoWriter(tmp_path / "sizes.mp4", fps=25) as writer:
        writer.write(np.zeros((48, 64, 3), np.uint8))
        with pytest.raises(ValueError, match="64x48"):
            writer.write(np.zeros((50, 64, 3), np.uint8))
        with pytest.raises(ValueError, match="uint8"):
            writer.write(np.zeros((48, 64, 3), np.float32))
    with pytest.raises(ValueError, match="closed"):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert len(list(open_frames(tmp_path / "sizes.mp4"))) == 1


def test_held_frames_are_handed_on_in_order_lag_frames_late_with_their_mended_masks() -> None:
    """Each frame is handed on once ``lag`` later ones have come; a revision mends a held frame's object (its old
    pixels go to the background, the other objects stay) and is ignored for a frame already handed on."""
    emitted: list[tuple[str, np.ndarray]] = []
    held = HeldFrames(2, lambda name, labels: emitted.append((name, labels)))
    blank = np.zeros((4, 6), np.uint8)
    first = blank.copy()
    first[0, :2], first[3, 5] = 1, 2
    held.push(0, "a", first)
    held.push(1, "b", blank)
    assert emitted == []
    mended = np.zeros((4, 6), bool)
    mended[2, 3:5] = True
    held.push(2, "c", blank, [Revision(0, 1, mended), Revision(1, 1, mended)])
    assert [name for name, _ in emitted] == ["a"]
    expected = np.zeros((4, 6), np.uint8)
    expected[2, 3:5], expected[3, 5] = 1, 2
    np.testing.assert_array_equal(emitted[0][1], expected)
    held.push(3, "d", blank, [Revision(0, 1, np.zeros((4, 6), bool))])  # frame 0 is out already
    held.flush()
    assert [name for name, _ in emitted] == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(emitted[1][1], mended.astype(np.uint8))
    assert held.revised == 2


def test_a_revision_without_a_mask_puts_back_the_first_output() -> None:
    """A revision with no mask undoes an earlier one: the object gets back the pixels it was first output with
    (where no other object has them now), and the other objects keep theirs."""
    emitted: list[np.ndarray] = []
    held = HeldFrames(3, lambda name, labels: emitted.append(labels))
    first = np.zeros((4, 6), np.uint8)
    first[0, :3], first[3, 5] = 1, 2
    held.push(0, "a", first)
    wrong = np.zeros((4, 6), bool)
    wrong[2, 2:5] = True
    held.push(1, "b", first, [Revision(0, 1, wrong)])
    held.push(2, "c", first, [Revision(0, 1, None)])
    held.flush()
    np.testing.assert_array_equal(emitted[0], first)
    assert held.revised == 2


def test_no_lag_hands_each_frame_on_at_once() -> None:
    emitted: list[str] = []
    held = HeldFrames(0, lambda name, labels: emitted.append(name))
    held.push(0, "a", np.zeros((2, 2), np.uint8))
    assert emitted == ["a"]
