"""The ``avvos`` command line: ``segment``, ``eval`` and ``bench``.

Every subcommand shares the configuration dataclasses of :mod:`avvos.config`; bad input ends
with a one-line ``error:`` message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from avvos.checkpoint import load_model
from avvos.config import InferenceConfig, ModelConfig, config_from_options, resolve_device
from avvos.errors import AvvosError, InputError
from avvos.model.stcn import STCN, build_model

BUNDLED_WEIGHTS = Path(__file__).parent / "weights" / "default.safetensors"
SAMPLE_CLIP = Path(__file__).parent / "samples" / "av_distinct"


def get_model(weights: str | None, device: torch.device) -> tuple[STCN, str]:
    """The model to run and a sentence saying which weights it uses.

    Without ``weights`` the bundled default is used; while none is bundled, a randomly initialised
    STCN (seed 0) runs so the pipeline can be tried end to end, and the message says so plainly.
    """
    if weights is not None:
        model, info = load_model(weights, device)
        return model, f"weights: {info.describe()}"
    if BUNDLED_WEIGHTS.is_file():
        model, info = load_model(BUNDLED_WEIGHTS, device)
        return model, f"weights: bundled default, {info.describe()}"
    torch.manual_seed(0)
    model = build_model(ModelConfig()).to(device)
    return model, (
        "weights: NONE BUNDLED YET - using a randomly initialised STCN (seed 0), so the masks are not "
        "meaningful. Pass --weights stcn.pth (official STCN) or an avvos .safetensors checkpoint."
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and inference")
    group.add_argument("--weights", help="official STCN .pth or avvos .safetensors (default: the bundled weights)")
    group.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    group.add_argument("--mem-every", type=int, default=5, help="put every N-th frame in memory (default 5)")
    group.add_argument("--top-k", type=int, default=20, help="memory positions each query reads (default 20)")
    group.add_argument(
        "--include-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also match each frame against the previous one (kept in memory until the next; on CPU it halves "
        "the frame rate) (default: on for audio-visual weights on files, off for live streams and for visual "
        "weights such as STCN's)",
    )
    group.add_argument(
        "--size",
        type=int,
        help="shorter side to process at (default: as is, with larger frames scaled down to 480p or to the "
        "weights' own processing size when they set one: 240p for the bundled default)",
    )
    group.add_argument("--amp", action="store_true", help="mixed precision (fp16/bf16 autocast) on CUDA")
    group.add_argument("--compile", action="store_true", help="torch.compile the encoders and decoder (GPU)")
    group.add_argument(
        "--memory-frames", type=int, help="bound the memory to N frames, first frame pinned (default: unbounded)"
    )
    group.add_argument(
        "--memory-policy", choices=["usage", "fifo"], default="usage", help="what a bounded memory keeps"
    )
    group.add_argument(
        "--audio-identity",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="when one annotated object has look-alikes, let the sound decide which of them it is (assumes the "
        "annotated object is the one heard; default: on for audio-visual weights)",
    )
    group.add_argument(
        "--identity-lookback",
        type=int,
        metavar="N",
        help="once the sound tells that two look-alikes were swapped as they parted, mend the object's mask up to "
        "N frames back (files only: masks are written N frames late; default: 12; live streams show masks as they "
        "come)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avvos",
        description="Audio-visual video object segmentation (STCN-based): give the mask of objects in a first "
        "frame, get their masks in every later frame.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    seg = sub.add_parser(
        "segment",
        help="segment a video, a folder of frames or a DAVIS-style data set",
        description="Propagate first-frame object masks through a video. Writes one palette PNG per frame "
        "(object ids) and, if asked, an overlay video.",
    )
    seg.add_argument("input", nargs="?", help="a folder of frames or a video file (default: the bundled sample clip)")
    seg.add_argument("--mask", help="first-frame mask: palette PNG of object ids, or a 0/255 PNG (one object)")
    seg.add_argument("--masks", help="folder of masks for later frames, each PNG named after its frame")
    seg.add_argument("--davis", metavar="ROOT", help="DAVIS/YouTube-VOS style root (JPEGImages/, Annotations/)")
    seg.add_argument("--imageset", help="with --davis: file listing the sequences to run")
    seg.add_argument("--out", help="output folder for masks (default: out/<input name>)")
    seg.add_argument("--overlay", help="write a coloured overlay video here (.mp4)")
    seg.add_argument("--fps", type=float, default=25.0, help="frame rate of a frame folder (default 25)")
    seg.add_argument(
        "--audio",
        help="audio file for the clip (wav, ogg, mp3, ...; default: a video's own track, or "
        "Audio/<seq>.wav beside a --davis root)",
    )
    seg.add_argument("--silent", action="store_true", help="run an audio-visual model without audio")
    seg.add_argument("--resize-masks", action="store_true", help="resize masks whose size differs from the frames")
    seg.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_options(seg)

    ev = sub.add_parser(
        "eval",
        help="DAVIS J&F of predicted masks against ground truth",
        description="DAVIS semi-supervised evaluation (J and F: mean, recall, decay), as the official tool.",
    )
    ev.add_argument("--pred", required=True, help="folder of predicted sequences (<pred>/<seq>/*.png)")
    ev.add_argument("--gt", required=True, help="ground truth: <gt>/<seq>/*.png or a DAVIS root")
    ev.add_argument("--imageset", help="file listing the sequences to evaluate")
    ev.add_argument("--json", help="also write the results as JSON here")
    ev.add_argument(
        "--av-split",
        metavar="SPLIT",
        help="score a split of the who-is-sounding audio-visual task (--gt is its root): J&F over the frames "
        "after the first, identity switches after crossings and flicker",
    )
    ev.add_argument("--quiet", action="store_true", help="no progress bar")

    live = sub.add_parser(
        "live",
        help="segment a camera (and microphone) live",
        description="Segment a live source frame by frame: a camera index, a stream URL (HTTP MJPEG, RTSP), a "
        "video file or a folder of frames. The newest frame is always processed; stale frames are dropped and "
        "counted. In the window: a = add an object (drag a box or click points + Enter), r = reset, "
        "space = pause, s = snapshot, q/Esc = quit.",
    )
    live.add_argument(
        "source", nargs="?", default="0", help="camera index, URL, video file or frame folder (default 0)"
    )
    live.add_argument("--mask", help="first-frame mask (palette or 0/255 PNG); needed with --no-window")
    live.add_argument("--no-window", action="store_true", help="headless: write the overlay video and masks")
    live.add_argument("--record", help="record the overlay video here (.mp4)")
    live.add_argument("--masks-out", help="write each frame's mask (palette PNG) into this folder")
    live.add_argument(
        "--audio", choices=["auto", "mic", "file", "off"], default="auto",
        help="audio for audio-visual weights: the microphone (auto for cameras/streams), a file source's own "
        "track (auto for files), or off",
    )  # fmt: skip
    live.add_argument("--mic-device", help="PortAudio input device index or name (default: the default input)")
    live.add_argument("--fps", type=float, help="frame rate of a frame folder or a file without one")
    live.add_argument("--no-realtime", action="store_true", help="files/folders: process every frame, unpaced")
    live.add_argument("--max-frames", type=int, help="stop after this many processed frames")
    live.add_argument("--max-seconds", type=float, help="stop after this many seconds")
    _add_model_options(live)

    from avvos.web import add_arguments as add_web_arguments

    web = sub.add_parser(
        "web",
        help="serve the Gradio web demo (webcam + microphone in the browser)",
        description="A web page that streams the visitor's webcam and microphone, lets them mark objects (box "
        "refined by GrabCut, brush or uploaded mask) and shows the segmentation live; an offline tab takes a "
        "video and a first-frame mask. Binds to 127.0.0.1 unless --host says otherwise.",
    )
    add_web_arguments(web)

    bench = sub.add_parser(
        "bench",
        help="measure speed and memory",
        description="Frames per second, per-frame latency (median, p95) and peak memory of the avvos session, "
        "side by side with the official STCN algorithm's cost profile, on the same clip in one run.",
    )
    bench.add_argument("--clip", help="folder of frames or video (default: a generated clip)")
    bench.add_argument("--frames", type=int, default=40, help="frames to run; a clip is cycled (default 40)")
    bench.add_argument("--height", type=int, default=480, help="generated clip height (default 480)")
    bench.add_argument("--width", type=int, default=854, help="generated clip width (default 854)")
    bench.add_argument("--objects", type=int, default=2, help="objects in the generated clip (default 2)")
    bench.add_argument(
        "--compare",
        choices=["official", "unbounded", "stcn", "no-last", "none"],
        default="official",
        help="run beside avvos: the official algorithm's cost profile (default), the same session with an "
        "unbounded memory (use with --memory-frames), the same session with the full ResNet-50 STCN network "
        "(randomly initialised: speed only), the same session without matching the previous frame (what live "
        "streams do), or nothing",
    )
    bench.add_argument(
        "--arch",
        choices=["default", "stcn", "light"],
        default="default",
        help="without --weights: the bundled default weights, or a randomly initialised STCN or light model",
    )
    bench.add_argument("--threads", type=int, help="torch CPU threads")
    bench.add_argument(
        "--repeat", type=int, default=1, help="run each variant N times, alternating the order; report medians"
    )
    bench.add_argument("--json", help="also write the figures as JSON here")
    _add_model_options(bench)
    return parser


def run_segment(args: argparse.Namespace) -> None:
    from avvos.segment import (
        MaskPlan,
        davis_plan,
        describe_audio_length,
        find_audio,
        masks_in_folder,
        segment_source,
    )
    from avvos.session import InferenceSession
    from avvos.sources import discover_davis, open_frames

    device = resolve_device(args.device)
    config = config_from_options(InferenceConfig, args)
    jobs: list[tuple[str, Path, MaskPlan, Path]] = []
    davis_root = Path(args.davis) if args.davis else None
    if args.davis:
        out_root = Path(args.out or "out/davis")
        for seq in discover_davis(args.davis, args.imageset):
            jobs.append((seq.name, seq.frames, davis_plan(seq, args.davis, args.resize_masks), out_root / seq.name))
    else:
        source_path = Path(args.input) if args.input else SAMPLE_CLIP / "frames"
        first = Path(args.mask) if args.mask else (SAMPLE_CLIP / "first_mask.png" if not args.input else None)
        if first is None and not args.masks:
            raise InputError("give the first frame's mask with --mask FILE (or a folder with --masks DIR)")
        plan = MaskPlan(
            first=first, by_frame=masks_in_folder(args.masks) if args.masks else None, resize_masks=args.resize_masks
        )
        name = source_path.stem if source_path.is_file() else source_path.name
        if not args.input:
            name = "sample"
        jobs.append((name, source_path, plan, Path(args.out or f"out/{name}")))

    model, weights_message = get_model(args.weights, device)
    print(weights_message, file=sys.stderr)
    session = InferenceSession(model, config, device)
    for name, path, plan, out_dir in jobs:
        overlay = Path(args.overlay) if args.overlay and len(jobs) == 1 else None
        if args.overlay and len(jobs) > 1:
            overlay = Path(args.overlay).with_name(f"{Path(args.overlay).stem}_{name}.mp4")
        with open_frames(path, fps=args.fps) as source:
            audio = None
            audio_path = Path(args.audio) if args.audio else None
            if audio_path is None and not args.input and not args.davis:
                audio_path = SAMPLE_CLIP / "audio.wav"  # the bundled sample's sound
            if model.uses_audio and not args.silent:
                audio, where = find_audio(path, audio_path, davis_root, name)
                print(f"{name}: {where}", file=sys.stderr)
                note = (
                    describe_audio_length(audio, source.num_frames, source.fps) if audio and source.num_frames else None
                )
                if note:
                    print(f"{name}: {note}", file=sys.stderr)
            elif model.uses_audio:
                print(f"{name}: audio: off (--silent)", file=sys.stderr)
            elif args.audio:
                print(f"{name}: these weights do not use audio; --audio is ignored", file=sys.stderr)
            stats = segment_source(session, source, plan, out_dir, overlay, progress=not args.quiet, audio=audio)
        if stats.reannotated or stats.revised:
            mended = f", and mended its mask in {stats.revised} earlier frame(s)" if stats.revised else ""
            print(
                f"{name}: the sound moved the object to its heard look-alike at {stats.reannotated} frame(s){mended} "
                "(--no-audio-identity switches this off)",
                file=sys.stderr,
            )
        extra = f", overlay {overlay}" if overlay else ""
        objects = f"{stats.objects} object{'' if stats.objects == 1 else 's'}"
        print(
            f"{name}: {stats.frames} frames, {objects}, {stats.fps:.2f} frames/s "
            f"({stats.model_fps:.2f} frames/s model only) on {device.type} -> masks in {out_dir}{extra}"
        )


def run_live_command(args: argparse.Namespace) -> None:
    from avvos.live import LiveOptions, run_live
    from avvos.session import InferenceSession

    device = resolve_device(args.device)
    model, weights_message = get_model(args.weights, device)
    print(weights_message, file=sys.stderr)
    options = LiveOptions(
        source=args.source,
        mask=Path(args.mask) if args.mask else None,
        window=not args.no_window,
        record=Path(args.record) if args.record else None,
        masks_out=Path(args.masks_out) if args.masks_out else None,
        audio=args.audio,
        mic_device=args.mic_device,
        fps=args.fps,
        realtime=not args.no_realtime,
        max_frames=args.max_frames,
        max_seconds=args.max_seconds,
    )
    config = config_from_options(InferenceConfig, args).for_live()
    stats = run_live(InferenceSession(model, config, device), options, log=lambda m: print(m, file=sys.stderr))
    print(stats.summary())
    if args.record:
        print(f"recording: {args.record}")


def run_web(args: argparse.Namespace) -> None:
    from avvos.web import run

    run(args)


def run_eval(args: argparse.Namespace) -> None:
    from avvos.metrics import evaluate, format_table, read_imageset

    if args.av_split:
        from avvos.metrics import evaluate_av_sync

        results = evaluate_av_sync(args.pred, args.gt, args.av_split, progress=not args.quiet)
        print(
            f"{args.av_split}: J&F {results['J&F-Mean']:.4f}  J {results['J-Mean']:.4f}  F {results['F-Mean']:.4f}  "
            f"identity switches {results['identity_switch_fraction']:.4f} of post-crossing frames  "
            f"flicker {results['flicker']:.4f}  ({len(results['sequences'])} clips)"
        )
    else:
        sequences = read_imageset(args.imageset) if args.imageset else None
        results = evaluate(args.pred, args.gt, sequences, progress=not args.quiet)
        print(format_table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


def run_bench(args: argparse.Namespace) -> None:
    from avvos.bench import run_benchmark

    run_benchmark(args, config_from_options(InferenceConfig, args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "segment": run_segment,
        "live": run_live_command,
        "web": run_web,
        "eval": run_eval,
        "bench": run_bench,
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            handlers[args.command](args)
    except AvvosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # configuration values out of range
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: masks written so far are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
