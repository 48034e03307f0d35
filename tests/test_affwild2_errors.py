"""Bad Aff-Wild2 input fails with the file and line at fault and what would be accepted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from affbench.data import affwild2_layout as layout
from affbench.data.affwild2_layout import AffWild2FormatError
from affbench.data.cli import main as data_main

FIXTURE_ROOT = Path(__file__).parent / "fixtures" / "affwild2" / "root"
VA_HEADER = "valence,arousal\n"
EXPR_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n"
AU_HEADER = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n"
CHALLENGE = {"va": "VA_Estimation_Challenge", "expr": "EXPR_Recognition_Challenge", "au": "AU_Detection_Challenge"}

pytestmark = pytest.mark.filterwarnings("ignore:affbench. skipped plugin:RuntimeWarning")


def write_video(root: Path, task: str, content: bytes | str, video: str = "bad_video") -> Path:
    """A one-video layout under `root`; returns the annotation file's path."""
    folder = root / CHALLENGE[task] / "Train_Set"
    folder.mkdir(parents=True, exist_ok=True)
    (root / CHALLENGE[task] / "Validation_Set").mkdir(exist_ok=True)
    (root / "cropped_aligned").mkdir(exist_ok=True)
    path = folder / f"{video}.txt"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def read_error(root: Path, task: str) -> AffWild2FormatError:
    with pytest.raises(AffWild2FormatError) as info:
        layout.read_layout(root, root / "cropped_aligned", task, "train")
    return info.value


BAD_FILES = [
    # (task, content, line, words in the message)
    ("va", VA_HEADER + "0.1,0.2\n0.1,0.2,0.3\n", 3, ["3 values", "expected 2 values (valence,arousal)"]),
    ("va", VA_HEADER + "0.5\n", 2, ["1 values", "expected 2 values"]),
    ("va", VA_HEADER + "0.1,0.2\nabc,0.2\n", 3, ["valence value 'abc' is not a number", "in [-1, 1], or -5"]),
    ("va", VA_HEADER + "0.1,nan\n", 2, ["arousal value 'nan' is not a number"]),
    ("va", VA_HEADER + "0.1,\n", 2, ["arousal value '' is not a number"]),
    ("va", VA_HEADER + "0.1,0.2\n0.3,0.4\n1.5,0.2\n", 4, ["valence value '1.5' is out of range", "in [-1, 1]"]),
    ("va", VA_HEADER + "-4,0.2\n", 2, ["out of range", "-5 for an invalid frame"]),
    ("va", VA_HEADER + "0.1,0.2\n\n0.1,0.2\n", 3, ["blank line inside the file"]),
    ("va", "arousal,valence\n0.1,0.2\n", 1, ["wrong header 'arousal,valence'", "expected 'valence,arousal'"]),
    ("va", "0.1,0.2\n0.3,0.4\n", 1, ["wrong header '0.1,0.2'"]),
    ("va", "", 1, ["empty file", "expected the header line 'valence,arousal'"]),
    ("va", "\n\n  \r\n", 1, ["empty file"]),
    ("va", VA_HEADER, 2, ["no frame lines after the header"]),
    ("va", b"valence,arousal\n0.1,\xff0.2\n", 2, ["not UTF-8 text"]),
    ("expr", EXPR_HEADER + "0\n8\n", 3, ["expression value '8' is out of range", "0..7", "-1 for an invalid"]),
    ("expr", EXPR_HEADER + "3.0\n", 2, ["expression value '3.0' is not an integer"]),
    ("expr", EXPR_HEADER + "Happiness\n", 2, ["is not an integer"]),
    ("expr", EXPR_HEADER + "0,0\n", 2, ["2 values", "expected 1 value (expression)"]),
    ("expr", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n0\n", 1,
     ["wrong header", "expected 'Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other'"]),
    ("au", AU_HEADER + "0,0,0,0,0,0,0,0,0,0,0,2\n", 2, ["AU26 value '2' is out of range", "0 or 1 per AU"]),
    ("au", AU_HEADER + "0,0,0,0,0,0,0,0,0,0,0\n", 2, ["11 values", "expected 12 values"]),
    ("au", AU_HEADER + "0,0,0,0,0,0,0,0,0,0,0,0\r\n0,x,0,0,0,0,0,0,0,0,0,0\r\n", 3, ["AU2 value 'x'"]),
    ("au", VA_HEADER + "0,0\n", 1, ["wrong header 'valence,arousal'", "expected 'AU1,AU2,"]),
]


