"""Read the official Aff-Wild2 / ABAW annotation layout into VideoRecords.

The layout (also written by SynthAffect)::

    <annotations>/[<release>/[<sub>/]]VA_Estimation_Challenge/Train_Set/<video>.txt
                                      EXPR_Recognition_Challenge/   (EXPR_Classification_Challenge in ABAW5)
                                      AU_Detection_Challenge/
    <images>/<video>/00001.jpg        (annotation line i after the header -> image {i:05d}.jpg)

Every annotation file starts with a fixed header; invalid frames are marked ``-5`` (VA) or ``-1`` (EXPR, AU).
Frames where no face was found have no image, and the image folder may hold more or fewer images than the
file has lines: the annotation file decides the frames, the folder only says which frames have a face.
Anything else is rejected with :class:`AffWild2FormatError`, naming the file and line.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affbench.data import SPLITS, TASKS
from affbench.data.records import VideoRecord, source_video

# Accepted folder names per task, newest edition first.
CHALLENGE_DIRS: dict[str, tuple[str, ...]] = {
    "va": ("VA_Estimation_Challenge",),
    "expr": ("EXPR_Recognition_Challenge", "EXPR_Classification_Challenge"),
    "au": ("AU_Detection_Challenge",),
}
SPLIT_DIRS: dict[str, str] = {"train": "Train_Set", "validation": "Validation_Set"}
IMAGES_DIR = "cropped_aligned"

EXPRESSIONS = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
ACTION_UNITS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")

# The exact first line of each task's files.
FILE_HEADERS: dict[str, tuple[str, ...]] = {
    "va": ("valence", "arousal"),
    "expr": EXPRESSIONS,
    "au": ACTION_UNITS,
}
# The label columns a task's record holds (EXPR is one class index, not the eight header names).
LABEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "va": ("valence", "arousal"),
    "expr": ("expression",),
    "au": ACTION_UNITS,
}
# The invalid marker of each annotation set: a template line says "no label here" until the user fills it.
INVALID_LINES: dict[str, str] = {"va": "-5,-5", "expr": "-1", "au": ",".join(["-1"] * len(ACTION_UNITS))}
# The values a valid frame's label may take: (description of accepted values, test of an array of valid rows).
ACCEPTED_VALUES = {
    "va": ("numbers in [-1, 1]", lambda v: (v >= -1) & (v <= 1)),
    "expr": ("class indices 0..7", lambda v: (v == np.round(v)) & (v >= 0) & (v <= len(EXPRESSIONS) - 1)),
    "au": ("0 or 1", lambda v: (v == 0) | (v == 1)),
}

# Challenge folders may sit directly in the annotations root, or inside folders up to this many levels below
# it: root/6th_ABAW_Annotations/VA_Estimation_Challenge is one level, root/downloads/6th_ABAW_Annotations/... two.
MAX_SEARCH_DEPTH = 2

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


class AffWild2FormatError(ValueError):
    """A file or folder that does not follow the Aff-Wild2 layout; the message is ``path:line: what; accepted``."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, problem: str, accepted: str) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        self.accepted = accepted
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {problem}; {accepted}")


def check_task(task: str) -> str:
    """Return `task` if it is one of TASKS, else raise ValueError listing them."""
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}'; accepted: {', '.join(TASKS)}")
    return task


