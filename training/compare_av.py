"""Compare arms of the who-is-sounding evaluation clip by clip: means with bootstrap intervals, paired differences.

Why: the clip means ``training.evaluate_av`` prints hide how much a 48-clip draw moves from draw to draw, and
whether an arm's gain over another is more than that. This command scores each arm's masks per clip, resamples
the clips (with replacement, the same draws for every arm, so differences are paired) and prints, per arm, the
mean J&F, identity-switch fraction (over clips with a post-crossing frame) and flicker with their 95 %
intervals; then, against the first arm, the paired differences with intervals, the relative flicker change,
the clips every arm keeps (J&F at least ``--kept`` in each) and the clips an arm loses (J&F down by more than
``--loss`` against the first arm)::

    python -m training.evaluate_av --model default=avvos/weights/default.safetensors --data runs/indep \\
        --smoothing-off --only crossing --only "crossing, smoothing off" --out runs/ind
    python -m training.compare_av --data runs/indep --split crossing \\
        off=runs/ind/masks/default/crossing_smoothing_off on=runs/ind/masks/default/crossing

An arm ``NAME=MASKS@SPLIT`` is scored on another split than ``--split``; arms of different splits are paired by
the clip's number, since ``silent_<n>`` has the frames and masks of ``crossing_<n>``. So the gain from the sound,
with its interval::

    python -m training.compare_av --data runs/indep silent=runs/ind/masks/default/silent@silent \\
        sound=runs/ind/masks/default/crossing

``--json FILE`` also writes every figure and the per-clip scores.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from avvos.errors import AvvosError
from avvos.metrics import evaluate_av_sync

#: per-clip score names, in the order they are printed
METRICS = ("J&F-Mean", "identity_switch_fraction", "flicker")
#: their printed names
LABELS = {"J&F-Mean": "J&F", "identity_switch_fraction": "switches", "flicker": "flicker"}


@dataclass(frozen=True)
class Interval:
    """A mean over clips and the 2.5 and 97.5 percentiles of its bootstrap resamples."""

    mean: float
    low: float
    high: float

    def format(self, signed: bool = False) -> str:
        """``mean [low, high]`` to three decimals; ``signed`` for differences."""
        if math.isnan(self.mean):
            return "n/a"
        spec = "+.3f" if signed else ".3f"
        return f"{self.mean:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


def score_arm(masks: Path, data: Path, split: str) -> dict[str, dict]:
    """Per-clip scores (``avvos.metrics.evaluate_av_sync``) of the masks in ``masks`` on ``split`` of ``data``."""
    if not masks.is_dir():
        raise FileNotFoundError(f"no mask folder {masks}")
    return evaluate_av_sync(masks, data, split)["sequences"]


def by_number(per_clip: dict[str, dict], split: str) -> dict[str, dict]:
    """Per-clip scores keyed by the clip's number (``silent_000123`` -> ``000123``), so that arms scored on
    different splits pair clip by clip."""
    prefix = f"{split}_"
    strays = [name for name in per_clip if not name.startswith(prefix)]
    if strays:
        raise ValueError(f"clips {strays[:3]} of split {split!r} are not named {prefix}<number>: cannot pair them")
    return {name[len(prefix) :]: row for name, row in per_clip.items()}


def _table(arms: dict[str, dict[str, dict]], clips: list[str], metric: str) -> np.ndarray:
    """(arms, clips) array of one metric, NaN where a clip has no value (switches without a crossing)."""
    table = np.array([[arm[name][metric] for name in clips] for arm in arms.values()], dtype=float)
    if metric == "identity_switch_fraction":
        frames = np.array([[arm[name]["post_crossing_frames"] for name in clips] for arm in arms.values()])
        table[frames == 0] = np.nan
    return table


def _resample_means(table: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(draws, arms) means over each draw's clips, ignoring NaN; NaN where a draw has no value."""
    picked = table[:, draws]  # (arms, draws, clips)
    counts = np.sum(~np.isnan(picked), axis=2)
    sums = np.nansum(picked, axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).T


def _interval(mean: float, resampled: np.ndarray) -> Interval:
    finite = resampled[np.isfinite(resampled)]
    if math.isnan(mean) or finite.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    low, high = np.percentile(finite, [2.5, 97.5])
    return Interval(float(mean), float(low), float(high))


def _nanmean(values: np.ndarray) -> float:
    return float(np.mean(values[~np.isnan(values)])) if np.any(~np.isnan(values)) else float("nan")


