"""Soft aggregation and the label map taken from its probabilities."""

from __future__ import annotations

import torch

from avvos.model.aggregate import aggregate, label_map


def test_aggregate_is_a_distribution_with_the_background_first() -> None:
    prob = 0.2 * torch.rand(3, 8, 9)
    prob[:, :4] = 0.0  # no object in the top half; the second one sure in the bottom half
    prob[1, 4:] = 0.9
    out = aggregate(prob)
    assert out.shape == (4, 8, 9) and torch.allclose(out.sum(dim=0), torch.ones(8, 9), atol=1e-5)
    assert (label_map(out)[:4] == 0).all() and (label_map(out)[4:] == 2).all()


def test_label_map_is_argmax_ties_included() -> None:
    """The same indices as ``argmax`` (the first maximum on ties), along any dimension."""
    generator = torch.Generator().manual_seed(0)
    for shape, dim in (((3, 40, 50), 0), ((2, 5, 16, 16), 1), ((1, 4, 3, 8, 8), 2)):
        prob = torch.randint(0, 3, shape, generator=generator).float()  # many ties
        assert torch.equal(label_map(prob, dim=dim), prob.argmax(dim=dim))
