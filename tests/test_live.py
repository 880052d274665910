"""``avvos live`` headless, against a fake live camera (MJPEG over HTTP on 127.0.0.1) read by OpenCV."""

from __future__ import annotations

import statistics
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avvos.checkpoint import save_checkpoint
from avvos.cli import main
from avvos.config import InferenceConfig, ModelConfig
from avvos.live import LiveOptions, run_live
from avvos.masks import read_mask, write_mask
from avvos.model.stcn import build_model
from avvos.session import InferenceSession
from avvos.sources import open_frames
from tests.fake_devices import MjpegCamera, box_at


@pytest.fixture(scope="module")
def light_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "light.safetensors"
    save_checkpoint(build_model(ModelConfig.light()), path)
    return path


def _box_mask(path: Path, index: int = 0, size: tuple[int, int] = (240, 320)) -> Path:
    mask = np.zeros(size, np.uint8)
    top, left, bottom, right = box_at(index, *size)
    mask[top:bottom, left:right] = 1
    write_mask(path, mask)
    return path


def test_live_camera_drops_stale_frames_and_keeps_up(tmp_path: Path) -> None:
    # The full STCN network (random weights) is several times slower than a 30 fps camera on any CPU, so
    # frames must be dropped; the light model can keep up on an idle machine, which would test nothing.
    torch.manual_seed(0)
    session = InferenceSession(build_model(ModelConfig.stcn()), InferenceConfig(), "cpu")
    with MjpegCamera(fps=30) as camera:
        options = LiveOptions(source=camera.url, mask=_box_mask(tmp_path / "m.png"), window=False,
                              record=tmp_path / "live.mp4", masks_out=tmp_path / "masks", max_frames=25)  # fmt: skip
        stats = run_live(session, options, log=lambda _m: None)
    assert stats.frames == 25 and stats.end_reason == "reached 25 frames"
    frame_time = 1000 / 30
    # Slower than the camera: frames are dropped, not queued; the shown frame is never more than
    # about 2 frame times plus the model's own latency behind capture.
    assert stats.dropped > 0 and stats.grabbed >= stats.frames + stats.dropped
    lag = [d - m for d, m in zip(stats.delay_ms, stats.model_ms, strict=True)]
    assert statistics.median(lag) < 2 * frame_time, (statistics.median(lag), statistics.median(stats.model_ms))
    with open_frames(tmp_path / "live.mp4") as video:
        assert len(list(video)) == 25 and video.size == (240, 320)
    assert len(list((tmp_path / "masks").glob("*.png"))) == 25


