"""DAVIS semi-supervised J&F evaluation, numerically identical to the official davis2017-evaluation.

Protocol (as the official tool computes it):

* The frames scored are the ground-truth frames of a sequence (sorted ``*.png`` names) except the first
  and the last; the prediction must hold a PNG of the same name for each of them.
* The objects of a sequence are the ids ``1..N`` where ``N`` is the largest id in the *first*
  ground-truth frame. Ground-truth id 255 (void) counts as background; void pixels are not excluded,
  as the official semi-supervised evaluation does not exclude them either. A missing object id in a
  prediction is an empty mask; a prediction id above ``N`` is an error, as in the official tool.
* DAVIS-2016 ground truth (single-channel 0/255 PNGs, one object) follows the DAVIS-2016 protocol:
  *every* non-zero prediction id is merged into that one object, so a palette prediction with ids
  1, 2, ... is scored as one binary mask. Palette (and small-id greyscale) ground truth keeps its
  objects apart. To reproduce these numbers with the official code, give it the ground truth as 0/1
  masks and the predictions binarised (non-zero becomes 1): that is what the tests do.
* J is the Jaccard index (1 when both masks are empty); F is the boundary F-measure with a matching
  tolerance of ``ceil(0.008 * image diagonal)`` pixels (a disk); mean, recall (fraction of frames
  above 0.5) and decay (first-quarter mean minus last-quarter mean) summarise each object.
* Per sequence: the mean over its objects. Overall: the mean over all objects of all sequences, and
  ``J&F-Mean = (J-Mean + F-Mean) / 2``. Values are fractions in [0, 1].

One deliberate difference: the official decay keeps its bin indices in uint8, which wraps around
and corrupts (often to NaN) the decay of sequences with 256 or more scored frames; here the indices
are exact. The results are the same for every sequence with fewer than 256 scored frames (all of
DAVIS).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from avvos.errors import InputError, MaskError
from avvos.masks import read_mask

#: The official column names, in the official order.
COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
#: Ground-truth label that marks void pixels (treated as background in the semi-supervised task).
VOID_ID = 255


def read_imageset(path: Path | str) -> list[str]:
    """Sequence names from an ImageSets file: one per line, blank lines ignored."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read image set {path}: {exc.strerror or exc}") from exc
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f"image set {path} lists no sequence")
    return names


def _jaccard(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Jaccard index over the last two axes of boolean stacks; 1 where both masks are empty."""
    inter = np.count_nonzero(pred & gt, axis=(-2, -1))
    union = np.count_nonzero(pred | gt, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    """J: intersection over union of two boolean masks (1.0 when both are empty, as officially)."""
    pred, gt = _as_bool_pair(pred, gt)
    return float(_jaccard(pred, gt))


def _boundary_map(masks: np.ndarray) -> np.ndarray:
    """One-pixel boundaries of boolean masks over the last two axes (the seg2bmap definition).

    A pixel is on the boundary when it differs from its east, south or south-east neighbour
    (neighbours outside the image count as background), except that the last row compares only
    eastwards, the last column only southwards, and the bottom-right pixel is never a boundary.
    """
    east = np.zeros_like(masks)
    south = np.zeros_like(masks)
    south_east = np.zeros_like(masks)
    east[..., :, :-1] = masks[..., :, 1:]
    south[..., :-1, :] = masks[..., 1:, :]
    south_east[..., :-1, :-1] = masks[..., 1:, 1:]
    bmap = (masks ^ east) | (masks ^ south) | (masks ^ south_east)
    bmap[..., -1, :] = masks[..., -1, :] ^ east[..., -1, :]
    bmap[..., :, -1] = masks[..., :, -1] ^ south[..., :, -1]
    bmap[..., -1, -1] = False
    return bmap


def _tolerance_radius(shape: tuple[int, int], bound_th: float) -> float:
    """Boundary matching tolerance in pixels: ``bound_th`` itself if >= 1, else a diagonal fraction."""
    if bound_th >= 1:
        return bound_th
    return math.ceil(bound_th * math.sqrt(shape[0] ** 2 + shape[1] ** 2))


def _disk(radius: float) -> np.ndarray:
    """Flat disk structuring element: offsets (dy, dx) in ``-r..r`` with ``dy² + dx² <= r²``."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def _boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> np.ndarray:
    """Boundary F-measure for stacks (K, H, W) of boolean masks, one value per mask pair."""
    kernel = _disk(_tolerance_radius(pred.shape[-2:], bound_th))
    pred_edges = _boundary_map(pred)
    gt_edges = _boundary_map(gt)
    n_pred = np.count_nonzero(pred_edges, axis=(-2, -1))
    n_gt = np.count_nonzero(gt_edges, axis=(-2, -1))
    pred_hits = np.zeros(len(pred), dtype=np.int64)
    gt_hits = np.zeros(len(pred), dtype=np.int64)
    for k in range(len(pred)):
        if n_pred[k] == 0 or n_gt[k] == 0:
            continue
        gt_zone = cv2.dilate(gt_edges[k].view(np.uint8), kernel).view(bool)
        pred_zone = cv2.dilate(pred_edges[k].view(np.uint8), kernel).view(bool)
        pred_hits[k] = np.count_nonzero(pred_edges[k] & gt_zone)
        gt_hits[k] = np.count_nonzero(gt_edges[k] & pred_zone)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred == 0, 1.0, pred_hits / np.maximum(n_pred, 1))
        recall = np.where(n_gt == 0, 1.0, gt_hits / np.maximum(n_gt, 1))
        precision = np.where((n_pred > 0) & (n_gt == 0), 0.0, precision)
        recall = np.where((n_pred == 0) & (n_gt > 0), 0.0, recall)
        total = precision + recall
        return np.where(total == 0, 0.0, 2 * precision * recall / np.where(total == 0, 1.0, total))


