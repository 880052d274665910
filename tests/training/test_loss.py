"""STCN's loss: aggregated log-odds, class targets and the bootstrapped cross-entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avvos.model.aggregate import aggregate
from training.loss import (
    aggregate_logits,
    bootstrap_fraction,
    bootstrapped_ce,
    class_targets,
    regress_loss,
    sequence_loss,
    sounding_loss,
    steady_loss,
)


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


def test_sounding_loss_targets_the_heard_objects_cells_and_skips_silent_samples() -> None:
    masks = torch.zeros(2, 2, 1, 32, 32)
    masks[:, :, 0, :16, :16] = 1  # the heard object fills the top-left cell of a 2x2 grid
    right = torch.full((2, 2, 2, 2), -6.0)
    right[:, :, 0, 0] = 6.0
    wrong = -right
    with_sound = torch.tensor([True, False])
    good = float(sounding_loss(right, masks, with_sound))
    bad = float(sounding_loss(wrong, masks, with_sound))
    assert good < 0.01 < 5 < bad
    # A sample without sound never counts, whatever its map says; none with sound: zero loss, still a graph.
    mixed = right.clone()
    mixed[1] = wrong[1]
    assert float(sounding_loss(mixed, masks, with_sound)) == good
    silent = sounding_loss(wrong.requires_grad_(), masks, torch.tensor([False, False]))
    assert float(silent.detach()) == 0.0 and silent.requires_grad
    # Partly covered cells are soft targets: a map of log-odds 0 is best for a half-covered cell.
    half = torch.zeros(1, 1, 1, 32, 32)
    half[..., :8, :16] = 1
    losses = []
    for value in (-3.0, 0.0, 3.0):
        sounding = torch.full((1, 1, 2, 2), -6.0)
        sounding[0, 0, 0, 0] = value
        losses.append(float(sounding_loss(sounding, half, torch.tensor([True]))))
    assert losses[1] < losses[0] and losses[1] < losses[2]


def test_sounding_loss_with_lookalikes_rewards_telling_the_heard_object_apart() -> None:
    """Over objects only, marking the heard object above its look-alike costs less than the reverse."""
    masks = torch.zeros(1, 1, 1, 32, 32)
    masks[..., :16, :16] = 1  # heard object: top-left cell
    lookalikes = torch.zeros(1, 1, 32, 32)
    lookalikes[..., 16:, 16:] = 1  # silent look-alike: bottom-right cell
    heard = torch.tensor([True])
    apart = torch.tensor([[[[4.0, -6.0], [-6.0, -4.0]]]])
    alike = torch.tensor([[[[4.0, -6.0], [-6.0, 4.0]]]])
    good, bad = (float(sounding_loss(m, masks, heard, lookalikes)) for m in (apart, alike))
    assert good + 1.0 < bad
    # Without look-alikes (or none in view) the loss is the plain one.
    plain = sounding_loss(alike, masks, heard)
    assert float(sounding_loss(alike, masks, heard, torch.zeros_like(lookalikes))) == float(plain)


def _log_odds(maps: torch.Tensor) -> torch.Tensor:
    """Aggregated log-odds (B, T, O+1, H, W) whose softmax gives back object maps (B, T, O, H, W)."""
    background = (1 - maps.sum(dim=2, keepdim=True)).clamp(min=0)
    return torch.log(torch.cat([background, maps], dim=2).clamp(min=1e-6))


def test_steady_loss_counts_only_change_beyond_the_truths() -> None:
    masks = torch.zeros(2, 5, 2, 16, 16)
    for t in range(5):
        masks[:, t, 0, 2:8, t : t + 6] = 1  # a moving square: the truth itself changes
    selector = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # sample 1's second object is present but empty
    valid = torch.ones(2, 5)
    # Following the truth exactly costs nothing, however much the truth moves.
    assert steady_loss(_log_odds(masks[:, 1:]), masks, selector, valid) < 1e-3
    # Dropping the object for one frame costs two steps (off, then on again) of full change.
    dropped = masks.clone()
    dropped[:, 2, 0] = 0
    loss = steady_loss(_log_odds(dropped[:, 1:]), masks, selector, valid)
    # IoUs carry one pixel more in both terms: 36-pixel squares, one pixel apart, share 30 of 42.
    moving, vanishing = 1 - 31 / 43, 1 - 1 / 37
    expected = 2 * (vanishing - moving) * 2 / (2 * 4 + 4)  # 2 steps in each sample's first object, of 12
    assert loss.item() == pytest.approx(expected, abs=2e-3)
    # Frames without ground truth are left out, and a steadier-than-truth mask is not penalised.
    assert steady_loss(_log_odds(dropped[:, 1:]), masks, selector, torch.tensor([[1.0, 1, 0, 1, 1]] * 2)) < 1e-3
    frozen = masks[:, :1].expand(-1, 4, -1, -1, -1)
    assert steady_loss(_log_odds(frozen), masks, selector, valid) < 1e-3
    # It is differentiable: the gradient pushes the dropped frame back towards the object.
    logits = _log_odds(dropped[:, 1:]).requires_grad_()
    steady_loss(logits, masks, selector, valid).backward()
    assert logits.grad[:, 1, 1, 2:8, 2:8].sum() < 0


def test_regress_loss_charges_moving_away_from_the_truth_but_not_letting_go_of_a_mistake() -> None:
    masks = torch.zeros(1, 5, 1, 16, 16)
    for t in range(5):
        masks[:, t, 0, 2:8, t : t + 6] = 1  # a moving square
    selector, valid = torch.ones(1, 1), torch.ones(1, 5)
    assert regress_loss(_log_odds(masks[:, 1:]), masks, selector, valid) < 1e-3
    # Dropping the object in frame 2 costs its 36 pixels over the 37 of its area, once in 4 frames: coming
    # back in frame 3 moves toward the truth, which is free.
    dropped = masks.clone()
    dropped[:, 2, 0] = 0
    loss = regress_loss(_log_odds(dropped[:, 1:]), masks, selector, valid)
    # Frame 2's "before" is frame 1's square, which overlaps frame 2's truth in 30 of 42 pixels.
    assert loss.item() == pytest.approx((30 / 43) / 4, abs=2e-3)
    # A 16-pixel look-alike wrongly held in frames 1-2, let go in frame 3: only taking it on costs (frame 1,
    # over the 42 pixels of frames 0 and 1's truths and the 16 of the look-alike), holding and letting go do not.
    twin = masks.clone()
    twin[:, 1:3, 0, 10:14, 10:14] = 1
    held = regress_loss(_log_odds(twin[:, 1:]), masks, selector, valid).item()
    assert held == pytest.approx((16 / 59) / 4, abs=2e-3)
    # steady_loss charges letting it go as well.
    assert steady_loss(_log_odds(twin[:, 1:]), masks, selector, valid) > held
    # Frames without ground truth are left out; the gradient pushes the dropped frame back, never the frame
    # before it away.
    assert regress_loss(_log_odds(dropped[:, 1:]), masks, selector, torch.tensor([[1.0, 1, 0, 1, 1]])) < 1e-3
    grads = []
    for later in (1.0, 0.3):
        fading = masks.clone()
        fading[:, 1, 0] *= 0.9
        fading[:, 2, 0] *= later
        logits = _log_odds(fading[:, 1:]).requires_grad_()
        regress_loss(logits, masks, selector, valid).backward()
        grads.append(logits.grad)
    assert grads[1][:, 1, 1, 2:8, 2:8].sum() < 0
    torch.testing.assert_close(grads[1][:, 0], grads[0][:, 0])  # frame 2 fading leaves frame 1's gradient
