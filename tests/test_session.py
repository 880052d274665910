"""The frame-by-frame session: memory schedule, objects, readout, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avvos.bench import OfficialProfile
from avvos.config import InferenceConfig, ModelConfig
from avvos.errors import InputError, MaskError
from avvos.memory import MemoryStore
from avvos.model.stcn import STCN, build_model
from avvos.session import InferenceSession, pad_amounts, processing_size
from tests.conftest import moving_discs


def run(session: InferenceSession, clip: np.ndarray, first: np.ndarray) -> list:
    return [session.step(clip[t], mask=first if t == 0 else None, end=t == len(clip) - 1) for t in range(len(clip))]


def test_padding_split_and_processing_size() -> None:
    assert pad_amounts(100, 180) == (6, 6, 6, 6)
    assert pad_amounts(99, 177) == (7, 8, 6, 7)
    assert pad_amounts(64, 96) == (0, 0, 0, 0)
    config = InferenceConfig()
    assert processing_size(480, 854, config) == (480, 854)
    assert processing_size(720, 1280, config) == (480, 853)
    assert processing_size(1280, 720, config) == (853, 480)
    assert processing_size(480, 854, config, model_size=240) == (240, 427)  # the weights' own size caps it
    assert processing_size(160, 213, config, model_size=240) == (160, 213)  # smaller frames stay as they are
    assert processing_size(480, 854, InferenceConfig(size=360), model_size=240) == (360, 640)  # asked: obeyed
    assert processing_size(240, 320, InferenceConfig(size=120)) == (120, 160)


def test_end_to_end_labels_and_memory_schedule(stcn_model: STCN) -> None:
    clip, first = moving_discs(frames=12)
    session = InferenceSession(stcn_model, InferenceConfig(), "cpu")
    results = run(session, clip, first)
    assert np.array_equal(results[0].labels, first)  # frame 0 gives back the given mask
    for r in results:
        assert r.labels.shape == first.shape and r.labels.dtype == np.uint8
        assert set(np.unique(r.labels)) <= {0, 1, 2}
        assert r.probs.shape == (3, *first.shape)
        assert torch.allclose(r.probs.sum(0), torch.ones(first.shape), atol=1e-5)
    # Frames 0, 5 and 10 are memory frames; 11 is the last frame and never encoded.
    assert session.memory.frames == 3
    assert session.memory.size == 3 * 4 * 6


def test_include_last_keeps_one_temporary_frame(stcn_model: STCN) -> None:
    clip, first = moving_discs(frames=8)
    session = InferenceSession(stcn_model, InferenceConfig(include_last=True), "cpu")
    for t in range(7):
        session.step(clip[t], mask=first if t == 0 else None)
    assert session.memory.frames == 2 and session.memory.temp_size == 24  # frames 0, 5 and temporary 6
    session.step(clip[7], end=True)
    assert session.memory.temp_size == 24  # the last frame is never encoded


def test_previous_frame_is_matched_by_default_for_audio_visual_weights_only(stcn_model: STCN) -> None:
    audio_visual = build_model(ModelConfig.light(audio="pixel", smoothing=True))
    assert InferenceSession(audio_visual, InferenceConfig(), "cpu").includes_last
    assert not InferenceSession(audio_visual, InferenceConfig(include_last=False), "cpu").includes_last
    assert not InferenceSession(stcn_model, InferenceConfig(), "cpu").includes_last  # STCN's evaluation
    assert InferenceSession(stcn_model, InferenceConfig(include_last=True), "cpu").includes_last


def test_sparse_readout_equals_dense_topk_softmax() -> None:
    """The gathered top-k readout equals STCN's dense scatter + bmm."""
    torch.manual_seed(0)
    store = MemoryStore(key_dim=8, value_dim=5)
    store.add_objects(2)
    for _ in range(3):
        store.add(torch.randn(8, 3, 4), torch.randn(2, 5, 3, 4))
    query = torch.randn(8, 3, 4)
    out = store.read(query, top_k=7)
    keys, values = store._keys[:, : store.size], store._values[:, :, : store.size]
    affinity = (2 * keys.T @ query.flatten(1) - keys.pow(2).sum(0)[:, None]) / np.sqrt(8)
    top, idx = affinity.topk(7, dim=0)
    dense = torch.zeros_like(affinity).scatter_(0, idx, torch.softmax(top, dim=0))
    expected = torch.bmm(values, dense.expand(2, -1, -1)).view(2, 5, 3, 4)
    assert torch.allclose(out, expected, atol=1e-6)


