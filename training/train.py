"""Training entry point: ``python -m training.train --stage NAME [--key value ...]`` (see training/README.md).

Runs one stage on one process or, under ``torchrun``, on many (DistributedDataParallel; NCCL on GPUs, gloo on
CPUs). BatchNorm stays frozen as in STCN (the model is kept in eval mode while it learns). Every
``save_every`` iterations a resume checkpoint is written atomically; a run started again with the same
``out_dir`` continues from it exactly. The final weights go to ``<out_dir>/final.safetensors`` in avvos's
checkpoint format.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from avvos.checkpoint import load_model, save_checkpoint
from avvos.config import resolve_device
from avvos.data.avsbench import AVSBenchDataset
from avvos.data.sampling import ItemKey, KeyBatchSampler
from avvos.data.static import StaticDataset, find_image_pairs, frames_as_images
from avvos.data.vos import AVSyncSequences, VOSDataset
from avvos.errors import CheckpointError
from avvos.model.aggregate import label_map
from avvos.model.stcn import STCN, build_model
from training.config import TrainConfig, describe_stages, parse_args
from training.forward import TrainingNetwork
from training.loss import bootstrap_fraction, regress_loss, sequence_loss, sounding_loss, steady_loss

RESUME_NAME = "resume.pt"
FINAL_NAME = "final.safetensors"
#: Modules an official STCN file does not have; they keep their (zero-output) initialisation on warm start.
EXTENSION_PREFIXES = ("audio_encoder.", "audio_key.", "smoother.")


class Mixture(Dataset):
    """Several data sets behind one: an :class:`ItemKey`'s ``source`` says which one serves it."""

    def __init__(self, sources: list[Dataset]) -> None:
        self.sources = sources

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def __getitem__(self, key: ItemKey) -> dict:
        return self.sources[key.source][key]


def build_sources(config: TrainConfig) -> tuple[list[Dataset], list[float]]:
    """The stage's data sets and their sampling weights: real items uniformly, the synthetic task at its ratio."""
    data = config.data
    size = (data.height, data.width)
    ratio = data.synthetic_ratio
    real: list[Dataset] = []
    if ratio < 1:
        pairs = [pair for root in data.static_roots for pair in find_image_pairs(root)]
        if config.stage == "static":
            pairs += frames_as_images(data.vos_roots, data.vos_split or None)
        elif data.vos_roots:
            real.append(
                VOSDataset(data.vos_roots, size, data.num_frames, data.objects, data.vos_split or None, data.fps)
            )
        if pairs:
            real.append(StaticDataset(pairs, size, data.num_frames, data.objects))
        if data.avsbench_roots:
            real.append(
                AVSBenchDataset(data.avsbench_roots, size, data.num_frames, data.avsbench_split, None, data.objects)
            )
        if not real:
            raise ValueError(f"stage {config.stage!r} has no real data: give --data.vos_roots or --data.static_roots")
    total = sum(len(s) for s in real)
    weights = [(1 - ratio) * len(s) / total for s in real]
    sources = list(real)
    if ratio > 0:
        sources.append(
            AVSyncSequences(size, data.num_frames, data.av_clips, data.av_frames, data.av_splits, data.objects)
        )
        weights.append(ratio)
    return sources, weights


