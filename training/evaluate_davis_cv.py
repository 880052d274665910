"""Two-fold cross-validated J&F on the DAVIS-2016 dev sequences, for a trained model and two references.

Why: the 10 dev sequences are the only real VOS data we may train, tune and evaluate on (the other 10 of the
DAVIS-2016 val split are held out), so every number we report is cross-validated: whatever is trained or tuned
on one fold is scored on the other, and every sequence is scored once, by a method that did not see it.

Folds (fixed): fold A = the first half of the names of ``ImageSets/dev.txt`` sorted, fold B = the rest.

Commands::

    python -m training.evaluate_davis_cv folds --out runs/cv_folds          # write fold_a.txt, fold_b.txt
    python -m training.evaluate_davis_cv baseline --out runs/cv_baseline    # training-free reference
    python -m training.evaluate_davis_cv osvos --out runs/cv_osvos          # OSVOS's published masks
    python -m training.evaluate_davis_cv model --weights-a W_A --weights-b W_B --out runs/cv_model

``model``: ``W_A`` was trained on fold A and is scored on fold B, ``W_B`` the reverse; the masks come from the
same loop as ``avvos segment --davis ROOT --imageset <fold file>``. ``baseline``: feature propagation
(:mod:`avvos.baseline`) with fixed literature settings, so nothing is trained or tuned on either fold.
``osvos``: the OSVOS predictions, ids merged into one object as for any prediction on DAVIS-2016 ground truth.
The baseline keeps the masks of a sequence already written with the same settings (``masks/<seq>/run.json``), so
an interrupted run goes on where it stopped; on a busy CPU, ``--threads 1`` is much faster than the default.

Each command prints and writes ``<out>/results.json``: per evaluation fold the J&F table of
:func:`avvos.metrics.evaluate`, and the combined row, the mean over all objects of both evaluations (one object
per DAVIS-2016 sequence: the mean over the 10 sequences).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from avvos.config import InferenceConfig, resolve_device
from avvos.errors import AvvosError, InputError
from avvos.masks import read_mask
from avvos.metrics import COLUMNS, evaluate, format_table, read_imageset
from avvos.sinks import MaskWriter

SHARED = Path(os.environ.get("AVVOS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DAVIS_DEV = SHARED / "data" / "davis2016-dev"
OSVOS_DEV = SHARED / "data" / "osvos-results-davis2016-dev"
#: torchvision's ImageNet MobileNetV2 file (``MobileNet_V2_Weights.IMAGENET1K_V1``), for machines without internet.
MOBILENET_V2 = SHARED / "weights" / "mobilenet_v2-b0353104.pth"
FOLD_NAMES = ("A", "B")


def provide_imagenet_weights() -> None:
    """Let torchvision find the ImageNet MobileNetV2 file without a download: when its hub cache lacks the file
    and the shared copy exists, point ``$TORCH_HOME`` at a temporary folder holding a link to that copy."""
    name = MOBILENET_V2.name
    if (Path(torch.hub.get_dir()) / "checkpoints" / name).is_file() or not MOBILENET_V2.is_file():
        return
    home = Path(tempfile.mkdtemp(prefix="avvos_torch_home_"))
    (home / "hub" / "checkpoints").mkdir(parents=True)
    (home / "hub" / "checkpoints" / name).symlink_to(MOBILENET_V2.resolve())
    os.environ["TORCH_HOME"] = str(home)


def make_folds(root: Path) -> dict[str, list[str]]:
    """Fold A: the first half (rounded up) of the sorted names of ``ImageSets/dev.txt``; fold B: the rest."""
    names = sorted(read_imageset(root / "ImageSets" / "dev.txt"))
    if len(names) < 2:
        raise InputError(f"{root / 'ImageSets' / 'dev.txt'} lists {len(names)} sequence(s): two folds need 2 or more")
    half = (len(names) + 1) // 2
    return {"A": names[:half], "B": names[half:]}


def write_folds(folds: dict[str, list[str]], out: Path) -> dict[str, Path]:
    """Write ``fold_a.txt`` and ``fold_b.txt`` (image-set files, one name a line) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fold, names in folds.items():
        paths[fold] = out / f"fold_{fold.lower()}.txt"
        paths[fold].write_text("".join(f"{name}\n" for name in names))
    return paths


def other(fold: str) -> str:
    """The fold that is not ``fold``."""
    return "B" if fold == "A" else "A"


