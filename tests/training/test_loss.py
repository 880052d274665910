"""STCN's loss: aggregated log-odds, class targets and the bootstrapped cross-entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avvos.model.aggregate import aggregate
from training.loss import aggregate_logits, bootstrap_fraction, bootstrapped_ce, class_targets, sequence_loss


def test_aggregate_logits_are_the_log_odds_of_avvos_aggregate() -> None:
    prob = torch.rand(3, 2, 5, 6)
    expected = torch.stack([aggregate(p) for p in prob])
    torch.testing.assert_close(torch.softmax(aggregate_logits(prob), dim=1), expected)


def test_class_targets_from_soft_masks() -> None:
    masks = torch.tensor([[[[0.2, 0.7, 0.0]], [[0.0, 0.1, 0.9]]]])
    assert class_targets(masks).tolist() == [[[0, 1, 2]]]


def test_bootstrap_warm_up_schedule() -> None:
    assert bootstrap_fraction(0, 10, 30, 0.15) == 1.0
    assert bootstrap_fraction(9, 10, 30, 0.15) == 1.0
    assert bootstrap_fraction(20, 10, 30, 0.15) == pytest.approx(0.575)
    assert bootstrap_fraction(30, 10, 30, 0.15) == 0.15
    assert bootstrap_fraction(10**6, 10, 30, 0.15) == 0.15


def test_bootstrapped_ce_averages_the_hardest_pixels() -> None:
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    pixels = F.cross_entropy(logits, target, reduction="none").flatten(1)
    torch.testing.assert_close(bootstrapped_ce(logits, target, 1.0), pixels.mean(1))
    hardest = pixels.sort(dim=1, descending=True).values[:, :5].mean(1)
    torch.testing.assert_close(bootstrapped_ce(logits, target, 0.25), hardest)


def test_sequence_loss_drops_absent_objects_and_frames_without_truth() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 3, 4, 4)
    masks = (torch.rand(2, 4, 2, 4, 4) > 0.6).float()
    masks[0, :, 1] = 0  # sample 0 has only one object
    selector = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    valid = torch.ones(2, 4, dtype=torch.bool)
    loss, stats = sequence_loss(logits, masks, selector, valid, 1.0)
    target = class_targets(masks[:, 1:].flatten(0, 1)).view(2, 3, 4, 4)
    first = F.cross_entropy(logits[0, :, :2], target[0])  # STCN: only the first two channels
    second = F.cross_entropy(logits[1], target[1])
    torch.testing.assert_close(loss, (first + second) / 2)
    assert 0 <= float(stats["iou"]) <= 1
    valid[1, 2] = False
    partial, _ = sequence_loss(logits, masks, selector, valid, 1.0)
    per_frame = [
        F.cross_entropy(logits[0, t, :2][None], target[0, t][None])
        + (0 if t == 1 else F.cross_entropy(logits[1, t][None], target[1, t][None]))
        for t in range(3)
    ]
    torch.testing.assert_close(partial, torch.stack(per_frame).mean() / 2)
