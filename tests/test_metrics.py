"""Tests of the DAVIS J&F evaluation: hand-computable cases, input errors, and the official code as oracle.

The oracle is ``esdft-segmetric`` (test-only dependency, imported as ``segmetric``): the official
davis2017-evaluation metric code repackaged. Tests that need it skip when it is not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avvos.errors import InputError, MaskError
from avvos.masks import write_mask
from avvos.metrics import (
    COLUMNS,
    boundary_measure,
    evaluate,
    format_table,
    read_imageset,
    region_similarity,
    summarize,
)

ORACLE = "segmetric"
TOLERANCE = 1e-9


def _rect(shape: tuple[int, int], top: int, left: int, height: int, width: int) -> np.ndarray:
    """A boolean mask with one filled rectangle."""
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + height, left : left + width] = True
    return mask


def _write_grey(path: Path, mask: np.ndarray) -> None:
    """Write a DAVIS-2016 style single-channel 0/255 PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(path)


# ---------------------------------------------------------------- J, F and the statistics by hand


def test_region_similarity_of_two_rectangles() -> None:
    a = _rect((20, 20), 0, 0, 10, 10)
    b = _rect((20, 20), 5, 0, 10, 10)
    assert region_similarity(a, b) == pytest.approx(50 / 150, abs=1e-15)
    assert region_similarity(a, a) == 1.0


def test_region_similarity_of_empty_masks() -> None:
    empty = np.zeros((8, 8), dtype=bool)
    assert region_similarity(empty, empty) == 1.0
    assert region_similarity(empty, _rect((8, 8), 2, 2, 3, 3)) == 0.0


def test_boundary_measure_simple_cases() -> None:
    square = _rect((100, 100), 10, 10, 20, 20)
    empty = np.zeros_like(square)
    assert boundary_measure(square, square) == 1.0
    assert boundary_measure(empty, empty) == 1.0
    assert boundary_measure(square, empty) == 0.0
    assert boundary_measure(empty, square) == 0.0
    far = _rect((100, 100), 70, 70, 20, 20)
    assert boundary_measure(square, far) == 0.0


def test_boundary_tolerance_is_ceil_of_diagonal_fraction() -> None:
    # 854x480: ceil(0.008 * 979.6) = 8 pixels, so a shift of 8 still matches every boundary pixel.
    gt = _rect((480, 854), 100, 100, 200, 200)
    assert boundary_measure(_rect((480, 854), 100, 108, 200, 200), gt) == 1.0
    assert boundary_measure(_rect((480, 854), 100, 109, 200, 200), gt) < 1.0
    # A tolerance >= 1 is taken in pixels.
    assert boundary_measure(_rect((480, 854), 100, 109, 200, 200), gt, bound_th=9) == 1.0


def test_measures_refuse_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        region_similarity(np.zeros((4, 5), bool), np.zeros((5, 4), bool))


def test_summarize_mean_recall_decay() -> None:
    # Nine frames: official bins are frames 0-2 (first quarter) and 6-8 (last quarter).
    mean, recall, decay = summarize([1.0] * 3 + [0.6] * 3 + [0.2] * 3)
    assert mean == pytest.approx(0.6, abs=1e-15)
    assert recall == pytest.approx(6 / 9, abs=1e-15)
    assert decay == pytest.approx(0.8, abs=1e-15)
    assert summarize([0.7]) == pytest.approx((0.7, 1.0, 0.0))


# ---------------------------------------------------------------- small synthetic sequences

SHAPE = (30, 40)
OBJ1 = _rect(SHAPE, 2, 2, 10, 10)
OBJ2 = _rect(SHAPE, 15, 20, 10, 10)
OBJ2_SHIFTED = _rect(SHAPE, 15, 25, 10, 10)