def warm_start(model: STCN, path: str | Path) -> list[str]:
    """Copy the weights of an official STCN or avvos checkpoint into ``model``; returns the keys left as they were.

    Only the extension modules (audio, smoother) may be missing from the file or differ in shape (another audio
    design): those keep their fresh values. Every other key must match in name and shape. Extension weights in the
    file that ``model`` has no place for are ignored.
    """
    source, info = load_model(path)
    state = source.state_dict()
    own = model.state_dict()
    reshaped = [k for k in own if k in state and state[k].shape != own[k].shape]
    missing = [k for k in own if k not in state] + [k for k in reshaped if k.startswith(EXTENSION_PREFIXES)]
    wrong = [k for k in reshaped if not k.startswith(EXTENSION_PREFIXES)]
    core_missing = [k for k in missing if not k.startswith(EXTENSION_PREFIXES)]
    extra = [k for k in state if k not in own and not k.startswith(EXTENSION_PREFIXES)]
    if core_missing or wrong or extra:
        problems = core_missing[:3] + wrong[:3] + extra[:3]
        raise CheckpointError(
            f"{info.describe()} does not fit the model being trained ({model.config.key_backbone} / "
            f"{model.config.value_backbone}): {len(core_missing)} missing, {len(wrong)} of another shape, "
            f"{len(extra)} unexpected, e.g. {', '.join(problems)}"
        )
    own.update({k: v for k, v in state.items() if k in own and k not in missing})
    model.load_state_dict(own)
    return missing


# ---------------------------------------------------------------------------------------------- checkpoints


def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, flushed to disk, then renamed over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as tensors, numbers and lists (loadable with weights_only)."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": position,
            "gauss": has_gauss,
            "cached": cached,
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["pos"], numpy["gauss"], numpy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resume(path: Path, iteration: int, config: TrainConfig, parts: dict[str, Any]) -> None:
    """Everything to continue exactly: weights, optimiser, scheduler, scaler, RNGs and the sampler position."""
    scheduler = parts["scheduler"].state_dict()
    scheduler["milestones"] = dict(scheduler["milestones"])
    _atomic_save(
        {
            "iteration": iteration,
            "model": parts["model"].state_dict(),
            "optimizer": parts["optimizer"].state_dict(),
            "scheduler": scheduler,
            "scaler": parts["scaler"].state_dict(),
            "rng": _rng_state(),
            "sampler": {"next_iteration": iteration, "seed": config.seed},
            "config": config.to_json(),
        },
        path,
    )


def load_resume(path: Path, parts: dict[str, Any], config: TrainConfig | None = None) -> int:
    """Restore a resume checkpoint (tensors and plain data only: ``weights_only=True``); returns its iteration.

    Settings that differ from the run that wrote it are reported on stderr (the new ones apply).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if config is not None:
        old, new = json.loads(state["config"]), json.loads(config.to_json())
        changed = sorted(k for k in new if k not in ("progress", "threads") and old.get(k) != new[k])
        if changed:
            print(f"resuming {path} with changed settings: {', '.join(changed)}", file=sys.stderr)
    parts["model"].load_state_dict(state["model"])
    parts["optimizer"].load_state_dict(state["optimizer"])
    scheduler = dict(state["scheduler"])
    scheduler["milestones"] = Counter(scheduler["milestones"])
    parts["scheduler"].load_state_dict(scheduler)
    parts["scaler"].load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    return int(state["sampler"]["next_iteration"])


# ------------------------------------------------------------------------------------------------- logging


def _overlay(frames: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) frames with (T, H, W) classes painted on: object 1 red, object 2 green."""
    colours = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.1, 0.1], [0.1, 1.0, 0.1]], device=frames.device)
    paint = colours[classes.clamp(max=2)].permute(0, 3, 1, 2)
    alpha = (classes > 0).float()[:, None] * 0.5
    return frames * (1 - alpha) + paint * alpha


def image_grid(batch: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    """A grid for the first sample: frames, ground truth, prediction (frame 0's prediction is its ground truth)."""
    from torchvision.utils import make_grid

    from training.loss import class_targets

    frames = batch["frames"][0].float()
    truth = class_targets(batch["masks"][0])
    predicted = torch.cat([truth[:1], label_map(logits[0], dim=1)])
    rows = torch.cat([frames, _overlay(frames, truth), _overlay(frames, predicted)])
    return make_grid(rows.clamp(0, 1).cpu(), nrow=frames.shape[0], padding=2)


# -------------------------------------------------------------------------------------------------- training


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank), starting the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, local


