"""avvos's extensions: the light variant, audio key channels and the readout smoother."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from avvos.checkpoint import load_model, save_checkpoint
from avvos.config import IMAGENET_MEAN, IMAGENET_STD, InferenceConfig, ModelConfig
from avvos.data.av_sync import AVSyncConfig
from avvos.data.sampling import ItemKey
from avvos.data.vos import AVSyncSequences, audio_windows
from avvos.model.audio import SYNC_HISTORY, WINDOW_SAMPLES, AudioEncoder, RecentBands, SyncHistory
from avvos.model.stcn import build_model
from avvos.session import InferenceSession
from tests.conftest import moving_discs
from tests.reference.official_weights import official_state_dict
from training.forward import SOUNDING_SCALE, TrainingNetwork

FORWARD_KEYS = ("frames", "masks", "selector", "audio", "has_audio", "history_frames", "history_audio")


def _warm_start(config: ModelConfig, source: torch.nn.Module) -> torch.nn.Module:
    """A model with extensions whose STCN parts are copied from ``source`` (as a warm start does)."""
    model = build_model(config)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    assert not unexpected and all(k.split(".")[0] in ("audio_encoder", "audio_key", "smoother") for k in missing)
    return model


def _labels_and_probs(model, audio=None, frames: int = 7, config: InferenceConfig | None = None):
    clip, first = moving_discs(frames=frames)
    session = InferenceSession(model, config or InferenceConfig(), "cpu")
    out = []
    for t in range(frames):
        window = None if audio is None else audio[t]
        out.append(session.step(clip[t], window, mask=first if t == 0 else None, end=t == frames - 1))
    return out


@pytest.mark.parametrize("design", ["frame", "pixel", "sync"])
def test_untrained_audio_and_smoothing_change_nothing(stcn_model, design: str) -> None:
    """Warm-started from STCN, the audio channels and the smoother start at zero: results are STCN's (run with
    STCN's evaluation settings: audio-visual weights otherwise also match against the previous frame)."""
    model = _warm_start(ModelConfig(audio=design, smoothing=True), stcn_model)
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.3, (7, WINDOW_SAMPLES)).astype(np.float32)
    base = _labels_and_probs(stcn_model)
    extended = _labels_and_probs(model, audio, config=InferenceConfig(include_last=False))
    for a, b in zip(base, extended, strict=True):
        assert torch.allclose(a.probs, b.probs, atol=1e-5)


def test_audio_changes_matching_once_trained() -> None:
    """With non-zero audio channels, different audio gives a different segmentation (the path is live)."""
    varied = build_model()
    varied.load_state_dict(official_state_dict(0))  # weights whose values differ across positions
    model = _warm_start(ModelConfig(audio="pixel"), varied)
    torch.nn.init.normal_(model.audio_key.proj.weight, std=0.01)
    rng = np.random.default_rng(1)
    loud = rng.normal(0, 0.5, (7, WINDOW_SAMPLES)).astype(np.float32)
    quiet = np.zeros_like(loud)
    quiet[1:] = loud[0]
    a, b = _labels_and_probs(model, loud), _labels_and_probs(model, quiet)
    assert max((x.probs - y.probs).abs().max().item() for x, y in zip(a[1:], b[1:], strict=True)) > 1e-3


def test_smoothing_can_be_switched_off_at_inference(stcn_model) -> None:
    """A smoother that changes the readout changes the masks; ``smoothing=False`` gives STCN's back."""
    model = _warm_start(ModelConfig(smoothing=True), stcn_model)
    torch.nn.init.normal_(model.smoother.out.weight, std=0.5)
    base = _labels_and_probs(stcn_model)
    smoothed = _labels_and_probs(model)
    off = _labels_and_probs(model, config=InferenceConfig(smoothing=False))
    assert max((a.probs - b.probs).abs().max().item() for a, b in zip(base, smoothed, strict=True)) > 1e-3
    assert all(torch.allclose(a.probs, b.probs, atol=1e-5) for a, b in zip(base, off, strict=True))


@pytest.mark.parametrize("design", ["frame", "sync"])
def test_audio_model_without_audio_warns_and_runs(stcn_model, design: str) -> None:
    model = _warm_start(ModelConfig(audio=design), stcn_model)
    with pytest.warns(UserWarning, match="without audio"):
        results = _labels_and_probs(model, None, frames=3, config=InferenceConfig(include_last=False))
    base = _labels_and_probs(stcn_model, None, frames=3)
    assert all(torch.allclose(a.probs, b.probs, atol=1e-5) for a, b in zip(base, results, strict=True))


def test_bad_audio_windows_are_cleaned(stcn_model) -> None:
    model = _warm_start(ModelConfig(audio="frame"), stcn_model)
    clip, first = moving_discs(frames=2)
    session = InferenceSession(model, InferenceConfig(), "cpu")
    session.step(clip[0], np.zeros(100, np.float32), mask=first)  # short: padded with silence
    bad = np.full(WINDOW_SAMPLES * 2, np.nan, np.float32)  # long and NaN
    with pytest.warns(UserWarning, match="NaN"):
        assert session.step(clip[1], bad).labels.shape == first.shape


