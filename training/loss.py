"""STCN's training loss: cross-entropy on soft-aggregated log-odds, bootstrapped after a warm-up."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avvos.model.aggregate import label_map


def aggregate_logits(prob: torch.Tensor) -> torch.Tensor:
    """Per-object probabilities (B, O, H, W) → log-odds (B, O+1, H, W) of background + objects.

    The same soft aggregation as :func:`avvos.model.aggregate.aggregate` (background = Π(1 − p), clamped to
    [1e-7, 1 − 1e-7]), stopped before the softmax: STCN uses these log-odds as the cross-entropy's logits.
    """
    prob = prob.float()
    stacked = torch.cat([torch.prod(1 - prob, dim=1, keepdim=True), prob], dim=1).clamp(1e-7, 1 - 1e-7)
    return torch.log(stacked / (1 - stacked))


def class_targets(masks: torch.Tensor) -> torch.Tensor:
    """(B, O, H, W) object masks (soft allowed) → (B, H, W) classes: 0 background, i + 1 where object i > 0.5."""
    foreground = masks > 0.5
    return torch.where(foreground.any(dim=1), label_map(masks, dim=1) + 1, 0)


def bootstrap_fraction(iteration: int, start_warm: int, end_warm: int, top_p: float) -> float:
    """The fraction of hardest pixels averaged at ``iteration``: 1 before ``start_warm``, then falling
    linearly to ``top_p`` at ``end_warm`` and staying there (STCN's BootstrappedCE)."""
    if iteration < start_warm:
        return 1.0
    if iteration >= end_warm:
        return top_p
    return 1.0 - (1.0 - top_p) * (iteration - start_warm) / (end_warm - start_warm)


def bootstrapped_ce(logits: torch.Tensor, target: torch.Tensor, fraction: float) -> torch.Tensor:
    """Per-sample loss (B,): the mean cross-entropy over each sample's hardest ``fraction`` of pixels."""
    pixels = F.cross_entropy(logits.float(), target, reduction="none").flatten(1)
    if fraction >= 1.0:
        return pixels.mean(dim=1)
    count = max(int(pixels.shape[1] * fraction), 1)
    return pixels.topk(count, dim=1, sorted=False).values.mean(dim=1)


def _without_absent(logits: torch.Tensor, selector: torch.Tensor) -> torch.Tensor:
    """Float log-odds (B, T, O+1, H, W) with absent objects' channels (``selector`` (B, O) zero) pushed to -1e4."""
    absent = torch.cat([selector.new_zeros(selector.shape[0], 1), 1 - selector], dim=1) > 0.5
    return logits.float().masked_fill(absent[:, None, :, None, None], -1e4)


def _object_maps(logits: torch.Tensor, selector: torch.Tensor) -> torch.Tensor:
    """The objects' soft masks (B, T, O, H, W) that aggregated log-odds give, absent objects left out."""
    return torch.softmax(_without_absent(logits, selector), dim=2)[:, :, 1:]


def sequence_loss(
    logits: torch.Tensor, masks: torch.Tensor, selector: torch.Tensor, valid: torch.Tensor, fraction: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of a batch of sequences, and detached numbers to log (loss, foreground IoU).

    ``logits`` (B, T−1, O+1, H, W) are the aggregated log-odds of frames 1..T−1, ``masks`` (B, T, O, H, W) the
    ground truth, ``selector`` (B, O) which object slots exist, ``valid`` (B, T) which frames have ground
    truth. Absent objects' channels are left out of the softmax (STCN uses only the first two channels of a
    one-object sample). As in STCN each frame's loss is computed per sample and averaged over the batch
    (frames without ground truth count zero); frames are averaged, so the scale does not depend on ``T``.
    """
    batch, steps = logits.shape[:2]
    logits = _without_absent(logits, selector)
    target = class_targets(masks[:, 1:].flatten(0, 1)).view(batch, steps, *masks.shape[-2:])
    weights = valid[:, 1:].float()
    per_sample = bootstrapped_ce(logits.flatten(0, 1), target.flatten(0, 1), fraction).view(batch, steps)
    loss = (per_sample * weights).sum(dim=0).div(batch).mean()
    with torch.no_grad():
        predicted = label_map(logits, dim=2)
        fg_pred, fg_true = predicted > 0, target > 0
        inter = (fg_pred & fg_true).flatten(2).sum(-1).float()
        union = (fg_pred | fg_true).flatten(2).sum(-1).float()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        iou = (iou * weights).sum() / weights.sum().clamp(min=1)
    return loss, {"loss": loss.detach(), "iou": iou}


def steady_loss(logits: torch.Tensor, masks: torch.Tensor, selector: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """How much more each object's soft mask changes from frame to frame than its ground truth does.

    The differentiable form of the task's flicker: for each pair of successive frames (the given frame 0
    and the predicted frames 1..T−1 of ``logits`` (B, T−1, O+1, H, W)), ``1 − soft IoU`` of the predicted
    maps minus ``1 − IoU`` of the ground truth ``masks`` (B, T, O, H, W), counted only where positive (a mask
    steadier than the truth is the cross-entropy's business). Averaged over present objects (``selector``
    (B, O)) and pairs whose frames both have ground truth (``valid`` (B, T)).
    """
    probs = _object_maps(logits, selector)
    truth = masks.float()
    maps = torch.cat([truth[:, :1], probs], dim=1)

    def change(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        inter = (a * b).flatten(3).sum(-1)
        union = (a + b - a * b).flatten(3).sum(-1)
        return 1 - (inter + 1) / (union + 1)  # + one pixel: two (nearly) empty maps do not change

    excess = (change(maps[:, 1:], maps[:, :-1]) - change(truth[:, 1:], truth[:, :-1])).clamp(min=0)
    weight = (valid[:, 1:] * valid[:, :-1]).float()[:, :, None] * selector.float()[:, None, :]
    return (excess * weight).sum() / weight.sum().clamp(min=1)


def regress_loss(
    logits: torch.Tensor, masks: torch.Tensor, selector: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """How much each object's soft mask moves away from the ground truth since the frame before.

    For each predicted frame t (``logits`` (B, T−1, O+1, H, W)) and object: the probability lost on its truth
    pixels plus the probability gained off them, relative to frame t−1's map (the given frame 0, or the
    detached prediction), over the area of the three maps (detached: at most 1, and a mask spreading onto an
    object that has left the frame does not outweigh the rest of the batch). A change toward the truth costs
    nothing, so a mask may let go of a look-alike it wrongly held; ``steady_loss`` charges that as flicker too, and a
    smoother trained on it learns to hold such mistakes. The previous map is detached: the term asks each frame
    to be no worse than the one before, never the one before to be worse. Averaged over present objects
    (``selector`` (B, O)) and frames with ground truth (``valid`` (B, T)).
    """
    probs = _object_maps(logits, selector)
    truth = masks[:, 1:].float()
    before = torch.cat([masks[:, :1].float(), probs[:, :-1].detach()], dim=1)
    lost = (truth * (before - probs).clamp(min=0)).flatten(3).sum(-1)
    gained = ((1 - truth) * (probs - before).clamp(min=0)).flatten(3).sum(-1)
    area = torch.maximum(torch.maximum(truth, before), probs.detach()).flatten(3).sum(-1) + 1
    weight = valid[:, 1:].float()[:, :, None] * selector.float()[:, None, :]
    return ((lost + gained) / area * weight).sum() / weight.sum().clamp(min=1)


def sounding_loss(
    sounding: torch.Tensor, masks: torch.Tensor, has_audio: torch.Tensor, lookalikes: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy of the sounding map (B, T, h, w) against where the heard objects are.

    The target of a position is the fraction of its cell covered by any object of ``masks`` (B, T, O, H, W): in
    the synthetic task the one labelled object is the one heard (distractors are background), in AVSBench the
    labelled objects are the sounding ones. Only samples with sound count (zero when there are none).
    ``lookalikes`` (B, T, H, W), where given, adds the same cross-entropy over the cells of objects only (heard
    and look-alikes), whose target is the heard share of the cell: the term that rewards telling them apart.
    """
    if not bool(has_audio.any()):
        return sounding.sum() * 0
    present = masks.amax(dim=2).float()
    target = F.adaptive_avg_pool2d(present.flatten(0, 1), sounding.shape[-2:]).view_as(sounding)
    chosen = has_audio.bool()
    loss = F.binary_cross_entropy_with_logits(sounding[chosen], target[chosen])
    if lookalikes is None or not bool(lookalikes[chosen].any()):
        return loss
    # The heard object against its silent look-alikes only: most cells are background, which the term above
    # can learn from appearance alone; this one is won only by telling the heard object from the others.
    others = F.adaptive_avg_pool2d(lookalikes.float().flatten(0, 1)[:, None], sounding.shape[-2:]).view_as(sounding)
    weight = (target + others).clamp(max=1)[chosen]
    share = target[chosen] / (target[chosen] + others[chosen]).clamp(min=1e-6)
    per_cell = F.binary_cross_entropy_with_logits(sounding[chosen], share, reduction="none")
    # Per sample, then the mean over samples (as the term above): the same loss however a batch is split (DDP).
    per_sample = (per_cell * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp(min=1e-6)
    return loss + per_sample.mean()