def combine(evaluations: list[dict]) -> dict[str, float]:
    """Mean over every object of several :func:`evaluate` results, with J&F-Mean from the two means."""
    rows = [obj for ev in evaluations for seq in ev["sequences"].values() for obj in seq["objects"].values()]
    out = {name: float(np.mean([row[name] for row in rows])) for name in COLUMNS[1:]}
    return {"J&F-Mean": (out["J-Mean"] + out["F-Mean"]) / 2, **out}


def _summary(row: dict[str, float]) -> str:
    return f"J&F {row['J&F-Mean']:.4f}  J {row['J-Mean']:.4f}  F {row['F-Mean']:.4f}"


def _frame_names(folder: Path) -> list[str]:
    from avvos.sources import open_frames

    with open_frames(folder) as source:
        return list(source.names or [])


def _complete(masks: Path, names: list[str]) -> bool:
    return all((masks / f"{name}.png").is_file() for name in names)


def run_baseline(args: argparse.Namespace, root: Path, folds: dict[str, list[str]], masks_root: Path) -> dict:
    """Feature propagation on every sequence (each scored in the evaluation of its own fold)."""
    from avvos.baseline import FeaturePropagation

    provide_imagenet_weights()
    device = resolve_device(args.device)
    settings = {
        "temperature": args.temperature,
        "top_k": args.top_k,
        "radius": args.radius,
        "context_frames": args.context_frames,
        "size": args.size,
    }
    method = FeaturePropagation(device=device, **settings)
    timing: dict[str, dict] = {}
    for name in folds["A"] + folds["B"]:
        frames_dir = root / "JPEGImages" / "480p" / name
        out_dir = masks_root / name
        record = out_dir / "run.json"
        names = _frame_names(frames_dir)
        if record.is_file() and _complete(out_dir, names):
            done = json.loads(record.read_text())
            if done.get("settings") == settings:
                print(f"{name}: masks already written with these settings, kept", file=sys.stderr)
                timing[name] = done["timing"]
                continue
        first = read_mask(root / "Annotations" / "480p" / name / f"{names[0]}.png")
        start = time.perf_counter()
        masks = method.segment_folder(frames_dir, first)
        seconds = time.perf_counter() - start
        writer = MaskWriter(out_dir)
        for frame_name, mask in zip(names, masks, strict=True):
            writer.write(frame_name, mask)
        timing[name] = {"frames": len(masks), "seconds": seconds, "fps": len(masks) / seconds}
        record.write_text(json.dumps({"settings": settings, "timing": timing[name]}, indent=2))
        print(f"{name}: {len(masks)} frames in {seconds:.1f} s ({len(masks) / seconds:.2f} frames/s)", file=sys.stderr)
    frames = sum(t["frames"] for t in timing.values())
    seconds = sum(t["seconds"] for t in timing.values())
    return {
        "settings": {**settings, "device": device.type, "tuned": "nothing: fixed literature settings"},
        "timing": {"sequences": timing, "frames": frames, "seconds": seconds, "fps": frames / seconds},
    }


def run_model(args: argparse.Namespace, root: Path, fold_files: dict[str, Path], masks_root: Path) -> dict:
    """Each fold's weights segment the other fold's sequences, as ``avvos segment --davis --imageset`` does."""
    from avvos.checkpoint import load_model
    from avvos.segment import segment_sequence
    from avvos.session import InferenceSession
    from avvos.sources import discover_davis

    device = resolve_device(args.device)
    config = InferenceConfig(size=args.size)
    weights = {"A": Path(args.weights_a), "B": Path(args.weights_b)}
    info: dict[str, dict] = {}
    for train_fold in FOLD_NAMES:
        model, checkpoint = load_model(weights[train_fold], device)
        print(f"trained on fold {train_fold}: {checkpoint.describe()}", file=sys.stderr)
        session = InferenceSession(model, config, device)
        frames = 0
        seconds = 0.0
        for seq in discover_davis(root, fold_files[other(train_fold)]):
            stats = segment_sequence(session, seq, root, masks_root / seq.name, with_audio=model.uses_audio,
                                     progress=not args.quiet)  # fmt: skip
            frames += stats.frames
            seconds += stats.total_seconds
            print(f"{seq.name}: {stats.frames} frames, {stats.fps:.2f} frames/s", file=sys.stderr)
        info[train_fold] = {"weights": str(weights[train_fold]), "frames": frames, "seconds": seconds}
    settings = {"size": args.size, "device": device.type, "inference": dataclasses.asdict(config)}
    return {"settings": settings, "weights": info}


