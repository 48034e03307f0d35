"""`affbench data crop` on short videos made with PyAV: two real faces side by side for part of the video.

SynthAffect's drawn faces are found by the real-photo detectors only part of the time (see
benchmarks/face_detector_quality.py), so these videos paste real face photos that installed packages ship.
"""

import json
import sys

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("cv2")
pytest.importorskip("facenet_pytorch")
pytest.importorskip("skimage")

from video_fixtures import FPS, HEIGHT, WIDTH, two_face_video, write_video  # noqa: E402

from affbench.cli import main  # noqa: E402
from affbench.data.affwild2_layout import read_layout  # noqa: E402
from affbench.video.detectors import box_iou  # noqa: E402

N_FRAMES = 24
LEFT_FRAMES = [f for f in range(1, N_FRAMES + 1) if f not in (15, 16)]
RIGHT_FRAMES = list(range(9, 21))


@pytest.fixture(scope="module")
def cropped(tmp_path_factory):
    """The two-face video, its true face boxes, and `affbench data crop` run on it once."""
    folder = tmp_path_factory.mktemp("video")
    truth = two_face_video(folder / "clip.mp4", N_FRAMES)
    out = folder / "out"
    assert main(["data", "crop", str(folder / "clip.mp4"), "--out", str(out), "--quiet"]) == 0
    return folder, truth, out


def _faces_csv(out):
    rows = [line.split(",") for line in (out / "clip.faces.csv").read_text().splitlines()]
    assert rows[0] == ["track", "frame", "x0", "y0", "x1", "y1", "score"]
    return rows[1:]


def test_two_tracks_with_the_right_frame_spans(cropped):
    _, truth, out = cropped
    assert sorted(p.name for p in (out / "cropped_aligned").iterdir()) == ["clip_left", "clip_right"]
    for track, frames in (("clip_left", LEFT_FRAMES), ("clip_right", RIGHT_FRAMES)):
        images = sorted((out / "cropped_aligned" / track).iterdir())
        assert [p.name for p in images] == [f"{f:05d}.jpg" for f in frames]  # no image where the face was absent
    manifest = json.loads((out / "clip.crop.json").read_text())
    assert manifest["frames"] == N_FRAMES and manifest["fps"] == FPS
    assert (manifest["width"], manifest["height"]) == (WIDTH, HEIGHT)
    assert manifest["detector"]["name"] == "mtcnn" and manifest["alignment"]["mode"] == "keypoints"
    spans = {t["name"]: t["spans"] for t in manifest["tracks"]}
    assert spans == {"clip_left": [[1, 14], [17, 24]], "clip_right": [[9, 20]]}
    assert truth["left"].keys() == set(LEFT_FRAMES) and truth["right"].keys() == set(RIGHT_FRAMES)


def test_boxes_lie_where_the_faces_were_pasted(cropped):
    _, truth, out = cropped
    rows = _faces_csv(out)
    assert len(rows) == len(LEFT_FRAMES) + len(RIGHT_FRAMES)
    for track, frame, *box, _score in rows:
        true_box = truth[track.rsplit("_", 1)[1]][int(frame)]
        iou = box_iou(np.array([float(v) for v in box]), true_box)[0, 0]
        # The reference boxes are hand-marked forehead-to-chin; detectors draw their own convention.
        assert iou >= 0.5, (track, frame, iou)


def test_aligned_crops_put_the_eyes_on_the_template(cropped):
    """Detecting again on an aligned crop finds the eyes where the template puts them."""
    from PIL import Image

    from affbench.video.align import TEMPLATE_112
    from affbench.video.detectors import create_detector

    _, _, out = cropped
    crops = [np.asarray(Image.open(out / "cropped_aligned" / t / "00010.jpg")) for t in ("clip_left", "clip_right")]
    for faces in create_detector("mtcnn").detect(crops):
        assert len(faces) == 1
        np.testing.assert_allclose(faces[0].keypoints[:2], TEMPLATE_112[:2], atol=4.0)


def test_output_is_a_dataset_the_affwild2_reader_accepts(cropped, capsys):
    _, _, out = cropped
    for task in ("va", "expr", "au"):
        records = read_layout(out / "annotations", out / "cropped_aligned", task, "train")
        assert [r.video for r in records] == ["clip_left", "clip_right"]
        assert all(r.n_frames == N_FRAMES and not r.valid.any() for r in records)  # a template: no label yet
        assert [i + 1 for i, image in enumerate(records[1].images) if image] == RIGHT_FRAMES
    assert main(["data", "frames", "--root", str(out), "--task", "va", "--split", "train"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "video,frame,image,valid,valence,arousal"
    assert lines[1] == "clip_left,1,cropped_aligned/clip_left/00001.jpg,0,-5,-5"
    assert lines[15] == "clip_left,15,,0,-5,-5"
    assert len(lines) == 1 + 2 * N_FRAMES


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _nothing_written(out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.partial")]


@pytest.mark.parametrize("content", [b"", b"\x00\x01 this is not a video " * 50], ids=["empty", "garbage"])
def test_unreadable_video_is_one_line_and_writes_nothing(tmp_path, capsys, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    out = tmp_path / "out"
    assert main(["data", "crop", str(bad), "--out", str(out), "--quiet"]) == 2
    line = _error_line(capsys)
    assert line.startswith("affbench data crop: error: ") and str(bad) in line and "video" in line
    _nothing_written(out)


def test_video_without_a_face_is_one_line_and_writes_nothing(tmp_path, capsys):
    rng = np.random.default_rng(1)
    frames = [np.full((HEIGHT, WIDTH, 3), rng.integers(0, 255, 3), np.uint8) for _ in range(8)]
    video = write_video(tmp_path / "empty_room.mp4", frames)
    out = tmp_path / "out"
    assert main(["data", "crop", str(video), "--out", str(out), "--quiet"]) == 2
    line = _error_line(capsys)
    assert f"{video}: no face in its 8 frames" in line
    _nothing_written(out)


def test_folder_mixing_videos_and_other_files_is_refused(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_video(folder / "a.mp4", [np.zeros((HEIGHT, WIDTH, 3), np.uint8)] * 2)
    (folder / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    assert main(["data", "crop", str(folder), "--out", str(out), "--quiet"]) == 2
    line = _error_line(capsys)
    assert "notes.txt" in line and "accepted: a folder of only video files" in line
    _nothing_written(out)


def test_a_failing_video_in_a_folder_leaves_an_existing_root_untouched(cropped, tmp_path, capsys):
    folder, _, out = cropped
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "b_good.mp4").write_bytes((folder / "clip.mp4").read_bytes())
    (batch / "c_bad.mp4").write_bytes(b"garbage" * 10)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert main(["data", "crop", str(batch), "--out", str(out), "--quiet"]) == 2
    assert "c_bad.mp4" in _error_line(capsys)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before  # b_good was not moved in either
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".out.partial")]


def test_cropping_the_same_video_twice_into_one_root_is_refused(cropped, capsys):
    folder, _, out = cropped
    assert main(["data", "crop", str(folder / "clip.mp4"), "--out", str(out), "--quiet"]) == 2
    assert "already cropped" in _error_line(capsys)


def test_missing_detector_package_names_the_install_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # import fails as if not installed
    video = write_video(tmp_path / "v.mp4", [np.zeros((HEIGHT, WIDTH, 3), np.uint8)] * 2)
    assert main(["data", "crop", str(video), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "pip install --no-deps facenet-pytorch" in _error_line(capsys)
