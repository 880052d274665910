"""Run the OFFICIAL STCN inference on the synthetic clip and save its output as a test fixture.

Developer tool, not run by CI. It needs a checkout of github.com/hkchengrex/STCN (no official
code is part of this repository):

    python tests/reference/make_official_reference.py --stcn /path/to/STCN \\
        --out tests/fixtures/official_stcn_reference.npz

The official code is used unmodified. At run time only the following is patched:

* ImageNet weight downloads in the official constructors (``torchvision.models.resnet50`` and
  ``model.mod_resnet.resnet18`` are called with ``pretrained=True``): they build the same
  modules with random init instead, since the strict ``load_state_dict`` overwrites every
  entry anyway.
* CUDA: a ``TorchFunctionMode`` turns ``Tensor.cuda()`` into the identity (as it is for a
  tensor already on the GPU) and ``device='cuda'`` factory arguments into ``'cpu'``.
* ``MemoryBank._global_matching`` is wrapped to record the memory and query keys it is given
  (then it calls the official method unchanged), to compute the float64 top-k gaps.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.reference.clip import clip_sha256, make_clip  # noqa: E402
from tests.reference.official_weights import official_state_dict, state_dict_sha256  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _CudaAsCpu(TorchFunctionMode):
    """Makes ``.cuda()`` the identity and redirects ``device='cuda'`` to the CPU."""

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.cuda:
            return args[0]
        device = kwargs.get("device")
        if device is not None and torch.device(device).type == "cuda":
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


@contextlib.contextmanager
def _official_import(stcn_dir: Path) -> Iterator[None]:
    """Put the checkout first on sys.path, and drop its modules from sys.modules afterwards."""
    before = set(sys.modules)
    sys.path.insert(0, str(stcn_dir))
    try:
        yield
    finally:
        sys.path.remove(str(stcn_dir))
        for name in set(sys.modules) - before:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if Path(module_file).resolve().is_relative_to(stcn_dir):
                del sys.modules[name]


@contextlib.contextmanager
def _patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _build_official_network(stcn_dir: Path, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Construct the official eval STCN and load ``state`` the way eval_davis.py does."""
    import torchvision

    eval_network = importlib.import_module("model.eval_network")
    mod_resnet = importlib.import_module("model.mod_resnet")
    tv_resnet50 = torchvision.models.resnet50
    resnet18 = mod_resnet.resnet18

    with (
        _patched(torchvision.models, "resnet50", lambda pretrained=False, **kw: tv_resnet50(weights=None, **kw)),
        _patched(mod_resnet, "resnet18", lambda pretrained=True, extra_chan=0: resnet18(False, extra_chan)),
    ):
        network = eval_network.STCN().eval()

    expected = [(k, tuple(v.shape), v.dtype) for k, v in network.state_dict().items()]
    if expected != [(k, tuple(v.shape), v.dtype) for k, v in state.items()]:
        raise ValueError("state dict layout differs from the official network's (keys, order, shapes, dtypes)")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stcn_random.pth"
        torch.save(state, path)
        saved = torch.load(path)
    if saved["value_encoder.conv1.weight"].shape[1] != 5:
        raise ValueError("expected a 5-channel value encoder (the 4->5 widening is not exercised)")
    network.load_state_dict(saved)
    return network