def compare(
    arms: dict[str, dict[str, dict]], samples: int = 2000, seed: int = 0, kept: float = 0.7, loss: float = 0.1
) -> dict:
    """Means with bootstrap intervals per arm and paired differences against the first arm.

    ``arms`` maps an arm's name to its per-clip scores; every arm must score the same clips. Returns
    ``{"clips", "arms": {name: {metric: Interval}}, "against_first": {name: {metric: Interval, "flicker_change":
    Interval, "losses": [clips]}}, "kept": {"clips": [...], name: {metric: float}, "flicker_change": {name: float}}}``.
    """
    if not arms:
        raise ValueError("no arms to compare")
    clip_sets = {name: sorted(scores) for name, scores in arms.items()}
    first_name, first_clips = next(iter(clip_sets.items()))
    for name, clips in clip_sets.items():
        if clips != first_clips:
            raise ValueError(f"arms {first_name!r} and {name!r} score different clips; compare masks of one data set")
    if not first_clips:
        raise ValueError("the arms score no clips")
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    names = list(arms)
    clip_names = list(next(iter(arms.values())))  # the first arm's order: the data set's listing
    draws = np.random.default_rng(seed).integers(0, len(clip_names), size=(samples, len(clip_names)))
    tables = {metric: _table(arms, clip_names, metric) for metric in METRICS}
    means = {metric: np.array([_nanmean(row) for row in table]) for metric, table in tables.items()}
    resampled = {metric: _resample_means(table, draws) for metric, table in tables.items()}
    result: dict = {"clips": len(first_clips), "arms": {}, "against_first": {}}
    for a, name in enumerate(names):
        result["arms"][name] = {m: _interval(means[m][a], resampled[m][:, a]) for m in METRICS}
    jf = tables["J&F-Mean"]
    for a, name in enumerate(names[1:], start=1):
        row = {m: _interval(means[m][a] - means[m][0], resampled[m][:, a] - resampled[m][:, 0]) for m in METRICS}
        with np.errstate(invalid="ignore", divide="ignore"):
            change = resampled["flicker"][:, a] / resampled["flicker"][:, 0] - 1.0
        base = means["flicker"][0]
        row["flicker_change"] = _interval(means["flicker"][a] / base - 1.0 if base > 0 else float("nan"), change)
        row["losses"] = [clip_names[c] for c in np.flatnonzero(jf[a] < jf[0] - loss)]
        result["against_first"][name] = row
    keep = np.flatnonzero(np.all(jf >= kept, axis=0))
    kept_rows: dict = {"clips": [clip_names[c] for c in keep], "flicker_change": {}}
    for a, name in enumerate(names):
        kept_rows[name] = {m: _nanmean(tables[m][a, keep]) if keep.size else float("nan") for m in METRICS}
    base = kept_rows[names[0]]["flicker"]
    for name in names[1:]:
        kept_rows["flicker_change"][name] = kept_rows[name]["flicker"] / base - 1.0 if base > 0 else float("nan")
    result["kept"] = kept_rows
    return result


def format_comparison(result: dict, kept: float = 0.7, loss: float = 0.1) -> str:
    """The printed report of :func:`compare`."""
    names = list(result["arms"])
    lines = [f"{result['clips']} clips; means with 95 % bootstrap intervals over clips"]
    header = f"{'arm':<14} " + " ".join(f"{LABELS[m]:>26}" for m in METRICS)
    lines += [header, "-" * len(header)]
    for name, row in result["arms"].items():
        lines.append(f"{name:<14} " + " ".join(f"{row[m].format():>26}" for m in METRICS))
    for name, row in result["against_first"].items():
        lines.append(f"{name} - {names[0]}: " + ", ".join(f"{LABELS[m]} {row[m].format(signed=True)}" for m in METRICS))
        change = row["flicker_change"]
        if not math.isnan(change.mean):
            lines.append(
                f"  flicker {100 * change.mean:+.1f} % [{100 * change.low:+.1f}, {100 * change.high:+.1f}] "
                f"against {names[0]}"
            )
        losses = row["losses"]
        listed = f" ({', '.join(losses)})" if losses else ""
        lines.append(f"  clips losing more than {loss:g} J&F: {len(losses)}{listed}")
    kept_rows = result["kept"]
    lines.append(f"clips every arm keeps (J&F >= {kept:g} in each): {len(kept_rows['clips'])}")
    for name in names:
        row = kept_rows[name]
        change = kept_rows["flicker_change"].get(name, float("nan"))
        against = "" if math.isnan(change) else f" ({100 * change:+.1f} % against {names[0]})"
        lines.append(
            f"  {name:<12} J&F {row['J&F-Mean']:.3f}, switches {row['identity_switch_fraction']:.3f}, "
            f"flicker {row['flicker']:.3f}{against}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.compare_av",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "arms", nargs="+", metavar="NAME=MASKS[@SPLIT]", help="an arm's name, its mask folder and split (--split)"
    )
    parser.add_argument("--data", type=Path, required=True, help="the clips the masks were made on")
    parser.add_argument("--split", default="crossing", help="the split scored (default crossing)")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument("--kept", type=float, default=0.7, help="J&F an arm needs on a clip to keep it (0.7)")
    parser.add_argument("--loss", type=float, default=0.1, help="J&F drop counted as a loss (default 0.1)")
    parser.add_argument("--json", type=Path, help="also write every figure and the per-clip scores here")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error(f"--samples must be at least 1, got {args.samples}")
    specs: dict[str, tuple[Path, str]] = {}
    for spec in args.arms:
        name, sep, rest = spec.partition("=")
        path, at, split = rest.rpartition("@") if "@" in rest else (rest, "", args.split)
        if not sep or not name or not path or (at and not split):
            parser.error(f"arms take NAME=MASKS or NAME=MASKS@SPLIT, got {spec!r}")
        if name in specs:
            parser.error(f"arm {name!r} given twice")
        if not Path(path).is_dir():
            parser.error(f"arm {name!r}: no mask folder {path}")
        if not (args.data / "ImageSets" / f"{split}.txt").is_file():
            parser.error(f"--data {args.data} has no ImageSets/{split}.txt (arm {name!r})")
        specs[name] = (Path(path), split)
    try:
        arms = {name: score_arm(path, args.data, split) for name, (path, split) in specs.items()}
        if len({split for _, split in specs.values()}) > 1:
            arms = {name: by_number(arms[name], split) for name, (_, split) in specs.items()}
        result = compare(arms, args.samples, args.seed, args.kept, args.loss)
    except (AvvosError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(format_comparison(result, args.kept, args.loss))
    if args.json is not None:
        report = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
        report |= {"comparison": result, "per_clip": arms}
        args.json.write_text(json.dumps(report, indent=2, default=asdict))  # Interval -> {"mean", "low", "high"}
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