def _build_model(config: TrainConfig) -> STCN:
    pretrained = config.pretrained and not config.init
    try:
        model = build_model(config.model, pretrained=pretrained)
    except (OSError, RuntimeError) as exc:
        raise SystemExit(
            f"cannot get torchvision's ImageNet weights for the {config.preset} model ({exc}). Put the file in "
            f"$TORCH_HOME/hub/checkpoints/, start from a checkpoint with --init PATH, or use --pretrained false."
        ) from exc
    if config.init:
        warm_start(model, config.init)
    if model.uses_audio and config.audio_init_std > 0:
        unlock_audio_channels(model, config.audio_init_std, force=config.reset_audio)
    return model


def trunk_parameter_names(model: STCN) -> list[str]:
    """The ImageNet trunk weights: the whole key encoder, and the value encoder but for its first convolution
    (it reads the mask channels ImageNet never saw) and its fusion block."""
    own = ("value_encoder.conv1.", "value_encoder.trunk.0.", "value_encoder.fuser.")
    return [
        name
        for name, _ in model.named_parameters()
        if name.startswith("key_encoder.") or (name.startswith("value_encoder.") and not name.startswith(own))
    ]


def unlock_audio_channels(model: STCN, std: float = 0.05, force: bool = False) -> bool:
    """Give all-zero audio key channels (all audio key channels with ``force``) a random start; True if it did.

    The L2 affinity is quadratic in the audio channels, so when memory and query both have exactly zero
    audio channels (the STCN-exact initialisation) their gradient is zero too and they never learn. A
    perturbation breaks that saddle. It must not be too small either: the gradient grows with the channels,
    and a 1e-3 start left them too small to change any mask after 800 iterations (measured).
    """
    weight = model.audio_key.proj.weight
    if weight.abs().max() > 0 and not force:
        return False
    with torch.no_grad():
        weight.normal_(0.0, std, generator=torch.Generator().manual_seed(0))
    return True


