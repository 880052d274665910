"""Tests for avvos.sources: folders and videos read lazily, clear errors, DAVIS / YouTube-VOS discovery."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from avvos.errors import InputError
from avvos.sources import Frame, discover_davis, open_frames


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _jpeg_folder(folder: Path, count: int, size: tuple[int, int] = (24, 32)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(_noise(*size, seed=i)).save(path, quality=90)
        paths.append(path)
    return paths


def _noise_video(path: Path, count: int, options: dict[str, str] | None = None) -> None:
    """An H.264 mp4 of random frames (large packets, so that truncating it cuts into frame data)."""
    with av.open(str(path), mode="w", format="mp4", options=options or {}) as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(count):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_noise(48, 64, seed=i), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def test_folder_converts_grey_rgba_and_palette_to_rgb_in_natural_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(np.full((6, 8), 77, np.uint8), mode="L").save(folder / "frame10.png")
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[...] = (10, 20, 30, 0)
    Image.fromarray(rgba, mode="RGBA").save(folder / "frame2.png")
    palette_image = Image.fromarray(np.full((6, 8), 1, np.uint8), mode="P")
    palette_image.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette_image.save(folder / "frame1.png", transparency=0)
    Image.fromarray(np.full((6, 8, 3), 128, np.uint8)).save(folder / "frame3.bmp")
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".hidden.png").write_bytes(b"not an image either")

    with open_frames(folder, fps=10) as source:
        assert source.names == ["frame1", "frame2", "frame3", "frame10"]
        assert len(source) == source.num_frames == 4
        assert source.size == (6, 8)
        assert source.fps == 10.0
        frames = list(source)

    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.name for f in frames] == source.names
    assert [f.time for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    for frame in frames:
        assert frame.image.shape == (6, 8, 3) and frame.image.dtype == np.uint8
    assert (frames[0].image == (200, 100, 50)).all()
    assert (frames[1].image == (10, 20, 30)).all()
    assert (frames[2].image == 128).all()
    assert (frames[3].image == 77).all()


def test_folder_is_read_lazily_and_a_corrupt_frame_fails_when_reached(tmp_path: Path) -> None:
    paths = _jpeg_folder(tmp_path / "seq", 6)
    _truncate(paths[3], 0.5)
    source = open_frames(tmp_path / "seq")
    assert len(source) == 6
    received: list[Frame] = []
    with pytest.raises(InputError, match="00003.jpg"):
        for frame in source:
            received.append(frame)
    assert [f.name for f in received] == ["00000", "00001", "00002"]


def test_folder_with_a_frame_of_another_size_is_refused(tmp_path: Path) -> None:
    _jpeg_folder(tmp_path / "seq", 2)
    Image.fromarray(_noise(30, 32, seed=9)).save(tmp_path / "seq" / "00002.jpg")
    with pytest.raises(InputError, match="00002.jpg.*same size"):
        list(open_frames(tmp_path / "seq"))


def test_missing_empty_and_imageless_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        open_frames(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        open_frames(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("hello")
    with pytest.raises(InputError, match="no images"):
        open_frames(tmp_path / "text")


def test_a_file_that_is_not_a_video_is_refused_at_open(tmp_path: Path) -> None:
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(InputError, match="clip.mp4.*not a video"):
        open_frames(fake)


def test_an_audio_only_file_is_refused(shared_data: Path) -> None:
    with pytest.raises(InputError, match="no video stream"):
        open_frames(shared_data / "media" / "librispeech_198-209-0000.ogg")


def test_a_truncated_mp4_without_its_index_is_refused_at_open(tmp_path: Path) -> None:
    video = tmp_path / "cut.mp4"
    _noise_video(video, 20)
    _truncate(video, 0.5)
    with pytest.raises(InputError, match="cut.mp4"):
        open_frames(video)


def test_a_video_that_breaks_midway_fails_with_the_frame_index(tmp_path: Path) -> None:
    video = tmp_path / "broken.mp4"
    _noise_video(video, 30, options={"movflags": "+faststart"})
    _truncate(video, 0.5)
    with open_frames(video) as source:
        assert source.num_frames == 30
        received = []
        with pytest.raises(InputError, match=r"broken.mp4.*frame (\d+)") as error:
            for frame in source:
                received.append(frame.index)
    assert 0 < len(received) < 30
    assert f"frame {len(received)}" in str(error.value)


def test_reads_the_real_cutie_example_mp4(shared_data: Path) -> None:
    with open_frames(shared_data / "cutie-examples" / "example.mp4") as source:
        assert len(source) == 117
        assert source.fps == 25.0
        assert source.size == (480, 640)
        assert source.names is None
        frames = list(source)
    assert len(frames) == 117
    assert frames[25].name == "00025" and frames[25].time == pytest.approx(1.0)
    assert frames[0].image.shape == (480, 640, 3) and frames[0].image.dtype == np.uint8
    assert frames[0].image.std() > 10


def test_reads_the_real_vp8_webm_whose_frame_count_is_unknown(shared_data: Path) -> None:
    with open_frames(shared_data / "media" / "big_buck_bunny_1s.webm") as source:
        assert source.num_frames is None
        with pytest.raises(TypeError):
            len(source)
        assert source.fps == 24.0
        assert source.size == (720, 1280)
        frames = list(source)
    assert len(frames) == 24
    assert frames[-1].name == "00023"
    assert all(f.image.shape == (720, 1280, 3) for f in frames)


def test_a_single_image_file_is_refused(shared_data: Path) -> None:
    with pytest.raises(InputError, match="single image"):
        open_frames(shared_data / "cutie-examples" / "images" / "bike" / "00000.jpg")


def test_discover_davis_on_the_real_dev_root(shared_data: Path) -> None:
    root = shared_data / "davis2016-dev"
    listed = (root / "ImageSets" / "dev.txt").read_text().split()
    everything = discover_davis(root)
    assert [s.name for s in everything] == sorted(listed)
    for sequence in everything:
        assert sequence.frames == root / "JPEGImages" / "480p" / sequence.name
        assert sequence.annotations == root / "Annotations" / "480p" / sequence.name
    assert [s.name for s in discover_davis(root, "ImageSets/dev.txt")] == listed
    assert [s.name for s in discover_davis(root, root / "ImageSets" / "dev.txt")] == listed


def test_discover_davis_on_a_youtube_style_root_and_an_imageset(tmp_path: Path) -> None:
    for name in ["zebra", "apple", "mango"]:
        (tmp_path / "JPEGImages" / name).mkdir(parents=True)
    (tmp_path / "Annotations" / "apple").mkdir(parents=True)
    sequences = discover_davis(tmp_path)
    assert [s.name for s in sequences] == ["apple", "mango", "zebra"]
    assert sequences[0].frames == tmp_path / "JPEGImages" / "apple"
    assert sequences[0].annotations == tmp_path / "Annotations" / "apple"
    assert sequences[1].annotations is None

    imageset = tmp_path / "subset.txt"
    imageset.write_text("zebra\n\napple\n")
    assert [s.name for s in discover_davis(tmp_path, imageset)] == ["zebra", "apple"]

    imageset.write_text("zebra\nkiwi\n")
    with pytest.raises(InputError, match="kiwi"):
        discover_davis(tmp_path, imageset)


def test_discover_davis_refuses_a_folder_that_is_no_dataset_root(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="JPEGImages"):
        discover_davis(tmp_path)
    with pytest.raises(InputError, match="not found"):
        discover_davis(tmp_path / "nowhere")
