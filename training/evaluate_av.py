"""Score models on held-out clips of the who-is-sounding task: J&F, identity switches and flicker per split.

Why: the audio extension is judged on clips where audio is necessary (``crossing``), where it is not
(``distinct``) and where the sound is replaced by noise (``silent``), with seeds never used in training.

    python -m training.evaluate_av --model default=avvos/weights/default.safetensors --clips 12 --out runs/av_eval

Each ``--model NAME=PATH`` is run on

* ``crossing``: the clips with their sound;
* ``silent``: the same clips (paired by seed) with the sound replaced by noise — the task's "without audio";
* ``crossing, muted``: the crossing clips with no audio given at all (the model reads silence);
* ``distinct``: clips whose objects differ in colour (appearance suffices);
* with ``--smoothing-off`` also ``crossing`` and ``distinct`` with the model's readout smoother switched off at
  inference (an ablation of the trained model, not a model trained without it);
* with ``--identity-off`` also ``crossing`` and ``distinct`` with the audio identity check switched off
  (:mod:`avvos.identity`; its effect on J&F and on frames per second, side by side);
* with both, also ``crossing`` and ``distinct`` with both switched off: the smoother's own effect on flicker,
  against the identity-off rows (the identity check changes masks after the smoother, in both arms alike).

The clips are written to ``<out>/data`` on the first run (evaluation seeds, 240x432, 40 frames at 25 fps) and
reused (``--frames``, ``--height``, ``--width`` change what is written). ``--data DIR`` scores the clips already
in ``DIR`` instead, e.g. those of the independent generator, which follows the task's definition but not this
project's generator::

    python -m training.independent_av_sync runs/indep --clips 48 --seed 777000
    python -m training.evaluate_av --model default=avvos/weights/default.safetensors --data runs/indep --out runs/ind

``--only CONDITION`` runs only the named conditions, e.g. the crossing clips of the development seeds::

    python -m training.make_av_data runs/dev/data --clips 64 --seed 11500000 --splits crossing
    python -m training.evaluate_av --model default=avvos/weights/default.safetensors --data runs/dev/data \\
        --only crossing --out runs/dev_eval

``--live`` scores the clips as a live stream runs them (``InferenceConfig.for_live``: the previous frame is not
matched, and masks are never held back to be mended once the sound tells).

Prints a table and writes ``<out>/results.json``; the gain from audio is J&F(crossing) - J&F(silent).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path

from avvos.checkpoint import load_model
from avvos.config import InferenceConfig, resolve_device
from avvos.data.av_sync import EVAL_SEED_START, SPLITS, AVSyncConfig, read_meta, write_dataset
from avvos.metrics import evaluate_av_sync, read_imageset
from avvos.segment import segment_sequence
from avvos.session import InferenceSession
from avvos.sources import discover_davis

#: (condition name, split whose clips are run, whether the clip's audio is given, whether smoothing is on,
#: whether the identity check is on (None: the session's default for the model))
CONDITIONS = (
    ("crossing", "crossing", True, True, None),
    ("silent", "silent", True, True, None),
    ("crossing, muted", "crossing", False, True, None),
    ("distinct", "distinct", True, True, None),
)
SMOOTHING_OFF = (
    ("crossing, smoothing off", "crossing", True, False, None),
    ("distinct, smoothing off", "distinct", True, False, None),
)
IDENTITY_OFF = (
    ("crossing, identity off", "crossing", True, True, False),
    ("distinct, identity off", "distinct", True, True, False),
)
#: With both flags: the smoother's own effect, with no identity check after it changing masks in both arms.
BOTH_OFF = (
    ("crossing, smoothing+identity off", "crossing", True, False, False),
    ("distinct, smoothing+identity off", "distinct", True, False, False),
)


def ensure_data(root: Path, clips: int, config: AVSyncConfig) -> None:
    """Write the three splits' evaluation clips under ``root`` unless they are there already."""
    for split in SPLITS:
        listing = root / "ImageSets" / f"{split}.txt"
        if listing.is_file() and len(read_imageset(listing)) == clips:
            continue
        listing.unlink(missing_ok=True)
        write_dataset(root, split, clips, EVAL_SEED_START, config, progress=True)


def by_mapping(per_clip: dict[str, dict], data: Path) -> dict[str, dict[str, float]]:
    """Mean J&F and identity switches per visible mapping (brightness, size, opening) from per-clip scores and
    the clips' ``Meta/<clip>.json``: which cues the audio helps with."""
    groups: dict[str, list[dict]] = {}
    for name, row in per_clip.items():
        mapping = read_meta(data, name)["meta"]["mapping"]
        groups.setdefault(mapping, []).append(row)
    return {
        mapping: {
            "clips": len(rows),
            "J&F-Mean": sum(r["J&F-Mean"] for r in rows) / len(rows),
            "identity_switch_fraction": sum(r["identity_switch_fraction"] for r in rows) / len(rows),
        }
        for mapping, rows in sorted(groups.items())
    }


