"""Audio-guided identity: which of several look-alike objects is the one that is heard.

STCN's matching cannot tell identical-looking objects apart once they have crossed: it keeps whichever is
nearer the remembered context, or both. The sound can tell them apart, but only object by object: the heard
object's visible state (its brightness, its size, a mouth opening) changes when the loudness changes, and over
about a second this shows clearly for an object followed as a whole, while at any one position it is swamped
by motion (``python -m training.sync_cue`` measures both).

So, for an annotated object that has look-alikes in its annotated frame (:class:`LookalikeFinder`), the session
keeps a :class:`SoundIdentity`: every frame it finds the regions that look like the object, follows each back
through the last ``window`` frames (a region's past is the region it overlaps most in the frame before, as
long as no other region shares it: after two look-alikes part, each has a past only from there),
correlates each one's state with the loudness, and, when one region follows the sound clearly better than
every other (for ``patience`` frames running) while the object's segmentation is elsewhere, it re-annotates
the object with that region (which also goes into memory, so matching follows it from then on). With no sound,
or a sound that does not rise and fall, nothing is ever re-annotated.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch

#: Samples (at 16 kHz) over which a frame's loudness is measured: the 40 ms ending at the frame.
LOUDNESS_SAMPLES = 640
#: Chromaticity histogram bins per axis for the look-alike search.
CHROMA_BINS = 16
_KERNEL3 = np.ones((3, 3), np.uint8)


def loudness(window: np.ndarray | torch.Tensor) -> float | None:
    """Log mean energy of the last 40 ms of a mono 16 kHz window (the sound heard at the frame); None where
    most of those samples are exactly zero (padding before the audio starts, a dropout, a muted input): nothing
    was heard."""
    recent = torch.nan_to_num(torch.as_tensor(window, dtype=torch.float32).flatten()[-LOUDNESS_SAMPLES:])
    if recent.numel() == 0 or (recent == 0).float().mean() > 0.5:
        return None
    return math.log(float(recent.double().pow(2).mean()) + 1e-12)


class LookalikeFinder:
    """Finds the regions of a frame that look like one object, learnt from one annotated frame.

    Look-alikes share the object's colour but may differ in brightness (their state), so they are found by
    chromaticity (colour with brightness divided out): pixels whose chromaticity is at least ``colour`` times
    more typical of the object than of the rest of the annotated frame, grouped into connected regions (holes
    filled). A region counts when it is at least 0.4 times the object's area and its outline is sharp (image
    gradient along it at least ``edge`` times that along the object's outline), so that smooth patches of a
    similar background colour are not taken for objects.
    """

    def __init__(self, image: np.ndarray, mask: np.ndarray, colour: float = 2.0, edge: float = 0.3) -> None:
        mask = np.asarray(mask, dtype=bool)
        self.area = int(mask.sum())
        self.edge = edge
        index = _chroma_index(image)
        object_hist, rest_hist = (_smoothed_histogram(index[m]) for m in (mask, ~mask))
        self._typical = object_hist / (object_hist + rest_hist + 1e-12) > colour / (1 + colour)
        self.outline = _outline_gradient(_gradient(image), mask)
        self._mask = mask

    def regions(self, image: np.ndarray) -> list[np.ndarray]:
        """Boolean masks of the regions of ``image`` that look like the object (the object itself included)."""
        typical = self._typical[_chroma_index(image)].astype(np.uint8)
        typical = cv2.morphologyEx(typical, cv2.MORPH_OPEN, _KERNEL3)
        typical = cv2.morphologyEx(typical, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        contours, _ = cv2.findContours(typical, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        gradient = _gradient(image)
        found = []
        for contour in contours:
            if cv2.contourArea(contour) < 0.4 * self.area:
                continue
            region = np.zeros_like(typical)
            cv2.drawContours(region, [contour], -1, 1, thickness=cv2.FILLED)
            region = region.astype(bool)
            if _outline_gradient(gradient, region) >= self.edge * self.outline:
                found.append(region)
        return found

    def lookalikes(self, image: np.ndarray, shape: float = 0.5) -> list[np.ndarray]:
        """In the annotated frame: the regions other than the object itself that have its size (0.4 to 2.5
        times) and shape (IoU >= ``shape`` with the object's mask scaled to their area and put on their
        centre)."""
        ys, xs = np.nonzero(self._mask)
        centre = np.array([ys.mean(), xs.mean()])
        found = []
        for region in self.regions(image):
            size = int(region.sum())
            if (region & self._mask).sum() > 0.2 * size or size > 2.5 * self.area:
                continue
            ry, rx = np.nonzero(region)
            placed = _place(self._mask, centre, np.array([ry.mean(), rx.mean()]), math.sqrt(size / self.area))
            if (placed & region).sum() >= shape * (placed | region).sum():
                found.append(region)
        return found


def _chroma_index(image: np.ndarray) -> np.ndarray:
    """(H, W) chromaticity bin of each pixel of an RGB image (0..255)."""
    pixels = np.asarray(image, dtype=np.float32) + 1.0
    chroma = pixels[..., :2] / pixels.sum(axis=2, keepdims=True)
    bins = np.clip((chroma * CHROMA_BINS).astype(np.int64), 0, CHROMA_BINS - 1)
    return bins[..., 0] * CHROMA_BINS + bins[..., 1]


def _smoothed_histogram(index: np.ndarray) -> np.ndarray:
    counts = np.bincount(index, minlength=CHROMA_BINS**2).astype(np.float64).reshape(CHROMA_BINS, CHROMA_BINS)
    counts = cv2.GaussianBlur(counts, (3, 3), 0).ravel()
    return counts / max(counts.sum(), 1e-12)


def _gradient(image: np.ndarray) -> np.ndarray:
    smooth = cv2.GaussianBlur(np.asarray(image, dtype=np.float32), (3, 3), 0)
    return np.sqrt((cv2.Sobel(smooth, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(smooth, cv2.CV_32F, 0, 1) ** 2).sum(-1))


def _outline_gradient(gradient: np.ndarray, region: np.ndarray) -> float:
    """Mean gradient magnitude on a thin band along the region's outline."""
    inside = region.astype(np.uint8)
    band = (cv2.dilate(inside, _KERNEL3) - cv2.erode(inside, _KERNEL3)).astype(bool)
    return float(gradient[band].mean()) if band.any() else 0.0


