"""`affbench data crop`: videos in, aligned 112x112 face crops out, in the Aff-Wild2 layout.

For each video ``<name>`` (the file name without suffix, characters other than letters, digits, ``-`` and ``_``
replaced by ``-``)::

    ROOT/cropped_aligned/<track>/00001.jpg ...       one folder per face track, frames numbered from 1
    ROOT/annotations/<challenge>/Train_Set/<track>.txt  an all-invalid annotation template per track and task
    ROOT/<name>.crop.json                            manifest: detector, alignment, tracking, per-track spans
    ROOT/<name>.faces.csv                            track,frame,x0,y0,x1,y1,score per face written

A single track keeps ``<name>``; two are ``<name>_left`` / ``<name>_right`` (by mean box centre), more are
``<name>_face1`` ... in order of appearance. Frame numbers are the video's frame numbers, shared by all tracks
of one video; a frame where a track has no face gets no image, as in Aff-Wild2. Tracks with fewer than
``min_track_frames`` faces (stray detections) are dropped and counted in the manifest.

Everything is written into a hidden folder beside ROOT and moved into place only when every video succeeded:
an error or an interruption leaves ROOT as it was.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from affbench.data.affwild2_layout import (
    CHALLENGE_DIRS,
    FILE_HEADERS,
    IMAGES_DIR,
    INVALID_LINES,
    SPLIT_DIRS,
    TASKS,
    image_name,
)
from affbench.output import write_json
from affbench.video.align import BOX_MARGIN, CROP_SIZE, TEMPLATE_112, face_transform, warp_crop
from affbench.video.decode import DecodedFrame, iter_frames, list_videos, probe
from affbench.video.detectors import create_detector
from affbench.video.options import CropOptions
from affbench.video.tracking import IoUTracker, Track

MANIFEST_FORMAT = "affbench-crop"
MANIFEST_VERSION = 1
ANNOTATIONS_DIR = "annotations"
JPEG_QUALITY = 95


def video_name(path: Path) -> str:
    """The track name stem of a video file: its stem, with anything but letters, digits, - and _ made '-'."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", path.stem) or "video"


def manifest_path(root: Path, video: str) -> Path:
    return root / f"{video}.crop.json"


def faces_path(root: Path, video: str) -> Path:
    return root / f"{video}.faces.csv"


def template_path(root: Path, task: str, track: str) -> Path:
    return root / ANNOTATIONS_DIR / CHALLENGE_DIRS[task][0] / SPLIT_DIRS["train"] / f"{track}.txt"


def track_names(video: str, tracks: Sequence[Track], mean_x: dict[int, float]) -> dict[int, str]:
    """Track id -> folder name: `<video>`, `<video>_left`/`_right` (by mean box centre), or `<video>_faceK`."""
    if len(tracks) == 1:
        return {tracks[0].id: video}
    if len(tracks) == 2:
        left, right = sorted(tracks, key=lambda t: mean_x[t.id])
        return {left.id: f"{video}_left", right.id: f"{video}_right"}
    return {t.id: f"{video}_face{k}" for k, t in enumerate(sorted(tracks, key=lambda t: t.first), start=1)}


def _batches(frames: Iterator[DecodedFrame], size: int) -> Iterator[list[DecodedFrame]]:
    """Runs of up to `size` frames of one frame size (a detector batch needs equal sizes)."""
    batch: list[DecodedFrame] = []
    for frame in frames:
        if batch and (len(batch) == size or frame.rgb.shape != batch[0].rgb.shape):
            yield batch
            batch = []
        batch.append(frame)
    if batch:
        yield batch