def _palette_sequence(root: Path, name: str = "two", frames: int = 5) -> tuple[Path, Path]:
    """Palette ground truth with 2 objects; prediction exact for object 1, half-shifted for object 2.

    The prediction has no file for the first and last frame: they are not scored.
    """
    gt_dir, pred_dir = root / "gt" / name, root / "pred" / name
    for t in range(frames):
        write_mask(gt_dir / f"{t:05d}.png", OBJ1 * 1 + OBJ2 * 2)
        if 0 < t < frames - 1:
            write_mask(pred_dir / f"{t:05d}.png", OBJ1 * 1 + OBJ2_SHIFTED * 2)
    return root / "pred", root / "gt"


def test_palette_ground_truth_keeps_two_objects(tmp_path: Path) -> None:
    pred_root, gt_root = _palette_sequence(tmp_path)
    results = evaluate(pred_root, gt_root, progress=False)
    seq = results["sequences"]["two"]
    assert set(seq["objects"]) == {"1", "2"}
    first, second = seq["objects"]["1"], seq["objects"]["2"]
    assert first["J-Mean"] == 1.0 and first["F-Mean"] == 1.0 and first["J-Decay"] == 0.0
    assert second["J-Mean"] == pytest.approx(50 / 150, abs=1e-15)
    assert second["J-Recall"] == 0.0
    assert 0.0 < second["F-Mean"] < 1.0
    assert seq["J-Mean"] == pytest.approx((1 + 50 / 150) / 2, abs=1e-15)
    assert seq["J-Recall"] == 0.5
    assert seq["J&F-Mean"] == pytest.approx((seq["J-Mean"] + seq["F-Mean"]) / 2, abs=1e-15)
    for name in COLUMNS:
        assert results["overall"][name] == pytest.approx(seq[name], abs=1e-15)


def test_davis2016_ground_truth_merges_prediction_ids(tmp_path: Path) -> None:
    whole = _rect(SHAPE, 5, 5, 10, 20)
    left = _rect(SHAPE, 5, 5, 10, 10)
    for t in range(4):
        _write_grey(tmp_path / "gt" / "solo" / f"{t:05d}.png", whole)
        write_mask(tmp_path / "pred" / "solo" / f"{t:05d}.png", left * 1 + (whole & ~left) * 2)
    results = evaluate(tmp_path / "pred", tmp_path / "gt", progress=False)
    assert list(results["sequences"]["solo"]["objects"]) == ["1"]
    assert results["overall"]["J-Mean"] == 1.0
    assert results["overall"]["F-Mean"] == 1.0


@pytest.mark.parametrize("layout", ["plain", "davis", "youtube"])
def test_ground_truth_layouts_are_detected(tmp_path: Path, layout: str) -> None:
    pred_root, gt_root = _palette_sequence(tmp_path)
    (pred_root / "no-ground-truth").mkdir()
    base = {
        "plain": tmp_path / "root",
        "davis": tmp_path / "root" / "Annotations" / "480p",
        "youtube": tmp_path / "root" / "Annotations",
    }[layout]
    base.parent.mkdir(parents=True, exist_ok=True)
    gt_root.rename(base)
    results = evaluate(pred_root, tmp_path / "root", progress=False)
    assert list(results["sequences"]) == ["two"]


def test_results_are_json_and_table_readable(tmp_path: Path) -> None:
    pred_root, gt_root = _palette_sequence(tmp_path)
    results = evaluate(pred_root, gt_root, sequences=["two"], progress=False)
    assert set(results) == {"overall", "sequences"}
    assert tuple(results["overall"]) == COLUMNS
    assert all(type(v) is float for v in results["overall"].values())
    assert json.loads(json.dumps(results)) == results
    table = format_table(results)
    for text in ("Overall", "two", "two/1", "two/2", *COLUMNS):
        assert text in table


def test_read_imageset(tmp_path: Path) -> None:
    path = tmp_path / "val.txt"
    path.write_text("blackswan\n  dog \n\ncows\n")
    assert read_imageset(path) == ["blackswan", "dog", "cows"]
    with pytest.raises(InputError, match="missing.txt"):
        read_imageset(tmp_path / "missing.txt")


# ---------------------------------------------------------------- errors for bad input