def check_split(split: str) -> str:
    """Return `split` if it is one of SPLITS, else raise ValueError listing them."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; accepted: {', '.join(SPLITS)}")
    return split


# -- locating folders ---------------------------------------------------------------------------------------------
def _subdirs(folder: Path, skip: frozenset[str] = frozenset()) -> list[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    return [
        Path(e.path) for e in entries
        if not e.name.startswith(".") and e.name not in skip and e.is_dir()
    ]


def find_challenge_dirs(annotations_root: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """Every challenge folder in `annotations_root` or in folders up to two levels below it, by task."""
    root = Path(annotations_root)
    names = {name: task for task, dirs in CHALLENGE_DIRS.items() for name in dirs}
    found: dict[str, list[Path]] = {task: [] for task in TASKS}
    level = [root]
    for depth in range(MAX_SEARCH_DEPTH + 2):
        next_level: list[Path] = []
        for folder in level:
            if folder.name in names and folder.is_dir():
                found[names[folder.name]].append(folder)
                continue  # nothing to find inside a challenge folder
            next_level.append(folder)
        if depth == MAX_SEARCH_DEPTH + 1:
            break
        # The image folder holds one folder per video: never worth descending into.
        level = [sub for folder in next_level for sub in _subdirs(folder, frozenset({IMAGES_DIR}))]
    return found


def find_challenge_dir(annotations_root: str | os.PathLike[str], task: str) -> Path:
    """The task's challenge folder: `annotations_root` itself, in it, or inside folders one or two levels down."""
    check_task(task)
    root = Path(annotations_root)
    if not root.is_dir():
        raise AffWild2FormatError(root, None, "annotation folder does not exist",
                                  "give the folder that holds the challenge folders (or a release folder above them)")
    found = find_challenge_dirs(root)
    candidates = found[task]
    accepted = " or ".join(CHALLENGE_DIRS[task])
    if not candidates:
        others = [str(p.relative_to(root)) for t in TASKS for p in found[t]]
        if others:
            seen = f"challenge folders found: {', '.join(sorted(others))}"
        else:
            top = [p.name for p in _subdirs(root)]
            seen = f"no challenge folders found; folders in it: {', '.join(top) or '(none)'}"
        raise AffWild2FormatError(
            root, None, f"no {accepted} folder for task '{task}' (searched {MAX_SEARCH_DEPTH + 1} levels deep); {seen}",
            f"accepted folder names: {', '.join(CHALLENGE_DIRS[task])}",
        )
    depth = len(candidates[0].relative_to(root).parts)
    shallowest = [p for p in candidates if len(p.relative_to(root).parts) == depth]
    if len(shallowest) > 1:
        listed = ", ".join(str(p.relative_to(root)) for p in shallowest)
        raise AffWild2FormatError(root, None, f"several {accepted} folders for task '{task}': {listed}",
                                  "point the annotations path at the one release folder to use")
    return shallowest[0]


def find_split_dir(annotations_root: str | os.PathLike[str], task: str, split: str) -> Path:
    """The `Train_Set` / `Validation_Set` folder of one task."""
    check_split(split)
    challenge = find_challenge_dir(annotations_root, task)
    folder = challenge / SPLIT_DIRS[split]
    if not folder.is_dir():
        present = ", ".join(p.name for p in _subdirs(challenge)) or "(none)"
        raise AffWild2FormatError(challenge, None, f"no {SPLIT_DIRS[split]} folder (folders found: {present})",
                                  f"accepted: {', '.join(SPLIT_DIRS.values())}")
    return folder


def annotation_files(annotations_root: str | os.PathLike[str], task: str, split: str) -> list[Path]:
    """The `<video>.txt` files of one task and split, sorted by video name (other files are ignored)."""
    folder = find_split_dir(annotations_root, task, split)
    files = [
        Path(e.path) for e in os.scandir(folder)
        if e.name.endswith(".txt") and not e.name.startswith(".") and e.is_file()
    ]
    return sorted(files, key=lambda p: p.stem)


def resolve_layout(
    root: str | os.PathLike[str] | None = None,
    annotations: str | os.PathLike[str] | None = None,
    images: str | os.PathLike[str] | None = None,
) -> tuple[Path, Path]:
    """(annotations root, image root) as absolute paths from `--root` and/or `--annotations` / `--images`."""
    if root is None and annotations is None:
        raise ValueError("no annotations: give root (the folder holding the annotations and cropped_aligned/) "
                         "or annotations (the folder holding the challenge folders)")
    ann = Path(annotations if annotations is not None else root).expanduser().resolve()
    if not ann.is_dir():
        raise AffWild2FormatError(ann, None, "annotation folder does not exist",
                                  "give an existing folder that holds the challenge folders")
    if images is not None:
        img = Path(images).expanduser().resolve()
        if not img.is_dir():
            raise AffWild2FormatError(img, None, "image folder does not exist",
                                      "give the cropped_aligned/ folder (one sub-folder of jpg files per video)")
        return ann, img
    base = Path(root if root is not None else ann).expanduser().resolve()
    img = base / IMAGES_DIR
    if not img.is_dir():
        raise AffWild2FormatError(base, None, f"no {IMAGES_DIR}/ folder",
                                  f"accepted: a root holding {IMAGES_DIR}/, or an explicit images path")
    return ann, img