def test_session_matches_official_loop_profile(stcn_model: STCN) -> None:
    """The session and the bench's re-creation of the official loop agree frame by frame."""
    clip, first = moving_discs(frames=7)
    results = run(InferenceSession(stcn_model, InferenceConfig(), "cpu"), clip, first)
    captured: list[torch.Tensor] = []
    profile = OfficialProfile(stcn_model, InferenceConfig(), torch.device("cpu"))
    profile.run(clip, first, lambda: None, keep=captured)
    assert len(captured) == len(results)
    for result, probs in zip(results, captured, strict=True):
        assert (result.probs - probs).abs().max() < 1e-4
        top2 = probs.topk(2, dim=0).values
        clear = (top2[0] - top2[1] > 1e-4).numpy()  # random weights leave many exact object ties
        assert (result.labels[clear] == probs.argmax(0).numpy()[clear]).all()


def test_object_added_at_a_later_frame(stcn_model: STCN) -> None:
    clip, first = moving_discs(frames=8, objects=2)
    only_one = np.where(first == 1, 1, 0).astype(np.uint8)
    later = np.where(first == 2, 7, 0).astype(np.uint8)  # a new id, 7, appears at frame 3
    session = InferenceSession(stcn_model, InferenceConfig(), "cpu")
    for t in range(8):
        mask = only_one if t == 0 else later if t == 3 else None
        result = session.step(clip[t], mask=mask)
        if t < 3:
            assert result.object_ids == [1] and set(np.unique(result.labels)) <= {0, 1}
        if t == 3:
            assert result.object_ids == [1, 7]
            assert (result.labels[later == 7] == 7).all()
    assert result.probs.shape[0] == 3
    assert session.memory._object_start == [0, 24]  # id 7 reads only memory from frame 3 on


def test_delete_and_reset(stcn_model: STCN) -> None:
    clip, first = moving_discs(frames=4)
    session = InferenceSession(stcn_model, InferenceConfig(), "cpu")
    session.step(clip[0], mask=first)
    session.delete_objects([1])
    result = session.step(clip[1])
    assert result.object_ids == [2] and set(np.unique(result.labels)) <= {0, 2}
    with pytest.raises(MaskError, match="cannot delete objects \\[5\\]"):
        session.delete_objects([5])
    session.reset()
    assert session.object_ids == [] and session.memory.size == 0 and session.frame_index == 0


def test_frames_before_any_object_are_background(stcn_model: STCN) -> None:
    clip, first = moving_discs(frames=3)
    session = InferenceSession(stcn_model, InferenceConfig(), "cpu")
    assert not session.step(clip[0]).labels.any()
    assert session.step(clip[1], mask=first).object_ids == [1, 2]


def test_bad_masks_are_refused_without_losing_state(stcn_model: STCN) -> None:
    clip, first = moving_discs(frames=3)
    session = InferenceSession(stcn_model, InferenceConfig(), "cpu")
    with pytest.raises(MaskError, match=r"mask is 95x64 but the frame is 96x64"):
        session.step(clip[0], mask=first[:, :95])
    with pytest.raises(MaskError, match="no object"):
        session.step(clip[0], mask=np.zeros_like(first))
    with pytest.raises(MaskError, match="0..255"):
        session.step(clip[0], mask=first.astype(np.int32) * 200)
    with pytest.raises(MaskError, match="integer object ids"):
        session.step(clip[0], mask=first.astype(np.float32))
    with pytest.raises(MaskError, match="not object ids present"):
        session.step(clip[0], mask=first, objects=[3])
    assert session.frame_index == 0 and session.object_ids == []
    assert session.step(clip[0], mask=first).object_ids == [1, 2]


def test_frame_size_change_and_bad_frames(stcn_model: STCN) -> None:
    clip, first = moving_discs(frames=2)
    session = InferenceSession(stcn_model, InferenceConfig(), "cpu")
    session.step(clip[0], mask=first)
    with pytest.raises(InputError, match="frame 1 is 48x32 but this session's frames are 96x64"):
        session.step(clip[1][:32, :48])
    with pytest.raises(InputError, match="RGB frame"):
        session.step(clip[1][..., 0])
    assert session.step(clip[1]).index == 1  # the session carries on after refused frames


def test_processing_at_a_smaller_size_returns_full_size_masks(stcn_model: STCN) -> None:
    clip, first = moving_discs(frames=3, height=96, width=128)
    session = InferenceSession(stcn_model, InferenceConfig(size=48), "cpu")
    results = run(session, clip, first)
    assert session.process_size == (48, 64)
    assert all(r.labels.shape == (96, 128) for r in results)
    assert (results[0].labels == first).mean() > 0.98
