"""``avvos segment`` with audio: where it comes from, length mismatches, --silent, and DAVIS roots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avvos.checkpoint import save_checkpoint
from avvos.cli import main
from avvos.config import ModelConfig
from avvos.data.av_sync import AVSyncConfig, write_dataset, write_wav
from avvos.model.stcn import build_model
from tests.test_cli import write_clip


@pytest.fixture(scope="module")
def av_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "av.safetensors"
    save_checkpoint(build_model(ModelConfig.light(audio="pixel", smoothing=True)), path, description="test AV model")
    return path


def _segment(tmp_path: Path, weights: Path, *extra: str) -> int:
    from avvos.masks import write_mask

    first = write_clip(tmp_path / "clip", frames=5)
    write_mask(tmp_path / "first.png", first)
    return main(["segment", str(tmp_path / "clip"), "--mask", str(tmp_path / "first.png"), "--weights", str(weights),
                 "--out", str(tmp_path / "out"), "--quiet", *extra])  # fmt: skip


def test_audio_file_shorter_than_video_is_padded_and_said(
    tmp_path: Path, av_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_wav(tmp_path / "short.wav", np.sin(np.arange(1600) / 5).astype(np.float32) * 0.3, 16000)  # 0.1 s
    assert _segment(tmp_path, av_weights, "--audio", str(tmp_path / "short.wav"), "--fps", "10") == 0
    err = capsys.readouterr().err
    assert "short.wav" in err and "shorter than the video" in err and "padded with silence" in err
    assert len(list((tmp_path / "out").glob("*.png"))) == 5


def test_audio_at_another_rate_and_longer(tmp_path: Path, av_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_wav(tmp_path / "long.wav", np.zeros(44100 * 3, np.float32) + 0.01, 44100)  # 3 s at 44.1 kHz
    assert _segment(tmp_path, av_weights, "--audio", str(tmp_path / "long.wav")) == 0
    assert "longer than the video" in capsys.readouterr().err


def test_silent_flag_and_missing_audio_warn(
    tmp_path: Path, av_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.warns(UserWarning, match="without audio"):
        assert _segment(tmp_path, av_weights, "--silent") == 0
    assert "audio: off (--silent)" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="without audio"):
        assert main(["segment", str(tmp_path / "clip"), "--mask", str(tmp_path / "first.png"), "--weights",
                     str(av_weights), "--out", str(tmp_path / "out2"), "--quiet"]) == 0  # fmt: skip
    assert "a frame folder; give --audio FILE" in capsys.readouterr().err


def test_davis_root_audio_folder(tmp_path: Path, av_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "av"
    names = write_dataset(root, "crossing", clips=1, seed=5, config=AVSyncConfig(frames=8, height=48, width=80),
                          progress=False)  # fmt: skip
    assert main(["segment", "--davis", str(root), "--imageset", str(root / "ImageSets" / "crossing.txt"),
                 "--weights", str(av_weights), "--out", str(tmp_path / "pred"), "--quiet"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert f"Audio/{names[0]}.wav" in err
    assert len(list((tmp_path / "pred" / names[0]).glob("*.png"))) == 8


def test_visual_model_ignores_audio_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    save_checkpoint(build_model(ModelConfig.light()), tmp_path / "v.safetensors")
    write_wav(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    assert _segment(tmp_path, tmp_path / "v.safetensors", "--audio", str(tmp_path / "a.wav")) == 0
    assert "do not use audio" in capsys.readouterr().err


def test_eval_av_split_scores_perfect_predictions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "av"
    write_dataset(root, "crossing", clips=2, seed=9, config=AVSyncConfig(frames=8, height=48, width=80), progress=False)
    assert main(["eval", "--pred", str(root / "Annotations"), "--gt", str(root), "--av-split", "crossing",
                 "--quiet", "--json", str(tmp_path / "r.json")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "crossing: J&F 1.0000" in out and "identity switches 0.0000" in out