def _save_jpeg(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(pixels).save(path, format="JPEG", quality=JPEG_QUALITY)


def crop_video(path: Path, name: str, staging: Path, detector, options: CropOptions, *, quiet: bool) -> dict:
    """Detect, track and crop one video into `staging` (same layout as ROOT); returns its manifest."""
    info = probe(path)
    tracker = IoUTracker(min_iou=options.min_iou, max_missed=options.max_missed)
    raw = staging / ".tracks" / name  # crops under provisional track ids until the tracks are known
    raw_faces = staging / f".{name}.faces.csv"
    x_sum: dict[int, float] = {}
    modes: set[str] = set()
    n_frames = 0
    first_time = None
    with open(raw_faces, "w", newline="", encoding="utf-8") as handle, tqdm(
            total=info.frames or None, desc=f"crop {name}", unit="frame", disable=quiet, leave=False) as bar:
        writer = csv.writer(handle, lineterminator="\n")
        for batch in _batches(iter_frames(path), options.batch_size):
            for frame, faces in zip(batch, detector.detect([f.rgb for f in batch]), strict=True):
                first_time = frame.time_s if first_time is None else first_time
                for face, track_id in zip(faces, tracker.update(frame.index, faces), strict=True):
                    matrix, mode = face_transform(face)
                    modes.add(mode)
                    folder = raw / f"{track_id:05d}"
                    folder.mkdir(parents=True, exist_ok=True)
                    _save_jpeg(folder / image_name(frame.index), warp_crop(frame.rgb, matrix))
                    x_sum[track_id] = x_sum.get(track_id, 0.0) + float(face.box[0] + face.box[2]) / 2
                    writer.writerow([track_id, frame.index, *(f"{v:.1f}" for v in face.box), f"{face.score:.4f}"])
                n_frames = frame.index
            bar.update(len(batch))
            bar.set_postfix(tracks=len(tracker.tracks))
    kept = [t for t in tracker.tracks if len(t.frames) >= options.min_track_frames]
    if not kept:
        found = f"faces in only {len(tracker.tracks)} track(s) shorter than {options.min_track_frames} frames" \
            if tracker.tracks else "no face"
        raise ValueError(f"{path}: {found} in its {n_frames} frames (detector {options.detector}); accepted: a video "
                         f"that shows a face in at least {options.min_track_frames} frames")
    names = track_names(name, kept, {t.id: x_sum[t.id] / len(t.frames) for t in kept})
    images = staging / IMAGES_DIR
    images.mkdir(exist_ok=True)
    for track in kept:
        os.rename(raw / f"{track.id:05d}", images / names[track.id])
        for task in TASKS:
            _write_template(template_path(staging, task, names[track.id]), task, n_frames)
    shutil.rmtree(raw)
    _rename_faces(raw_faces, faces_path(staging, name), names)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "video": name,
        "source": str(path.resolve()),
        "frames": n_frames,
        "fps": info.fps,
        "start_time_s": first_time or 0.0,
        "width": info.width,
        "height": info.height,
        "detector": {"name": detector.name, "version": detector.version, "device": options.device},
        "alignment": {"mode": "keypoints" if modes == {"keypoints"} else "box", "crop_size": CROP_SIZE,
                      **({"template": TEMPLATE_112.round(4).tolist()} if "keypoints" in modes else
                         {"margin": BOX_MARGIN})},
        "options": asdict(options),
        "tracks": [{"name": names[t.id], "frames_with_face": len(t.frames), "first_frame": t.first,
                    "last_frame": t.last, "spans": t.spans()} for t in sorted(kept, key=lambda t: names[t.id])],
        "dropped_tracks": len(tracker.tracks) - len(kept),
    }
    write_json(manifest_path(staging, name), manifest)
    return manifest


def _write_template(path: Path, task: str, n_frames: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = INVALID_LINES[task] + "\n"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(FILE_HEADERS[task]) + "\n")
        for _ in range(n_frames):
            handle.write(line)


def _rename_faces(raw: Path, path: Path, names: dict[int, str]) -> None:
    """The provisional face rows with final track names (dropped tracks left out), streamed line by line."""
    with open(raw, newline="", encoding="utf-8") as src, open(path, "w", newline="", encoding="utf-8") as dst:
        writer = csv.writer(dst, lineterminator="\n")
        writer.writerow(["track", "frame", "x0", "y0", "x1", "y1", "score"])
        for row in csv.reader(src):
            track = names.get(int(row[0]))
            if track is not None:
                writer.writerow([track, *row[1:]])
    raw.unlink()


def _outputs(staging: Path) -> list[Path]:
    """Every track folder and file of a finished staging folder, relative to it."""
    out = [p.relative_to(staging) for p in staging.iterdir() if p.is_file()]
    images = staging / IMAGES_DIR
    out += [p.relative_to(staging) for p in images.iterdir()] if images.is_dir() else []
    out += [p.relative_to(staging) for p in (staging / ANNOTATIONS_DIR).rglob("*.txt")]
    return sorted(out)


def _check_free(root: Path, names: Sequence[str]) -> None:
    for name in names:
        if manifest_path(root, name).exists():
            raise FileExistsError(f"{manifest_path(root, name)}: video '{name}' was already cropped into {root}; "
                                  "remove its crops or choose another --out")


def crop_videos(source: str | os.PathLike[str], out_root: str | os.PathLike[str], options: CropOptions | None = None,
                *, quiet: bool = False) -> list[dict]:
    """Crop every video of `source` (a file or a folder of videos) into `out_root`; returns their manifests."""
    options = options or CropOptions()
    videos = list_videos(source)
    names = [video_name(v) for v in videos]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"{source}: several videos would be named '{clashes[0]}'; accepted: videos whose names "
                         "differ in more than their suffix")
    root = Path(out_root).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root}: --out exists and is not a folder")
    _check_free(root, names)
    root.parent.mkdir(parents=True, exist_ok=True)
    detector = create_detector(options.detector, device=options.device)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        manifests = [crop_video(v, n, staging, detector, options, quiet=quiet)
                     for v, n in zip(videos, names, strict=True)]
        shutil.rmtree(staging / ".tracks", ignore_errors=True)
        _move_into_place(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifests


def _move_into_place(staging: Path, root: Path) -> None:
    """A new ROOT is one rename; into an existing ROOT each track folder and file is renamed, after a clash check."""
    if not root.exists():
        os.rename(staging, root)
        return
    outputs = _outputs(staging)
    taken = [p for p in outputs if (root / p).exists()]
    if taken:
        raise FileExistsError(f"{root / taken[0]}: already exists; remove it or choose another --out")
    for relative in outputs:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging / relative, root / relative)