def test_missing_prediction_frame_is_named(tmp_path: Path) -> None:
    pred_root, gt_root = _palette_sequence(tmp_path)
    (pred_root / "two" / "00002.png").unlink()
    with pytest.raises(InputError, match=r"'two'.*00002\.png"):
        evaluate(pred_root, gt_root, progress=False)


def test_missing_prediction_folder_is_named(tmp_path: Path) -> None:
    pred_root, gt_root = _palette_sequence(tmp_path)
    _palette_sequence(tmp_path, name="ghost")
    for path in sorted((pred_root / "ghost").iterdir()):
        path.unlink()
    (pred_root / "ghost").rmdir()
    with pytest.raises(InputError, match="'ghost' has no prediction folder"):
        evaluate(pred_root, gt_root, sequences=["two", "ghost"], progress=False)
    with pytest.raises(InputError, match="prediction folder not found"):
        evaluate(tmp_path / "nowhere", gt_root, progress=False)


def test_size_mismatch_names_both_sizes(tmp_path: Path) -> None:
    pred_root, gt_root = _palette_sequence(tmp_path)
    write_mask(pred_root / "two" / "00001.png", np.zeros((30, 41), dtype=np.uint8))
    with pytest.raises(MaskError, match=r"00001\.png is 41x30 .* is 40x30"):
        evaluate(pred_root, gt_root, progress=False)


def test_prediction_id_beyond_ground_truth_objects(tmp_path: Path) -> None:
    pred_root, gt_root = _palette_sequence(tmp_path)
    write_mask(pred_root / "two" / "00002.png", OBJ1 * 3)
    with pytest.raises(MaskError, match=r"id\(s\) \[3\]"):
        evaluate(pred_root, gt_root, progress=False)


# ---------------------------------------------------------------- the official code as oracle


def _oracle_rows(metrics: dict) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Overall and per-sequence rows from the oracle's per-object lists (official aggregation)."""
    j, f = metrics["J"], metrics["F"]
    objects = list(j["M_per_object"])
    overall = {
        "J&F-Mean": (np.mean(j["M"]) + np.mean(f["M"])) / 2,
        "J-Mean": np.mean(j["M"]),
        "J-Recall": np.mean(j["R"]),
        "J-Decay": np.mean(j["D"]),
        "F-Mean": np.mean(f["M"]),
        "F-Recall": np.mean(f["R"]),
        "F-Decay": np.mean(f["D"]),
    }
    sequences: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(obj.rsplit("_", 1)[0] for obj in objects):
        idx = [i for i, obj in enumerate(objects) if obj.rsplit("_", 1)[0] == name]
        row = {
            f"{m}-{s}": float(np.mean([d[k][i] for i in idx]))
            for m, d in (("J", j), ("F", f))
            for s, k in (("Mean", "M"), ("Recall", "R"), ("Decay", "D"))
        }
        sequences[name] = {"J&F-Mean": (row["J-Mean"] + row["F-Mean"]) / 2, **row}
    return overall, sequences


def _run_oracle(root: Path, results: Path, names: list[str]) -> tuple[dict, dict]:
    """Run the oracle's Evaluation on a VOST-layout root (Annotations/<seq>, ImageSets/val.txt)."""
    evaluation = pytest.importorskip(f"{ORACLE}.evaluation")
    (root / "ImageSets").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "val.txt").write_text("\n".join(names) + "\n")
    for name in names:
        # The oracle insists on frames but never reads them: one placeholder per sequence.
        (root / "JPEGImages" / name).mkdir(parents=True, exist_ok=True)
        (root / "JPEGImages" / name / "00000.jpg").touch()
    metrics = evaluation.Evaluation(dataset_root=root, gt_set="val").evaluate(results)
    return _oracle_rows(metrics)


def _assert_rows_match(ours: dict[str, float], theirs: dict[str, float], where: str) -> None:
    for name in COLUMNS:
        assert abs(ours[name] - theirs[name]) <= TOLERANCE, f"{where} {name}: {ours[name]} vs {theirs[name]}"


