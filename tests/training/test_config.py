"""Stages, their defaults and command-line overrides."""

from __future__ import annotations

import json

import pytest

from avvos.config import ModelConfig
from training.config import STAGES, make_config, parse_args


def test_stage_defaults() -> None:
    assert set(STAGES) >= {"static", "main", "av"}
    static = make_config("static")
    assert static.model == ModelConfig.light() and static.data.num_frames == 3 and static.data.vos_roots
    main = make_config("main")
    assert main.model == ModelConfig.light(audio="pixel", smoothing=True)
    assert 0 < main.data.synthetic_ratio < 1 and main.data.num_frames == 8 and main.out_dir == "runs/main"
    av = make_config("av")
    assert av.data.synthetic_ratio == 1 and (av.data.height, av.data.width) == (192, 320) and av.data.objects == 1


def test_overrides_of_every_kind() -> None:
    config = parse_args(
        [
            "--stage", "av", "--lr", "1e-4", "--iterations=2000", "--model.audio", "frame",
            "--data.vos_roots", "a,b", "--amp", "false", "--lr_steps", "10,20", "--preset", "stcn",
            "--model.decoder_dims", "64,32,16", "--data.max_skip_at", "0,0.5", "--data.max_skip", "3,4",
        ]
    )  # fmt: skip
    assert config.lr == 1e-4 and config.iterations == 2000 and config.amp is False
    assert config.lr_steps == (10, 20) and config.data.vos_roots == ("a", "b")
    assert config.model.key_backbone == "resnet50" and config.model.audio == "frame" and config.model.smoothing
    assert config.model.decoder_dims == (64, 32, 16)
    assert config.data.max_skip_at == (0.0, 0.5)
    assert json.loads(config.to_json())["model"]["audio"] == "frame"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "1"], "--stage is required"),
        (["--stage", "nope"], "unknown stage"),
        (["--stage", "av", "--colour", "red"], "unknown setting"),
        (["--stage", "av", "--amp", "maybe"], "true or false"),
        (["--stage", "av", "--iterations", "many"], "takes a int"),
        (["--stage", "av", "--lr"], "needs a value"),
        (["--stage", "av", "--model.audio", "loud"], "audio must be"),
        (["--stage", "av", "--data.max_skip", "5"], "same number"),
    ],
)
def test_bad_arguments_say_what_is_wrong(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_args(argv)


def test_zero_audio_channels_get_a_gradient_once_unlocked() -> None:
    """STCN-exact zero audio channels sit on a saddle of the L2 affinity; training must unlock them."""
    import torch

    from avvos.config import ModelConfig
    from avvos.model.stcn import build_model
    from training.train import unlock_audio_channels

    torch.manual_seed(0)
    model = build_model(ModelConfig.light(audio="pixel"))
    image, wave = torch.randn(2, 3, 64, 64), torch.randn(2, 15360)

    def audio_grad() -> float:
        model.zero_grad()
        keys = model.encode_key(image, model.encode_audio(wave)).key.flatten(2)
        affinity = 2 * keys[0].T @ keys[1] - keys[0].pow(2).sum(0)[:, None]
        affinity.softmax(0).max(0).values.sum().backward()
        return float(model.audio_key.proj.weight.grad.abs().max())

    assert audio_grad() == 0.0
    assert unlock_audio_channels(model) and audio_grad() > 0
    assert not unlock_audio_channels(model)  # already non-zero: left alone
    before = model.audio_key.proj.weight.clone()
    assert unlock_audio_channels(model, std=0.1, force=True)  # --reset_audio: drawn again, at the new scale
    assert not torch.equal(before, model.audio_key.proj.weight)
    assert 0.07 < float(model.audio_key.proj.weight.detach().std()) < 0.13