def boundary_measure(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """F: boundary F-measure of two boolean masks.

    Boundaries (seg2bmap) match when within a disk of radius ``ceil(bound_th * diagonal)`` pixels
    (``bound_th`` pixels when >= 1). Both empty gives 1.0, exactly one empty gives 0.0.
    """
    pred, gt = _as_bool_pair(pred, gt)
    return float(_boundary_f(pred[None], gt[None], bound_th)[0])


def _as_bool_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check two 2-D masks of one shape and return them as contiguous boolean arrays."""
    pred = np.ascontiguousarray(np.asarray(pred).astype(bool, copy=False))
    gt = np.ascontiguousarray(np.asarray(gt).astype(bool, copy=False))
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise ValueError(f"masks must be 2-D and of one shape, got {pred.shape} and {gt.shape}")
    return pred, gt


def summarize(per_frame_values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """Mean, recall and decay of one object's per-frame J or F values, as the official tool.

    Recall is the fraction of frames above 0.5. Decay is the mean of the first quarter minus that
    of the last quarter, the quarters being the official overlapping bins of
    ``round(linspace(1, n, 5)) - 1``. NaN values are ignored by the means.
    """
    values = np.asarray(per_frame_values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("summarize needs at least one per-frame value")
    edges = (np.round(np.linspace(1, values.size, 5) + 1e-10) - 1).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(values)
        recall = np.mean(values > 0.5)
        decay = np.nanmean(values[edges[0] : edges[1] + 1]) - np.nanmean(values[edges[3] : edges[4] + 1])
    return float(mean), float(recall), float(decay)


def _row(j_stats: tuple[float, float, float], f_stats: tuple[float, float, float]) -> dict[str, float]:
    """One results entry with the official column names."""
    return {
        "J&F-Mean": (j_stats[0] + f_stats[0]) / 2,
        "J-Mean": j_stats[0],
        "J-Recall": j_stats[1],
        "J-Decay": j_stats[2],
        "F-Mean": f_stats[0],
        "F-Recall": f_stats[1],
        "F-Decay": f_stats[2],
    }


def _mean_row(rows: list[dict[str, float]]) -> dict[str, float]:
    """Column-wise mean of object rows, with J&F-Mean recomputed from the two means."""
    out = {name: float(np.mean([row[name] for row in rows])) for name in COLUMNS[1:]}
    return {"J&F-Mean": (out["J-Mean"] + out["F-Mean"]) / 2, **out}


def annotation_root(gt_root: Path | str) -> Path:
    """The folder of per-sequence annotation folders inside ``gt_root``.

    Accepts a DAVIS root (``Annotations/480p/<seq>``), a YouTube-VOS style root
    (``Annotations/<seq>``) or the folder of sequence folders itself.
    """
    root = Path(gt_root)
    if not root.is_dir():
        raise InputError(f"ground-truth folder not found: {root}")
    for candidate in (root / "Annotations" / "480p", root / "Annotations"):
        if candidate.is_dir():
            return candidate
    return root


def _select_sequences(pred_root: Path, ann_root: Path, sequences: list[str] | None) -> list[str]:
    """The sequences to score: those asked for (checked), or every predicted one with ground truth."""
    if sequences is None:
        names = sorted(p.name for p in pred_root.iterdir() if p.is_dir() and (ann_root / p.name).is_dir())
        if not names:
            raise InputError(
                f"no sequence folder of {pred_root} has ground truth in {ann_root}: "
                "give the prediction and ground-truth folders of the same sequences"
            )
        return names
    if not sequences:
        raise InputError("no sequence to evaluate: the sequence list is empty")
    for name in sequences:
        if not (ann_root / name).is_dir():
            raise InputError(f"sequence '{name}' has no ground truth: {ann_root / name} is not a folder")
        if not (pred_root / name).is_dir():
            raise InputError(f"sequence '{name}' has no prediction folder: {pred_root / name} is missing")
    return list(sequences)


def _is_davis2016_style(path: Path, first: np.ndarray) -> bool:
    """Whether a ground-truth frame is a single-object greyscale (0/255) mask, not a palette of ids."""
    with Image.open(path) as image:
        mode = image.mode
    return mode != "P" and int(first.max(initial=0)) <= 1


def _size(mask: np.ndarray) -> str:
    """A mask's size as ``WIDTHxHEIGHT``."""
    return f"{mask.shape[1]}x{mask.shape[0]}"


def _evaluate_sequence(
    name: str, pred_dir: Path, gt_dir: Path, score_last: bool = False
) -> dict[str, dict[str, float]]:
    """Per-object result rows (keyed "1".."N") of one sequence: every frame after the first is scored, the
    last one only with ``score_last`` (the official DAVIS protocol leaves it out)."""
    gt_paths = sorted(gt_dir.glob("*.png"))
    scored = gt_paths[1:] if score_last else gt_paths[1:-1]
    rule = (
        "every ground-truth frame after the first"
        if score_last
        else "every ground-truth frame but the first and the last"
    )
    if not scored:
        raise InputError(
            f"sequence '{name}' has {len(gt_paths)} ground-truth frame(s) in {gt_dir}: {rule} is scored, "
            "so there is nothing to score"
        )
    first = read_mask(gt_paths[0])
    merge = _is_davis2016_style(gt_paths[0], first)
    if not merge:
        first = np.where(first == VOID_ID, 0, first)
    n_objects = int(first.max(initial=0))
    if n_objects == 0:
        raise MaskError(f"the first ground-truth frame of sequence '{name}' ({gt_paths[0]}) has no object")
    ids = np.arange(1, n_objects + 1, dtype=np.uint8)[:, None, None]
    j_values = np.empty((n_objects, len(scored)))
    f_values = np.empty((n_objects, len(scored)))
    for t, gt_path in enumerate(scored):
        pred_path = pred_dir / gt_path.name
        if not pred_path.is_file():
            raise InputError(
                f"sequence '{name}' has no prediction for frame {gt_path.name}: {pred_path} is missing "
                f"({rule} is scored)"
            )
        gt = read_mask(gt_path)
        pred = read_mask(pred_path)
        if gt.shape != first.shape:
            raise MaskError(
                f"ground truth {gt_path} is {_size(gt)} but {gt_paths[0]} is {_size(first)} "
                "(width x height): a sequence's frames must share one size"
            )
        if pred.shape != gt.shape:
            raise MaskError(
                f"prediction {pred_path} is {_size(pred)} but its ground truth {gt_path} is "
                f"{_size(gt)} (width x height)"
            )
        if merge:
            pred = (pred != 0).astype(np.uint8)
        else:
            gt = np.where(gt == VOID_ID, 0, gt)
            extra = np.unique(pred[pred > n_objects])
            if extra.size:
                raise MaskError(
                    f"prediction {pred_path} has object id(s) {extra.tolist()} but sequence '{name}' has "
                    f"{n_objects} object(s) in its first ground-truth frame"
                )
        gt_stack = gt[None] == ids
        pred_stack = pred[None] == ids
        j_values[:, t] = _jaccard(pred_stack, gt_stack)
        f_values[:, t] = _boundary_f(pred_stack, gt_stack)
    return {str(k + 1): _row(summarize(j_values[k]), summarize(f_values[k])) for k in range(n_objects)}


def evaluate(
    pred_root: Path | str,
    gt_root: Path | str,
    sequences: list[str] | None = None,
    progress: bool = True,
    score_last: bool = False,
) -> dict:
    """DAVIS semi-supervised J&F of the predictions in ``pred_root`` (``<seq>/<frame>.png``).

    ``gt_root`` is a DAVIS root or a folder of sequence folders (see :func:`annotation_root`).
    Without ``sequences``, every prediction folder that has ground truth is scored. Returns
    ``{"overall": row, "sequences": {name: row + {"objects": {id: row}}}}`` where a row maps the
    official column names (:data:`COLUMNS`) to fractions; see the module docstring for the rules.
    ``score_last`` also scores the last frame (the audio-visual task does; DAVIS does not).
    """
    pred_root = Path(pred_root)
    if not pred_root.is_dir():
        raise InputError(f"prediction folder not found: {pred_root}")
    ann_root = annotation_root(gt_root)
    names = _select_sequences(pred_root, ann_root, sequences)
    per_sequence: dict[str, dict] = {}
    all_objects: list[dict[str, float]] = []
    for name in tqdm(names, desc="J&F", unit="seq", disable=not progress):
        objects = _evaluate_sequence(name, pred_root / name, ann_root / name, score_last)
        per_sequence[name] = {**_mean_row(list(objects.values())), "objects": objects}
        all_objects.extend(objects.values())
    return {"overall": _mean_row(all_objects), "sequences": per_sequence}


def format_table(results: dict) -> str:
    """A fixed-width text table: the overall row, then one row per sequence (and per object)."""
    rows: list[tuple[str, dict[str, float]]] = [("Overall", results["overall"])]
    for name, entry in results["sequences"].items():
        rows.append((name, entry))
        objects = entry.get("objects", {})
        if len(objects) > 1:
            rows.extend((f"  {name}/{obj}", values) for obj, values in objects.items())
    width = max(len("Sequence"), *(len(label) for label, _ in rows))
    header = f"{'Sequence':<{width}}  " + "  ".join(f"{col:>8}" for col in COLUMNS)
    lines = [header, "-" * len(header)]
    for index, (label, values) in enumerate(rows):
        lines.append(f"{label:<{width}}  " + "  ".join(f"{values[col]:>8.3f}" for col in COLUMNS))
        if index == 0:
            lines.append("-" * len(header))
    return "\n".join(lines)


# The "who is sounding" audio-visual task (shared/research/av_sync_task.md): J&F over every frame after the
# first (the last frame included, unlike the official DAVIS protocol), identity switches and flicker.


def evaluate_after_first(
    pred_root: Path | str,
    gt_root: Path | str,
    sequences: list[str] | None = None,
    progress: bool = True,
) -> dict:
    """J&F as :func:`evaluate` (same rules and result layout) but scoring *every* frame after the first.

    The official DAVIS protocol leaves out the first and the last frame; the audio-visual task scores
    "all frames after the first", so the last frame counts here.
    """
    return evaluate(pred_root, gt_root, sequences, progress, score_last=True)


def identity_switches(
    pred_masks: np.ndarray,
    target_masks: np.ndarray,
    distractor_masks: np.ndarray,
    crossing_frames: Sequence[int],
) -> dict:
    """Frames after a crossing in which the prediction overlaps a distractor more than the target.

    ``pred_masks`` and ``target_masks`` are (T, H, W) masks (non-zero = inside), ``distractor_masks``
    (T, D, H, W) or, for one distractor, (T, H, W): the distractors' visible pixels. "After a crossing"
    means every frame after the *first* crossing frame (that frame itself excluded). A frame is a switch
    when the prediction shares strictly more pixels with some distractor than with the target (an empty
    prediction is never a switch). Returns ``{"switches": count, "frames": post-crossing frames,
    "fraction": switches / frames (NaN when there is no such frame), "switch_frames": [t, ...]}``.
    """
    pred = np.asarray(pred_masks).astype(bool)
    target = np.asarray(target_masks).astype(bool)
    distractors = np.asarray(distractor_masks).astype(bool)
    if distractors.ndim == 3:
        distractors = distractors[:, None]
    if pred.ndim != 3 or pred.shape != target.shape:
        raise ValueError(f"pred and target masks must be (T, H, W) of one shape, got {pred.shape}, {target.shape}")
    if distractors.ndim != 4 or distractors.shape[0] != pred.shape[0] or distractors.shape[2:] != pred.shape[1:]:
        raise ValueError(f"distractor masks must be (T, D, H, W) matching {pred.shape}, got {distractors.shape}")
    frames = pred.shape[0]
    start = min(crossing_frames) + 1 if len(crossing_frames) else frames
    on_target = np.count_nonzero(pred & target, axis=(1, 2))
    on_distractor = np.count_nonzero(pred[:, None] & distractors, axis=(2, 3)).max(axis=1, initial=0)
    switched = np.flatnonzero(on_distractor[start:] > on_target[start:]) + start
    count = max(frames - start, 0)
    return {
        "switches": len(switched),
        "frames": count,
        "fraction": len(switched) / count if count else float("nan"),
        "switch_frames": switched.tolist(),
    }


def flicker(pred_masks: np.ndarray, gt_masks: np.ndarray) -> float:
    """Mean over frames t >= 1 of ``1 - IoU(pred_t, pred_{t-1})``, minus the same for the ground truth.

    Both are (T, H, W) masks (non-zero = inside), T >= 2; the IoU of two empty masks is 1. Lower is
    steadier; 0 means the prediction changes as much as the ground truth does.
    """
    pred = np.asarray(pred_masks).astype(bool)
    gt = np.asarray(gt_masks).astype(bool)
    if pred.ndim != 3 or pred.shape != gt.shape or pred.shape[0] < 2:
        raise ValueError(f"masks must be (T, H, W) of one shape with T >= 2, got {pred.shape} and {gt.shape}")
    return float(np.mean(1.0 - _jaccard(pred[1:], pred[:-1])) - np.mean(1.0 - _jaccard(gt[1:], gt[:-1])))


def evaluate_av_sync(pred_root: Path | str, data_root: Path | str, split: str, progress: bool = False) -> dict:
    """Score predictions of one split of an audio-visual data set written by ``avvos.data.av_sync``.

    ``pred_root/<clip>/<frame>.png`` holds the predicted target as id 1 (frame 0 may be left out: the
    given first mask stands in for it). Returns the means over the split's clips of J&F, J and F over all
    frames after the first (:func:`evaluate_after_first`), of the identity-switch fraction (over clips
    with a post-crossing frame; NaN if none has one) and of the flicker, the total switch and
    post-crossing frame counts, and the same per clip under ``"sequences"``. The gain from audio is
    ``J&F(crossing) - J&F(silent)`` of two such results.
    """
    from avvos.data.av_sync import read_distractor_masks, read_meta

    pred_root, data_root = Path(pred_root), Path(data_root)
    names = read_imageset(data_root / "ImageSets" / f"{split}.txt")
    scores = evaluate_after_first(pred_root, data_root, names, progress)
    ann_root = annotation_root(data_root)
    per_clip: dict[str, dict] = {}
    for name in names:
        gt_paths = sorted((ann_root / name).glob("*.png"))
        gt = np.stack([read_mask(path) == 1 for path in gt_paths])
        pred = gt.copy()
        for t, path in enumerate(gt_paths):
            if t > 0 or (pred_root / name / path.name).is_file():
                pred[t] = read_mask(pred_root / name / path.name) == 1
        distractors = read_distractor_masks(data_root, name)
        switches = identity_switches(pred, gt, distractors, read_meta(data_root, name)["crossing_frames"])
        row = scores["sequences"][name]
        per_clip[name] = {
            "J&F-Mean": row["J&F-Mean"],
            "J-Mean": row["J-Mean"],
            "F-Mean": row["F-Mean"],
            "identity_switches": switches["switches"],
            "post_crossing_frames": switches["frames"],
            "identity_switch_fraction": switches["fraction"],
            "flicker": flicker(pred, gt),
        }
    fractions = [c["identity_switch_fraction"] for c in per_clip.values() if c["post_crossing_frames"]]
    return {
        "split": split,
        "clips": len(names),
        "J&F-Mean": scores["overall"]["J&F-Mean"],
        "J-Mean": scores["overall"]["J-Mean"],
        "F-Mean": scores["overall"]["F-Mean"],
        "identity_switch_fraction": float(np.mean(fractions)) if fractions else float("nan"),
        "identity_switches": int(sum(c["identity_switches"] for c in per_clip.values())),
        "post_crossing_frames": int(sum(c["post_crossing_frames"] for c in per_clip.values())),
        "flicker": float(np.mean([c["flicker"] for c in per_clip.values()])),
        "sequences": per_clip,
    }