def test_osvos_davis2016_matches_official_oracle(shared_data: Path, tmp_path: Path) -> None:
    """OSVOS on the 10 dev sequences: every column, per sequence and overall, as the official code.

    The oracle is fed the same data the DAVIS-2016 rule scores: ground truth 0/255 -> 0/1 and the
    predictions binarised (all non-zero ids merged), since it would read 255 as void and keep ids apart.
    """
    pytest.importorskip(ORACLE)
    pred_root = shared_data / "osvos-results-davis2016-dev"
    davis = shared_data / "davis2016-dev"
    names = read_imageset(davis / "ImageSets" / "dev.txt")
    root, results_dir = tmp_path / "oracle-gt", tmp_path / "oracle-pred"
    for name in names:
        (root / "Annotations" / name).mkdir(parents=True)
        (results_dir / name).mkdir(parents=True)
        for gt_path in sorted((davis / "Annotations" / "480p" / name).glob("*.png")):
            gt = np.asarray(Image.open(gt_path)) > 127
            Image.fromarray(gt.astype(np.uint8), mode="L").save(root / "Annotations" / name / gt_path.name)
            pred = np.asarray(Image.open(pred_root / name / gt_path.name)) != 0
            Image.fromarray(pred.astype(np.uint8), mode="L").save(results_dir / name / gt_path.name)
    oracle_overall, oracle_sequences = _run_oracle(root, results_dir, names)

    ours = evaluate(pred_root, davis, sequences=names, progress=False)
    assert list(ours["sequences"]) == names == list(oracle_sequences)
    for name in names:
        _assert_rows_match(ours["sequences"][name], oracle_sequences[name], name)
    _assert_rows_match(ours["overall"], oracle_overall, "overall")
    assert 0.7 < ours["overall"]["J&F-Mean"] < 0.8


def test_palette_two_objects_match_official_oracle(tmp_path: Path) -> None:
    pytest.importorskip(ORACLE)
    pred_root, gt_root = _palette_sequence(tmp_path, frames=7)
    (tmp_path / "oracle").mkdir()
    gt_root.rename(tmp_path / "oracle" / "Annotations")
    oracle_overall, oracle_sequences = _run_oracle(tmp_path / "oracle", pred_root, ["two"])
    ours = evaluate(pred_root, tmp_path / "oracle", progress=False)
    _assert_rows_match(ours["sequences"]["two"], oracle_sequences["two"], "two")
    _assert_rows_match(ours["overall"], oracle_overall, "overall")


def test_measures_match_official_functions_on_random_blobs() -> None:
    metrics = pytest.importorskip(f"{ORACLE}.metrics")
    rng = np.random.default_rng(0)
    for shape, bound_th in (((480, 854), 0.008), ((37, 53), 0.008), ((64, 64), 3), ((120, 90), 0.05)):
        for _ in range(6):
            noise = rng.random((shape[0] // 4 + 1, shape[1] // 4 + 1)) > rng.uniform(0.3, 0.95)
            blob = np.kron(noise, np.ones((4, 4), dtype=bool))[: shape[0], : shape[1]]
            shift = tuple(rng.integers(-6, 7, size=2))
            other = np.roll(blob, shift, axis=(0, 1)) ^ (rng.random(shape) > 0.97)
            assert region_similarity(other, blob) == pytest.approx(
                float(metrics.db_eval_iou(blob, other)), abs=TOLERANCE
            )
            assert boundary_measure(other, blob, bound_th) == pytest.approx(
                float(metrics.f_measure(other, blob, bound_th=bound_th)), abs=TOLERANCE
            )


def test_summarize_matches_official_statistics() -> None:
    utils = pytest.importorskip(f"{ORACLE}.utils")
    rng = np.random.default_rng(1)
    # From 256 scored frames on, the official uint8 bin indices wrap around (see avvos.metrics).
    for n in list(range(1, 40)) + [100, 254, 255]:
        values = rng.random(n)
        assert summarize(values) == pytest.approx(tuple(utils.db_statistics(values)), abs=TOLERANCE)
