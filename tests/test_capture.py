"""Tests for avvos.capture: live MJPEG capture, newest-frame delivery with drop counts, streams that stop,
missing cameras, files and folders delivered in order, grey/RGBA frames and size changes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from avvos.capture import CameraSource, LiveFrame, now, to_rgb
from avvos.errors import InputError
from tests.fake_devices import MjpegCamera, box_at, read_index, synthetic_frame

# A capture thread must never leak an exception: make pytest's report of one fail the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def _box_of(image: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the white pixels below the bar code."""
    white = image[16:].min(axis=2) > 200
    rows, cols = np.flatnonzero(white.any(axis=1)), np.flatnonzero(white.any(axis=0))
    return int(rows[0]) + 16, int(cols[0]), int(rows[-1]) + 17, int(cols[-1]) + 1


def _write_video(
    path: Path,
    images: list[np.ndarray],
    fps: int = 25,
    codec: str = "mpeg4",
    pix_fmt: str = "yuv420p",
    fmt: str | None = None,
) -> None:
    """Encode RGB (or grey, with pix_fmt gray) frames with PyAV."""
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if codec == "mpeg4":
            stream.options = {"qscale": "2"}
        for image in images:
            frame_format = "gray" if image.ndim == 2 else "rgb24"
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format=frame_format)):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_live_mjpeg_capture_delivers_the_stream_with_the_box_in_place() -> None:
    with MjpegCamera(fps=30) as camera, CameraSource(camera.url) as source:
        frames: list[LiveFrame] = []
        latencies = []
        for _ in range(20):
            frame = source.read(timeout=5)
            assert frame is not None, source.end_reason
            frames.append(frame)
            index = read_index(frame.image)
            latencies.append(frame.time - camera.sent_at[index])
            assert frame.image.shape == (240, 320, 3) and frame.image.dtype == np.uint8
            top, left, bottom, right = box_at(index)
            got = _box_of(frame.image)
            assert all(abs(a - b) <= 2 for a, b in zip(got, (top, left, bottom, right), strict=True)), (got, index)
        assert [f.index for f in frames] == list(range(20))
        sent = [read_index(f.image) for f in frames]
        assert sent == sorted(sent) and len(set(sent)) == 20
        assert not any(f.size_changed for f in frames)
        stats = source.stats
        assert 24 < stats.fps < 36, stats
        assert stats.delivered == 20 and stats.dropped == sum(f.dropped for f in frames)
        # Capture time = when the frame came out of the decoder: a few ms after the server sent it.
        assert min(latencies) >= 0 and max(latencies) < 2 / 30, latencies
        print(f"capture latency: median {np.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    assert source.ended and source.end_reason == "closed"


def test_slow_consumer_gets_the_newest_frame_and_drops_are_counted() -> None:
    with MjpegCamera(fps=30) as camera, CameraSource(camera.url) as source:
        assert source.read(timeout=5) is not None
        ages, drops = [], []
        for _ in range(8):
            time.sleep(0.2)  # a slow model: 5 fps against a 30 fps camera
            frame = source.read(timeout=5)
            delivered_at = now()
            assert frame is not None, source.end_reason
            ages.append(delivered_at - frame.time)
            drops.append(frame.dropped)
            # The newest frame: the one the server sent last, or the one before if one is on its way.
            assert max(camera.sent_at) - read_index(frame.image) <= 1
        stats = source.stats
    assert max(ages) < 2 / 30, ages
    assert min(drops) >= 3 and stats.dropped == sum(drops), (drops, stats)
    assert stats.grabbed >= stats.delivered + stats.dropped
    print(
        f"slow consumer: dropped per read {drops}, total {stats.dropped} of {stats.grabbed}; "
        f"frame age at delivery max {max(ages) * 1000:.1f} ms"
    )


def test_a_live_stream_without_realtime_delivers_every_frame() -> None:
    with MjpegCamera(fps=30) as camera, CameraSource(camera.url, realtime=False) as source:
        frames = []
        for _ in range(10):
            frame = source.read(timeout=5)
            assert frame is not None, source.end_reason
            frames.append(frame)
            time.sleep(0.05)  # slower than the camera: frames wait in a short queue instead of being dropped
    sent = [read_index(f.image) for f in frames]
    assert sent == list(range(sent[0], sent[0] + 10)) and all(f.dropped == 0 for f in frames)
    assert all(later.time > earlier.time for earlier, later in zip(frames, frames[1:], strict=False))


def test_a_stream_that_stops_ends_the_iteration_with_a_reason() -> None:
    camera = MjpegCamera(fps=30).start()
    source = CameraSource(camera.url, timeout=5)
    try:
        got = 0
        started = time.monotonic()
        for frame in source:
            got += 1
            if frame.index == 9:
                camera.stop()  # the camera goes away mid-session
        elapsed = time.monotonic() - started
    finally:
        camera.stop()
        source.close()
    assert got >= 10 and elapsed < 5
    assert source.ended
    assert "stopped delivering frames" in (source.end_reason or ""), source.end_reason
    assert source.read(timeout=0.1) is None


def test_a_size_change_in_a_live_stream_does_not_stop_it() -> None:
    # OpenCV's FFmpeg reader scales the frames of a stream to the size it first saw: the stream goes on.
    with MjpegCamera(fps=30, size_after=(5, (180, 200))) as camera, CameraSource(camera.url) as source:
        frames = [source.read(timeout=5) for _ in range(15)]
    assert all(f is not None and f.image.shape == (240, 320, 3) for f in frames)


def test_no_camera_at_that_index_names_the_index() -> None:
    with pytest.raises(InputError, match=r"no camera at index 7\b"):
        CameraSource(7)
    with pytest.raises(InputError, match=r"no camera at index 7\b"):
        CameraSource("7")


def test_a_url_that_does_not_open_is_named() -> None:
    with socket.socket() as probe:  # a free port: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/camera.mjpg"
    with pytest.raises(InputError, match=f"cannot open the stream {url}"):
        CameraSource(url, timeout=3)


def test_a_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="video source not found"):
        CameraSource(tmp_path / "nope.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        CameraSource(tmp_path / "empty")


def test_a_file_without_realtime_delivers_every_frame_in_order(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    _write_video(path, [synthetic_frame(i)[:, :, ::-1] for i in range(30)], fps=25)
    with CameraSource(path, realtime=False) as source:
        frames = list(source)
        assert source.ended and source.end_reason == "end of file after 30 frames"
        assert source.origin == 0.0 and source.fps == 25.0
    assert [read_index(f.image) for f in frames] == list(range(30))
    assert [f.index for f in frames] == list(range(30))
    assert all(f.dropped == 0 for f in frames)
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(30)])


