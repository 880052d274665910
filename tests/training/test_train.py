"""Training runs end to end: learning, exact resume after a kill, warm starts, ImageNet init, DDP, the CLI."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from avvos.checkpoint import save_checkpoint
from avvos.config import ModelConfig
from avvos.data.sampling import ItemKey
from avvos.data.vos import AVSyncSequences
from avvos.errors import CheckpointError
from avvos.model.stcn import build_model
from tests.conftest import REPO_ROOT, SHARED
from tests.training.fake_data import write_davis_root
from training.config import TrainConfig, make_config
from training.forward import TrainingNetwork
from training.loss import sequence_loss
from training.train import FINAL_NAME, RESUME_NAME, _build_model, main, train, trunk_parameter_names, warm_start

MOBILENET = SHARED / "weights" / "mobilenet_v2-b0353104.pth"
TINY = {
    "data.height": 64,
    "data.width": 64,
    "data.num_frames": 4,
    "data.av_frames": 12,
    "data.workers": 0,
    "batch_size": 1,
    "lr": 1e-4,
    "threads": 1,
    "pretrained": False,
    "progress": False,
}


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Training sets the thread count of this process: put it back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary $TORCH_HOME holding torchvision's ImageNet MobileNetV2 file (as training set-up does)."""
    if not MOBILENET.is_file():
        pytest.skip(f"ImageNet MobileNetV2 weights not found at {MOBILENET}")
    home = tmp_path / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(MOBILENET, home / "hub" / "checkpoints" / MOBILENET.name)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_loss_goes_down_when_overfitting_one_clip(tmp_path: Path, torch_home: Path, one_thread: None) -> None:
    overrides = {
        **TINY,
        "data.height": 64,
        "data.width": 96,
        "data.num_frames": 6,
        "data.av_clips": 1,
        "iterations": 30,
        "lr": 2e-4,
        "pretrained": True,
        "image_every": 10,
        "out_dir": str(tmp_path / "run"),
    }
    config = make_config("av", overrides)
    clips = AVSyncSequences((64, 96), 6, clips=1, frames_per_clip=12, objects=1, augment=False)
    batch = {k: v[None] for k, v in clips[ItemKey(0, 0, 3, 5)].items() if isinstance(v, torch.Tensor)}

    def loss_of(model: torch.nn.Module) -> float:
        with torch.no_grad():
            names = ("frames", "masks", "selector", "audio", "has_audio")
            logits, _ = TrainingNetwork(model)(*(batch[k] for k in names))
            return float(sequence_loss(logits, batch["masks"], batch["selector"], batch["valid"], 1.0)[0])

    torch.manual_seed(config.seed)
    before = loss_of(_build_model(config).eval())
    after = loss_of(train(config))
    assert after < 0.5 * before, (before, after)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def _command(out_dir: Path, iterations: int) -> list[str]:
    settings = {**TINY, "iterations": iterations, "save_every": 2, "out_dir": str(out_dir)}
    return [sys.executable, "-m", "training.train", "--stage", "av", *[f"--{k}={v}" for k, v in settings.items()]]


