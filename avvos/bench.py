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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from avvos.config import IMAGENET_MEAN, IMAGENET_STD, InferenceConfig, resolve_device
from avvos.model.aggregate import aggregate
from avvos.model.stcn import STCN
from avvos.session import InferenceSession, pad_amounts


@dataclass
class BenchResult:
    """Figures of one variant; latencies in milliseconds, memory in MiB."""

    variant: str
    frames: int
    fps: float
    latency_median_ms: float
    latency_p95_ms: float
    first_latencies_ms: list[float]
    last_latencies_ms: list[float]
    peak_rss_mib: float
    peak_cuda_mib: float | None


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
        prob.argmax(dim=0).cpu()
        if keep is not None:
            left, right, top, bottom = pad_amounts(*clip.shape[1:3])
            height, width = prob.shape[-2:]
            keep.extend(prob[:, t, 0, top : height - bottom, left : width - right] for t in range(num_frames))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(
    variant: str,
    weights: str | None,
    config: InferenceConfig,
    device_name: str,
    clip: np.ndarray,
    first: np.ndarray,
    threads: int | None,
) -> dict[str, Any]:
    """Run one variant in this (fresh) process and return its figures."""
    from avvos.cli import get_model

    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device_name)
    model, _ = get_model(weights, device)
    stamps: list[float] = []

    def tick() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    if variant == "avvos":
        session = InferenceSession(model, config, device)
        for t in range(len(clip)):
            session.step(clip[t], mask=first if t == 0 else None, end=t == len(clip) - 1)
            tick()
    else:
        OfficialProfile(model, config, device).run(clip, first, tick)
    latencies = np.diff([start, *stamps]) * 1000
    steady = latencies[1:] if len(latencies) > 1 else latencies
    return asdict(
        BenchResult(
            variant=variant,
            frames=len(clip),
            fps=len(clip) / (stamps[-1] - start),
            latency_median_ms=float(statistics.median(steady)),
            latency_p95_ms=float(np.percentile(steady, 95)),
            first_latencies_ms=[float(x) for x in latencies[:5]],
            last_latencies_ms=[float(x) for x in latencies[-5:]],
            peak_rss_mib=_peak_rss_mib(),
            peak_cuda_mib=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        )
    )


def run_benchmark(args: argparse.Namespace, config: InferenceConfig, get_model: Callable[..., Any]) -> list[dict]:
    """Measure the avvos session (and the official profile unless ``--no-official``) and print a table."""
    if args.clip:
        from avvos.sources import open_frames

        with open_frames(args.clip) as source:
            frames = [f.image for _, f in zip(range(args.frames), source, strict=False)]
        clip = np.stack(frames)
        _, first = generated_clip(1, *clip.shape[1:3], args.objects)
    else:
        clip, first = generated_clip(args.frames, args.height, args.width, args.objects)
    variants = ["avvos"] if args.no_official else ["avvos", "official"]
    context = multiprocessing.get_context("spawn")
    results = []
    for variant in variants:
        with context.Pool(1) as pool:
            results.append(
                pool.apply(_measure, (variant, args.weights, config, args.device, clip, first, args.threads))
            )
    h, w = clip.shape[1:3]
    print(
        f"clip: {len(clip)} frames of {w}x{h}, {args.objects} objects; device {args.device}; "
        f"mem_every {config.mem_every}, top_k {config.top_k}; torch threads {args.threads or torch.get_num_threads()}"
    )
    print(f"{'variant':<10}{'fps':>8}{'median ms':>11}{'p95 ms':>9}{'peak RSS MiB':>14}{'peak CUDA MiB':>15}")
    for r in results:
        cuda = f"{r['peak_cuda_mib']:.0f}" if r["peak_cuda_mib"] is not None else "-"
        print(
            f"{r['variant']:<10}{r['fps']:>8.2f}{r['latency_median_ms']:>11.1f}{r['latency_p95_ms']:>9.1f}"
            f"{r['peak_rss_mib']:>14.0f}{cuda:>15}"
        )
    if len(results) == 2:
        a, o = results
        print(
            f"ratio avvos/official: fps x{a['fps'] / o['fps']:.2f}, "
            f"median latency x{a['latency_median_ms'] / o['latency_median_ms']:.2f}, "
            f"peak RSS x{a['peak_rss_mib'] / o['peak_rss_mib']:.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"clip": [len(clip), h, w], "results": results}, indent=2))
    sys.stdout.flush()
    return results
