"""`predict --split test`: unlabelled videos listed by an order file get one submission row per listed frame, in
the file's order, faceless frames included, from the run's own backbone and the whole-video merge."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from stage_fixtures import tiny_config

from affbench.cli import main as affbench_main
from affbench.data.submission import read_order_file, validate_submission
from affbench.stages.evaluate import predict
from affbench.stages.trainer import train

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures


def _predictions(path: Path) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            out.setdefault(row["video"], []).append(row)
    return out


@pytest.fixture
def test_tree(tmp_path, synth_root):
    """SynthAffect tiny plus two test videos (image folders, no annotation file) and their order file.

    ``ztest_copy`` holds exactly the images of a validation video of fold 0; ``ztest_holes`` another video's
    images with frames 2-4 removed, and the order file lists three frames past its last image.
    """
    root = tmp_path / "synth"
    shutil.copytree(synth_root, root)
    config = tiny_config(root, train={"epochs": 1})
    run = train(config, fold=0, out_dir=tmp_path / "runs", quiet=True)
    run_dir = Path(run["run_dir"])
    validation = json.loads((run_dir / "fold_manifest.json").read_text())["validation"]
    copied = validation[0]
    images = root / "cropped_aligned"
    n_copy = len(_predictions_of_validation(run_dir, tmp_path)[copied])
    shutil.copytree(images / copied, images / "ztest_copy")
    holes_source = sorted(p.name for p in images.iterdir() if p.name not in (copied, "ztest_copy"))[0]
    shutil.copytree(images / holes_source, images / "ztest_holes")
    for frame in (2, 3, 4):
        (images / "ztest_holes" / f"{frame:05d}.jpg").unlink(missing_ok=True)
    last_image = max(int(p.stem) for p in (images / "ztest_holes").glob("*.jpg"))
    n_holes = last_image + 3
    # Not sorted by video: the order file's order must be kept.
    locations = [f"ztest_holes/{i:05d}.jpg" for i in range(1, n_holes + 1)]
    locations += [f"ztest_copy/{i:05d}.jpg" for i in range(1, n_copy + 1)]
    order = tmp_path / "va_order.txt"
    order.write_text("image_location,valence,arousal\n" + "".join(f"{loc},0,0\n" for loc in locations))
    return {"run_dir": run_dir, "order": order, "locations": locations, "copied": copied, "n_holes": n_holes,
            "tmp": tmp_path}


def _predictions_of_validation(run_dir: Path, tmp_path: Path) -> dict[str, list[dict[str, str]]]:
    out = tmp_path / "pred_validation"
    if not (out / "predictions.validation.csv").is_file():
        predict(run_dir / "best.pt", out, quiet=True)
    return _predictions(out / "predictions.validation.csv")


def test_test_split_submission_follows_the_order_file(home, test_tree):
    run_dir, order, locations = test_tree["run_dir"], test_tree["order"], test_tree["locations"]
    out = test_tree["tmp"] / "pred_test"
    result = predict(run_dir / "best.pt", out, split="test", order_file=order, quiet=True)
    submission = (out / "VA_submission.txt").read_text().splitlines()
    assert submission[0] == "image_location,valence,arousal"
    assert [line.split(",")[0] for line in submission[1:]] == locations
    assert result["rows"] == len(locations) and result["filled"] == 0
    assert validate_submission(out / "VA_submission.txt", "va", read_order_file(order)) == len(locations)

    predicted = _predictions(out / "predictions.test.csv")
    holes = predicted["ztest_holes"]
    assert len(holes) == test_tree["n_holes"]
    faceless = [int(row["frame"]) for row in holes if row["face"] == "0"]
    assert {2, 3, 4} <= set(faceless) and set(range(test_tree["n_holes"] - 2, test_tree["n_holes"] + 1)) <= set(faceless)
    # The copy of a validation video is predicted as that video: same backbone, same whole-video merge.
    copy = np.array([[float(r["valence"]), float(r["arousal"])] for r in predicted["ztest_copy"]])
    source = _predictions_of_validation(run_dir, test_tree["tmp"])[test_tree["copied"]]
    reference = np.array([[float(r["valence"]), float(r["arousal"])] for r in source])
    np.testing.assert_allclose(copy, reference, atol=2e-3)
    # Each submission row holds its frame's prediction (the merged output of that very frame).
    by_frame = {f"{r['video']}/{int(r['frame']):05d}.jpg": f"{r['valence']},{r['arousal']}"
                for rows in predicted.values() for r in rows}
    assert submission[1:] == [f"{loc},{by_frame[loc]}" for loc in locations]


def test_test_split_errors_are_one_line(home, test_tree, capsys):
    run_dir, tmp = test_tree["run_dir"], test_tree["tmp"]
    code = affbench_main(["predict", str(run_dir), "--split", "test", "--out", str(tmp / "p")])
    assert code == 2 and "needs the organisers' order file (--order FILE)" in capsys.readouterr().err
    order = tmp / "unknown_order.txt"
    order.write_text("image_location\nno_such_video/00001.jpg\n")
    code = affbench_main(["predict", str(run_dir), "--split", "test", "--order", str(order), "--out", str(tmp / "p")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("affbench predict: error: ") and "\n" not in err
    assert "no_such_video: no image folder for this listed video" in err
