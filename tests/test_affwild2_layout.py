"""The Aff-Wild2 reader against the hand-written fixture: per-frame tables row for row, layouts, dataset plugin."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import affbench
from affbench.data import affwild2_layout as layout
from affbench.data.cli import main as data_main
from affbench.data.records import VideoRecord

FIXTURE = Path(__file__).parent / "fixtures" / "affwild2"
ROOT = FIXTURE / "root"
RELEASE = ROOT / "6th_ABAW_Annotations"
IMAGES = ROOT / "cropped_aligned"
CASES = [(task, split) for task in ("va", "expr", "au") for split in ("train", "validation")]

pytestmark = pytest.mark.filterwarnings("ignore:affbench. skipped plugin:RuntimeWarning")


def expected_csv(task: str, split: str) -> str:
    return (FIXTURE / "expected" / f"{task}_{split}.csv").read_text(encoding="utf-8")


def frames_csv(capsys, *args: str) -> str:
    capsys.readouterr()
    code = data_main(["--quiet", "data", "frames", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.mark.parametrize("task,split", CASES)
def test_frames_table_matches_hand_written_expectation(capsys, task, split):
    out = frames_csv(capsys, "--root", str(ROOT), "--task", task, "--split", split)
    assert out.splitlines() == expected_csv(task, split).splitlines()
    assert out == expected_csv(task, split)


@pytest.mark.parametrize("task,split", CASES)
def test_release_folder_two_levels_down(tmp_path, capsys, task, split):
    data = tmp_path / "data"
    shutil.copytree(RELEASE, data / "downloads" / "6th_ABAW_Annotations")
    shutil.copytree(IMAGES, data / "cropped_aligned")
    out = frames_csv(capsys, "--root", str(data), "--task", task, "--split", split)
    assert out == expected_csv(task, split)


def test_release_folder_three_levels_down_is_not_searched(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(RELEASE, data / "a" / "b" / "c" / "6th_ABAW_Annotations")
    shutil.copytree(IMAGES, data / "cropped_aligned")
    assert data_main(["data", "frames", "--root", str(data), "--task", "va", "--split", "train"]) == 2
    assert "no VA_Estimation_Challenge folder" in capsys.readouterr().err


@pytest.mark.parametrize("task,split", CASES)
def test_separate_annotation_and_image_paths(capsys, task, split):
    # Without --root, image paths are relative to the image folder itself.
    out = frames_csv(capsys, "--annotations", str(RELEASE), "--images", str(IMAGES), "--task", task,
                     "--split", split)
    assert out == expected_csv(task, split).replace("cropped_aligned/", "")


@pytest.mark.parametrize("split", ["train", "validation"])
def test_expr_recognition_and_classification_names_read_the_same(tmp_path, capsys, split):
    data = tmp_path / "data"
    shutil.copytree(ROOT, data)
    release = data / "6th_ABAW_Annotations"
    (release / "EXPR_Classification_Challenge").rename(release / "EXPR_Recognition_Challenge")
    out = frames_csv(capsys, "--root", str(data), "--task", "expr", "--split", split)
    assert out == expected_csv("expr", split)
    assert layout.find_challenge_dir(data, "expr").name == "EXPR_Recognition_Challenge"


def test_two_releases_at_one_depth_are_ambiguous(tmp_path):
    shutil.copytree(RELEASE, tmp_path / "5th_ABAW_Annotations")
    shutil.copytree(RELEASE, tmp_path / "6th_ABAW_Annotations")
    with pytest.raises(layout.AffWild2FormatError, match="several VA_Estimation_Challenge folders"):
        layout.find_challenge_dir(tmp_path, "va")
    # Pointing at one release resolves it.
    assert layout.find_challenge_dir(tmp_path / "6th_ABAW_Annotations", "va").parent.name == "6th_ABAW_Annotations"


def test_read_layout_records():
    records = layout.read_layout(ROOT, IMAGES, "va", "train")
    assert [r.video for r in records] == [
        "10-60-1280x720", "12-24-1920x1080_left", "12-24-1920x1080_right", "video_long",
    ]
    assert all(isinstance(r, VideoRecord) for r in records)
    first, left, right, long_ = records
    assert left.source == right.source == "12-24-1920x1080"
    assert first.source == "10-60-1280x720"
    assert first.labels.dtype == np.float32 and first.labels.shape == (5, 2)
    np.testing.assert_allclose(first.labels[:, 0], [0.25, 0.123456789, -5, -1, 0.5], rtol=1e-6)
    assert first.valid.tolist() == [True, True, False, True, True]
    assert left.images == ["12-24-1920x1080_left/00001.jpg", "12-24-1920x1080_left/00002.jpg", "",
                           "12-24-1920x1080_left/00004.jpg"]
    assert long_.n_frames == 6 and long_.has_image.tolist() == [True, True, True, False, False, False]
    short = {r.video: r for r in layout.read_layout(ROOT, IMAGES, "va", "validation")}["video_short"]
    assert short.n_frames == 3  # the folder holds six images; the annotation file decides the frames


def test_expr_and_au_label_arrays():
    expr = layout.read_layout(RELEASE, IMAGES, "expr", "train")[0]
    assert expr.labels.shape == (5, 1)
    assert expr.labels[:, 0].tolist() == [0, 4, -1, 7, 4]
    assert expr.valid.tolist() == [True, True, False, True, True]
    au = layout.read_layout(RELEASE, IMAGES, "au", "train")
    assert au[0].labels.shape == (4, 12)
    assert au[0].labels[1].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert au[0].valid.tolist() == [True, True, True, False]


def test_annotation_files_ignore_other_files(tmp_path):
    shutil.copytree(RELEASE, tmp_path / "ann")
    train = tmp_path / "ann" / "VA_Estimation_Challenge" / "Train_Set"
    (train / ".DS_Store").write_bytes(b"\0\1")
    (train / "notes.md").write_text("not an annotation file\n")
    (train / "subfolder.txt").mkdir()
    names = [p.stem for p in layout.annotation_files(tmp_path / "ann", "va", "train")]
    assert names == ["10-60-1280x720", "12-24-1920x1080_left", "12-24-1920x1080_right", "video_long"]


def test_dataset_plugin_follows_the_contract():
    ds = affbench.create("dataset", "affwild2", root=str(ROOT), quiet=True)
    assert ds.name == "affwild2"
    assert ds.image_root == IMAGES.resolve() and ds.image_root.is_absolute()
    videos = ds.videos("expr", "validation")
    assert [v.video for v in videos] == ["12-24-1920x1080_right", "20-30-640x360"]
    for record in videos:
        for image in record.images:
            assert image == "" or (ds.image_root / image).is_file()
    prov = ds.provenance()
    assert prov["name"] == "affwild2"
    assert prov["annotations"] == str(ROOT.resolve())
    assert prov["images"] == str(IMAGES.resolve())
    assert set(prov["annotation_sha256"]) == {"va", "expr", "au"}
    assert all(len(h) == 64 for h in prov["annotation_sha256"].values())
    assert ds.provenance("va")["annotation_sha256"].keys() == {"va"}


def test_dataset_separate_paths_and_missing_paths(tmp_path):
    ds = affbench.create("dataset", "affwild2", annotations=str(RELEASE), images=str(IMAGES), quiet=True)
    assert ds.root is None and ds.image_root == IMAGES.resolve()
    assert len(ds.videos("au", "validation")) == 2
    with pytest.raises(ValueError, match="give root"):
        affbench.create("dataset", "affwild2")
    with pytest.raises(layout.AffWild2FormatError, match="no cropped_aligned/ folder"):
        affbench.create("dataset", "affwild2", annotations=str(RELEASE))


def test_unknown_task_and_split_list_accepted_values():
    ds = affbench.create("dataset", "affwild2", root=str(ROOT), quiet=True)
    with pytest.raises(ValueError, match="unknown task 'valence'; accepted: va, expr, au"):
        ds.videos("valence", "train")
    with pytest.raises(ValueError, match="unknown split 'test'; accepted: train, validation"):
        ds.videos("va", "test")


def test_fingerprint_follows_annotation_contents(tmp_path):
    shutil.copytree(ROOT, tmp_path / "r")
    first = affbench.create("dataset", "affwild2", root=str(tmp_path / "r"), quiet=True).fingerprint("va")
    again = affbench.create("dataset", "affwild2", root=str(tmp_path / "r"), quiet=True).fingerprint("va")
    assert first == again
    path = tmp_path / "r" / "6th_ABAW_Annotations" / "VA_Estimation_Challenge" / "Validation_Set" / "44-nofaces.txt"
    path.write_bytes(path.read_bytes().replace(b"-0.05", b"-0.06"))
    changed = affbench.create("dataset", "affwild2", root=str(tmp_path / "r"), quiet=True).fingerprint("va")
    assert changed != first


def test_frames_to_file(tmp_path, capsys):
    out = tmp_path / "tables" / "va.csv"
    assert data_main(["--quiet", "data", "frames", "--root", str(ROOT), "--task", "va", "--split", "validation",
                      "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == expected_csv("va", "validation")


def test_frames_without_label_texts_formats_float32_shortest():
    from affbench.data.frames_csv import format_label_value, frame_rows

    record = VideoRecord("v_left", "v", ["v_left/00001.jpg", ""],
                         np.array([[0.25, -5.0], [0.1, 1.0]], dtype=np.float32), np.array([True, False]))
    rows = list(frame_rows([(record, None)], prefix="imgs"))
    assert rows == [["v_left", "1", "imgs/v_left/00001.jpg", "1", "0.25", "-5"],
                    ["v_left", "2", "", "0", "0.1", "1"]]
    assert format_label_value(3.0) == "3"


@pytest.mark.parametrize("task,body", [
    ("va", ["0.5,0.5", " 0.25 , -0.125 ", "0.5,0.5", "-5,-5", "1e-1,-1E0", "+0.3,.7"]),
    ("expr", ["0", "7", "-1", " 3 ", "0", "+2"]),
    ("au", ["0,1,0,1,0,1,0,1,0,1,0,1", "-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1", "0,1,0,1,0,1,0,1,0,1,0,1",
            "1, 1,1,1,1,1,1,1,1,1,1 ,1"]),
])
def test_vectorised_parse_equals_line_by_line(task, body):
    header = ",".join(layout.FILE_HEADERS[task])
    parsed = layout.parse_annotation_bytes("v.txt", ("\n".join([header, *body]) + "\n").encode(), task)
    labels, valid = layout._parse_lines(Path("v.txt"), body, task)
    np.testing.assert_array_equal(parsed.labels, labels)
    np.testing.assert_array_equal(parsed.valid, valid)
    assert parsed.labels.dtype == np.float32
    assert parsed.texts[1] == tuple(field.strip() for field in body[1].split(","))
