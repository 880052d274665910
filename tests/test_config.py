"""Configuration dataclasses: validation and the one path from command-line options to a configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from avvos.cli import build_parser
from avvos.config import InferenceConfig, ModelConfig, config_from_options
from avvos.web import config_from_args


def test_cli_options_fill_the_inference_config() -> None:
    args = build_parser().parse_args(["segment", "clip.mp4", "--top-k", "7", "--memory-frames", "9", "--size", "240"])
    config = config_from_options(InferenceConfig, args)
    assert (config.top_k, config.memory_frames, config.size, config.mem_every) == (7, 9, 240, 5)
    assert config.max_size == InferenceConfig().max_size  # no such option: the dataclass default stays


def test_web_options_with_other_names_are_converted(tmp_path: Path) -> None:
    config = config_from_args(build_parser().parse_args(["web", "--idle-timeout", "3", "--models", str(tmp_path)]))
    assert config.idle_timeout_s == 3.0 and config.models_dir == tmp_path and config.host == "127.0.0.1"


def test_previous_frame_matching_defaults() -> None:
    """Files: the weights decide (None); ``--include-last``/``--no-include-last`` override; live web streams
    leave it off (the frame rate), offline web videos let the weights decide."""
    parser = build_parser()
    assert config_from_options(InferenceConfig, parser.parse_args(["segment", "clip.mp4"])).include_last is None
    for flag, value in (("--include-last", True), ("--no-include-last", False)):
        args = parser.parse_args(["segment", "clip.mp4", flag])
        assert config_from_options(InferenceConfig, args).include_last is value
    assert InferenceConfig().for_live().include_last is False  # live: the frame rate first
    assert InferenceConfig(include_last=True).for_live().include_last is True
    live = config_from_options(InferenceConfig, parser.parse_args(["live", "0", "--include-last"])).for_live()
    assert live.include_last is True
    web = config_from_args(parser.parse_args(["web"]))
    assert web.inference_config().include_last is False and web.offline_config().include_last is None


def test_identity_lookback_defaults() -> None:
    """Files let masks wait for the identity check's mending (None: its window); live streams and the web demo's
    webcam never do (0); the option reaches the configuration, and a negative one is refused."""
    parser = build_parser()
    assert config_from_options(InferenceConfig, parser.parse_args(["segment", "clip.mp4"])).identity_lookback is None
    args = parser.parse_args(["segment", "clip.mp4", "--identity-lookback", "5"])
    assert config_from_options(InferenceConfig, args).identity_lookback == 5
    assert InferenceConfig().for_live().identity_lookback == 0
    assert InferenceConfig(identity_lookback=4).for_live().identity_lookback == 0
    web = config_from_args(parser.parse_args(["web"]))
    assert web.inference_config().identity_lookback == 0 and web.offline_config().identity_lookback is None
    with pytest.raises(ValueError, match="identity_lookback"):
        InferenceConfig(identity_lookback=-1)


def test_bad_values_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="top_k"):
        config_from_options(InferenceConfig, build_parser().parse_args(["segment", "clip.mp4", "--top-k", "0"]))
    with pytest.raises(ValueError, match="audio must be"):
        ModelConfig.light(audio="stereo")
    assert ModelConfig.light(audio="pixel").key_channels == 64 + 16