def _clip_tensors(frames: np.ndarray, first_mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(1, T, 3, H, W) normalised frames and (K, T, 1, H, W) one-hot masks, as DAVISTestDataset."""
    from PIL import Image
    from torchvision import transforms

    im_transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    rgb = torch.stack([im_transform(Image.fromarray(f).convert("RGB")) for f in frames], 0).unsqueeze(0)

    masks = np.zeros(frames.shape[:3], dtype=np.uint8)
    masks[0] = first_mask
    labels = [int(v) for v in np.unique(masks[0]) if v != 0]
    onehot = np.stack([(masks == v).astype(np.uint8) for v in labels], 0)
    return rgb, torch.from_numpy(onehot).float().unsqueeze(2), labels


def _topk_gap(mk: torch.Tensor, qk: torch.Tensor, top_k: int) -> np.ndarray:
    """Float64 gap between the top_k-th and (top_k+1)-th affinity per query position."""
    m = mk[0].double()
    q = qk[0].double()
    affinity = (2 * m.transpose(0, 1) @ q - m.pow(2).sum(0)[:, None]) / math.sqrt(m.shape[0])
    top = torch.topk(affinity, k=top_k + 1, dim=0).values
    return (top[top_k - 1] - top[top_k]).numpy()


def run_official(
    stcn_dir: Path,
    state: dict[str, torch.Tensor],
    frames: np.ndarray,
    first_mask: np.ndarray,
    top_k: int = 20,
    mem_every: int = 5,
) -> dict[str, Any]:
    """Run the official DAVIS-2017 inference on the CPU; return probabilities, labels and key stats."""
    torch.set_num_threads(1)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    stcn_dir = stcn_dir.resolve()

    with _official_import(stcn_dir), torch.no_grad():
        network = _build_official_network(stcn_dir, state)
        inference_core = importlib.import_module("inference_core")
        tensor_util = importlib.import_module("util.tensor_util")
        memory_bank = importlib.import_module("inference_memory_bank")

        rgb, msk, labels = _clip_tensors(frames, first_mask)
        num_frames = rgb.shape[1]
        size = tuple(frames.shape[1:3])

        captured: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        official_matching = memory_bank.MemoryBank._global_matching

        def recording_matching(bank: Any, mk: torch.Tensor, qk: torch.Tensor) -> torch.Tensor:
            mk_copy, qk_copy = mk.clone(), qk.clone()
            weights = official_matching(bank, mk, qk)
            captured.append((mk_copy, qk_copy, weights.clone()))
            return weights

        with _patched(memory_bank.MemoryBank, "_global_matching", recording_matching), _CudaAsCpu():
            processor = inference_core.InferenceCore(
                network, rgb, len(labels), top_k=top_k, mem_every=mem_every, include_last=False
            )
            processor.interact(msk[:, 0], 0, num_frames)

            prob = torch.zeros((len(labels) + 1, num_frames, *size), dtype=torch.float32)
            out_labels = torch.zeros((num_frames, *size), dtype=torch.uint8)
            for ti in range(processor.t):
                unpadded = tensor_util.unpad(processor.prob[:, ti], processor.pad)
                resized = torch.nn.functional.interpolate(unpadded, size, mode="bilinear", align_corners=False)
                if not torch.allclose(resized, unpadded, rtol=0, atol=0, equal_nan=True):
                    raise AssertionError("the 480p resize is expected to be the identity here")
                prob[:, ti] = unpadded[:, 0]
                out_labels[ti] = torch.argmax(resized, dim=0)[0]

    kh, kw = processor.kh, processor.kw
    if len(captured) != num_frames - 1:
        raise AssertionError(f"expected {num_frames - 1} memory reads, got {len(captured)}")
    gaps = np.stack([_topk_gap(mk, qk, top_k).reshape(kh, kw) for mk, qk, _ in captured], 0)
    affinity_max = max(
        float(((2 * mk.transpose(1, 2) @ qk - mk.pow(2).sum(1).unsqueeze(2)) / math.sqrt(mk.shape[1])).max())
        for mk, qk, _ in captured
    )
    top1_weight = np.array([float(w.max(dim=1).values.mean()) for _, _, w in captured])
    memory_frames = np.array([mk.shape[2] // (kh * kw) for mk, _, _ in captured], dtype=np.int64)
    return {
        "prob": prob.numpy(),
        "labels": out_labels.numpy(),
        "topk_gap": gaps,
        "pad": np.array(processor.pad, dtype=np.int64),
        "memory_frames": memory_frames,
        "affinity_max": affinity_max,
        "top1_weight": top1_weight,
        "object_labels": np.array(labels, dtype=np.int64),
    }


def _commit_of(stcn_dir: Path, given: str | None) -> str:
    if given:
        return given
    try:
        top, head = subprocess.run(
            ["git", "-C", str(stcn_dir), "rev-parse", "--show-toplevel", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError, ValueError):
        return "unknown"
    return head if Path(top).resolve() == stcn_dir.resolve() else "unknown"


def _summary(result: dict[str, Any]) -> str:
    prob, labels, gap = result["prob"], result["labels"], result["topk_gap"]
    lines = [
        f"prob min/max/mean {prob.min():.3e} / {prob.max():.6f} / {prob.mean():.4f}, NaNs {int(np.isnan(prob).sum())}",
        f"max affinity {result['affinity_max']:.2f}; mean top-1 softmax weight per frame "
        + " ".join(f"{w:.3f}" for w in result["top1_weight"]),
        f"memory frames per read {result['memory_frames'].tolist()}; pad {result['pad'].tolist()}",
        f"topk_gap < 1e-4: {np.mean(gap < 1e-4):.4%} ({int((gap < 1e-4).sum())}/{gap.size}); "
        f"< 1e-3: {np.mean(gap < 1e-3):.4%}; min {gap.min():.3e}",
    ]
    for t in range(labels.shape[0]):
        fractions = np.bincount(labels[t].ravel(), minlength=prob.shape[0]) / labels[t].size
        fg = prob[1:, t]
        lines.append(
            f"frame {t:2d}: label fractions {np.round(fractions, 4).tolist()}, "
            f"fg prob in (0.05, 0.95): {np.mean((fg > 0.05) & (fg < 0.95)):.3f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stcn", type=Path, required=True, help="checkout of hkchengrex/STCN")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/official_stcn_reference.npz"))
    parser.add_argument("--commit", help="official commit hash (default: git rev-parse HEAD in --stcn)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--mem-every", type=int, default=5)
    args = parser.parse_args()

    state = official_state_dict(args.seed)
    frames, first_mask = make_clip(args.seed)
    result = run_official(args.stcn, state, frames, first_mask, args.top_k, args.mem_every)
    print(_summary(result))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        prob=result["prob"].astype(np.float32),
        labels=result["labels"].astype(np.uint8),
        topk_gap=result["topk_gap"].astype(np.float64),
        pad=result["pad"],
        object_labels=result["object_labels"],
        clip_sha256=np.array(clip_sha256(frames, first_mask)),
        weights_sha256=np.array(state_dict_sha256(state)),
        torch_version=np.array(torch.__version__),
        numpy_version=np.array(np.__version__),
        official_commit=np.array(_commit_of(args.stcn, args.commit)),
        seed=np.array(args.seed, dtype=np.int64),
        top_k=np.array(args.top_k, dtype=np.int64),
        mem_every=np.array(args.mem_every, dtype=np.int64),
        include_last=np.array(False),
        affinity_max=np.array(result["affinity_max"]),
        top1_weight=result["top1_weight"],
        memory_frames=result["memory_frames"],
        clip_shape=np.array(frames.shape, dtype=np.int64),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
