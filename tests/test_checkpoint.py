"""Loading official STCN and avvos checkpoints, and refusing everything else clearly."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from avvos.checkpoint import load_model, save_checkpoint
from avvos.errors import CheckpointError
from avvos.model.stcn import STCN


def _official_file(model: STCN, path: Path, **changes: torch.Tensor) -> dict[str, torch.Tensor]:
    state = OrderedDict((k, v.clone()) for k, v in model.state_dict().items())
    state.update(changes)
    torch.save(state, path)
    return state


def test_official_checkpoint_loads_strictly(stcn_model: STCN, tmp_path: Path) -> None:
    state = _official_file(stcn_model, tmp_path / "stcn.pth")
    model, info = load_model(tmp_path / "stcn.pth")
    assert info.kind == "official-stcn"
    loaded = model.state_dict()
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_single_object_checkpoint_is_widened_with_zeros(stcn_model: STCN, tmp_path: Path) -> None:
    conv1 = stcn_model.state_dict()["value_encoder.conv1.weight"][:, :4].clone()
    _official_file(stcn_model, tmp_path / "s0.pth", **{"value_encoder.conv1.weight": conv1})
    model, info = load_model(tmp_path / "s0.pth")
    widened = model.state_dict()["value_encoder.conv1.weight"]
    assert widened.shape == (64, 5, 7, 7)
    assert torch.equal(widened[:, :4], conv1) and not widened[:, 4].any()
    assert any("4 to 5" in note for note in info.notes)


def test_ddp_prefix_and_resume_checkpoint(stcn_model: STCN, tmp_path: Path) -> None:
    state = {f"module.{k}": v for k, v in stcn_model.state_dict().items()}
    torch.save(state, tmp_path / "ddp.pth")
    load_model(tmp_path / "ddp.pth")
    torch.save({"it": 5, "network": stcn_model.state_dict()}, tmp_path / "resume.pth")
    load_model(tmp_path / "resume.pth")


def test_avvos_checkpoint_round_trip_carries_its_config(stcn_model: STCN, tmp_path: Path) -> None:
    save_checkpoint(stcn_model, tmp_path / "m.safetensors", description="test model")
    model, info = load_model(tmp_path / "m.safetensors")
    assert info.kind == "avvos" and info.config == stcn_model.config
    assert "test model" in info.describe()
    assert not list(tmp_path.glob("*.tmp"))
    a, b = stcn_model.state_dict(), model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_missing_and_unexpected_keys_are_named(stcn_model: STCN, tmp_path: Path) -> None:
    state = stcn_model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("decoder.pred")}
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"2 missing \(e\.g\. decoder\.pred\.weight.*1 unexpected.*extra\.weight"):
        load_model(tmp_path / "bad.pth")


def test_foreign_architecture_is_refused(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(CheckpointError, match="not an STCN or avvos checkpoint"):
        load_model(tmp_path / "resnet18.pth")


def test_wrong_shapes_are_named(stcn_model: STCN, tmp_path: Path) -> None:
    _official_file(stcn_model, tmp_path / "s.pth", **{"key_proj.key_proj.weight": torch.zeros(32, 1024, 3, 3)})
    with pytest.raises(CheckpointError, match=r"key_proj\.key_proj\.weight \(32, 1024, 3, 3\) vs expected"):
        load_model(tmp_path / "s.pth")


def test_truncated_checkpoint(stcn_model: STCN, tmp_path: Path) -> None:
    _official_file(stcn_model, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(tmp_path / "cut.pth")
    save_checkpoint(stcn_model, tmp_path / "full.safetensors")
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(tmp_path / "cut.safetensors")


class Payload:
    """A class weights_only loading must refuse to instantiate."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_with_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, path)
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        load_model(path)
    assert "must never run" not in capsys.readouterr().out


def test_other_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "absent.pth")
    (tmp_path / "text.pth").write_text("hello, not a checkpoint")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "text.pth")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not an avvos checkpoint"):
        load_model(tmp_path / "other.safetensors")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_model(tmp_path / "list.pth")


def test_nan_weights_are_refused(stcn_model: STCN, tmp_path: Path) -> None:
    _official_file(stcn_model, tmp_path / "nan.pth", **{"decoder.pred.bias": torch.tensor([float("nan")])})
    with pytest.raises(CheckpointError, match="NaN"):
        load_model(tmp_path / "nan.pth")
