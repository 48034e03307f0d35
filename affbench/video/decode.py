"""Streaming video decoding with PyAV: one RGB frame at a time, so memory stays flat however long the video."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affbench.video.extra import require

# What a folder given to `data crop` may hold: files with these suffixes, nothing else.
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream (frames may be 0 when it does not know)."""

    path: Path
    width: int
    height: int
    fps: float
    frames: int


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame: 1-based index, presentation time in seconds, uint8 RGB pixels [H, W, 3]."""

    index: int
    time_s: float
    rgb: np.ndarray


def _unreadable(path: Path, exc: Exception) -> ValueError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ValueError(f"{path}: not a readable video ({reason}); accepted: a video file FFmpeg can decode "
                      f"({', '.join(VIDEO_SUFFIXES)})")


def _open(path: Path):
    av = require("av")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise _unreadable(path, exc) from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path}: holds no video stream; accepted: a file with at least one video stream")
    return container


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Size, frame rate and frame count (0 if unknown) of a video's first video stream."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 0
        return VideoInfo(path, int(stream.codec_context.width), int(stream.codec_context.height),
                         float(rate), int(stream.frames or 0))


def iter_frames(path: str | os.PathLike[str]) -> Iterator[DecodedFrame]:
    """Decode a video's first video stream frame by frame; raises ValueError if it holds no decodable frame."""
    av = require("av")
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame-parallel decoding: the decoder, not Python, is the slow part
        rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        index = 0
        try:
            for frame in container.decode(stream):
                index += 1
                time_s = float(frame.time) if frame.time is not None else (index - 1) / (rate or 1.0)
                yield DecodedFrame(index, time_s, frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError as exc:
            if index == 0:
                raise _unreadable(path, exc) from None
            # A truncated tail (a recording cut short) keeps the frames decoded so far, as players do.
        if index == 0:
            raise ValueError(f"{path}: holds no decodable video frame; accepted: a video with at least one frame")
    finally:
        container.close()


def list_videos(path: str | os.PathLike[str]) -> list[Path]:
    """The video files `data crop` reads: the file itself, or every file of a folder that holds only videos."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such video file or folder")
    entries = sorted(e for e in path.iterdir() if not e.name.startswith("."))
    others = [e.name for e in entries if not (e.is_file() and e.suffix.lower() in VIDEO_SUFFIXES)]
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise ValueError(f"{path}: holds {shown}, not video files; accepted: a folder of only video files "
                         f"({', '.join(VIDEO_SUFFIXES)})")
    if not entries:
        raise ValueError(f"{path}: the folder is empty; accepted: a folder of video files")
    return entries
