"""Shapes and layout of the STCN network."""

from __future__ import annotations

import re

import pytest
import torch

from avvos.model.aggregate import aggregate
from avvos.model.stcn import STCN
from tests.conftest import SHARED


def test_state_dict_matches_official_layout(stcn_model: STCN) -> None:
    state = stcn_model.state_dict()
    assert len(state) == 405
    assert sum(p.numel() for p in stcn_model.parameters()) == 54_434_180
    assert sum(k.endswith("num_batches_tracked") for k in state) == 58
    spec = SHARED / "research" / "stcn_spec.md"
    if spec.is_file():
        pattern = re.compile(r"^((?:key_encoder|value_encoder|key_proj|key_comp|decoder)\.\S+)\s+\[([\d, ]*)\]")
        listed = [m.groups() for line in spec.read_text().splitlines() if (m := pattern.match(line))]
        assert [k for k, _ in listed] == list(state)
        for key, shape in listed:
            expected = tuple(int(s) for s in shape.split(",")) if shape.strip() else ()
            assert tuple(state[key].shape) == expected, key


def test_key_encoder_strides_and_dims(stcn_model: STCN) -> None:
    with torch.inference_mode():
        features = stcn_model.encode_key(torch.randn(1, 3, 64, 96))
    assert features.key.shape == (1, 64, 4, 6)
    assert features.query_value.shape == (1, 512, 4, 6)
    assert features.f16.shape == (1, 1024, 4, 6)
    assert features.f8.shape == (1, 512, 8, 12)
    assert features.f4.shape == (1, 256, 16, 24)


@pytest.mark.parametrize("objects", [1, 3])
def test_value_encoder_and_decoder_shapes(stcn_model: STCN, objects: int) -> None:
    with torch.inference_mode():
        image = torch.randn(1, 3, 64, 96)
        features = stcn_model.encode_key(image)
        probs = torch.rand(objects, 1, 64, 96)
        values = stcn_model.encode_value(image, features, probs)
        assert values.shape == (objects, 512, 4, 6)
        out = stcn_model.decode(features, values)
    assert out.shape == (objects, 1, 64, 96)
    assert ((out >= 0) & (out <= 1)).all()


def test_value_encoder_others_channel_is_sum_of_other_objects(stcn_model: STCN) -> None:
    """Object i's value depends on the other objects' masks only through their sum."""
    with torch.inference_mode():
        image = torch.randn(1, 3, 32, 32)
        features = stcn_model.encode_key(image)
        a, b, c = (torch.rand(1, 1, 32, 32) for _ in range(3))
        v1 = stcn_model.encode_value(image, features, torch.cat([a, b, c]))
        v2 = stcn_model.encode_value(image, features, torch.cat([a, c, b]))
    assert torch.allclose(v1[0], v2[0], atol=1e-5)
    assert not torch.allclose(v1[1], v2[1], atol=1e-3)


def test_aggregate_is_a_distribution_with_background_first() -> None:
    probs = torch.tensor([[[0.9, 0.1]], [[0.2, 0.05]]])  # (K=2, 1, 2)
    out = aggregate(probs)
    assert out.shape == (3, 1, 2)
    assert torch.allclose(out.sum(0), torch.ones(1, 2))
    assert out[:, 0, 0].argmax() == 1 and out[:, 0, 1].argmax() == 0
    assert torch.equal(aggregate(probs, keep_bg=False), out[1:])