# -- parsing one file ---------------------------------------------------------------------------------------------
@dataclass
class AnnotationFile:
    """One parsed annotation file: its frame lines as written, the float labels and the valid flags."""

    path: Path
    video: str
    lines: list[str]  # the frame lines after the header, one per frame
    labels: np.ndarray  # float32 [n, label_dim]
    valid: np.ndarray  # bool [n]

    @property
    def n_frames(self) -> int:
        return len(self.lines)

    @property
    def texts(self) -> list[tuple[str, ...]]:
        """Per frame, the label values' text as written in the file (whitespace around them removed)."""
        return [tuple(field.strip() for field in line.split(",")) for line in self.lines]


def _split_lines(path: Path, data: bytes) -> list[str]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise AffWild2FormatError(path, line, "not UTF-8 text", "plain comma-separated text") from None
    # CRLF and lone CR from other tools; trailing blank lines are harmless, inner ones are not.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def parse_number(path: Path, lineno: int, column: str, text: str, accepted: str) -> float:
    """A number field (range unchecked); anything else names the file, line and column."""
    if not _NUMBER.fullmatch(text):
        raise AffWild2FormatError(path, lineno, f"{column} value '{text}' is not a number", accepted)
    return float(text)


def _parse_va(path: Path, lineno: int, fields: list[str]) -> tuple[list[float], bool]:
    accepted = "accepted: a number in [-1, 1], or -5 for an invalid frame"
    values = []
    for column, text in zip(FILE_HEADERS["va"], fields, strict=True):
        value = parse_number(path, lineno, column, text, accepted)
        if value != -5.0 and not (-1.0 <= value <= 1.0 and math.isfinite(value)):
            raise AffWild2FormatError(path, lineno, f"{column} value '{text}' is out of range", accepted)
        values.append(value)
    return values, all(v != -5.0 for v in values)


def parse_int(path: Path, lineno: int, column: str, text: str, allowed: range, accepted: str, *,
              invalid: int | None = -1) -> int:
    """An integer field in `allowed` (or the `invalid` marker); anything else names the file, line and column."""
    if not _INTEGER.fullmatch(text):
        raise AffWild2FormatError(path, lineno, f"{column} value '{text}' is not an integer", accepted)
    value = int(text)
    if value != invalid and value not in allowed:
        raise AffWild2FormatError(path, lineno, f"{column} value '{text}' is out of range", accepted)
    return value


def _parse_expr(path: Path, lineno: int, fields: list[str]) -> tuple[list[float], bool]:
    accepted = "accepted: one class index 0..7 (Neutral..Other), or -1 for an invalid frame"
    value = parse_int(path, lineno, "expression", fields[0], range(len(EXPRESSIONS)), accepted)
    return [float(value)], value != -1


def _parse_au(path: Path, lineno: int, fields: list[str]) -> tuple[list[float], bool]:
    accepted = "accepted: 0 or 1 per AU, or -1 for an invalid frame"
    values = [float(parse_int(path, lineno, column, text, range(2), accepted))
              for column, text in zip(ACTION_UNITS, fields, strict=True)]
    return values, all(v != -1.0 for v in values)


_PARSERS = {"va": _parse_va, "expr": _parse_expr, "au": _parse_au}


