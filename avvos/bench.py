"""``avvos bench``: speed and memory of the avvos session next to the official STCN algorithm.

Both variants run the same network on the same frames, each in a fresh process (so peak memory
is its own), and report frames per second, per-frame latency (median, p95) and peak memory. The
official profile re-creates how the official ``InferenceCore`` spends time and memory: the whole
clip normalised up front, a probability tensor for every frame, memory re-concatenated at each
insertion, ``‖m‖²`` recomputed for every query, and a dense (N × HW) top-k affinity read with bmm.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from avvos.config import IMAGENET_MEAN, IMAGENET_STD, InferenceConfig, ModelConfig, resolve_device
from avvos.errors import InputError
from avvos.model.aggregate import aggregate, label_map
from avvos.model.stcn import STCN, build_model
from avvos.session import InferenceSession, pad_amounts


@dataclass
class BenchResult:
    """Figures of one variant; latencies in milliseconds, memory in MiB.

    ``early``/``late`` are medians over a window near frame 1,000 (or the first tenth of a shorter
    run) and over the last 200 frames (or last tenth), to show whether a long stream stays flat.
    ``memory_positions``: the positions each query read at the end (the temporary slot of the previous frame
    included); None for the official profile.
    """

    variant: str
    frames: int
    fps: float
    latency_median_ms: float
    latency_p95_ms: float
    early_latency_ms: float
    late_latency_ms: float
    early_rss_mib: float
    late_rss_mib: float
    peak_rss_mib: float
    peak_cuda_mib: float | None
    memory_positions: int | None


def generated_clip(frames: int, height: int, width: int, objects: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A clip of textured discs moving over a textured background, and its first mask."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    clip = np.empty((frames, height, width, 3), np.uint8)
    first = np.zeros((height, width), np.uint8)
    colours = rng.integers(0, 255, (objects, 3))
    radius = max(4, min(height, width) // (3 + objects))
    for t in range(frames):
        clip[t] = background
        for i in range(objects):
            cy = height * (0.3 + 0.4 * i / max(objects, 1)) + 0.1 * height * math.sin(t / 7 + i)
            cx = width * (0.2 + 0.6 * ((t / max(frames, 1) + i / objects) % 1))
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
            clip[t][inside] = colours[i]
            if t == 0:
                first[inside] = i + 1
    return clip, first


class OfficialProfile:
    """The official STCN inference loop (DAVIS core) on a preloaded clip, for cost comparison."""

    def __init__(self, model: STCN, config: InferenceConfig, device: torch.device) -> None:
        self.model, self.config, self.device = model, config, device

    @torch.inference_mode()
    def run(
        self,
        clip: np.ndarray,
        first_mask: np.ndarray,
        on_frame: Callable[[], None],
        keep: list[torch.Tensor] | None = None,
    ) -> None:
        """Propagate ``first_mask`` through ``clip``; ``keep`` collects each frame's unpadded probabilities."""
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 1, 3, 1, 1)
        images = torch.from_numpy(clip).to(self.device).permute(0, 3, 1, 2)[None].float() / 255
        images = F.pad((images - mean) / std, pad_amounts(*clip.shape[1:3]))
        ids = [int(i) for i in np.unique(first_mask) if i]
        masks = torch.stack([torch.from_numpy(first_mask == i) for i in ids]).float()[:, None].to(self.device)
        masks = F.pad(masks, pad_amounts(*clip.shape[1:3]))
        num_frames = images.shape[1]
        prob = torch.zeros(len(ids) + 1, num_frames, 1, *images.shape[-2:], device=self.device)
        prob[0] = 1e-7
        prob[:, 0] = aggregate(masks)
        features = self.model.encode_key(images[:, 0])
        mem_k = features.key.flatten(2)
        mem_v = self.model.encode_value(images[:, 0], features, prob[1:, 0]).flatten(2)
        on_frame()
        for t in range(1, num_frames):
            features = self.model.encode_key(images[:, t])
            qk = features.key.flatten(2)
            a_sq = mem_k.pow(2).sum(1).unsqueeze(2)
            affinity = (2 * (mem_k.transpose(1, 2) @ qk) - a_sq) / math.sqrt(mem_k.shape[1])
            values, indices = torch.topk(affinity, min(self.config.top_k, affinity.shape[1]), dim=1)
            weights = torch.exp(values - values[:, :1])
            weights /= weights.sum(dim=1, keepdim=True)
            affinity.zero_().scatter_(1, indices, weights)
            readout = torch.bmm(mem_v, affinity.expand(len(ids), -1, -1))
            readout = readout.view(len(ids), -1, *features.key.shape[-2:])
            out = aggregate(self.model.decode(features, readout)[:, 0])[:, None]
            prob[:, t] = out
            if t != num_frames - 1 and t % self.config.mem_every == 0:
                value = self.model.encode_value(images[:, t], features, out[1:]).flatten(2)
                mem_k = torch.cat([mem_k, qk], 2)
                mem_v = torch.cat([mem_v, value], 2)
            on_frame()
        label_map(prob).cpu()
        if keep is not None:
            left, right, top, bottom = pad_amounts(*clip.shape[1:3])
            height, width = prob.shape[-2:]
            keep.extend(prob[:, t, 0, top : height - bottom, left : width - right] for t in range(num_frames))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def _windows(frames: int) -> tuple[slice, slice]:
    """Frame ranges whose latencies give the early and late figures."""
    if frames >= 1400:
        return slice(900, 1100), slice(frames - 200, frames)
    tenth = max(1, frames // 10)
    return slice(1, 1 + tenth), slice(frames - tenth, frames)


def _measure(
    variant: str,
    weights: str | None,
    arch: str,
    config: InferenceConfig,
    device_name: str,
    clip: np.ndarray,
    first: np.ndarray,
    frames: int,
    threads: int | None,
) -> dict[str, Any]:
    """Run one variant in this (fresh) process and return its figures; the clip is cycled to ``frames``."""
    from avvos.cli import get_model

    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device_name)
    if variant == "stcn" or (weights is None and arch in ("light", "stcn")):
        torch.manual_seed(0)
        full = variant == "stcn" or arch == "stcn"
        model = build_model(ModelConfig.stcn() if full else ModelConfig.light()).to(device)
    else:
        model, _ = get_model(weights, device)
    stamps: list[float] = []
    early_window, _ = _windows(frames)
    early_rss = 0.0

    def tick() -> None:
        nonlocal early_rss
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())
        if len(stamps) == early_window.stop:
            early_rss = _current_rss_mib()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    positions = None
    start = time.perf_counter()
    if variant == "official":
        OfficialProfile(model, config, device).run(clip[:frames], first, tick)
    else:
        if variant == "unbounded":
            config = replace(config, memory_frames=None)
        elif variant == "no-last":
            config = replace(config, include_last=False)
        session = InferenceSession(model, config, device)
        for t in range(frames):
            session.step(clip[t % len(clip)], mask=first if t == 0 else None, end=t == frames - 1)
            tick()
        positions = session.memory.size + session.memory.temp_size
    latencies = np.diff([start, *stamps]) * 1000
    early, late = _windows(frames)
    steady = latencies[1:] if len(latencies) > 1 else latencies
    return asdict(
        BenchResult(
            variant=variant,
            frames=frames,
            fps=frames / (stamps[-1] - start),
            latency_median_ms=float(statistics.median(steady)),
            latency_p95_ms=float(np.percentile(steady, 95)),
            early_latency_ms=float(np.median(latencies[early])),
            late_latency_ms=float(np.median(latencies[late])),
            early_rss_mib=early_rss or _current_rss_mib(),
            late_rss_mib=_current_rss_mib(),
            peak_rss_mib=_peak_rss_mib(),
            peak_cuda_mib=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            memory_positions=positions,
        )
    )


