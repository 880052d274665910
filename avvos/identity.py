"""Audio-guided identity: which of several look-alike objects is the one that is heard.

STCN's matching cannot tell identical-looking objects apart once they have crossed: it keeps whichever is
nearer the remembered context, or both. The sound can tell them apart, but only object by object: the heard
object's visible state (its brightness, its size, a mouth opening) changes when the loudness changes, and over
about a second this shows clearly for an object followed as a whole, while at any one position it is swamped
by motion (``python -m training.sync_cue`` measures both).

So, for an annotated object that has look-alikes in its annotated frame (:class:`LookalikeFinder`), the session
keeps a :class:`SoundIdentity`: every frame it finds the regions that look like the object and follows each
look-alike as a track (by where its motion says it should be, so a track keeps its past through crossings,
touching and short occlusions), correlates each track's state with the loudness over the last ``window`` frames,
and, when one track follows the sound clearly better than every other (for ``patience`` frames running) while
the object's segmentation is elsewhere, it re-annotates the object with that track's region; the session then
also forgets its memory frames since the first (they may show the look-alike as the object), so matching
follows the heard one from then on. Until the sound has picked one, the annotated look-alike's own track is taken
to be the heard one (the annotation says so; the sound overrules it). With no sound, or a sound that does not
rise and fall, nothing is ever re-annotated.

Look-alikes that overlap are one region: each track sharing it gets the object's shape fitted where its motion
puts it, and the heard one's share of the region is the output while they overlap (where brightness is what
follows the sound, the heard one's pixels are told by their brightness instead). When they part, which track
left on which side is a guess from motion that the sound checks (:meth:`SoundIdentity._untangle`); a look-alike
that leaves a merge where its track's motion did not look is given back to that track
(:meth:`SoundIdentity._adopt`). A track keeps its look-alike through a frame or two in which the outline is too
faint for the finder (blurred, or dim against its background). Once a track is heard, the regions of the other
look-alikes are kept out of the object's mask. Where masks can wait (a file, not a live stream: ``lookback``), an
untangle or a pick that moves the heard track also mends the object's masks of the frames since that track last
parted from another (:meth:`SoundIdentity.take_revisions`); held masks that an earlier move mended with another
track, and that this one does not mend, go back to what was first output.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

#: Samples (at 16 kHz) over which a frame's loudness is measured: the 20 ms ending at the frame. A visible state
#: follows the loudness with no lag, and a burst can rise or fall within one frame (40 ms at 25 frames/s): the
#: whole 40 ms before the frame would mostly measure the sound half a frame earlier.
LOUDNESS_SAMPLES = 320
#: Samples over which the loudness is measured for the gate that asks whether the sound rises and falls at all
#: (``min_range``): the 40 ms ending at the frame, a steadier measure than the 20 ms correlated with the states.
#: Over 20 ms, noise whose energy lies mostly at low frequencies (brown noise) rises and falls by nearly as much
#: as the task's bursts do, and would open the gate.
GATE_SAMPLES = 640
#: How much a shape fitted in a shared region loses (in IoU) per squared radius it moves from where its track's
#: motion put it: inside a merge the outline alone says little about which shape is where.
FIT_STAY = 0.2
#: The colour tests tried in turn for look-alikes in the annotated frame (:func:`find_lookalikes`).
COLOUR_STEPS = (2.0, 4.0, 8.0, 16.0, 1.5)
#: Chromaticity histogram bins per axis for the look-alike search.
CHROMA_BINS = 16
_KERNEL3 = np.ones((3, 3), np.uint8)
#: How much of the motion a fitted shape shows inside a merge goes into its track's velocity each frame.
MERGE_GAIN = 0.2
#: Until the sound picks a look-alike, take the annotated one (followed by its motion) to be the heard one, once
#: the sound rises and falls (without a sound that does, nothing changes).
TRUST_ANNOTATED = True
#: The annotated look-alike is also taken to be the heard one once the loudness rises and falls by this much, short
#: of ``min_range``, when the annotated one's state follows it closely (:data:`CONFIRM_SCORE`) over a whole window:
#: a quieter sound that still confirms the annotation. None: only at ``min_range``.
CONFIRM_RANGE: float | None = 1.0
#: How closely (correlation) the annotated look-alike's state must follow that quieter sound. Noise alone rarely
#: does so this closely over a whole window (at ``min_score`` over ``pick_frames`` frames it did in 18 of 128
#: silent development clips, over the window at this score in 1 of 128).
CONFIRM_SCORE = 0.8
#: A louder sound (rising and falling by this much, still short of ``min_range``) confirms the annotated look-alike
#: when its state follows it at ``min_score`` over ``pick_frames`` frames (the pick's own test). None: not used.
CONFIRM_LOUDER: float | None = 2.5
#: A region this many times its holder's size, with another track predicted near it, is taken for two look-alikes.
BLOB_GROWTH = 1.25
#: A track whose nearest region is such a grown region, taken by another track, shares it rather than take a
#: farther free region (a patch of the look-alikes' colour, say) for its own.
SHARE_NEARER_BLOB = True
#: Inside a shared region, tell the heard look-alike's pixels by brightness where brightness is what follows the
#: sound (:meth:`SoundIdentity._brightness_part`), and remember from that which one is in front.
SPLIT_BY_BRIGHTNESS = True
#: The two brightness classes of a shared region count as two look-alikes when their means differ this many times
#: (the objects' own texture varies their brightness by up to about 15 %).
SPLIT_RATIO = 1.4
#: Also untangle two tracks that just parted when the other's states since the parting follow the line fitted to
#: the heard past this many times better than its own continuation's (:meth:`SoundIdentity._predicts_crossed`).
PREDICT_UNTANGLE = True
#: How many times better (median squared error against that line) the other's states must follow it.
UNTANGLE_RATIO = 4.0
#: A look-alike that shows up near a track it lately shared a region with, while that track's partner (not the
#: heard one) is lost from view, is taken to be that lost partner (its motion in the merge was a guess) rather
#: than a new look-alike, so that the sound can untangle the two (:meth:`SoundIdentity._adopt`).
ADOPT_NEAR_PARTNER = True
#: Untangle two tracks on the frames since they last shared a region, though either has shared one with a third
#: track since (else only the tracks of the last merge are checked, and a second merge hides the first's swap).
REMEMBER_PARTNERS = True
#: The brightness the sound predicts must lie this far (a fraction of the classes' gap) past their midpoint.
SPLIT_SURE = 0.3
#: A region whose outline is fainter than the finder's edge test but at least this many times the object's (a
#: blurred look-alike, or a dim one on a background of nearly its brightness) may still be held by a track
#: predicted near it (within two radii), though it records no state and starts no track. None: not used.
FAINT_EDGE: float | None = 0.15
#: For how many frames running a track may hold (or share) only faint regions: a look-alike is blurred or dim for
#: a few frames, while a track that holds faint regions for long is following a background patch.
FAINT_FRAMES = 2
#: When the heard track moves again while masks are still held, the held frames that the earlier move mended with
#: another track and this move does not mend go back to what was first output (a pick that was wrong otherwise
#: leaves its mending in the frames before the right track's parting).
UNDO_REVERSED = True


def loudness(window: np.ndarray | torch.Tensor, samples: int | None = None) -> float | None:
    """Log mean energy of the last ``samples`` (default :data:`LOUDNESS_SAMPLES`: 20 ms) of a mono 16 kHz window
    (the sound heard at the frame); None where most of those samples are exactly zero (padding before the audio
    starts, a dropout, a muted input): nothing was heard."""
    samples = LOUDNESS_SAMPLES if samples is None else samples
    recent = torch.nan_to_num(torch.as_tensor(window, dtype=torch.float32).flatten()[-samples:])
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
    similar background colour are not taken for objects. A region larger than 1.3 times the object is split at
    narrow necks, so that look-alikes that touch are still found one by one.
    """

    def __init__(self, image: np.ndarray, mask: np.ndarray, colour: float = 2.0, edge: float = 0.3) -> None:
        mask = np.asarray(mask, dtype=bool)
        self.area = int(mask.sum())
        self.edge = edge
        index = _chroma_index(image)
        object_hist, rest_hist = (_smoothed_histogram(index[m]) for m in (mask, ~mask))
        #: Per chromaticity bin, the object's share of the two densities (object's, rest of the frame's).
        self._object_share = object_hist / (object_hist + rest_hist + 1e-12)
        self._typical = self._object_share > colour / (1 + colour)
        self.outline = _outline_gradient(_gradient(image), mask)
        self._mask = mask
        ys, xs = np.nonzero(mask) if self.area else (np.zeros(1, int), np.zeros(1, int))
        #: The object's shape cropped to its bounding box, and its centre (y, x) in that crop.
        self.template = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        self.template_centre = _centre(self.template) if self.area else np.zeros(2)

    def with_colour(self, colour: float) -> LookalikeFinder:
        """The same finder with another colour test (nothing learnt from the annotated frame is computed again)."""
        other = copy.copy(self)
        other._typical = self._object_share > colour / (1 + colour)
        return other

    def regions(self, image: np.ndarray) -> list[np.ndarray]:
        """Boolean masks of the regions of ``image`` that look like the object (the object itself included)."""
        return self.regions_and_faint(image)[0]

    def regions_and_faint(self, image: np.ndarray, faint: float | None = None) -> tuple[list, list]:
        """:meth:`regions`, and the object-sized regions of the object's colour whose outline passes ``faint``
        times the object's outline gradient but not the edge test (none when ``faint`` is None)."""
        typical = self._typical[_chroma_index(image)].astype(np.uint8)
        typical = cv2.morphologyEx(typical, cv2.MORPH_OPEN, _KERNEL3)
        typical = cv2.morphologyEx(typical, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        contours, _ = cv2.findContours(typical, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        gradient = _gradient(image)
        found, weak = [], []
        for contour in contours:
            if cv2.contourArea(contour) < 0.4 * self.area:
                continue
            region = np.zeros_like(typical)
            cv2.drawContours(region, [contour], -1, 1, thickness=cv2.FILLED)
            region = region.astype(bool)
            outline = _outline_gradient(gradient, region)
            if outline >= self.edge * self.outline:
                found.extend(_split_at_necks(region) if region.sum() > 1.3 * self.area else [region])
            elif faint is not None and outline >= faint * self.outline and region.sum() <= 2.5 * self.area:
                weak.append(region)
        return found, weak

    def lookalikes(self, image: np.ndarray, shape: float = 0.5) -> list[np.ndarray]:
        """In the annotated frame: the regions other than the object itself that have its size (0.4 to 2.5
        times) and shape (IoU >= ``shape`` with the object's mask scaled to their area and put on their
        centre)."""
        centre = _centre(self._mask)
        found = []
        for region in self.regions(image):
            size = int(region.sum())
            if (region & self._mask).sum() > 0.2 * size or not 0.4 * self.area <= size <= 2.5 * self.area:
                continue  # the object itself, or not its size (a piece split off a larger region, say)
            placed = _place(self._mask, centre, _centre(region), math.sqrt(size / self.area))
            if (placed & region).sum() >= shape * (placed | region).sum():
                found.append(region)
        return found


def find_lookalikes(
    image: np.ndarray, mask: np.ndarray, colours: tuple[float, ...] = COLOUR_STEPS
) -> LookalikeFinder | None:
    """A :class:`LookalikeFinder` for the object ``mask`` in ``image`` that finds look-alikes there, or None.

    The colour tests ``colours`` are tried in turn and the first that finds a look-alike is kept: the default,
    then stricter ones (a background patch of nearly the object's colour joins the object's colour region at a
    loose test, so the region fails the outline test and nothing is found; at a stricter one it falls away), then
    a looser one (an object whose shaded or textured parts are too common elsewhere in the frame)."""
    finder = LookalikeFinder(image, mask)
    if finder.area < 16:
        return None
    for colour in colours:
        tested = finder.with_colour(colour)
        if tested.lookalikes(image):
            return tested
    return None


def _split_at_necks(region: np.ndarray) -> list[np.ndarray]:
    """A region that is several touching look-alikes, split at the narrow necks between them: the blobs' cores
    (pixels at least 0.6 times the region's largest distance from its outline) each take the pixels nearest to
    them. A region with one core (one object, or two overlapping far) stays whole."""
    inside = region.astype(np.uint8)
    depth = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    count, cores = cv2.connectedComponents((depth > 0.6 * depth.max()).astype(np.uint8))
    if count <= 2:
        return [region]
    reach = np.stack([cv2.distanceTransform((cores != k).astype(np.uint8), cv2.DIST_L2, 5) for k in range(1, count)])
    nearest = reach.argmin(axis=0)
    return [region & (nearest == k) for k in range(count - 1)]


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


def _place(
    mask: np.ndarray, centre: np.ndarray, at: np.ndarray, scale: float, size: tuple[int, int] | None = None
) -> np.ndarray:
    """``mask``'s shape scaled by ``scale`` about ``centre`` (y, x) and moved to ``at`` in a frame of ``size``
    (height, width; default ``mask``'s)."""
    height, width = size or mask.shape
    matrix = np.array([[scale, 0, at[1] - scale * centre[1]], [0, scale, at[0] - scale * centre[0]]], np.float32)
    placed = cv2.warpAffine(mask.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST)
    return placed.astype(bool)


def region_state(gray: np.ndarray, region: np.ndarray) -> np.ndarray:
    """(3,) visible state of a region: mean brightness, log area, and the fraction of its pixels darker than
    half its median (a mouth)."""
    inside = gray[region]
    return np.array([inside.mean(), math.log(inside.size), (inside < 0.5 * np.median(inside)).mean()])


@dataclass(eq=False)  # tracks are told apart by identity
class _Track:
    """One look-alike followed through the frames: where it is, how it moves, its visible state per frame."""

    centre: np.ndarray  # (y, x), last seen or predicted
    velocity: np.ndarray  # (dy, dx) per frame
    states: deque  # (3,) per frame of the last 3 windows; NaN where hidden, merged with another or implausible
    region: np.ndarray | None = None  # the region it holds in the last frame (None: not seen alone)
    missed: int = 0  # frames running without a region of its own
    size: float = 0.0  # its area when last seen alone
    merged: np.ndarray | None = None  # the region it shares with other tracks in the last frame, if any
    share: np.ndarray | None = None  # the part of that region only its fitted shape covers
    contested: np.ndarray | None = None  # the part its fitted shape shares with another track's
    partners: list[_Track] = field(default_factory=list)  # the tracks it last shared a region with
    parted: int = 0  # frames since it last shared a region
    met: dict = field(default_factory=dict)  # every track it shared a region with -> frames since, while remembered
    faint: int = 0  # frames running in which the regions it held or shared were faint ones


def _crop(region: np.ndarray) -> tuple[int, int, np.ndarray]:
    """A region as (top, left, its bounding box's pixels): a track's past regions kept small."""
    ys, xs = np.nonzero(region)
    y0, x0 = int(ys.min()), int(xs.min())
    return y0, x0, region[y0 : int(ys.max()) + 1, x0 : int(xs.max()) + 1].copy()


def _uncrop(crop: tuple[int, int, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """The full-frame mask of a :func:`_crop`."""
    y0, x0, pixels = crop
    region = np.zeros(shape[:2], bool)
    region[y0 : y0 + pixels.shape[0], x0 : x0 + pixels.shape[1]] = pixels
    return region


def _centre(region: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(region)
    return np.array([ys.mean(), xs.mean()])


def _covers(region: np.ndarray, point: np.ndarray) -> bool:
    """Whether the (y, x) ``point`` lies in ``region``."""
    y, x = (int(round(v)) for v in point)
    return 0 <= y < region.shape[0] and 0 <= x < region.shape[1] and bool(region[y, x])


class SoundIdentity:
    """Decides, from the sound, which look-alike is one object.

    The look-alike regions of every frame are followed as tracks: each track's predicted position (last position
    plus its velocity) is matched to the nearest region, nearest pairs first, so a track keeps its past through
    crossings, touching and short occlusions (while two tracks share one region their state is not recorded).
    Each track's visible state is correlated with the loudness over the frames of the window in which both are
    known.

    ``window``: frames (with both state and sound known, within the last three windows) over which states are
    correlated with the loudness; ``margin``: how much better (in correlation) the heard track must follow the
    sound than any other; ``patience``: for how many frames running;
    ``min_range``: the loudness (natural log of energy) must rise and fall by at least this much within the
    window, else the sound says nothing; ``min_score``: the heard track's own correlation must reach this;
    ``min_frames``: tracks are scored once they have this many frames with both state and sound; ``follow``:
    once the sound has pointed to a track, keep re-annotating the object with it while the sound is unclear;
    ``pick_frames``: the sound picks a track only when it and the runner-up each have this many such frames in the
    window (two independent loudness envelopes often agree over four or five frames by chance); ``lookback``: how
    many frames back an untangle may mend the object's mask (:meth:`take_revisions`; 0: none, as for a live stream).
    """

    def __init__(
        self,
        finder: LookalikeFinder,
        window: int = 12,
        margin: float = 0.15,
        patience: int = 1,
        min_range: float = 3.0,
        min_score: float = 0.6,
        min_frames: int = 4,
        follow: bool = True,
        pick_frames: int = 8,
        lookback: int = 0,
    ) -> None:
        if window < 4:
            raise ValueError(f"the identity window must be at least 4 frames, got {window}")
        self.finder = finder
        self.window, self.margin, self.patience, self.min_range = window, margin, patience, min_range
        self.min_score = min_score
        self.min_frames = max(4, min(min_frames, window))
        self.follow = follow
        self.pick_frames = max(self.min_frames, min(pick_frames, window))
        self.heard_track: _Track | None = None  # the track the sound last pointed to, while it is followed
        self.radius = math.sqrt(max(finder.area, 1) / math.pi)
        self.tracks: list[_Track] = []
        self.memory = 3 * window  # frames of states kept, so that scores reach back past merges and occlusions
        self._heard: deque[float] = deque(maxlen=self.memory)
        self._levels: deque[float] = deque(maxlen=self.window)  # the loudness for the gate, the last window
        self.annotated_track: _Track | None = None  # the annotated look-alike's track, until the sound picks one
        self._streak = 0
        self._behind: bool | None = None  # whether the heard look-alike is behind, in the region it now shares
        self.lookback = max(int(lookback), 0)
        # per frame of the last ``lookback``: where each track seen on its own was (a crop of its region)
        self._seen: deque[dict[_Track, tuple[int, int, np.ndarray]]] = deque(maxlen=self.lookback)
        self._mended: deque[_Track | None] = deque(maxlen=self.lookback)  # which track mended each frame's mask
        self._revisions: list[tuple[int, np.ndarray | None]] = []

    def push(self, image: np.ndarray, heard: float | None, level: float | None = None) -> None:
        """Record one frame (``image``: (H, W, 3) RGB 0..255) and its loudness (None: nothing heard; such frames
        are left out of the correlations); ``level``: the loudness over :data:`GATE_SAMPLES` for the gate
        (:meth:`heard_range`), by default ``heard``."""
        regions, faint = self.finder.regions_and_faint(image, FAINT_EDGE)
        strong = len(regions)
        regions = regions + faint
        gray = np.asarray(image, dtype=np.float32).mean(axis=2)
        self._gray = gray
        centres = [_centre(r) for r in regions]
        sizes = [int(r.sum()) for r in regions]
        predicted = [t.centre + t.velocity for t in self.tracks]
        holders: list[int | None] = [None] * len(self.tracks)  # region each track is matched to
        pairs = sorted(
            (float(np.hypot(*(c - p))), ti, ri) for ti, p in enumerate(predicted) for ri, c in enumerate(centres)
        )
        taken: set[int] = set()

        def usable(ti: int, ri: int) -> bool:
            """Whether track ``ti`` may hold or share region ``ri`` (a faint one only for a few frames running)."""
            return ri < strong or self.tracks[ti].faint < FAINT_FRAMES

        def grown_within(ri: int, distance: float) -> bool:
            """Whether taken region ``ri`` has grown well past its holder's size (two look-alikes seen as one
            blob) and ``distance`` from it is close enough for a second look-alike in it."""
            size = sizes[ri]
            grown = size >= BLOB_GROWTH * max(self.tracks[holders.index(ri)].size, 1.0)
            return grown and distance <= math.sqrt(size / math.pi) + self.radius

        blocked: dict[int, int] = {}  # track -> the grown region nearer than any free one, which it shares
        for distance, ti, ri in pairs:
            if holders[ti] is not None or ti in blocked or not usable(ti, ri):
                continue
            reach = 2.5 * self.radius + 2 * math.sqrt(sizes[ri] / math.pi) if ri < strong else 2 * self.radius
            if ri not in taken and distance <= reach:
                holders[ti] = ri
                taken.add(ri)
            elif SHARE_NEARER_BLOB and ri in taken and grown_within(ri, distance):
                blocked[ti] = ri
        # A track left without a region whose predicted centre lies in a taken region shares it (merged); so does
        # one predicted near a taken region that has grown well past its holder's size (two look-alikes seen as
        # one blob, the second one's motion having overshot it), and one for which such a region was nearer than
        # any free one (``blocked``).
        sharers: dict[int, list[int]] = {}
        for ti, p in enumerate(predicted):
            inside = [ri for ri in taken if usable(ti, ri) and _covers(regions[ri], p)] if holders[ti] is None else []
            if holders[ti] is None and not inside and ti in blocked:
                inside = [blocked[ti]]
            if holders[ti] is None and not inside:
                near = [ri for ri in taken if grown_within(ri, float(np.hypot(*(centres[ri] - p))))]
                inside = [ri for ri in near if usable(ti, ri)]
            if inside:
                sharers.setdefault(inside[0], []).append(ti)
        for ri, members in sharers.items():
            members.append(holders.index(ri))
            fitted = self._fit(regions[ri], [predicted[ti] for ti in members], [self.tracks[ti] for ti in members])
            for ti, (centre, share, contested) in zip(members, fitted, strict=True):
                track = self.tracks[ti]
                track.velocity = (1 - MERGE_GAIN) * track.velocity + MERGE_GAIN * (centre - track.centre)
                predicted[ti] = centre
                track.merged, track.share, track.contested, track.parted = regions[ri], share, contested, 0
                track.partners = [self.tracks[tj] for tj in members if tj != ti]
                track.met.update((partner, 0) for partner in track.partners)
        shared = set(sharers)
        sharing = {ti: ri for ri, members in sharers.items() for ti in members}  # track -> the region it shares
        for ti, track in enumerate(self.tracks):
            ri = holders[ti]
            state = np.full(3, np.nan)
            held = ri if ri is not None else sharing.get(ti)
            if held is not None:
                track.faint = track.faint + 1 if held >= strong else 0
            if ti not in sharing:
                track.merged = track.share = track.contested = None
                track.parted += 1
            if ri is None and track.merged is not None:
                track.centre, track.region, track.missed = predicted[ti], None, 0
            elif ri is None:
                track.centre, track.velocity, track.region = predicted[ti], track.velocity * 0.9, None
                track.missed += 1
            else:
                new_centre = centres[ri]
                alone = ri not in shared and self._object_sized(sizes[ri])
                if alone:
                    track.velocity = 0.5 * track.velocity + 0.5 * (new_centre - track.centre)
                    track.size = sizes[ri]
                    if ri < strong:  # a faint region's state is not trusted to follow the sound
                        state = region_state(gray, regions[ri])
                elif track.merged is not None or _covers(regions[ri], predicted[ti]):
                    new_centre = predicted[ti]  # merged: where the fit put it, else moving as before
                track.centre, track.region, track.missed = new_centre, regions[ri] if alone else None, 0
            track.states.append(state)
        self.tracks = [t for t in self.tracks if t.missed <= self.window]
        for track in self.tracks:
            track.met = {
                other: since + (track.merged is None or other not in track.partners)
                for other, since in track.met.items()
                if other in self.tracks and since < self.memory
            }
        if all(t is not self.heard_track for t in self.tracks):
            self.heard_track = None  # the heard look-alike was not seen for a whole window
        for ri, region in enumerate(regions):
            if ri not in taken and ri < strong and self._object_sized(sizes[ri]):
                if ADOPT_NEAR_PARTNER and self._adopt(centres[ri], region, sizes[ri], gray):
                    continue
                states: deque = deque([np.full(3, np.nan)] * (len(self._heard)), maxlen=self.memory)
                states.append(region_state(gray, region))
                self.tracks.append(_Track(centres[ri], np.zeros(2), states, region, size=sizes[ri]))
        self._heard.append(math.nan if heard is None else heard)
        level = heard if level is None else level
        self._levels.append(math.nan if level is None else level)
        if len(self._heard) == 1:
            own = [t for t in self.tracks if t.region is not None and (t.region & self.finder._mask).any()]
            self.annotated_track = max(own, key=lambda t: (t.region & self.finder._mask).sum()) if own else None
        if self.lookback:
            self._seen.append({t: _crop(t.region) for t in self.tracks if t.region is not None})
            self._mended.append(None)
        self._untangle()

    def _adopt(self, centre: np.ndarray, region: np.ndarray, size: int, gray: np.ndarray) -> bool:
        """Give a region no track holds to a lost track (no region, none shared) that lately shared a region with
        a track now within 4 radii of it: the look-alike that left a merge where the lost track's motion did not
        put it, or came out from behind its partner. The heard track is not given one so: which of two look-alikes
        leaving a merge is which is a guess, and for the heard one the segmentation's own guess stands until the
        sound tells. Returns whether a track took the region."""
        best, nearest = None, 4 * self.radius
        for track in self.tracks:
            if track.region is not None or track.merged is not None or not track.missed or track is self.heard_track:
                continue
            for partner in track.partners:
                distance = float(np.hypot(*(partner.centre - centre)))
                if partner in self.tracks and distance <= nearest:
                    best, nearest = track, distance
        if best is None:
            return False
        best.centre, best.velocity, best.region, best.size, best.missed = centre, np.zeros(2), region, size, 0
        best.states[-1] = region_state(gray, region)
        return True

    def _untangle(self) -> None:
        """Swap the pasts of two tracks that just parted when the sound says they were swapped in the crossing.

        Which look-alike left a merge on which side is a guess from motion; the sound checks it: for two tracks
        that last shared a region at least 2 frames ago (and less than ``memory`` frames), their states before
        the parting are joined to their own states since, and to each other's (whether or not either has shared a
        region with a third track since: :data:`REMEMBER_PARTNERS`). When the crossed pair follows the
        sound better than the straight pair (by ``margin``), or the frames since the parting alone say they were
        swapped (:meth:`_predicts_crossed`: the heard past would otherwise dominate the correlations until the
        window has rolled on, and twins that part for a few frames only would never be untangled), the tracks
        exchange their pasts (and which one is heard); where they are stays."""
        heard = np.array(self._heard)
        for a in self.tracks:
            pairs = a.met.items() if REMEMBER_PARTNERS else ((b, min(a.parted, b.parted)) for b in a.partners)
            for b, since in pairs:
                if b not in self.tracks or not 2 <= since < len(heard) or id(a) > id(b):
                    continue
                if not REMEMBER_PARTNERS and a not in b.partners:
                    continue
                before_a, after_a = list(a.states)[:-since], list(a.states)[-since:]
                before_b, after_b = list(b.states)[:-since], list(b.states)[-since:]
                straight = [self._follows(before_a + after_a, heard), self._follows(before_b + after_b, heard)]
                crossed = [self._follows(before_b + after_a, heard), self._follows(before_a + after_b, heard)]
                told = np.isfinite(straight + crossed).all() and max(crossed) - max(straight) > self.margin
                if PREDICT_UNTANGLE and not told:
                    told = self._predicts_crossed([before_a, before_b], [after_a, after_b], heard)
                if told:
                    a.states = deque(before_b + after_a, maxlen=self.memory)
                    b.states = deque(before_a + after_b, maxlen=self.memory)
                    if self.heard_track is a or self.heard_track is b:
                        self.heard_track = b if self.heard_track is a else a
                        self._revise(self.heard_track, since)
                    if self.annotated_track is a or self.annotated_track is b:
                        self.annotated_track = b if self.annotated_track is a else a

    def _revise(self, track: _Track, since: int) -> None:
        """After an untangle (or the sound's pick) made ``track`` the heard one: its regions in the last ``since`` - 1
        frames (the frames since it parted from another track, of the last ``lookback``, in which it was seen on its
        own) are the object's, in place of what was output then. With :data:`UNDO_REVERSED`, the other frames still
        held that an earlier move mended with another track go back to what was first output (a None mask)."""
        shape = self._gray.shape
        for back in range(1, len(self._seen)):
            crop = self._seen[-1 - back].get(track) if back < since else None
            if crop is not None:
                self._revisions.append((back, _uncrop(crop, shape)))
                self._mended[-1 - back] = track
            elif UNDO_REVERSED and self._mended[-1 - back] not in (None, track):
                self._revisions.append((back, None))
                self._mended[-1 - back] = None

    def take_revisions(self) -> list[tuple[int, np.ndarray | None]]:
        """The corrections found since the last call: (how many frames before the last one pushed, the object's mask
        then, or None to put back what was first output). Only with ``lookback`` (a file, whose masks can wait before
        they are written): once the sound tells that two look-alikes were swapped as they parted, or picks another
        look-alike as the heard one, the frames since that look-alike last parted from another are mended too, and
        an earlier move's mending of other frames is undone (:data:`UNDO_REVERSED`)."""
        revisions, self._revisions = self._revisions, []
        return revisions

    def _predicts_crossed(self, befores: list[list], afters: list[list], heard: np.ndarray) -> bool:
        """Whether the sound says two tracks that just parted were swapped, judged on the frames since the
        parting alone: the past that follows the sound (clearly better than the other's, by ``margin``) gives a
        line from loudness to state; the swap is told when the other track's states since follow that line
        :data:`UNTANGLE_RATIO` times better (median squared error, so that one frame spoilt by a touching object
        does not decide) than its own continuation's do, and its own is off by more than 2 of the line's residual
        deviations (three frames at least)."""
        since = len(afters[0])
        past = heard[:-since]
        corrs = [self._correlations(before, past) for before in befores]
        if any(corr is None for corr in corrs):
            return False
        best = [float(corr.max()) for corr in corrs]
        x = int(np.argmax(best))
        if best[x] < self.min_score or best[x] - best[1 - x] <= self.margin:
            return False
        dim = int(np.argmax(corrs[x]))
        states = np.array(befores[x])[-len(past) :, dim]
        loud = past[-len(states) :]
        known = np.flatnonzero(np.isfinite(loud) & np.isfinite(states))[-self.window :]
        slope, intercept = np.polyfit(loud[known], states[known], 1)
        residual = states[known] - (intercept + slope * loud[known])
        spread = max(float(residual.std()), 0.2 * float(states[known].std()), 1e-6)
        now = heard[-since:]
        own, other = (np.array(afters[i])[:, dim] for i in (x, 1 - x))
        seen = np.isfinite(now) & np.isfinite(own) & np.isfinite(other)
        if seen.sum() < 3:
            return False
        expected = intercept + slope * now[seen]
        own_error = float(np.median(((own[seen] - expected) / spread) ** 2))
        other_error = float(np.median(((other[seen] - expected) / spread) ** 2))
        return own_error > 4.0 and own_error > UNTANGLE_RATIO * other_error

    def _follows(self, states: list[np.ndarray], heard: np.ndarray) -> float:
        """How well a track's states (one per frame, the last matching the last loudness) follow the loudness
        over the last ``window`` frames in which both are known (however long ago, within ``memory``): the
        largest over the state's dimensions of the correlation; NaN with fewer than ``min_frames`` such frames."""
        corr = self._correlations(states, heard)
        return math.nan if corr is None else float(corr.max())

    def _correlations(self, states: list[np.ndarray] | np.ndarray, heard: np.ndarray) -> np.ndarray | None:
        """Per state dimension, the correlation of the states with the loudness over the last ``window`` frames in
        which both are known (dimensions that do not vary: 0); None with fewer than ``min_frames`` such frames."""
        steps = np.array(states)[-len(heard) :]
        heard = heard[-len(steps) :]
        known = np.flatnonzero(np.isfinite(heard) & np.isfinite(steps[:, 0]))[-self.window :]
        if known.size < self.min_frames:
            return None
        louder = heard[known] - heard[known].mean()
        steps = steps[known] - steps[known].mean(axis=0)
        power = (steps**2).sum(axis=0)
        corr = (steps * louder[:, None]).sum(axis=0) / (np.sqrt(power * (louder**2).sum()) + 1e-12)
        corr[power < 1e-12] = 0.0
        return corr

    def _fit(
        self, region: np.ndarray, centres: list[np.ndarray], tracks: list[_Track]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Place the object's shape for each track sharing ``region``, starting at ``centres`` and moved and
        scaled a little at a time while the shapes together cover the region better (IoU, less ``FIT_STAY`` per
        squared radius moved). Returns, per track, its fitted centre, its share of the region (the region within
        its shape and outside every other shape) and its contested part (the region within its shape and
        another's: which track is in front there cannot be told from the outline)."""
        finder = self.finder
        ys, xs = np.nonzero(region)
        pad = int(2 * self.radius) + 2
        y0, x0 = max(int(ys.min()) - pad, 0), max(int(xs.min()) - pad, 0)
        y1, x1 = min(int(ys.max()) + pad + 1, region.shape[0]), min(int(xs.max()) + pad + 1, region.shape[1])
        crop = region[y0:y1, x0:x1]
        origin = np.array([y0, x0], dtype=float)
        at = [np.asarray(c, dtype=float) - origin for c in centres]
        scales = [math.sqrt(t.size / finder.area) if t.size else 1.0 for t in tracks]

        def place(i: int) -> np.ndarray:
            return _place(finder.template, finder.template_centre, at[i], scales[i], crop.shape)

        def cover(shapes: list[np.ndarray]) -> float:
            union = np.logical_or.reduce(shapes)
            return (union & crop).sum() / max((union | crop).sum(), 1)

        shapes = [place(i) for i in range(len(at))]
        start = [a.copy() for a in at]
        best = cover(shapes)
        for step in (4.0, 2.0, 1.0):
            moves = [(step, 0.0, 1.0), (-step, 0.0, 1.0), (0.0, step, 1.0), (0.0, -step, 1.0)]
            moves += [(0.0, 0.0, 1 + step / 80), (0.0, 0.0, 1 - step / 80)]
            for _ in range(3):
                improved = False
                for i in range(len(at)):
                    for dy, dx, grow in moves:
                        if not 0.6 <= (scales[i] * grow) ** 2 <= 2.5:
                            continue
                        old_at, old_scale = at[i], scales[i]
                        at[i], scales[i] = old_at + np.array([dy, dx]), old_scale * grow
                        trial = [*shapes[:i], place(i), *shapes[i + 1 :]]
                        score = cover(trial) - FIT_STAY * float(np.sum((at[i] - start[i]) ** 2)) / self.radius**2
                        if score > best + 1e-9:
                            best, shapes, improved = score, trial, True
                        else:
                            at[i], scales[i] = old_at, old_scale
                if not improved:
                    break
        fitted = []
        for i in range(len(at)):
            share = np.zeros_like(region)
            others = np.logical_or.reduce([shapes[j] for j in range(len(at)) if j != i])
            contested = np.zeros_like(region)
            share[y0:y1, x0:x1] = crop & shapes[i] & ~others
            contested[y0:y1, x0:x1] = crop & shapes[i] & others
            fitted.append((at[i] + origin, share, contested))
        return fitted

    def correct(self, current: np.ndarray) -> tuple[np.ndarray | None, bool]:
        """The object's mask as the sound has it, from ``current`` ((H, W) bool, its segmentation in the last frame
        pushed): the heard track's region when the segmentation strays from it (a re-annotation: the second value
        is True; see :meth:`decide`); else, while the heard track shares a region, its share of it
        (:meth:`heard_share`); else the segmentation less the other look-alikes (:meth:`others`). (None, False)
        where the segmentation stands."""
        region = self.decide(current)
        if region is not None:
            return region, True
        share = self.heard_share(current)
        if share is not None:
            return share, False
        others = self.others()
        if others is not None and (current & others).any():
            return current & ~others, False
        return None, False

    def heard_share(self, current: np.ndarray) -> np.ndarray | None:
        """While the heard track shares a region with other look-alikes (they overlap or touch): the part of that
        region that only its fitted shape covers, plus the part of its shape that overlaps another's where
        ``current`` (the segmentation, (H, W) bool) has the object: which look-alike is in front there is the
        segmentation's call, the outline cannot tell (see :meth:`_fit`). Else None.

        Where brightness follows the sound and the look-alikes in the region differ in it, the heard one's part is
        told by brightness instead (:meth:`_brightness_part`); that also says whether it is in front (its part
        is its whole shape) or behind, and until the region parts, frames that cannot be told so give the heard
        one its fitted share alone (behind) or with its whole contested part (in front)."""
        track = self.heard_track
        if track is None or track.merged is None:
            self._behind = None
            return None
        if SPLIT_BY_BRIGHTNESS:
            part = self._brightness_part(track)
            if part is not None:
                self._behind = bool(part.sum() < 0.8 * (track.merged & ~part).sum())
                return part
            if self._behind is not None:
                return track.share if self._behind else track.share | track.contested
        return track.share | (track.contested & current)

    def _predicted_state(self, track: _Track) -> tuple[int, float] | None:
        """The state that follows the sound in the track's frames (its index) and the value the line fitted to it
        against the loudness predicts at the last loudness; None where the last frame was not heard or the track's
        state does not follow the sound (``min_score``)."""
        heard = np.array(self._heard)
        states = np.array(track.states)[-len(heard) :]
        heard = heard[-len(states) :]
        if not math.isfinite(heard[-1]):
            return None
        known = np.flatnonzero(np.isfinite(heard) & np.isfinite(states[:, 0]))
        if known.size < self.min_frames:
            return None
        corr = self._correlations(states[known], heard[known])
        if corr is None or corr.max() < self.min_score:
            return None
        dim = int(np.argmax(corr))
        slope, intercept = np.polyfit(heard[known], states[known, dim], 1)
        return dim, float(intercept + slope * heard[-1])

    def _brightness_part(self, track: _Track) -> np.ndarray | None:
        """The heard track's pixels of the region it shares, told by brightness, or None where that cannot be told.

        Only where brightness is the state that follows the sound (in the track's own frames seen alone): then the
        look-alikes in one region are as bright as their own sounds make them, so the region falls into a darker and
        a brighter part (Otsu's threshold) when their means differ by :data:`SPLIT_RATIO`; the heard one is the part
        nearer the brightness the loudness now predicts (a line fitted to the track's brightness against the
        loudness), when that is clearly so (:data:`SPLIT_SURE`). The part (its largest connected piece) is what shows
        of the heard look-alike, whether it is in front or behind; the outline cannot say which."""
        predicted = self._predicted_state(track)
        if predicted is None or predicted[0] != 0:  # brightness is state 0 (:func:`region_state`)
            return None
        _, expected = predicted
        smooth = np.clip(self._gray, 0, 255).astype(np.uint8)
        fitted = track.share | track.contested
        for partner in track.partners:
            if partner.merged is track.merged:
                fitted |= partner.share | partner.contested
        within = track.merged & fitted  # not a patch of the object's colour that joined the region
        if within.sum() < 0.2 * self.finder.area:
            return None
        values = smooth[within]
        cut, _ = cv2.threshold(values.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        dark, bright = values <= cut, values > cut
        if min(dark.mean(), bright.mean()) < 0.08:
            return None
        low, high = float(values[dark].mean()), float(values[bright].mean())
        if high < SPLIT_RATIO * max(low, 1.0):
            return None
        position = (expected - low) / (high - low)
        if abs(position - 0.5) < SPLIT_SURE:
            return None
        side = smooth > cut if position > 0.5 else smooth <= cut
        part = cv2.morphologyEx((within & side).astype(np.uint8), cv2.MORPH_OPEN, _KERNEL3)
        count, pieces, stats, _ = cv2.connectedComponentsWithStats(part)
        if count < 2:
            return None
        part = pieces == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        return part if part.sum() >= 0.1 * self.finder.area else None

    def others(self) -> np.ndarray | None:
        """While the heard track is seen on its own: the regions held by every other look-alike seen on its own in
        the last frame (the object is none of them); else None (when the heard look-alike is lost from view, the
        sound's pick may be the mistake, and the segmentation stands)."""
        track = self.heard_track
        if track is None or track.region is None:
            return None
        regions = [t.region for t in self.tracks if t is not track and t.region is not None]
        return np.logical_or.reduce(regions) if regions else None

    def _object_sized(self, size: int) -> bool:
        """Whether a region is the size of one look-alike (0.3 to 2.5 times the annotated object)."""
        return 0.3 * self.finder.area <= size <= 2.5 * self.finder.area

    def heard_range(self) -> float:
        """How far the loudness (the gate's: ``level`` in :meth:`push`) rose and fell within the window (0 with
        fewer than ``min_frames`` heard)."""
        heard = np.array(self._levels)
        heard = heard[np.isfinite(heard)]
        return float(np.ptp(heard)) if heard.size >= self.min_frames else 0.0

    def _evidence(self, track: _Track) -> int:
        """Frames within the window in which both the track's state and the sound are known."""
        steps = np.array(track.states)[-len(self._heard) :, 0]
        heard = np.array(self._heard)[-len(steps) :]
        return min(int((np.isfinite(steps) & np.isfinite(heard)).sum()), self.window)

    def scores(self) -> np.ndarray:
        """(tracks,) how well each track's state follows the loudness over the window: the largest over its
        states of the correlation (louder: brighter, larger, mouth wider); NaN for a track with fewer than
        ``min_frames`` frames with both state and sound."""
        heard = np.array(self._heard)
        return np.array([self._follows(list(t.states), heard) for t in self.tracks], dtype=float)

    def _confirms_annotation(self, scores: np.ndarray) -> bool:
        """Whether a sound too quiet for a pick (short of ``min_range``) is followed by the annotated look-alike's
        state (``scores``: :meth:`scores`) so that the annotated one may be trusted: closely (:data:`CONFIRM_SCORE`)
        over a whole window when it rises and falls by :data:`CONFIRM_RANGE`, or as a pick asks (``min_score`` over
        ``pick_frames`` frames) when it rises and falls by :data:`CONFIRM_LOUDER`."""
        track = self.annotated_track
        if track not in self.tracks:
            return False
        score, evidence, loudness_range = scores[self.tracks.index(track)], self._evidence(track), self.heard_range()
        louder = CONFIRM_LOUDER is not None and loudness_range >= CONFIRM_LOUDER
        if louder and score >= self.min_score and evidence >= self.pick_frames:
            return True
        quieter = CONFIRM_RANGE is not None and loudness_range >= CONFIRM_RANGE
        return quieter and score >= CONFIRM_SCORE and evidence >= self.window

    def decide(self, current: np.ndarray) -> np.ndarray | None:
        """The region to re-annotate the object with, or None. ``current``: (H, W) bool, the object's mask in the
        last frame pushed. The heard track is the one that follows the sound better than every other track by
        ``margin`` for ``patience`` frames running, judged on at least ``pick_frames`` frames; with ``follow``, it
        stays the heard track (followed by its motion) until another one beats it so. Before any track has won so,
        the annotated look-alike's track is the heard one once the loudness rises and falls by ``min_range``
        (:data:`TRUST_ANNOTATED`), or by less when the annotated one's state follows it
        (:meth:`_confirms_annotation`). Its region is returned when ``current`` does not cover it (IoU < 0.6)."""
        scores = self.scores()
        known = np.isfinite(scores)
        varied = self.heard_range() >= self.min_range
        clear = known.sum() >= 2 and varied
        if clear:
            order = np.argsort(-np.where(known, scores, -np.inf))
            best = int(order[0])
            clear = scores[best] >= self.min_score and scores[best] - scores[order[1]] > self.margin
            clear = clear and min(self._evidence(self.tracks[i]) for i in order[:2]) >= self.pick_frames
        self._streak = self._streak + 1 if clear else 0
        waiting = TRUST_ANNOTATED and self.heard_track is None and self.annotated_track in self.tracks
        if waiting and (varied or self._confirms_annotation(scores)):  # the quieter test only while it matters
            self.heard_track = self.annotated_track
        if clear and self._streak >= self.patience:
            if self.heard_track is not None and self.heard_track is not self.tracks[best]:
                self._revise(self.tracks[best], self.tracks[best].parted)  # its frames since it last shared a region
            self.heard_track = self.tracks[best]
            self.annotated_track = None
        elif not self.follow:
            self.heard_track = None
        if self.heard_track is None:
            return None
        region = self.heard_track.region
        if region is None or (region & current).sum() >= 0.6 * max((region | current).sum(), 1):
            return None
        return region
