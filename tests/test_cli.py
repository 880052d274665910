"""The ``avvos`` command line, end to end on small generated data and real clips."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avvos.cli import main
from avvos.masks import read_mask, write_mask
from avvos.sinks import VideoWriter
from avvos.sources import open_frames
from tests.conftest import moving_discs


def write_clip(folder: Path, frames: int = 6, height: int = 64, width: int = 96) -> np.ndarray:
    clip, first = moving_discs(frames, height, width)
    folder.mkdir(parents=True)
    for t, image in enumerate(clip):
        Image.fromarray(image).save(folder / f"{t:05d}.png")
    return first


def test_help_explains_every_subcommand() -> None:
    out = subprocess.run([sys.executable, "-m", "avvos.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("segment", "eval", "bench"):
        assert command in out.stdout
    out = subprocess.run([sys.executable, "-m", "avvos.cli", "segment", "--help"], capture_output=True, text=True)
    assert "--mask" in out.stdout and "--resize-masks" in out.stdout and "--overlay" in out.stdout


def test_segment_folder_writes_masks_overlay_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write_clip(tmp_path / "clip")
    write_mask(tmp_path / "first.png", first)
    code = main([
        "segment", str(tmp_path / "clip"), "--mask", str(tmp_path / "first.png"), "--out", str(tmp_path / "out"),
        "--overlay", str(tmp_path / "overlay.mp4"), "--quiet", "--device", "cpu",
    ])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "weights: bundled default" in captured.err  # says plainly which weights it used
    assert "clip: 6 frames, 2 objects" in captured.out and "frames/s" in captured.out
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [f"{t:05d}.png" for t in range(6)]
    assert np.array_equal(read_mask(tmp_path / "out" / "00000.png"), first)
    assert Image.open(tmp_path / "out" / "00003.png").mode == "P"
    with open_frames(tmp_path / "overlay.mp4") as video:
        assert len(list(video)) == 6 and video.size == (64, 96)


def test_segment_video_names_masks_by_index(tmp_path: Path) -> None:
    clip, first = moving_discs(5, 64, 96)
    with VideoWriter(tmp_path / "clip.mp4", fps=10) as writer:
        for image in clip:
            writer.write(image)
    write_mask(tmp_path / "first.png", first)
    assert main(["segment", str(tmp_path / "clip.mp4"), "--mask", str(tmp_path / "first.png"),
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{t:05d}.png" for t in range(5)]


def test_davis_root_segment_then_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "davis"
    for name in ("seq_a", "seq_b"):
        first = write_clip(root / "JPEGImages" / "480p" / name, frames=4)
        for t in range(4):  # every frame annotated, as in DAVIS: only the first is used for input
            write_mask(root / "Annotations" / "480p" / name / f"{t:05d}.png", first)
    (root / "ImageSets").mkdir()
    (root / "ImageSets" / "val.txt").write_text("seq_b\n")
    assert main(["segment", "--davis", str(root), "--imageset", str(root / "ImageSets" / "val.txt"),
                 "--out", str(tmp_path / "pred"), "--quiet"]) == 0
    assert [p.name for p in (tmp_path / "pred").iterdir()] == ["seq_b"]
    assert len(list((tmp_path / "pred" / "seq_b").glob("*.png"))) == 4
    capsys.readouterr()
    # Ground truth against itself scores exactly 1.
    assert main(["eval", "--pred", str(root / "Annotations" / "480p"), "--gt", str(root), "--quiet",
                 "--json", str(tmp_path / "self.json")]) == 0
    scores = json.loads((tmp_path / "self.json").read_text())
    assert scores["overall"]["J&F-Mean"] == 1.0 and set(scores["sequences"]) == {"seq_a", "seq_b"}
    assert "J&F-Mean" in capsys.readouterr().out


def test_mask_size_mismatch_names_both_sizes_or_resizes(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cutie-examples/masks/judo/00005.png is one pixel narrower than the frames."""
    judo = shared_data / "cutie-examples"
    args = ["segment", str(judo / "images" / "judo"), "--masks", str(judo / "masks" / "judo"), "--size", "96",
            "--quiet", "--out", str(tmp_path / "judo")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "00005.png is 853x480 but the frames are 854x480" in err and "--resize-masks" in err
    assert len(list((tmp_path / "judo").glob("*.png"))) == 5  # masks already written stay written
    assert main([*args, "--resize-masks"]) == 0
    assert "16 frames, 4 objects" in capsys.readouterr().out
    last = read_mask(tmp_path / "judo" / "00015.png")
    assert last.shape == (480, 854)


def test_unreadable_frame_mid_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write_clip(tmp_path / "clip", frames=6)
    (tmp_path / "clip" / "00003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    write_mask(tmp_path / "first.png", first)
    code = main(["segment", str(tmp_path / "clip"), "--mask", str(tmp_path / "first.png"),
                 "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2
    assert "00003.png" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00000.png", "00001.png", "00002.png"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"not a png"), "corrupt"),
        (lambda p: write_mask(p, np.zeros((64, 96), np.uint8)), "no object"),
    ],
)
def test_bad_first_masks(tmp_path: Path, capsys: pytest.CaptureFixture[str], make, message: str) -> None:
    write_clip(tmp_path / "clip", frames=2)
    make(tmp_path / "mask.png")
    assert main(["segment", str(tmp_path / "clip"), "--mask", str(tmp_path / "mask.png"), "--quiet",
                 "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_mask_with_ids_above_255(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_clip(tmp_path / "clip", frames=2)
    Image.fromarray(np.full((64, 96), 300, np.uint16)).save(tmp_path / "mask.png")
    assert main(["segment", str(tmp_path / "clip"), "--mask", str(tmp_path / "mask.png"), "--quiet"]) == 2
    assert "ids must be 0..255" in capsys.readouterr().err


def test_bad_video_checkpoint_and_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write_clip(tmp_path / "clip", frames=2)
    write_mask(tmp_path / "first.png", first)
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    assert main(["segment", str(tmp_path / "broken.mp4"), "--mask", str(tmp_path / "first.png")]) == 2
    assert "broken.mp4" in capsys.readouterr().err
    torch.save({"w": torch.zeros(3)}, tmp_path / "foreign.pth")
    assert main(["segment", str(tmp_path / "clip"), "--mask", str(tmp_path / "first.png"),
                 "--weights", str(tmp_path / "foreign.pth")]) == 2
    assert "not an STCN or avvos checkpoint" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["segment", str(tmp_path / "clip"), "--mask", str(tmp_path / "first.png"),
                     "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "clip")]) == 2
    assert "--mask" in capsys.readouterr().err


def test_bench_prints_side_by_side_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--frames", "4", "--height", "48", "--width", "64", "--device", "cpu",
                 "--json", str(tmp_path / "bench.json")]) == 0
    out = capsys.readouterr().out
    assert "ratio avvos/official" in out
    results = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert [r["variant"] for r in results] == ["avvos", "official"]
    assert all(r["fps"] > 0 and r["peak_rss_mib"] > 0 for r in results)


def test_bench_compares_the_light_default_with_full_stcn(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--frames", "3", "--height", "48", "--width", "64", "--device", "cpu",
                 "--arch", "light", "--compare", "stcn"]) == 0
    out = capsys.readouterr().out
    assert "ratio avvos/stcn: fps x" in out


def test_bench_measures_the_cost_of_matching_the_previous_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bundled audio-visual weights match the previous frame on files; ``no-last`` is the live setting."""
    assert main(["bench", "--frames", "4", "--height", "48", "--width", "64", "--device", "cpu", "--compare",
                 "no-last", "--json", str(tmp_path / "bench.json")]) == 0  # fmt: skip
    assert "ratio avvos/no-last: fps x" in capsys.readouterr().out
    results = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert [r["variant"] for r in results] == ["avvos", "no-last"]
    # Frame 0 is in memory in both; the one with the previous frame also holds frame 2 in its temporary slot.
    assert results[0]["memory_positions"] == 2 * results[1]["memory_positions"]


def test_bundled_sample_runs_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["segment", "--size", "64", "--quiet"]) == 0
    assert "sample: 40 frames, 1 object," in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "sample").glob("*.png"))) == 40
    shutil.rmtree(tmp_path / "out")