def run_condition(
    session: InferenceSession, data: Path, split: str, with_audio: bool, masks: Path, quiet: bool
) -> float:
    """Segment every clip of ``split`` into ``masks``; returns frames per second."""
    frames, seconds = 0, 0.0
    for sequence in discover_davis(data, data / "ImageSets" / f"{split}.txt"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*running without audio")  # the muted condition, on purpose
            stats = segment_sequence(session, sequence, data, masks / sequence.name, with_audio=with_audio, fps=25.0)
        frames += stats.frames
        seconds += stats.total_seconds
        if not quiet:
            print(f"  {split}/{sequence.name}: {stats.fps:.1f} frames/s", file=sys.stderr)
    return frames / max(seconds, 1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate_av",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH", help="a model to score")
    parser.add_argument("--clips", type=int, default=12, help="clips per split (default 12)")
    parser.add_argument("--out", default="runs/av_eval", help="output folder (default runs/av_eval)")
    parser.add_argument("--smoothing-off", action="store_true", help="also run with the smoother switched off")
    parser.add_argument("--identity-off", action="store_true", help="also run with the identity check switched off")
    parser.add_argument(
        "--live",
        action="store_true",
        help="score as a live stream would run: the previous frame not matched, masks never held back to be mended",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    parser.add_argument("--frames", type=int, default=40, help="frames per written clip (default 40)")
    parser.add_argument("--height", type=int, default=240, help="height of written clips (default 240)")
    parser.add_argument("--width", type=int, default=432, help="width of written clips (default 432)")
    parser.add_argument("--data", type=Path, help="score the clips already in this folder (the splits needed)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="CONDITION",
        help="run only this condition (repeatable), e.g. --only crossing; --data then needs only its splits",
    )
    args = parser.parse_args(argv)
    conditions = CONDITIONS + (SMOOTHING_OFF if args.smoothing_off else ())
    conditions += IDENTITY_OFF if args.identity_off else ()
    conditions += BOTH_OFF if args.smoothing_off and args.identity_off else ()
    if args.only:
        unknown = sorted(set(args.only) - {c[0] for c in conditions})
        if unknown:
            parser.error(f"--only: no condition {unknown} here; the conditions are {[c[0] for c in conditions]}")
        conditions = tuple(c for c in conditions if c[0] in args.only)
    models = {}
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            parser.error(f"--model takes NAME=PATH, got {spec!r}")
        models[name] = Path(path)
    out = Path(args.out)
    if args.data is not None:
        data = args.data
        needed = sorted({split for _, split, *_ in conditions})
        missing = [s for s in needed if not (data / "ImageSets" / f"{s}.txt").is_file()]
        if missing:
            parser.error(f"--data {data} has no ImageSets/{{{','.join(missing)}}}.txt")
    else:
        data = out / "data"
        ensure_data(data, args.clips, AVSyncConfig(frames=args.frames, height=args.height, width=args.width))
    device = resolve_device(args.device)

    def inference(**values: bool | None) -> InferenceConfig:
        config = InferenceConfig(**values)
        return config.for_live() if args.live else config

    results: list[dict] = []
    for model_name, path in models.items():
        model, info = load_model(path, device)
        print(f"{model_name}: {info.describe()}", file=sys.stderr)
        for condition, split, with_audio, smoothing, identity in conditions:
            session = InferenceSession(model, inference(smoothing=smoothing, audio_identity=identity), device)
            masks = out / "masks" / model_name / condition.replace(", ", "_").replace(" ", "_")
            fps = run_condition(session, data, split, with_audio and model.uses_audio, masks, args.quiet)
            scores = evaluate_av_sync(masks, data, split)
            scores["by_mapping"] = by_mapping(scores.pop("sequences"), data)
            results.append({"model": model_name, "weights": str(path), "condition": condition, "fps": fps, **scores})
    header = f"{'model':<12} {'condition':<34} {'J&F':>6} {'switches':>9} {'flicker':>8} {'fps':>6}"
    print(header)
    print("-" * len(header))
    for row in results:
        print(
            f"{row['model']:<12} {row['condition']:<34} {row['J&F-Mean']:>6.3f} "
            f"{row['identity_switch_fraction']:>9.3f} {row['flicker']:>8.3f} {row['fps']:>6.1f}"
        )
    for model_name in models:
        by = {r["condition"]: r for r in results if r["model"] == model_name}
        if "crossing" not in by or "silent" not in by:
            continue
        print(f"{model_name}: gain from audio on crossing {by['crossing']['J&F-Mean'] - by['silent']['J&F-Mean']:+.3f}")
        for mapping, crossing in by["crossing"]["by_mapping"].items():
            silent = by["silent"]["by_mapping"].get(mapping)
            gain = f", gain {crossing['J&F-Mean'] - silent['J&F-Mean']:+.3f}" if silent else ""
            print(f"  crossing, {mapping} mapping ({crossing['clips']} clips): J&F {crossing['J&F-Mean']:.3f}{gain}")
    settings = {
        "data": str(data),
        "clips": results[0]["clips"] if results else 0,
        "seed": None if args.data is not None else EVAL_SEED_START,  # None: clips written elsewhere
        "live": args.live,
        "inference": dataclasses.asdict(inference()),
    }
    (out / "results.json").write_text(json.dumps({"settings": settings, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
