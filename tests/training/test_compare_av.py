"""Comparing evaluation arms clip by clip: intervals, paired differences, kept clips, losses, bad input."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from avvos.masks import read_mask, write_mask
from training.compare_av import compare, main, score_arm
from training.independent_av_sync import main as generate

CLIPS = 4


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four crossing clips of the independent generator and their silent twins, 12 frames of 64 x 96."""
    root = tmp_path_factory.mktemp("compare_av") / "data"
    argv = [str(root), "--clips", str(CLIPS), "--seed", "4100", "--frames", "12", "--height", "64", "--width", "96",
            "--splits", "crossing,silent"]  # fmt: skip
    assert generate(argv) == 0
    return root


def write_arm(data: Path, out: Path, truthful: set[int], split: str = "crossing") -> Path:
    """Masks equal to the truth on the clips numbered in ``truthful``, empty on the others."""
    names = (data / "ImageSets" / f"{split}.txt").read_text().split()
    for index, name in enumerate(names):
        (out / name).mkdir(parents=True)
        for path in sorted((data / "Annotations" / name).glob("*.png")):
            if index in truthful:
                shutil.copy(path, out / name / path.name)
            else:
                write_mask(out / name / path.name, np.zeros_like(read_mask(path)))
    return out


def test_paired_differences_and_intervals(data: Path, tmp_path: Path) -> None:
    truth = score_arm(write_arm(data, tmp_path / "truth", set(range(CLIPS))), data, "crossing")
    empty = score_arm(write_arm(data, tmp_path / "empty", set()), data, "crossing")
    one = score_arm(write_arm(data, tmp_path / "one", {0}), data, "crossing")
    result = compare({"truth": truth, "empty": empty, "one": one}, samples=500, seed=1)
    assert result["clips"] == CLIPS
    perfect = result["arms"]["truth"]["J&F-Mean"]
    assert (perfect.mean, perfect.low, perfect.high) == (1.0, 1.0, 1.0)
    assert result["arms"]["truth"]["flicker"].mean == pytest.approx(0.0, abs=1e-9)
    # An empty mask scores 0 on every clip: the paired difference is -1 in every resample.
    drop = result["against_first"]["empty"]["J&F-Mean"]
    assert (drop.mean, drop.low, drop.high) == (-1.0, -1.0, -1.0)
    assert len(result["against_first"]["empty"]["losses"]) == CLIPS
    # Right on one clip of four: mean 1/4, and resampling the clips spreads the interval around it.
    quarter = result["arms"]["one"]["J&F-Mean"]
    assert quarter.mean == pytest.approx(0.25) and quarter.low < 0.25 < quarter.high
    assert quarter.low >= 0.0 and quarter.high <= 1.0
    assert len(result["against_first"]["one"]["losses"]) == CLIPS - 1
    # No clip is kept by every arm (the empty arm keeps none), so the kept means are NaN, not zeros.
    assert result["kept"]["clips"] == [] and math.isnan(result["kept"]["truth"]["J&F-Mean"])
    # Kept clips without the empty arm: the one clip both keep.
    both = compare({"truth": truth, "one": one}, samples=200)
    assert len(both["kept"]["clips"]) == 1 and both["kept"]["one"]["J&F-Mean"] == pytest.approx(1.0)
    # The same seed draws the same resamples.
    again = compare({"truth": truth, "empty": empty, "one": one}, samples=500, seed=1)
    assert again["arms"]["one"]["J&F-Mean"] == quarter


def test_bad_comparisons_are_refused(data: Path, tmp_path: Path) -> None:
    truth = score_arm(write_arm(data, tmp_path / "truth", set(range(CLIPS))), data, "crossing")
    fewer = {name: row for name, row in list(truth.items())[:-1]}
    with pytest.raises(ValueError, match="different clips"):
        compare({"truth": truth, "fewer": fewer})
    with pytest.raises(ValueError, match="no arms"):
        compare({})
    with pytest.raises(ValueError, match="samples"):
        compare({"truth": truth}, samples=0)
    with pytest.raises(FileNotFoundError, match="no mask folder"):
        score_arm(tmp_path / "nowhere", data, "crossing")


def test_the_command_prints_and_writes_json(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = write_arm(data, tmp_path / "truth", set(range(CLIPS)))
    half = write_arm(data, tmp_path / "half", {0, 1})
    report = tmp_path / "report.json"
    argv = ["--data", str(data), f"truth={truth}", f"half={half}", "--samples", "300", "--json", str(report)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{CLIPS} clips; means with 95 % bootstrap intervals" in printed
    assert "half - truth: J&F -0.500 [" in printed
    assert "clips losing more than 0.1 J&F: 2" in printed
    assert "clips every arm keeps (J&F >= 0.7 in each): 2" in printed
    written = json.loads(report.read_text())
    assert written["comparison"]["arms"]["half"]["J&F-Mean"]["mean"] == pytest.approx(0.5)
    assert set(written["per_clip"]) == {"truth", "half"} and len(written["per_clip"]["half"]) == CLIPS
    for bad in (
        ["--data", str(data), f"truth={tmp_path / 'nowhere'}"],
        ["--data", str(data), "no-equals-sign"],
        ["--data", str(data), f"truth={truth}", f"truth={half}"],
        ["--data", str(tmp_path), f"truth={truth}"],
        ["--data", str(data), f"truth={truth}", "--samples", "0"],
    ):
        with pytest.raises(SystemExit):
            main(bad)


def test_arms_of_two_splits_pair_by_clip_number(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``NAME=MASKS@SPLIT``: the silent clips pair with the crossing clips of the same number (the gain's interval)."""
    sound = write_arm(data, tmp_path / "sound", set(range(CLIPS)))
    silent = write_arm(data, tmp_path / "silent", {1}, split="silent")
    assert main(["--data", str(data), f"silent={silent}@silent", f"sound={sound}", "--samples", "300"]) == 0
    printed = capsys.readouterr().out
    assert "sound - silent: J&F +0.750 [" in printed
    # Clip 1 is right in both arms: the one clip both keep, named by its number.
    assert "clips every arm keeps (J&F >= 0.7 in each): 1" in printed
    # Masks of crossing clips scored as the silent split: no prediction folder for silent_<n>, a clear error.
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(data), f"wrong={sound}@silent", f"sound={sound}"])
    assert exit_info.value.code == 2
    assert "has no prediction folder" in capsys.readouterr().err
    for bad in ([f"x={sound}@"], [f"x={sound}@nosuchsplit"]):
        with pytest.raises(SystemExit):
            main(["--data", str(data), *bad])


def test_help_keeps_the_continued_command_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """The example commands in ``--help`` run over two lines joined by a shell backslash, not into one line."""
    with pytest.raises(SystemExit):
        main(["--help"])
    printed = capsys.readouterr().out
    assert "--data runs/indep \\\n        --smoothing-off" in printed
    assert "silent@silent \\\n        sound=" in printed
