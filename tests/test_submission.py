"""ABAW submission files: the validator names the file and the first offending line; a valid file passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from affbench.data.cli import main as data_main
from affbench.data.submission import read_order_file, validate_submission

HEADERS = {
    "va": "image_location,valence,arousal",
    "expr": "image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other",
    "au": "image_location,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26",
}
ORDER = ["b_left/00002.jpg", "b_left/00001.jpg", "a/00001.jpg", "a/00002.jpg", "a/00003.jpg"]
GOOD_VALUES = {"va": ["0.5,-0.25", "-1,1", "0,0", "0.125,-0.5", "1.0,-1.0"],
               "expr": ["0", "7", "3", "3", "1"],
               "au": [",".join("1" if (i + j) % 3 == 0 else "0" for j in range(12)) for i in range(5)]}


@pytest.fixture
def order(tmp_path) -> Path:
    path = tmp_path / "order.txt"
    path.write_text(HEADERS["va"] + "\n" + "".join(f"{loc},0,0\n" for loc in ORDER))
    return path


def write(tmp_path: Path, task: str, rows: list[str], header: str | None = None) -> Path:
    path = tmp_path / f"{task}_submission.txt"
    path.write_text("\n".join([header if header is not None else HEADERS[task], *rows]) + "\n")
    return path


def rows_of(task: str) -> list[str]:
    return [f"{loc},{values}" for loc, values in zip(ORDER, GOOD_VALUES[task], strict=True)]


def check(path: Path, task: str, order: Path, capsys) -> tuple[int, str]:
    code = data_main(["data", "validate-submission", str(path), "--task", task, "--order", str(order)])
    captured = capsys.readouterr()
    return code, captured.err.strip() if code else captured.out.strip()


@pytest.mark.parametrize("task", ["va", "expr", "au"])
def test_a_valid_file_passes(tmp_path, order, task, capsys):
    path = write(tmp_path, task, rows_of(task))
    assert validate_submission(path, task, read_order_file(order)) == len(ORDER)
    code, out = check(path, task, order, capsys)
    assert code == 0 and out == f"{path}: a valid {task.upper()} submission, 5 rows in the order of {order}"


@pytest.mark.parametrize(("task", "rows", "header", "where", "message"), [
    ("va", None, "image_location,arousal,valence", 1,
     "header 'image_location,arousal,valence'; expected 'image_location,valence,arousal'"),
    ("expr", None, "image_location,expression", 1, "expected 'image_location,Neutral,Anger,"),
    # count: one row missing at the end, one row too many
    ("va", lambda r: r[:-1], None, 6, "the file ends after 4 rows; expected 5, next 'a/00003.jpg' ({order}:6)"),
    ("au", lambda r: [*r, r[-1]], None, 7, "row 6 ('a/00003.jpg') is one too many; expected the 5 rows"),
    # order: two rows swapped
    ("va", lambda r: [r[1], r[0], *r[2:]], None, 2,
     "image_location 'b_left/00001.jpg' is out of order; expected 'b_left/00002.jpg' ({order}:2)"),
    # range
    ("va", lambda r: [*r[:3], "a/00002.jpg,0.2,1.5", r[4]], None, 5,
     "arousal value '1.5' is out of range; expected a number in [-1, 1]"),
    ("expr", lambda r: [r[0], "b_left/00001.jpg,8", *r[2:]], None, 3, "expression value '8' is out of range"),
    ("expr", lambda r: [r[0], "b_left/00001.jpg,-1", *r[2:]], None, 3, "expression value '-1' is out of range"),
    ("au", lambda r: [r[0], "b_left/00001.jpg," + "0," * 11 + "2", *r[2:]], None, 3,
     "AU26 value '2' is out of range; expected 0 or 1 per AU"),
    # type
    ("va", lambda r: ["b_left/00002.jpg,high,0", *r[1:]], None, 2, "valence value 'high' is not a number"),
    ("expr", lambda r: ["b_left/00002.jpg,2.0", *r[1:]], None, 2,
     "expression value '2.0' is not an integer; expected one class index 0..7"),
    ("au", lambda r: ["b_left/00002.jpg,0.5," + ",".join(["0"] * 11), *r[1:]], None, 2, "AU1 value '0.5' is not an integer"),
    # shape of a row: EXPR is one integer, not eight probabilities
    ("expr", lambda r: ["b_left/00002.jpg," + ",".join(["0"] * 8), *r[1:]], None, 2,
     "8 values after the image_location; expected 1 (expression)"),
])
def test_each_error_names_the_file_and_line(tmp_path, order, capsys, task, rows, header, where, message):
    good = rows_of(task)
    path = write(tmp_path, task, rows(good) if rows else good, header)
    code, err = check(path, task, order, capsys)
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert err.startswith(f"affbench data validate-submission: error: {path}:{where}: ")
    assert message.format(order=order) in err


def test_bad_order_file_and_empty_submission(tmp_path, order, capsys):
    bad_order = tmp_path / "bad_order.txt"
    bad_order.write_text("image_location\na/00001.jpg\na/frame2.png\n")
    path = write(tmp_path, "va", rows_of("va"))
    code, err = check(path, "va", bad_order, capsys)
    assert code == 2 and f"{bad_order}:3: image_location 'a/frame2.png' is not a frame image" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, err = check(empty, "va", order, capsys)
    assert code == 2 and f"{empty}:1: empty file; expected the header 'image_location,valence,arousal'" in err
    code, err = check(tmp_path / "missing.txt", "va", order, capsys)
    assert code == 2 and "missing.txt" in err and "Traceback" not in err


def test_writing_for_a_video_the_split_lacks_names_the_order_line(tmp_path, order):
    import numpy as np

    import affbench
    from affbench.stages.evaluate import write_submission

    values = {"a": np.zeros((3, 2), np.float32)}  # no predictions for b_left, the order file's first video
    with pytest.raises(ValueError, match=rf"{order}:2: video 'b_left' has no predictions in this split"):
        write_submission(affbench.create("task", "va"), values, tmp_path / "VA.txt", order=read_order_file(order))