def _median_of_runs(runs: list[dict]) -> dict:
    """One result whose numbers are the medians over repeated runs of the same variant."""
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float):
            merged[key] = float(statistics.median(r[key] for r in runs))
    merged["repeats"] = len(runs)
    return merged


def run_benchmark(args: argparse.Namespace, config: InferenceConfig) -> list[dict]:
    """Measure avvos (and the variant named by ``--compare``) in fresh processes and print a table."""
    if args.clip:
        from avvos.sources import open_frames

        with open_frames(args.clip) as source:
            images = [f.image for _, f in zip(range(min(args.frames, 300)), source, strict=False)]
        clip = np.stack(images)
        _, first = generated_clip(1, *clip.shape[1:3], args.objects)
    else:
        clip, first = generated_clip(min(args.frames, 300), args.height, args.width, args.objects)
    if args.compare == "official" and args.frames > len(clip):
        raise InputError(f"the official profile loads the whole clip up front: use at most {len(clip)} frames")
    variants = ["avvos"] + ([] if args.compare == "none" else [args.compare])
    context = multiprocessing.get_context("spawn")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for repeat in range(args.repeat):
        # Alternate the order (A B, B A, ...) so that a busy machine does not favour one variant.
        for variant in variants if repeat % 2 == 0 else variants[::-1]:
            with context.Pool(1) as pool:
                runs[variant].append(
                    pool.apply(
                        _measure,
                        (variant, args.weights, args.arch, config, args.device, clip, first, args.frames, args.threads),
                    )
                )
    results = [_median_of_runs(runs[v]) for v in variants]
    h, w = clip.shape[1:3]
    memory = (
        f"bounded to {config.memory_frames} frames ({config.memory_policy})" if config.memory_frames else "unbounded"
    )
    print(
        f"clip: {args.frames} frames of {w}x{h}, {args.objects} objects; model {args.weights or args.arch}; "
        f"device {args.device}; mem_every {config.mem_every}, top_k {config.top_k}; avvos memory {memory}; "
        f"torch threads {args.threads or torch.get_num_threads()}; medians over {args.repeat} alternating run(s)"
    )
    header = [
        "variant",
        "fps",
        "median ms",
        "p95 ms",
        "early ms",
        "late ms",
        "early RSS",
        "late RSS",
        "peak RSS",
        "CUDA MiB",
    ]
    print("".join(f"{h:>11}" for h in header))
    for r in results:
        cuda = f"{r['peak_cuda_mib']:.0f}" if r["peak_cuda_mib"] is not None else "-"
        row = [r["variant"], f"{r['fps']:.2f}", f"{r['latency_median_ms']:.1f}", f"{r['latency_p95_ms']:.1f}",
               f"{r['early_latency_ms']:.1f}", f"{r['late_latency_ms']:.1f}", f"{r['early_rss_mib']:.0f}",
               f"{r['late_rss_mib']:.0f}", f"{r['peak_rss_mib']:.0f}", cuda]  # fmt: skip
        print("".join(f"{c:>11}" for c in row))
    for r in results:
        print(f"{r['variant']}: late/early latency x{r['late_latency_ms'] / r['early_latency_ms']:.2f}")
    if len(results) == 2:
        a, o = results
        print(
            f"ratio avvos/{o['variant']}: fps x{a['fps'] / o['fps']:.2f}, "
            f"median latency x{a['latency_median_ms'] / o['latency_median_ms']:.2f}, "
            f"peak RSS x{a['peak_rss_mib'] / o['peak_rss_mib']:.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"clip": [args.frames, h, w], "results": results}, indent=2))
    sys.stdout.flush()
    return results