def test_a_killed_run_resumes_exactly(tmp_path: Path, one_thread: None) -> None:
    iterations = 30
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(_command(killed_dir, iterations), cwd=REPO_ROOT, stderr=subprocess.DEVNULL)
    resume = killed_dir / RESUME_NAME
    deadline = time.monotonic() + 120
    while not resume.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert resume.is_file(), "no resume checkpoint was written"
    state = torch.load(resume, map_location="cpu", weights_only=True)  # never half-written, tensors only
    assert set(state) >= {"iteration", "model", "optimizer", "scheduler", "rng", "sampler", "config"}
    assert 2 <= state["iteration"] < iterations, "the run ended before it could be killed"
    assert not (killed_dir / FINAL_NAME).exists()

    finished = subprocess.run(_command(killed_dir, iterations), cwd=REPO_ROOT, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"{iterations - state['iteration']} iterations" in finished.stderr  # it continued, not restarted

    reference = make_config("av", {**TINY, "iterations": iterations, "save_every": 2, "out_dir": str(tmp_path / "ref")})
    train(reference)
    resumed, uninterrupted = _weights(killed_dir / FINAL_NAME), _weights(tmp_path / "ref" / FINAL_NAME)
    assert resumed.keys() == uninterrupted.keys()
    different = [k for k in resumed if not torch.equal(resumed[k], uninterrupted[k])]
    assert not different, different[:5]
    assert not list(killed_dir.glob("*.tmp"))


def test_warm_start_from_avvos_and_official_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    plain = build_model(ModelConfig.light())
    save_checkpoint(plain, tmp_path / "plain.safetensors")
    extended = build_model(ModelConfig.light(audio="pixel", smoothing=True))
    fresh = {k: v.clone() for k, v in extended.state_dict().items()}
    missing = warm_start(extended, tmp_path / "plain.safetensors")
    assert missing and all(k.startswith(("audio_encoder.", "audio_key.", "smoother.")) for k in missing)
    state = extended.state_dict()
    assert all(torch.equal(state[k], v) for k, v in plain.state_dict().items())
    assert all(torch.equal(state[k], fresh[k]) for k in missing)
    assert not extended.smoother.out.weight.any() and not extended.audio_key.proj.weight.any()

    other_design = build_model(ModelConfig.light(audio="frame", smoothing=True))
    switched = warm_start(other_design, tmp_path / "plain.safetensors")
    assert "audio_key.proj.weight" in switched
    save_checkpoint(extended, tmp_path / "pixel.safetensors")
    assert "audio_key.proj.weight" in warm_start(other_design, tmp_path / "pixel.safetensors")  # conv vs linear
    assert torch.equal(other_design.smoother.out.weight, extended.smoother.out.weight)

    official = build_model(ModelConfig.stcn())
    torch.save(official.state_dict(), tmp_path / "stcn.pth")
    target = build_model(ModelConfig.stcn(audio="frame", smoothing=True))
    warm_start(target, tmp_path / "stcn.pth")
    assert torch.equal(target.decoder.pred.weight, official.decoder.pred.weight)
    assert not target.audio_key.proj.weight.any()
    with pytest.raises(CheckpointError, match="does not fit"):
        warm_start(build_model(ModelConfig.light()), tmp_path / "stcn.pth")


def test_imagenet_init_reads_torch_home(torch_home: Path) -> None:
    model = _build_model(make_config("av", {"pretrained": True}))
    weights = torch.load(MOBILENET, map_location="cpu", weights_only=True)
    assert torch.equal(model.key_encoder.stage4[0][0].weight, weights["features.0.0.weight"])
    assert torch.equal(model.value_encoder.trunk[0][0].weight[:, :3], weights["features.0.0.weight"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, port: int, config: TrainConfig, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank))
    os.environ["WORLD_SIZE"] = "2"
    model = train(config)
    torch.save(model.state_dict(), Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path: Path, one_thread: None) -> None:
    common = {**TINY, "iterations": 3, "data.num_frames": 3}
    config = make_config("av", {**common, "out_dir": str(tmp_path / "ddp")})
    mp.spawn(_ddp_worker, args=(_free_port(), config, str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    single = train(make_config("av", {**common, "batch_size": 2, "out_dir": str(tmp_path / "single")})).state_dict()
    initial = _initial(config)
    floats = [k for k in rank0 if rank0[k].is_floating_point()]
    diff = torch.cat([(rank0[k] - single[k]).abs().flatten() for k in floats])
    moved = torch.cat([(rank0[k] - initial[k]).abs().flatten() for k in floats])
    # Adam turns float-rounding differences of near-zero gradients into steps of up to ~lr, so compare
    # against the learning rate and the typical movement rather than bit for bit.
    assert float(moved.mean()) > 1e-5
    assert float(diff.max()) < config.lr
    assert float(diff.mean()) < 0.01 * float(moved.mean())


def _initial(config: TrainConfig) -> dict[str, torch.Tensor]:
    torch.manual_seed(config.seed)
    return _build_model(config).state_dict()


def test_main_stage_on_a_davis_root(tmp_path: Path, one_thread: None) -> None:
    root = write_davis_root(tmp_path / "davis", names=("a", "b"), frames=8, audio_for=("a",))
    overrides = {**TINY, "iterations": 2, "data.vos_roots": str(root), "data.synthetic_ratio": 0.5}
    train(make_config("main", {**overrides, "image_every": 1, "out_dir": str(tmp_path / "main")}))
    assert (tmp_path / "main" / FINAL_NAME).is_file()
    train(make_config("static", {**overrides, "out_dir": str(tmp_path / "static")}))
    assert (tmp_path / "static" / FINAL_NAME).is_file()


def test_command_line_help_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "static" in capsys.readouterr().out
    assert main(["--stage", "nope"]) == 2
    assert "unknown stage" in capsys.readouterr().err


def test_frozen_trunks_stay_as_they_were(tmp_path: Path, one_thread: None) -> None:
    config = make_config("av", {**TINY, "iterations": 3, "freeze_trunks": True, "out_dir": str(tmp_path / "run")})
    before = _initial(config)
    after = train(config).state_dict()
    frozen = set(trunk_parameter_names(_build_model(config)))
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)
    trained = [k for k in after if after[k].is_floating_point() and k not in frozen and k.startswith("decoder.")]
    assert any(not torch.equal(after[k], before[k]) for k in trained)
    assert not any(k.startswith("value_encoder.trunk.0.") for k in frozen)  # the first conv reads the masks


def test_train_only_fits_the_named_weights(tmp_path: Path, one_thread: None) -> None:
    overrides = {**TINY, "iterations": 3, "train_only": ("smoother.",)}
    config = make_config("av", {**overrides, "out_dir": str(tmp_path / "run")})
    torch.set_num_threads(config.threads)  # as training does: the orthogonal start's QR depends on threads
    before = _initial(config)
    after = train(config).state_dict()
    changed = {k for k in after if after[k].is_floating_point() and not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("smoother.") for k in changed)
    assert "smoother.out.weight" in changed
    with pytest.raises(ValueError, match="no parameter of this model starts with smother"):
        train(make_config("av", {**overrides, "train_only": ("smother.",), "out_dir": str(tmp_path / "typo")}))


def test_steady_and_regress_losses_and_the_inference_memory_train_and_are_logged(
    tmp_path: Path, one_thread: None
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = {**TINY, "iterations": 2, "log_every": 1, "steady_weight": 1.0, "regress_weight": 1.0}
    train(make_config("av", {**overrides, "memory_every": 2, "out_dir": str(tmp_path / "run")}))
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    for term in ("steady", "regress"):
        values = [event.value for event in events.Scalars(f"train/{term}_loss")]
        assert len(values) == 2 and all(0 <= value < 1 for value in values)
    for name in ("memory_every", "steady_weight", "regress_weight"):
        with pytest.raises(ValueError, match="cannot be negative"):
            make_config("av", {**overrides, name: -1})
