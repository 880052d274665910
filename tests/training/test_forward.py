"""The training forward pass computes what inference computes (with top-k covering the whole memory)."""

from __future__ import annotations

import math

import pytest
import torch

from avvos.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from avvos.memory import MemoryStore
from avvos.model.audio import WINDOW_SAMPLES
from avvos.model.stcn import STCN, build_model
from training.forward import SOUNDING_SCALE, TrainingNetwork, memory_frames, read_memory
from training.loss import aggregate_logits


def _model() -> STCN:
    """A light model with audio and smoothing whose zero-initialised outputs are made to matter."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.light(audio="pixel", smoothing=True))
    with torch.no_grad():
        for layer in (model.audio_key.proj, model.smoother.out):
            layer.weight.normal_(0, 0.05)
            layer.bias.normal_(0, 0.05)
    return model


def test_full_softmax_read_matches_the_memory_store() -> None:
    torch.manual_seed(1)
    keys, values, query = torch.randn(80, 3, 4, 5), torch.randn(2, 16, 3, 4, 5), torch.randn(80, 4, 5)
    store = MemoryStore(80, 16, scale_dim=64)
    store.add_objects(2)
    for t in range(3):
        store.add(keys[:, t], values[:, :, t])
    expected = store.read(query, top_k=10**6)  # top-k over everything is the full softmax
    out = read_memory(keys.flatten(1)[None], values.flatten(2)[None], query.flatten(1)[None], 1 / math.sqrt(64))
    torch.testing.assert_close(out[0].view(2, 16, 4, 5), expected, atol=1e-5, rtol=1e-5)


def _reference(model: STCN, frames, masks, selector, audio, has_audio, read=None) -> torch.Tensor:
    """Frame by frame with the model's public API and the inference memory, one sample at a time.

    ``read(t)``, where given, lists the earlier frames that frame ``t`` reads (default: all of them).
    """
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    outputs = []
    for b in range(frames.shape[0]):
        written = []
        state = None
        per_sample = []
        for t in range(frames.shape[1]):
            image = (frames[b, t][None] - mean) / std
            embedding = model.encode_audio(audio[b, t][None]) if has_audio[b] else None
            features = model.encode_key(image, embedding)
            if t == 0:
                probs = masks[b, 0] * selector[b, :, None, None]
            else:
                store = MemoryStore(model.config.key_channels, model.config.value_dim, scale_dim=model.config.key_dim)
                store.add_objects(masks.shape[2])
                for i in read(t) if read is not None else range(t):
                    store.add(*written[i])
                readout = store.read(features.key[0], top_k=10**6)
                readout, state = model.smooth(readout, state)
                prob = torch.sigmoid(model.decode_logits(features, readout))[:, 0] * selector[b, :, None, None]
                aggregated = aggregate_logits(prob[None])
                per_sample.append(aggregated[0])
                probs = torch.softmax(aggregated, dim=1)[0, 1:]
            if t < frames.shape[1] - 1:
                written.append((features.key[0], model.encode_value(image, features, probs[:, None])))
        outputs.append(torch.stack(per_sample))
    return torch.stack(outputs)


def test_training_forward_matches_frame_by_frame_inference() -> None:
    model = _model()
    torch.manual_seed(2)
    frames = torch.rand(2, 4, 3, 48, 64)
    masks = torch.zeros(2, 4, 2, 48, 64)
    masks[:, :, 0, 10:30, 5:25] = 1
    masks[1, :, 1, 20:40, 30:60] = 1
    selector = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    audio = torch.randn(2, 4, WINDOW_SAMPLES) * 0.3
    has_audio = torch.tensor([True, False])
    with torch.no_grad():
        out, sounding = TrainingNetwork(model)(frames, masks, selector, audio, has_audio)
        expected = _reference(model, frames, masks, selector, audio, has_audio)
    assert out.shape == (2, 3, 3, 48, 64)
    torch.testing.assert_close(out, expected, atol=2e-4, rtol=1e-4)
    # The sounding map is the audio key channels' sum, scaled; zero for the sample without sound.
    assert sounding.shape == (2, 4, 3, 4)
    with torch.no_grad():
        image = (frames[0, 2][None] - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
            1, 3, 1, 1
        )
        key = model.encode_key(image, model.encode_audio(audio[0, 2][None])).key
    expected_map = key[0, model.config.key_dim :].sum(dim=0) * SOUNDING_SCALE
    torch.testing.assert_close(sounding[0, 2], expected_map, atol=1e-5, rtol=1e-4)
    assert sounding[0].abs().max() > 0 and sounding[1].abs().max() == 0
    with torch.no_grad():
        all_silent, _ = TrainingNetwork(model)(frames, masks, selector, audio, torch.tensor([False, False]))
        expected = _reference(model, frames, masks, selector, audio, [False, False])
    torch.testing.assert_close(all_silent, expected, atol=2e-4, rtol=1e-4)


def test_training_memory_can_keep_what_inference_keeps() -> None:
    model = _model()
    with torch.no_grad():  # an untrained value trunk gives nearly the same value for every frame
        for weight in model.value_encoder.trunk.parameters():
            if weight.dim() == 4:
                weight.normal_(0, 0.2)
    torch.manual_seed(3)
    frames = torch.rand(1, 5, 3, 48, 64)
    masks = torch.zeros(1, 5, 1, 48, 64)
    for t in range(5):
        masks[0, t, 0, 10:30, 5 + 6 * t : 25 + 6 * t] = 1
    args = (frames, masks, torch.ones(1, 1), torch.randn(1, 5, WINDOW_SAMPLES) * 0.3, torch.tensor([True]))
    # Every 2nd frame is kept, and the previous one: frame 3 reads 0 and 2, frame 4 reads 0, 2 and 3.
    reads = {1: [0], 2: [0, 1], 3: [0, 2], 4: [0, 2, 3]}
    assert {t: memory_frames(t, 2) for t in range(1, 5)} == reads
    readouts = []  # the memory readout of each frame, as the smoother receives it
    hook = model.smoother.register_forward_hook(lambda _module, inputs, _output: readouts.append(inputs[0]))
    with torch.no_grad():
        out, _ = TrainingNetwork(model, memory_every=2)(*args)
        everything, _ = TrainingNetwork(model)(*args)
    hook.remove()
    with torch.no_grad():
        expected = _reference(model, *args, read=reads.get)
    torch.testing.assert_close(out, expected, atol=2e-4, rtol=1e-4)
    kept, full = readouts[:4], readouts[4:]
    torch.testing.assert_close(kept[:2], full[:2])
    assert (kept[2] - full[2]).abs().max() > 1e-2  # frame 3 no longer reads frame 1
    with pytest.raises(ValueError, match="memory_every"):
        TrainingNetwork(model, memory_every=-1)


def test_gradients_reach_every_module_through_predicted_masks() -> None:
    model = _model()
    frames = torch.rand(1, 3, 3, 32, 32)
    masks = torch.zeros(1, 3, 1, 32, 32)
    masks[..., 8:24, 8:24] = 1
    out, _ = TrainingNetwork(model)(
        frames, masks, torch.ones(1, 1), torch.randn(1, 3, WINDOW_SAMPLES), torch.tensor([True])
    )
    out[:, -1].sum().backward()
    for name in ("key_encoder", "value_encoder", "key_proj", "key_comp", "decoder", "audio_encoder", "smoother"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