def check_submission_values(path: Path, lineno: int, task: str, fields: list[str]) -> None:
    """The values of one submission row of annotation set `task` (types and ranges)."""
    if task == "va":
        accepted = "expected a number in [-1, 1]"
        for column, text in zip(LABEL_COLUMNS["va"], fields, strict=True):
            value = parse_number(path, lineno, column, text, accepted)
            if not (math.isfinite(value) and -1.0 <= value <= 1.0):
                raise AffWild2FormatError(path, lineno, f"{column} value '{text}' is out of range", accepted)
    elif task == "expr":
        parse_int(path, lineno, "expression", fields[0], range(len(EXPRESSIONS)),
                  "expected one class index 0..7 (Neutral..Other)", invalid=None)
    else:
        for column, text in zip(ACTION_UNITS, fields, strict=True):
            parse_int(path, lineno, column, text, range(2), "expected 0 or 1 per AU", invalid=None)


def parse_annotation_bytes(path: str | os.PathLike[str], data: bytes, task: str) -> AnnotationFile:
    """Parse the bytes of one annotation file of `task` (the path is used for the video name and messages)."""
    check_task(task)
    path = Path(path)
    header = FILE_HEADERS[task]
    header_text = ",".join(header)
    lines = _split_lines(path, data)
    if not lines:
        raise AffWild2FormatError(path, 1, "empty file", f"expected the header line '{header_text}', then one line "
                                  "per frame")
    found = tuple(field.strip() for field in lines[0].split(","))
    if found != header:
        raise AffWild2FormatError(path, 1, f"wrong header '{lines[0].strip()}'", f"expected '{header_text}'")
    if len(lines) == 1:
        raise AffWild2FormatError(path, 2, "no frame lines after the header", "one line per video frame")
    body = lines[1:]
    # Frame lines repeat a lot (AU rows, held VA values): parse each distinct line once.
    ids: dict[str, int] = {}
    index = np.fromiter((ids.setdefault(line, len(ids)) for line in body), dtype=np.intp, count=len(body))
    parsed = _parse_fast(list(ids), task)
    if parsed is None:  # something is wrong: find the first bad line, and say what is wrong with it
        labels, valid = _parse_lines(path, body, task)
    else:
        labels, valid = parsed[0][index], parsed[1][index]
    return AnnotationFile(path=path, video=path.stem, lines=body, labels=labels, valid=valid)


_NUM = r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*"
_INT = r"\s*[+-]?\d+\s*"
# Whole-line shapes of a well-formed frame line; value ranges are checked on the arrays.
_LINE_SHAPES = {
    "va": re.compile(f"{_NUM},{_NUM}"),
    "expr": re.compile(_INT),
    "au": re.compile(",".join([_INT] * len(ACTION_UNITS))),
}