def test_a_file_in_realtime_mode_is_paced_like_a_camera(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    _write_video(path, [synthetic_frame(i)[:, :, ::-1] for i in range(15)], fps=30)
    with CameraSource(path) as source:
        frames = list(source)
        elapsed = now() - source.origin
    assert 0.4 < elapsed < 1.5
    assert sum(f.dropped for f in frames) + len(frames) == 15
    for frame in frames:  # stamped at its due time on the shared clock
        assert frame.time - source.origin == pytest.approx(read_index(frame.image) / 30, abs=1e-6)


def test_a_grey_video_comes_out_as_rgb(tmp_path: Path) -> None:
    path = tmp_path / "grey.mkv"
    grey = [np.full((48, 64), 30 + 20 * i, np.uint8) for i in range(5)]
    _write_video(path, grey, codec="ffv1", pix_fmt="gray")
    with CameraSource(path, realtime=False) as source:
        frames = list(source)
    assert len(frames) == 5
    for frame, expected in zip(frames, grey, strict=True):
        assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8
        assert np.array_equal(frame.image[:, :, 0], frame.image[:, :, 2])
        assert abs(int(frame.image[0, 0, 0]) - int(expected[0, 0])) <= 2


def test_a_folder_of_rgba_grey_and_resized_frames(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128  # red, half transparent
    cv2.imwrite(str(folder / "00000.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    cv2.imwrite(str(folder / "00001.png"), np.full((40, 60), 77, np.uint8))  # grey
    cv2.imwrite(str(folder / "00002.png"), np.full((40, 60), 60000, np.uint16))  # 16-bit grey
    cv2.imwrite(str(folder / "00003.png"), np.full((50, 70, 3), (255, 0, 0), np.uint8))  # BGR blue, bigger
    with CameraSource(folder, realtime=False, fps_hint=10) as source:
        frames = list(source)
        stats = source.stats
    assert [f.image.shape for f in frames] == [(40, 60, 3)] * 3 + [(50, 70, 3)]
    assert tuple(frames[0].image[0, 0]) == (255, 0, 0)
    assert tuple(frames[1].image[0, 0]) == (77, 77, 77)
    assert tuple(frames[2].image[0, 0]) == (234, 234, 234)
    assert tuple(frames[3].image[0, 0]) == (0, 0, 255)
    assert [f.size_changed for f in frames] == [False, False, False, True]
    assert frames[3].size == (50, 70) and stats.size_changes == 1
    assert [f.time for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_to_rgb_handles_every_layout() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(to_rgb(grey), np.repeat(grey[:, :, None], 3, axis=2))
    assert np.array_equal(to_rgb(grey[:, :, None]), to_rgb(grey))
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 0] = 200  # blue
    assert tuple(to_rgb(bgra)[0, 0]) == (0, 0, 200)
    assert tuple(to_rgb(bgra[..., :3], order="rgb")[0, 0]) == (200, 0, 0)
    assert to_rgb(np.full((2, 2), 0.5, np.float32))[0, 0, 0] == 128
    with pytest.raises(InputError, match="unsupported frame shape"):
        to_rgb(np.zeros((2, 2, 2), np.uint8))
