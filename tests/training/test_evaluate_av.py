"""The audio-visual evaluation command on a tiny model and tiny held-out clips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avvos.checkpoint import save_checkpoint
from avvos.config import ModelConfig
from avvos.model.stcn import build_model
from training.evaluate_av import main


def test_every_condition_is_scored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "av.safetensors"
    save_checkpoint(build_model(ModelConfig.light(audio="pixel", smoothing=True)), weights)
    out = tmp_path / "eval"
    argv = ["--model", f"tiny={weights}", "--clips", "1", "--frames", "8", "--height", "64", "--width", "96",
            "--out", str(out), "--smoothing-off", "--identity-off", "--quiet", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "tiny: gain from audio on crossing" in printed
    results = json.loads((out / "results.json").read_text())["results"]
    conditions = [r["condition"] for r in results]
    assert conditions == ["crossing", "silent", "crossing, muted", "distinct",
                          "crossing, smoothing off", "distinct, smoothing off",
                          "crossing, identity off", "distinct, identity off",
                          "crossing, smoothing+identity off", "distinct, smoothing+identity off"]  # fmt: skip
    assert all(0.0 <= r["J&F-Mean"] <= 1.0 and r["clips"] == 1 for r in results)
    # Each condition is also broken down by the clip's visible mapping (one clip here: one mapping).
    mappings = {tuple(r["by_mapping"]) for r in results if r["condition"].startswith("crossing")}
    assert len(mappings) == 1 and next(iter(mappings))[0] in ("brightness", "size", "opening")
    assert f"crossing, {next(iter(mappings))[0]} mapping (1 clips)" in printed
    assert len(list((out / "masks" / "tiny" / "crossing").rglob("*.png"))) == 8
    with pytest.raises(SystemExit):
        main(["--model", "no-equals-sign"])


def test_clips_written_elsewhere_are_scored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--data``: the clips of the independent generator, scored as they are (nothing written to ``<out>/data``)."""
    from training.independent_av_sync import main as generate

    torch.manual_seed(0)
    weights = tmp_path / "av.safetensors"
    save_checkpoint(build_model(ModelConfig.light(audio="pixel", smoothing=True)), weights)
    data = tmp_path / "indep"
    size = ["--frames", "16", "--height", "64", "--width", "96"]
    assert generate([str(data), "--clips", "1", "--seed", "3", *size]) == 0
    out = tmp_path / "eval"
    argv = ["--model", f"tiny={weights}", "--data", str(data), "--out", str(out), "--quiet", "--device", "cpu"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["data"] == str(data) and results["settings"]["seed"] is None
    assert [r["clips"] for r in results["results"]] == [1, 1, 1, 1] and not (out / "data").exists()
    with pytest.raises(SystemExit):
        main(["--model", f"tiny={weights}", "--data", str(tmp_path / "nowhere"), "--out", str(out)])


def test_only_the_named_conditions_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--only crossing`` on a folder holding the crossing split alone: one condition, no gain line; an unknown
    condition is refused."""
    from avvos.data.av_sync import AVSyncConfig, write_dataset

    torch.manual_seed(0)
    weights = tmp_path / "av.safetensors"
    save_checkpoint(build_model(ModelConfig.light(audio="pixel", smoothing=True)), weights)
    data = tmp_path / "dev"
    write_dataset(data, "crossing", 1, 11_500_000, AVSyncConfig(frames=8, height=64, width=96), progress=False)
    out = tmp_path / "eval"
    base = ["--model", f"tiny={weights}", "--data", str(data), "--out", str(out), "--quiet", "--device", "cpu"]
    assert main([*base, "--only", "crossing"]) == 0
    assert "gain from audio" not in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["condition"] for r in results] == ["crossing"]
    with pytest.raises(SystemExit):
        main([*base, "--only", "silent"])  # the folder has no silent split
    with pytest.raises(SystemExit):
        main([*base, "--only", "nonsense"])


def test_help_keeps_the_continued_command_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """The example commands in ``--help`` run over two lines joined by a shell backslash, not into one line."""
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--data runs/dev/data \\\n        --only crossing" in capsys.readouterr().out


def test_live_scores_as_a_stream_runs(tmp_path: Path) -> None:
    """``--live``: the previous frame is not matched and masks are not held back, so the bundled model's masks
    differ from those it makes on files."""
    weights = Path(__file__).parents[2] / "avvos" / "weights" / "default.safetensors"
    size = ["--clips", "1", "--frames", "12", "--height", "96", "--width", "160", "--quiet", "--device", "cpu"]
    runs = {}
    for name, extra in (("files", []), ("live", ["--live"])):
        out = tmp_path / name
        assert main(["--model", f"tiny={weights}", "--out", str(out), "--only", "crossing", *size, *extra]) == 0
        runs[name] = out
    settings = json.loads((runs["live"] / "results.json").read_text())["settings"]
    assert settings["live"] is True
    assert settings["inference"]["include_last"] is False and settings["inference"]["identity_lookback"] == 0
    assert json.loads((runs["files"] / "results.json").read_text())["settings"]["live"] is False
    masks = {name: sorted((out / "masks" / "tiny" / "crossing").rglob("*.png")) for name, out in runs.items()}
    assert len(masks["live"]) == len(masks["files"]) == 12
    assert any(a.read_bytes() != b.read_bytes() for a, b in zip(masks["files"], masks["live"], strict=True))