@pytest.mark.parametrize("task,content,line,words", BAD_FILES)
def test_bad_file_names_file_and_line(tmp_path, task, content, line, words):
    path = write_video(tmp_path, task, content)
    error = read_error(tmp_path, task)
    message = str(error)
    assert message.startswith(f"{path}:{line}: "), message
    assert error.path == path and error.line == line
    assert "; " in message  # what is wrong; what is accepted
    for word in words:
        assert word in message


def test_missing_task_folder_lists_found_folders(tmp_path):
    write_video(tmp_path / "6th_ABAW_Annotations", "va", VA_HEADER + "0,0\n")
    write_video(tmp_path / "6th_ABAW_Annotations", "au", AU_HEADER + "0,0,0,0,0,0,0,0,0,0,0,0\n")
    with pytest.raises(AffWild2FormatError) as info:
        layout.read_layout(tmp_path, tmp_path / "cropped_aligned", "expr", "train")
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: no EXPR_Recognition_Challenge or EXPR_Classification_Challenge folder")
    assert "6th_ABAW_Annotations/AU_Detection_Challenge" in message
    assert "6th_ABAW_Annotations/VA_Estimation_Challenge" in message


def test_no_challenge_folder_at_all_lists_the_top_folders(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "cropped_aligned").mkdir()
    with pytest.raises(AffWild2FormatError, match="no challenge folders found; folders in it: cropped_aligned, videos"):
        layout.find_challenge_dir(tmp_path, "va")


def test_missing_split_folder(tmp_path):
    write_video(tmp_path, "va", VA_HEADER + "0,0\n")
    shutil.rmtree(tmp_path / CHALLENGE["va"] / "Validation_Set")
    with pytest.raises(AffWild2FormatError) as info:
        layout.read_layout(tmp_path, tmp_path / "cropped_aligned", "va", "validation")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / CHALLENGE['va']}: no Validation_Set folder (folders found: Train_Set)")
    assert "accepted: Train_Set, Validation_Set" in message


def test_missing_annotation_folder(tmp_path):
    with pytest.raises(AffWild2FormatError, match="annotation folder does not exist"):
        layout.find_challenge_dir(tmp_path / "nowhere", "va")


def test_cli_prints_error_and_exits_2_without_traceback(tmp_path, capsys):
    shutil.copytree(FIXTURE_ROOT, tmp_path / "r")
    path = tmp_path / "r" / "6th_ABAW_Annotations" / "VA_Estimation_Challenge" / "Train_Set" / "video_long.txt"
    path.write_text(VA_HEADER + "0.5,0.5\n0.5,2\n")
    code = data_main(["--quiet", "data", "frames", "--root", str(tmp_path / "r"), "--task", "va",
                      "--split", "train"])
    captured = capsys.readouterr()
    assert code == 2
    assert f"{path}:3: arousal value '2' is out of range" in captured.err
    assert "Traceback" not in captured.err
    assert captured.err.startswith("affbench data frames: error: ")


def test_cli_missing_task_folder_exits_2(tmp_path, capsys):
    write_video(tmp_path, "va", VA_HEADER + "0,0\n")
    code = data_main(["data", "folds", "--root", str(tmp_path), "--task", "au"])
    err = capsys.readouterr().err
    assert code == 2 and "no AU_Detection_Challenge folder" in err and "VA_Estimation_Challenge" in err


def test_cli_needs_a_root(capsys):
    assert data_main(["data", "frames", "--task", "va", "--split", "train"]) == 2
    assert "give --root DIR" in capsys.readouterr().err


def test_cli_unknown_dataset_lists_registered(capsys):
    assert data_main(["data", "frames", "--dataset", "affwild", "--root", str(FIXTURE_ROOT), "--task", "va",
                      "--split", "train"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'affwild'" in err and "affwild2" in err
