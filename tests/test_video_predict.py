"""`affbench predict --video FILE --run RUN_DIR` with tiny runs trained on SynthAffect tiny."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("cv2")
pytest.importorskip("facenet_pytorch")
pytest.importorskip("skimage")

from stage_fixtures import tiny_config  # noqa: E402
from video_fixtures import two_face_video  # noqa: E402

from affbench.cli import main  # noqa: E402
from affbench.stages.trainer import train  # noqa: E402

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures

N_FRAMES = 24
RIGHT_FRAMES = set(range(9, 21))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    two_face_video(folder / "clip.mp4", N_FRAMES)
    return folder / "clip.mp4"


def _tiny_run(task, synth_root, tmp_path):
    extra = {"data": {"folds": 2}} if task == "expr" else {}
    result = train(tiny_config(synth_root, task=task, **extra), fold=0, out_dir=tmp_path / "runs", quiet=True)
    return Path(result["run_dir"])


@pytest.mark.parametrize("task", ["va", "expr"])
def test_predict_video_writes_one_row_per_frame_and_track_and_a_plot(home, synth_root, clip, tmp_path, task):
    run_dir = _tiny_run(task, synth_root, tmp_path)
    out = tmp_path / "pred"
    assert main(["predict", "--video", str(clip), "--run", str(run_dir), "--out", str(out), "--quiet"]) == 0
    with open(out / "clip.predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = {"va": ["valence", "arousal"],
               "expr": ["expression", "p_Neutral", "p_Anger", "p_Disgust", "p_Fear", "p_Happiness", "p_Sadness",
                        "p_Surprise", "p_Other"]}[task]
    assert list(rows[0]) == ["video", "track", "frame", "time_s", "face", *columns]
    assert [(r["track"], int(r["frame"])) for r in rows] == [
        (t, f) for t in ("clip_left", "clip_right") for f in range(1, N_FRAMES + 1)]
    assert [float(r["time_s"]) for r in rows[:3]] == [0.0, 0.1, 0.2]  # 10 fps
    right_faces = {int(r["frame"]) for r in rows if r["track"] == "clip_right" and r["face"] == "1"}
    assert right_faces == RIGHT_FRAMES
    for row in rows:
        if row["face"] == "0":  # never filled in
            assert all(row[c] == "" for c in columns), row
        elif task == "va":
            assert all(-1.0 <= float(row[c]) <= 1.0 for c in columns)
        else:
            assert row["expression"] in ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness",
                                         "Surprise", "Other")
            probabilities = np.array([float(row[c]) for c in columns[1:]])
            assert abs(probabilities.sum() - 1) < 2e-3
            assert columns[1 + probabilities.argmax()] == f"p_{row['expression']}"
    png = (out / "clip.traces.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # Predicting again with the same output folder reuses the crops.
    stamp = (out / "clip.crop.json").stat().st_mtime_ns
    assert main(["predict", "--video", str(clip), "--run", str(run_dir), "--out", str(out), "--quiet"]) == 0
    assert (out / "clip.crop.json").stat().st_mtime_ns == stamp


def test_predict_video_uses_the_runs_fine_tuned_backbone(home, synth_root, tmp_path):
    """The backbone comes with the fine-tuned weights the run extracted its features with, not the base ones."""
    import json

    import torch
    from safetensors.torch import load_file

    from affbench.stages import feature_cache as cache
    from affbench.stages.evaluate import load_trained
    from affbench.stages.finetune import WEIGHTS_FILE, build_backbone
    from affbench.video.predict import run_backbone

    run_dir = _tiny_run("va", synth_root, tmp_path)
    config, _, _ = load_trained(run_dir / "best.pt")
    backbone = run_backbone(config, run_dir)
    tuned = json.loads((run_dir / "data_provenance.json").read_text())["train"]["finetune"]
    weights = load_file(str(cache.stage_dir("finetune", tuned["key"]) / WEIGHTS_FILE))
    base = build_backbone(config["backbone"]).state_dict()
    state = backbone.state_dict()
    assert all(torch.equal(state[k], weights[k]) for k in weights)
    assert not all(torch.equal(state[k], base[k]) for k in base)


def test_predict_video_without_the_cached_weights_is_one_line(home, synth_root, clip, tmp_path, capsys):
    run_dir = _tiny_run("va", synth_root, tmp_path)
    shutil.rmtree(home / "cache" / "finetune")
    out = tmp_path / "pred"
    assert main(["predict", "--video", str(clip), "--run", str(run_dir), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "backbone.safetensors" in err[0] and "rerun `affbench train`" in err[0]
    assert not out.exists()  # checked before any cropping


def test_predict_video_needs_a_run(clip, capsys):
    assert main(["predict", "--video", str(clip), "--quiet"]) == 2
    assert "--video needs --run" in capsys.readouterr().err