def train(config: TrainConfig) -> STCN:
    """Run (or continue) one training stage; returns the trained model (rank 0 writes the files)."""
    rank, world, local_rank = _distributed()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    amp = config.amp and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed sample sizes: let cuDNN pick its fastest kernels
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    torch.manual_seed(config.seed)

    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resume_path = out_dir / RESUME_NAME
    model = _build_model(config).to(device).eval()  # eval: BatchNorm statistics stay frozen (STCN)
    network = TrainingNetwork(model, config.memory_every).to(device)
    # Frozen weights are set before DDP wraps the network: it registers the weights that need gradients then.
    if config.freeze_trunks:
        for name in trunk_parameter_names(model):
            model.get_parameter(name).requires_grad_(False)
    if config.train_only:
        names = [name for name, _ in model.named_parameters()]
        unmatched = [prefix for prefix in config.train_only if not any(n.startswith(prefix) for n in names)]
        if unmatched:
            raise ValueError(f"train_only: no parameter of this model starts with {', '.join(unmatched)}")
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(parameter.requires_grad and name.startswith(config.train_only))
    wrapped: torch.nn.Module = network
    if world > 1:
        wrapped = DistributedDataParallel(
            network,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
            find_unused_parameters=model.uses_audio and config.data.synthetic_ratio < 1,  # silent samples
        )
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.lr_steps), config.lr_gamma)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    start = load_resume(resume_path, parts, config if rank == 0 else None) if resume_path.is_file() else 0
    if rank == 0:
        for stale in out_dir.glob(f"{RESUME_NAME}*.tmp"):  # left by a run killed while saving
            stale.unlink(missing_ok=True)

    sources, weights = build_sources(config)
    schedule = tuple(zip(config.data.max_skip_at, config.data.max_skip, strict=True))
    sampler = KeyBatchSampler(
        [len(s) for s in sources],
        weights,
        config.batch_size,
        config.iterations,
        config.seed,
        rank,
        world,
        start,
        schedule,
    )
    loader = DataLoader(
        Mixture(sources),
        batch_sampler=sampler,
        num_workers=config.data.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    main_process = rank == 0
    writer = None
    if main_process:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tensorboard"))
        writer.add_text("config", config.to_json(), start)
    progress = tqdm(
        total=config.iterations, initial=start, desc=config.stage, disable=not (main_process and config.progress)
    )
    timer = time.perf_counter()
    first_done: float | None = None
    for iteration, batch in zip(range(start, config.iterations), loader, strict=False):
        batch = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        with torch.autocast(device.type, enabled=amp):
            logits, sounding = wrapped(
                batch["frames"],
                batch["masks"],
                batch["selector"],
                batch["audio"],
                batch["has_audio"],
                batch["history_frames"],
                batch["history_audio"],
            )
        fraction = bootstrap_fraction(iteration, config.bce_start_warm, config.bce_end_warm, config.bce_top_p)
        loss, stats = sequence_loss(logits, batch["masks"], batch["selector"], batch["valid"], fraction)
        if model.uses_audio and config.sounding_weight > 0:
            heard = sounding_loss(sounding, batch["masks"], batch["has_audio"], batch["lookalikes"])
            loss = loss + config.sounding_weight * heard
            stats["sounding"] = heard.detach()
        for term, weight, mask_loss in (
            ("steady", config.steady_weight, steady_loss),
            ("regress", config.regress_weight, regress_loss),
        ):
            if weight > 0:
                value = mask_loss(logits, batch["masks"], batch["selector"], batch["valid"])
                loss = loss + weight * value
                stats[term] = value.detach()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        done = iteration + 1
        if first_done is None:
            first_done = time.perf_counter()
        if writer is not None and (done % config.log_every == 0 or done == config.iterations):
            elapsed = time.perf_counter() - timer
            values = {k: float(v) for k, v in stats.items()}
            writer.add_scalar("train/loss", values["loss"], done)
            writer.add_scalar("train/iou", values["iou"], done)
            for term in ("sounding", "steady", "regress"):
                if term in values:
                    writer.add_scalar(f"train/{term}_loss", values[term], done)
            writer.add_scalar("train/grad_norm", float(grad_norm), done)
            writer.add_scalar("train/lr", scheduler.get_last_lr()[0], done)
            writer.add_scalar("train/bootstrap_fraction", fraction, done)
            writer.add_scalar("train/max_skip", sampler.batch(iteration)[0].max_skip, done)
            writer.add_scalar("train/sec_per_iteration", elapsed / max(done - start, 1), done)
            shown = {name: f"{value:.4f}" for name, value in values.items()}
            progress.set_postfix(shown)
        if writer is not None and done % config.image_every == 0:
            writer.add_image("train/sample", image_grid(batch, logits.detach()), done)
        if main_process and (done % config.save_every == 0 or done == config.iterations):
            save_resume(resume_path, done, config, parts)
        progress.update(1)
    progress.close()
    end = time.perf_counter()
    if main_process:
        trained = config.iterations - start
        if first_done is not None and trained > 1:
            per_iteration = (end - first_done) / (trained - 1)
            print(f"{trained} iterations, {per_iteration:.3f} s/iteration after the first", file=sys.stderr)
        save_checkpoint(
            model,
            out_dir / FINAL_NAME,
            description=f"avvos training stage {config.stage}, {config.iterations} iterations",
            extra={"stage": config.stage, "iterations": config.iterations, "init": config.init},
        )
    if writer is not None:
        writer.close()
    if world > 1:
        dist.barrier()
    return model


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: parse ``--stage`` and overrides, then train."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: python -m training.train --stage NAME [--key value ...]\n\nstages:\n"
            f"{describe_stages()}\n\nEvery field of training/config.py can be set, e.g. --lr 1e-4 "
            "--iterations 2000 --model.audio pixel --data.vos_roots PATH1,PATH2 (see training/README.md)."
        )
        return 0
    try:
        config = parse_args(argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    train(config)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