def test_audio_encoder_is_causal_and_shaped() -> None:
    encoder = AudioEncoder(32).eval()
    wave = torch.randn(3, WINDOW_SAMPLES)
    with torch.no_grad():
        assert encoder(wave).shape == (3, 32)


def test_smoother_state_follows_objects(stcn_model) -> None:
    model = _warm_start(ModelConfig(smoothing=True), stcn_model)
    torch.nn.init.normal_(model.smoother.out.weight, std=0.1)
    clip, first = moving_discs(frames=5, objects=3)
    session = InferenceSession(model, InferenceConfig(), "cpu")
    session.step(clip[0], mask=np.where(first == 3, 0, first).astype(np.uint8))
    session.step(clip[1])
    assert session.smoothing_state.shape[0] == 2
    session.step(clip[2], mask=np.where(first == 3, 3, 0).astype(np.uint8))
    assert session.smoothing_state.shape[0] == 3 and not session.smoothing_state[2].any()
    session.delete_objects([1])
    session.step(clip[3])
    assert session.smoothing_state.shape[0] == 2
    session.reset()
    assert session.smoothing_state is None


def test_light_variant_shapes_size_and_checkpoint(tmp_path: Path) -> None:
    config = ModelConfig.light(audio="pixel", smoothing=True)
    model = build_model(config)
    n = sum(p.numel() for p in model.parameters())
    assert n * 4 < 25 * 2**20  # ships within 25 MB as float32
    clip, first = moving_discs(frames=4, height=80, width=112)
    session = InferenceSession(model, InferenceConfig(), "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = [session.step(clip[t], mask=first if t == 0 else None) for t in range(4)]
    assert results[-1].probs.shape == (3, 80, 112)
    save_checkpoint(model, tmp_path / "light.safetensors", description="light test")
    loaded, info = load_model(tmp_path / "light.safetensors")
    assert info.config == config and info.config.decoder_dims == (128, 64, 32)
    a, b = model.state_dict(), loaded.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_config_values_are_refused() -> None:
    with pytest.raises(ValueError, match="audio must be"):
        ModelConfig(audio="loud")
    with pytest.raises(ValueError, match="unknown model configuration fields: colour"):
        ModelConfig.from_dict({"colour": 1})


def test_sync_silence_is_the_bands_of_a_silent_window() -> None:
    with torch.no_grad():
        computed = RecentBands()(torch.zeros(1, WINDOW_SAMPLES))
    torch.testing.assert_close(RecentBands.silence(), computed)
    _, sounds = SyncHistory(history=3).push(torch.zeros(1, 3, 16, 16), None)
    torch.testing.assert_close(sounds, computed[:, None].expand(-1, 3, -1))


def test_sync_history_repeats_the_first_frame_and_resets_on_a_new_size() -> None:
    history = SyncHistory(history=4)
    first, second = torch.zeros(1, 3, 32, 48), torch.ones(1, 3, 32, 48)
    frames, sounds = history.push(first, torch.zeros(1, 64))
    assert frames.shape == (1, 4, 3, 8, 12) and sounds.shape == (1, 4, 64)
    assert frames.abs().sum() == 0
    frames, sounds = history.push(second, torch.ones(1, 64))
    assert frames[0, :3].abs().sum() == 0 and bool((frames[0, 3] == 1).all()) and bool((sounds[0, 3] == 1).all())
    frames, _ = history.push(torch.ones(1, 3, 64, 48), torch.ones(1, 64))  # another size: starts again
    assert frames.shape == (1, 4, 3, 16, 12) and bool((frames == 1).all())


def test_sync_training_history_matches_the_stream() -> None:
    """The ``sync`` channels of sampled training frames equal those of the same frames streamed in order."""
    config = AVSyncConfig(frames=14, height=64, width=96, split="crossing")
    data = AVSyncSequences((64, 96), 3, clips=1, frames_per_clip=14, splits=("crossing",), augment=False,
                           config=config)  # fmt: skip
    sample = data[ItemKey(0, 0, 5, 4)]
    clip = data.clips[0]
    torch.manual_seed(0)
    model = build_model(ModelConfig.light(audio="sync")).eval()
    torch.nn.init.normal_(model.audio_key.proj.weight, std=0.05)
    batch = default_collate([sample])
    with torch.no_grad():
        _, sounding = TrainingNetwork(model)(*(batch[k] for k in FORWARD_KEYS))
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        history, streamed = SyncHistory(), []
        for t in range(clip["frames"].shape[0]):
            image = (clip["frames"][t][None] - mean) / std
            window = audio_windows(clip["audio"].numpy(), [t / clip["fps"]])
            sound = model.encode_audio(torch.from_numpy(window))
            key = model.encode_key(image, sound, history.push(image, sound)).key[0]
            streamed.append(key[model.config.key_dim :].sum(dim=0) * SOUNDING_SCALE)
    indices = [int(torch.cdist(f.flatten()[None], clip["frames"].flatten(1)).argmin()) for f in sample["frames"]]
    assert indices[0] < indices[1] < indices[2] and indices[2] >= SYNC_HISTORY // 2
    assert sounding.abs().max() > 1e-3
    for row, index in enumerate(indices):
        torch.testing.assert_close(sounding[0, row], streamed[index], atol=1e-4, rtol=1e-4)