def _place(mask: np.ndarray, centre: np.ndarray, at: np.ndarray, scale: float) -> np.ndarray:
    """``mask``'s shape scaled by ``scale`` about ``centre`` (y, x) and moved to ``at`` (same frame size)."""
    matrix = np.array([[scale, 0, at[1] - scale * centre[1]], [0, scale, at[0] - scale * centre[0]]], np.float32)
    placed = cv2.warpAffine(mask.astype(np.uint8), matrix, (mask.shape[1], mask.shape[0]), flags=cv2.INTER_NEAREST)
    return placed.astype(bool)


def region_state(gray: np.ndarray, region: np.ndarray) -> np.ndarray:
    """(3,) visible state of a region: mean brightness, log area, and the fraction of its pixels darker than
    half its median (a mouth)."""
    inside = gray[region]
    return np.array([inside.mean(), math.log(inside.size), (inside < 0.5 * np.median(inside)).mean()])


@dataclass
class _Frame:
    regions: list[np.ndarray]
    states: np.ndarray  # (regions, 3)
    parents: list[int]  # per region: the region of the frame before that it overlaps most (-1: none)
    heard: float


class SoundIdentity:
    """Decides, from the sound, which look-alike region is one object.

    ``window``: frames over which states are correlated with the loudness (about a second);
    ``margin``: how much better (in correlation) the heard region must follow the sound than any other;
    ``patience``: for how many frames running; ``min_range``: the loudness (natural log of energy) must rise
    and fall by at least this much within the window, else the sound says nothing; ``min_score``: the heard
    region's own correlation must reach this; ``min_frames``: regions are scored once they can be followed
    back this many frames.
    """

    def __init__(
        self,
        finder: LookalikeFinder,
        window: int = 20,
        margin: float = 0.15,
        patience: int = 1,
        min_range: float = 3.0,
        min_score: float = 0.6,
        min_frames: int = 4,
    ) -> None:
        if window < 4:
            raise ValueError(f"the identity window must be at least 4 frames, got {window}")
        self.finder = finder
        self.window, self.margin, self.patience, self.min_range = window, margin, patience, min_range
        self.min_score = min_score
        self.min_frames = max(4, min(min_frames, window))
        self._frames: deque[_Frame] = deque(maxlen=window)
        self._streak = 0

    def push(self, image: np.ndarray, heard: float | None) -> None:
        """Record one frame (``image``: (H, W, 3) RGB 0..255) and its loudness (None: nothing heard; such frames
        are left out of the correlations)."""
        regions = self.finder.regions(image)
        gray = np.asarray(image, dtype=np.float32).mean(axis=2)
        states = np.array([region_state(gray, r) for r in regions]).reshape(len(regions), 3)
        parents = [-1] * len(regions)
        if self._frames:
            before = self._frames[-1].regions
            overlaps = np.array([[int((r & b).sum()) for b in before] for r in regions], dtype=np.int64)
            overlaps = overlaps.reshape(len(regions), len(before))
            for i in range(len(regions)):
                if not before or overlaps[i].max() == 0:
                    continue
                parent = int(overlaps[i].argmax())
                merged = (overlaps[i] > 0.2 * before[parent].sum()).sum() > 1 or (overlaps[i] > 0).sum() > 2
                split = (overlaps[:, parent] > 0.2 * regions[i].sum()).sum() > 1
                if not merged and not split:
                    parents[i] = parent
        self._frames.append(_Frame(regions, states, parents, math.nan if heard is None else heard))

    @property
    def regions(self) -> list[np.ndarray]:
        """The look-alike regions of the last frame pushed."""
        return self._frames[-1].regions if self._frames else []

    def heard_range(self) -> float:
        """How far the loudness rose and fell within the window (0 with fewer than ``min_frames`` heard)."""
        heard = np.array([f.heard for f in self._frames])
        heard = heard[np.isfinite(heard)]
        return float(np.ptp(heard)) if heard.size >= self.min_frames else 0.0

    def scores(self) -> np.ndarray:
        """(regions of the last frame,) how well each region's state, followed back through the window, follows
        the loudness: the largest over its states of the correlation (louder: brighter, larger, mouth wider);
        NaN for a region that cannot be followed back through at least ``min_frames`` frames with sound."""
        heard = np.array([f.heard for f in self._frames])
        result = np.full(len(self.regions), np.nan)
        for i in range(len(self.regions)):
            path, index = [], i
            for frame in reversed(self._frames):
                if index < 0:
                    break
                path.append(frame.states[index])
                index = frame.parents[index]
            heard_here = np.isfinite(heard[-len(path) :])
            if heard_here.sum() < self.min_frames:
                continue
            louder = heard[-len(path) :][heard_here]
            louder = louder - louder.mean()
            steps = np.array(path[::-1])[heard_here]
            steps = steps - steps.mean(axis=0)
            power = (steps**2).sum(axis=0)
            corr = (steps * louder[:, None]).sum(axis=0) / (np.sqrt(power * (louder**2).sum()) + 1e-12)
            corr[power < 1e-12] = 0.0
            result[i] = corr.max()
        return result

    def decide(self, current: np.ndarray) -> np.ndarray | None:
        """The region to re-annotate the object with, or None. ``current``: (H, W) bool, the object's mask in the
        last frame pushed. A region is returned when it follows the sound better than every other region by
        ``margin`` for ``patience`` frames running and ``current`` does not already cover it (IoU < 0.6)."""
        scores = self.scores()
        known = np.isfinite(scores)
        if known.sum() < 2 or self.heard_range() < self.min_range:
            self._streak = 0
            return None
        order = np.argsort(-np.where(known, scores, -np.inf))
        best = int(order[0])
        if scores[best] < self.min_score or scores[best] - scores[order[1]] <= self.margin:
            self._streak = 0
            return None
        self._streak += 1
        region = self.regions[best]
        covered = (region & current).sum() / max((region | current).sum(), 1)
        if self._streak < self.patience or covered >= 0.6:
            return None
        return region
