"""ABAW submission files: the organisers' order file, and a validator of what a submission holds.

A submission (one file per task) is the header ``image_location,<columns>`` then one row per listed frame,
``<video>/<NNNNN>.jpg`` first, in the order of the organisers' file: VA two numbers in [-1, 1]; EXPR one class
index 0..7 (the header still names the eight classes); AU twelve 0/1 values. Every problem is reported as
:class:`AffWild2FormatError` (``path:line: what; expected``), the first one found.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from affbench.data.affwild2_layout import (
    FILE_HEADERS,
    LABEL_COLUMNS,
    AffWild2FormatError,
    check_submission_values,
    check_task,
)

LOCATION_COLUMN = "image_location"
SUBMISSION_HEADERS: dict[str, tuple[str, ...]] = {task: (LOCATION_COLUMN, *header)
                                                  for task, header in FILE_HEADERS.items()}
LOCATION_FORM = "<video>/<NNNNN>.jpg (a 1-based frame number)"


def parse_location(location: str, path: str | os.PathLike[str], line: int | None) -> tuple[str, int]:
    """(video, 1-based frame) of an ``image_location`` such as ``v_left/00012.jpg``."""
    video, _, image = location.rpartition("/")
    stem, dot, extension = image.rpartition(".")
    if not video or not dot or extension != "jpg" or not stem.isdigit() or int(stem) < 1:
        raise AffWild2FormatError(path, line, f"image_location '{location}' is not a frame image",
                                  f"expected {LOCATION_FORM}")
    return video, int(stem)


class OrderFile(Sequence[str]):
    """The ``image_location`` column of an organisers' file, in its order, with the line of every row."""

    def __init__(self, path: str | os.PathLike[str], locations: list[str], lines: list[int]) -> None:
        self.path = Path(path)
        self.locations = locations
        self.lines = lines

    def __getitem__(self, index):  # type: ignore[override]
        return self.locations[index]

    def __len__(self) -> int:
        return len(self.locations)

    def where(self, index: int) -> str:
        """``path:line`` of row `index`."""
        return f"{self.path}:{self.lines[index]}"

    def frames_per_video(self) -> dict[str, int]:
        """The highest frame listed per video: the frames 1..n a prediction must cover."""
        frames: dict[str, int] = {}
        for location, line in zip(self.locations, self.lines, strict=True):
            video, frame = parse_location(location, self.path, line)
            frames[video] = max(frames.get(video, 0), frame)
        return frames


def _text_lines(path: Path) -> list[str]:
    """The file's lines (UTF-8, any line ending), trailing blank lines dropped."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AffWild2FormatError(path, data[: exc.start].count(b"\n") + 1, "not UTF-8 text",
                                  "plain comma-separated text") from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_order_file(path: str | os.PathLike[str]) -> OrderFile:
    """The rows of an organisers' sample file: first column ``image_location`` (a header line is skipped)."""
    path = Path(path)
    locations, lines = [], []
    for i, line in enumerate(_text_lines(path)):
        first = line.split(",", 1)[0].strip()
        if not first or (i == 0 and first == LOCATION_COLUMN):
            continue
        parse_location(first, path, i + 1)
        locations.append(first)
        lines.append(i + 1)
    if not locations:
        raise AffWild2FormatError(path, None, "lists no frame", f"expected one {LOCATION_FORM} per line")
    return OrderFile(path, locations, lines)


def _rows(path: Path, lines: list[str]) -> Iterator[tuple[int, list[str]]]:
    for i, line in enumerate(lines[1:]):
        lineno = i + 2
        if not line.strip():
            raise AffWild2FormatError(path, lineno, "blank line inside the file", "one row per frame")
        yield lineno, [field.strip() for field in line.split(",")]


def validate_submission(path: str | os.PathLike[str], task: str, order: OrderFile | Sequence[str] | None = None
                        ) -> int:
    """Check a submission file of `task` (header, rows against `order`, value types and ranges); rows checked.

    Without `order` the row count and order are not checked, only that every row names a frame image.
    """
    check_task(task)
    path = Path(path)
    lines = _text_lines(path)
    header = ",".join(SUBMISSION_HEADERS[task])
    if not lines:
        raise AffWild2FormatError(path, 1, "empty file", f"expected the header '{header}', then one row per frame")
    if lines[0].strip() != header:
        raise AffWild2FormatError(path, 1, f"header '{lines[0].strip()}'", f"expected '{header}'")
    n_values = len(LABEL_COLUMNS[task])
    listed = None if order is None else len(order)
    source = (lambda i: order.where(i)) if isinstance(order, OrderFile) else (lambda i: f"row {i + 1} of the order")
    rows = 0
    for lineno, fields in _rows(path, lines):
        location = fields[0]
        if listed is not None:
            if rows >= listed:
                raise AffWild2FormatError(path, lineno, f"row {rows + 1} ('{location}') is one too many",
                                          f"expected the {listed} rows the order file lists")
            if location != order[rows]:
                raise AffWild2FormatError(path, lineno, f"image_location '{location}' is out of order",
                                          f"expected '{order[rows]}' ({source(rows)})")
        else:
            parse_location(location, path, lineno)
        if len(fields) - 1 != n_values:
            raise AffWild2FormatError(path, lineno, f"{len(fields) - 1} values after the image_location",
                                      f"expected {n_values} ({','.join(LABEL_COLUMNS[task])})")
        check_submission_values(path, lineno, task, fields[1:])
        rows += 1
    if listed is not None and rows < listed:
        raise AffWild2FormatError(path, len(lines) + 1, f"the file ends after {rows} rows",
                                  f"expected {listed}, next '{order[rows]}' ({source(rows)})")
    return rows