def _parse_fast(body: list[str], task: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Vectorised parse of well-formed lines (files hold tens of thousands); None when any line is not."""
    shape = _LINE_SHAPES[task].fullmatch
    if not all(map(shape, body)):
        return None
    n_columns = len(LABEL_COLUMNS[task])
    values = np.array(",".join(body).split(","), dtype=np.float64).reshape(len(body), n_columns)
    if task == "va":
        in_range = (values == -5.0) | ((values >= -1.0) & (values <= 1.0))
        invalid_marker = -5.0
    else:
        top = len(EXPRESSIONS) - 1 if task == "expr" else 1
        in_range = (values == -1.0) | ((values >= 0) & (values <= top))
        invalid_marker = -1.0
    if not in_range.all():
        return None
    return values.astype(np.float32), (values != invalid_marker).all(axis=1)


def _parse_lines(path: Path, body: list[str], task: str) -> tuple[np.ndarray, np.ndarray]:
    """Line-by-line parse that raises AffWild2FormatError at the first bad line."""
    n_columns = len(LABEL_COLUMNS[task])
    parse = _PARSERS[task]
    labels = np.empty((len(body), n_columns), dtype=np.float32)
    valid = np.empty(len(body), dtype=bool)
    what = "values" if n_columns > 1 else "value"
    for i, line in enumerate(body):
        lineno = i + 2
        if not line.strip():
            raise AffWild2FormatError(path, lineno, "blank line inside the file",
                                      "one line per frame; blank lines only at the end")
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != n_columns:
            raise AffWild2FormatError(path, lineno, f"{len(fields)} values", f"expected {n_columns} {what} "
                                      f"({','.join(LABEL_COLUMNS[task])})")
        values, ok = parse(path, lineno, fields)
        labels[i] = values
        valid[i] = ok
    return labels, valid


def read_annotation_file(path: str | os.PathLike[str], task: str) -> AnnotationFile:
    """Parse one `<video>.txt` annotation file of `task`."""
    path = Path(path)
    return parse_annotation_bytes(path, path.read_bytes(), task)


# -- images -------------------------------------------------------------------------------------------------------
def image_name(frame: int) -> str:
    """The face image file name of 1-based `frame`: 00001.jpg."""
    return f"{frame:05d}.jpg"


def face_images(images_root: str | os.PathLike[str], video: str, n_frames: int) -> list[str]:
    """Per frame 1..n, `<video>/NNNNN.jpg` (relative to `images_root`) where that image exists, else ""."""
    folder = Path(images_root) / video
    try:
        # One directory listing instead of n stat calls: videos have tens of thousands of frames.
        present = {e.name for e in os.scandir(folder)}
    except (FileNotFoundError, NotADirectoryError):
        present = set()  # no face was found in any frame
    out = []
    for frame in range(1, n_frames + 1):
        name = image_name(frame)
        out.append(f"{video}/{name}" if name in present else "")
    return out


def unlabelled_records(videos: dict[str, int], images_root: str | os.PathLike[str], label_dim: int) -> list[VideoRecord]:
    """Records of videos without annotation files (a test split): frames 1..n per video, faces where the image
    folder has them, no valid label. A video whose image folder does not exist is refused."""
    images_root = Path(images_root)
    records = []
    for video, n_frames in sorted(videos.items()):
        if not (images_root / video).is_dir():
            raise AffWild2FormatError(images_root / video, None, "no image folder for this listed video",
                                      f"every listed video needs its folder of face images in {images_root}")
        records.append(VideoRecord(video, source_video(video), face_images(images_root, video, n_frames),
                                   np.zeros((n_frames, label_dim), np.float32), np.zeros(n_frames, bool)))
    return records


# -- whole splits -------------------------------------------------------------------------------------------------
def iter_annotated_videos(
    annotations_root: str | os.PathLike[str],
    images_root: str | os.PathLike[str],
    task: str,
    split: str,
    *,
    quiet: bool = True,
) -> Iterator[tuple[VideoRecord, list[tuple[str, ...]]]]:
    """Yield (record, value texts per frame) for every video of a task and split, in video-name order."""
    files = annotation_files(annotations_root, task, split)
    iterator: Iterator[Path] | list[Path] = files
    if not quiet:
        from tqdm import tqdm

        iterator = tqdm(files, desc=f"reading {task}/{split}", unit="video", leave=False)
    for path in iterator:
        parsed = read_annotation_file(path, task)
        record = VideoRecord(
            video=parsed.video,
            source=source_video(parsed.video),
            images=face_images(images_root, parsed.video, parsed.n_frames),
            labels=parsed.labels,
            valid=parsed.valid,
        )
        yield record, parsed.texts


def read_layout(
    annotations_root: str | os.PathLike[str],
    images_root: str | os.PathLike[str],
    task: str,
    split: str,
    *,
    quiet: bool = True,
) -> list[VideoRecord]:
    """All VideoRecords of one task and split, sorted by video name."""
    return [record for record, _ in iter_annotated_videos(annotations_root, images_root, task, split,
                                                          quiet=quiet)]


def annotation_fingerprint(annotations_root: str | os.PathLike[str], task: str) -> str:
    """sha256 over the names and contents of a task's annotation files, both splits (identifies the labels)."""
    digest = hashlib.sha256()
    digest.update(f"affwild2-annotations:{task}\n".encode())
    for split in SPLITS:
        for path in annotation_files(annotations_root, task, split):
            data = path.read_bytes()
            digest.update(f"{split}/{path.name}\0{len(data)}\0".encode())
            digest.update(data)
    return digest.hexdigest()