def score(
    pred_root: Path, root: Path, folds: dict[str, list[str]], quiet: bool, evaluated_by: dict[str, str]
) -> tuple[list[dict], dict[str, float]]:
    """Evaluate each fold's sequences; returns the per-fold entries and the combined row."""
    evaluations = []
    for eval_fold in ("B", "A"):
        results = evaluate(pred_root, root, folds[eval_fold], progress=not quiet)
        evaluations.append(
            {
                "eval_fold": eval_fold,
                "train_fold": other(eval_fold),
                "by": evaluated_by[eval_fold],
                "sequences_scored": folds[eval_fold],
                **results,
            }
        )
    return evaluations, combine(evaluations)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate_davis_cv",
        description="Two-fold cross-validated DAVIS-2016 J&F on the dev sequences (fold A = first half of the "
        "sorted names of ImageSets/dev.txt, fold B = the rest).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--davis", default=str(DAVIS_DEV), help=f"DAVIS-2016 dev root (default {DAVIS_DEV})")
    common.add_argument("--out", help="output folder (default runs/cv_<command>)")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    sub.add_parser("folds", parents=[common], help="write and print the two folds")
    base = sub.add_parser("baseline", parents=[common], help="training-free feature propagation (avvos.baseline)")
    base.add_argument("--temperature", type=float, default=0.05, help="softmax temperature (default 0.05)")
    base.add_argument("--top-k", type=int, default=10, help="neighbours each position averages (default 10)")
    base.add_argument("--radius", type=float, default=12.0, help="neighbourhood radius in stride-8 cells (default 12)")
    base.add_argument("--context-frames", type=int, default=19, help="recent frames beside the first (default 19)")
    osvos = sub.add_parser("osvos", parents=[common], help="score the OSVOS predictions on the same folds")
    osvos.add_argument("--pred", default=str(OSVOS_DEV), help=f"OSVOS masks, <pred>/<seq>/*.png (default {OSVOS_DEV})")
    model = sub.add_parser("model", parents=[common], help="weights trained on fold A and on fold B, cross-scored")
    model.add_argument("--weights-a", required=True, help="checkpoint trained on fold A (scored on fold B)")
    model.add_argument("--weights-b", required=True, help="checkpoint trained on fold B (scored on fold A)")
    for command in (base, model):
        command.add_argument("--size", type=int, help="shorter side to process at (default: native, 480p)")
        command.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
        command.add_argument(
            "--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is best on a busy machine)"
        )
    args = parser.parse_args(argv)

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        root = Path(args.davis)
        out = Path(args.out or f"runs/cv_{args.command}")
        folds = make_folds(root)
        fold_files = write_folds(folds, out)
        for fold, names in folds.items():
            print(f"fold {fold} ({fold_files[fold]}): {', '.join(names)}")
        if args.command == "folds":
            return 0
        masks_root = out / "masks"
        if args.command == "baseline":
            extra = run_baseline(args, root, folds, masks_root)
            by = {f: "feature propagation (nothing trained or tuned)" for f in FOLD_NAMES}
        elif args.command == "osvos":
            masks_root = Path(args.pred)
            extra = {"predictions": str(masks_root)}
            by = {f: "OSVOS (published predictions)" for f in FOLD_NAMES}
        else:
            extra = run_model(args, root, fold_files, masks_root)
            by = {f: f"weights trained on fold {other(f)}: {extra['weights'][other(f)]['weights']}" for f in FOLD_NAMES}
        evaluations, combined = score(masks_root, root, folds, args.quiet, by)
    except AvvosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = {"method": args.command, "davis": str(root), "folds": folds, **extra,
               "evaluations": evaluations, "combined": combined}  # fmt: skip
    for ev in evaluations:
        print(f"\nfold {ev['eval_fold']} scored ({ev['by']}):")
        print(format_table(ev))
    print()
    for ev in evaluations:
        print(f"{args.command}  eval fold {ev['eval_fold']}: {_summary(ev['overall'])}")
    print(f"{args.command}  combined (all {sum(len(v) for v in folds.values())} sequences): {_summary(combined)}")
    if "timing" in extra:
        print(f"speed: {extra['timing']['fps']:.3f} frames/s on {extra['settings']['device']}")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