def test_camera_that_stops_mid_session_ends_cleanly(tmp_path: Path, light_weights: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    with MjpegCamera(fps=30, stop_after=60) as camera:  # unplugged after 2 s of frames
        code = main(["live", camera.url, "--mask", str(_box_mask(tmp_path / "m.png")), "--no-window", "--record",
                     str(tmp_path / "rec.mp4"), "--weights", str(light_weights), "--device", "cpu"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "frames processed" in out and "ended:" in out
    with open_frames(tmp_path / "rec.mp4") as video:  # closed properly: playable
        assert len(list(video)) > 0


def test_frame_size_change_mid_stream_is_resized_and_said(tmp_path: Path, light_weights: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for t in range(6):
        size = (64, 96) if t < 3 else (80, 120)
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(frames / f"{t:05d}.png")
    mask = np.zeros((64, 96), np.uint8)
    mask[10:30, 10:40] = 1
    write_mask(tmp_path / "m.png", mask)
    code = main(["live", str(frames), "--mask", str(tmp_path / "m.png"), "--no-window", "--no-realtime",
                 "--masks-out", str(tmp_path / "out"), "--weights", str(light_weights)])  # fmt: skip
    assert code == 0
    assert "frame size changed from 96x64 to 120x80: resized" in capsys.readouterr().err
    written = sorted((tmp_path / "out").glob("*.png"))
    assert len(written) == 6 and all(read_mask(p).shape == (64, 96) for p in written)


def test_grey_frames_are_taken(tmp_path: Path, light_weights: Path) -> None:
    frames = tmp_path / "grey"
    frames.mkdir()
    for t in range(3):
        Image.fromarray(np.full((32, 48), 40 * t, np.uint8), mode="L").save(frames / f"{t:05d}.png")
    mask = np.zeros((32, 48), np.uint8)
    mask[5:15, 5:15] = 1
    write_mask(tmp_path / "m.png", mask)
    assert main(["live", str(frames), "--mask", str(tmp_path / "m.png"), "--no-window", "--no-realtime",
                 "--weights", str(light_weights)]) == 0  # fmt: skip


def test_bad_live_input(tmp_path: Path, light_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["live", "7", "--mask", str(_box_mask(tmp_path / "m.png")), "--no-window",
                 "--weights", str(light_weights)]) == 2  # fmt: skip
    assert "no camera at index 7" in capsys.readouterr().err
    assert main(["live", "7", "--no-window", "--weights", str(light_weights)]) == 2
    assert "--no-window needs the first frame's mask" in capsys.readouterr().err


def test_audio_model_without_microphone_carries_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    save_checkpoint(build_model(ModelConfig.light(audio="frame")), tmp_path / "av.safetensors")
    env_before = dict(**__import__("os").environ)
    with MjpegCamera(fps=15) as camera, pytest.warns(UserWarning):
        code = main(["live", camera.url, "--mask", str(_box_mask(tmp_path / "m.png")), "--no-window",
                     "--max-frames", "3", "--weights", str(tmp_path / "av.safetensors"),
                     "--mic-device", "no-such-microphone"])  # fmt: skip
    assert code == 0
    assert "continuing without audio" in capsys.readouterr().err
    assert dict(__import__("os").environ) == env_before


def _tone_peak(samples: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def test_recording_keeps_a_files_own_audio(tmp_path: Path) -> None:
    """A video with sound, played through the live path: the recording carries the sound, in step."""
    from avvos.audio import FileAudio
    from avvos.sinks import VideoWriter

    with VideoWriter(tmp_path / "clip.mp4", 10, audio_rate=16000) as writer:
        for t in range(20):
            image = np.full((48, 64, 3), 50, np.uint8)
            image[10:30, 2 * t : 2 * t + 20] = 220
            writer.write(image)
            phase = 2 * np.pi * 440 * (np.arange(1600) + 1600 * t) / 16000
            writer.write_audio((0.3 * np.sin(phase)).astype(np.float32))
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 0:20] = 1
    write_mask(tmp_path / "m.png", mask)
    torch.manual_seed(0)
    save_checkpoint(build_model(ModelConfig.light(audio="frame")), tmp_path / "av.safetensors")
    assert main(["live", str(tmp_path / "clip.mp4"), "--mask", str(tmp_path / "m.png"), "--no-window",
                 "--no-realtime", "--record", str(tmp_path / "rec.mp4"),
                 "--weights", str(tmp_path / "av.safetensors")]) == 0  # fmt: skip
    recorded = FileAudio(tmp_path / "rec.mp4")
    assert abs(recorded.duration - 1.9) < 0.2  # 20 frames at 10 fps: audio from frame 0 to frame 19
    assert abs(_tone_peak(recorded.samples[2000:12000]) - 440) < 5


def test_live_microphone_is_recorded(tmp_path: Path) -> None:
    """The real microphone path: a virtual PulseAudio microphone, recorded through sounddevice."""
    from tests.fake_devices import audio_stack_missing, virtual_microphone

    reason = audio_stack_missing()
    if reason:
        if __import__("os").environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from avvos.audio import FileAudio

    torch.manual_seed(0)
    save_checkpoint(build_model(ModelConfig.light(audio="frame")), tmp_path / "av.safetensors")
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(48000 * 12) / 48000)).astype(np.float32)
    with virtual_microphone() as mic, MjpegCamera(fps=15) as camera:
        mic.play(tone)
        assert main(["live", camera.url, "--mask", str(_box_mask(tmp_path / "m.png")), "--no-window",
                     "--max-seconds", "6", "--record", str(tmp_path / "rec.mp4"),
                     "--weights", str(tmp_path / "av.safetensors")]) == 0  # fmt: skip
    with warnings.catch_warnings():  # the virtual microphone's start-up (~1 s) may read as a dropout
        warnings.simplefilter("ignore")
        recorded = FileAudio(tmp_path / "rec.mp4")
    assert recorded.duration > 2.0
    loud = recorded.samples[np.abs(recorded.samples) > 0.05]
    assert len(loud) > 16000 and abs(_tone_peak(recorded.samples[-24000:]) - 440) < 5
