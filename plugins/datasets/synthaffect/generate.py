"""Write a SynthAffect dataset to disk in the Aff-Wild2 layout, atomically and deterministically.

The dataset is written into a hidden temporary sibling folder and renamed into place only when complete, so a
crash never leaves a half-written dataset and two processes generating the same one at once both end up using a
complete copy. The same (size, seed) always gives the same bytes: every video has its own random stream, the JPEG
encoder settings are fixed and the metadata holds no paths or times.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from PIL import Image

from affbench.data.affwild2_layout import (
    CHALLENGE_DIRS,
    FILE_HEADERS,
    IMAGES_DIR,
    SPLIT_DIRS,
    SPLITS,
    TASKS,
    image_name,
)
from affbench.home import synthaffect_root
from affbench_plugins.datasets.synthaffect.facs import AU_THRESHOLD, FPS
from affbench_plugins.datasets.synthaffect.plan import SizeSpec, SourcePlan, plan_sources, size_spec
from affbench_plugins.datasets.synthaffect.render import SIZE
from affbench_plugins.datasets.synthaffect.video import SynthTrack, synthesize_source

GENERATOR_VERSION = "1.1"  # 1.1: tighter face crop (render.FACE_SCALE), visible slight actions
METADATA_FILE = "synthaffect.json"
ANNOTATIONS_DIR = "annotations"
# Fixed encoder settings: part of what makes the same seed give the same bytes.
JPEG_SETTINGS = {"format": "JPEG", "quality": 90, "subsampling": 2, "optimize": False, "progressive": False}
# Below this many frames, starting worker processes costs more than it saves.
PARALLEL_MIN_FRAMES = 2000


def default_root(size: str | SizeSpec = "small", seed: int = 0) -> Path:
    """Where a SynthAffect dataset of `size` and `seed` is cached: $AFFBENCH_HOME/synthaffect/<size>-seed<seed>."""
    return synthaffect_root() / f"{size_spec(size).name}-seed{seed}"


def check_seed(seed: object) -> int:
    """`seed` as an int, or a ValueError saying what is accepted."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"SynthAffect seed {seed!r}: accepted: a non-negative integer")
    return seed


def read_metadata(root: str | os.PathLike[str]) -> dict | None:
    """The synthaffect.json of a generated dataset, or None where there is none."""
    path = Path(root) / METADATA_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable SynthAffect metadata ({exc}); delete the folder to regenerate it") \
            from None


def _matches(metadata: Mapping, spec: SizeSpec, seed: int) -> bool:
    return (metadata.get("seed") == seed and metadata.get("size_spec") == spec.as_dict()
            and metadata.get("generator_version") == GENERATOR_VERSION)


# -- writing ------------------------------------------------------------------------------------------------------
def _encode_jpeg(frame) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, **JPEG_SETTINGS)
    return buffer.getvalue()


def write_track(track: SynthTrack, root: Path) -> dict:
    """Write one face track's images and annotation files under `root`; return its counts."""
    folder = root / IMAGES_DIR / track.video
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(track.frames):
        if frame is not None:
            (folder / image_name(i + 1)).write_bytes(_encode_jpeg(frame))
    valid = {}
    for task in track.tasks:
        split_dir = root / ANNOTATIONS_DIR / CHALLENGE_DIRS[task][0] / SPLIT_DIRS[track.split]
        split_dir.mkdir(parents=True, exist_ok=True)
        lines = [",".join(FILE_HEADERS[task]), *track.label_lines(task)]
        (split_dir / f"{track.video}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")
        valid[task] = int(track.n_annotated - track.invalid[task].sum())
    return {
        "video": track.video, "split": track.split, "tasks": list(track.tasks), "frames": track.n_annotated,
        "images": track.n_images, "image_slots": len(track.frames), "valid_frames": valid,
    }


def _write_source(job: tuple[int, SourcePlan, str]) -> list[dict]:
    seed, plan, root = job
    return [write_track(track, Path(root)) for track in synthesize_source(seed, plan)]


def _run_jobs(jobs: list[tuple[int, SourcePlan, str]], workers: int) -> Iterable[list[dict]]:
    if workers <= 1:
        for job in jobs:
            yield _write_source(job)
        return
    # fork keeps a user's unguarded script from being re-run in every worker (spawn would); the workers only
    # use numpy and PIL.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers) as pool:
        yield from pool.imap_unordered(_write_source, jobs)


def _summary(spec: SizeSpec, seed: int, plans: list[SourcePlan], videos: list[dict]) -> dict:
    per_task = {}
    for task in TASKS:
        per_task[task] = {
            split: {
                "videos": sum(1 for v in videos if v["split"] == split and task in v["tasks"]),
                "frames": sum(v["frames"] for v in videos if v["split"] == split and task in v["tasks"]),
                "valid_frames": sum(v["valid_frames"][task] for v in videos
                                    if v["split"] == split and task in v["tasks"]),
            }
            for split in SPLITS
        }
    return {
        "name": "synthaffect",
        "description": "Procedurally rendered face videos with FACS-grounded VA, EXPR and AU labels, written "
                       "in the Aff-Wild2 layout (annotations/ and cropped_aligned/).",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "size": spec.name,
        "size_spec": spec.as_dict(),
        "fps": FPS,
        "image_size": SIZE,
        "au_threshold": AU_THRESHOLD,
        "jpeg": {k: v for k, v in JPEG_SETTINGS.items() if k != "format"},
        "layout": {"annotations": ANNOTATIONS_DIR, "images": IMAGES_DIR},
        "counts": {
            "sources": len(plans),
            "videos": len(videos),
            "two_face_videos": sum(1 for p in plans if len(p.tracks) == 2),
            "frames": sum(v["frames"] for v in videos),
            "images": sum(v["images"] for v in videos),
            "per_task": per_task,
        },
        "videos": videos,
    }


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Delete temporary folders that crashed generators (dead processes on this machine) left behind."""
    prefix = f".{out_dir.name}.tmp-"
    for entry in out_dir.parent.glob(prefix + "*"):
        try:
            pid = int(entry.name[len(prefix):].split("-")[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass  # alive but not ours: leave it


def _default_workers(total_frames: int, n_jobs: int) -> int:
    if total_frames < PARALLEL_MIN_FRAMES:
        return 1
    return max(1, min(os.cpu_count() or 1, n_jobs))


def generate_synthaffect(out_dir: str | os.PathLike[str], *, size: str | SizeSpec = "small", seed: int = 0,
                         quiet: bool = False, workers: int | None = None) -> Path:
    """Generate (or reuse) the SynthAffect dataset of `size` and `seed` in `out_dir`; return its absolute path."""
    spec = size_spec(size)
    seed = check_seed(seed)
    out_dir = Path(out_dir).expanduser().absolute()
    existing = read_metadata(out_dir) if out_dir.is_dir() else None
    if existing is not None:
        if _matches(existing, spec, seed):
            return out_dir
        raise ValueError(
            f"{out_dir / METADATA_FILE}: holds SynthAffect size '{existing.get('size')}' seed {existing.get('seed')}"
            f" (generator {existing.get('generator_version')}), not size '{spec.name}' seed {seed} (generator "
            f"{GENERATOR_VERSION}); choose another folder or delete this one"
        )
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"{out_dir}: exists and is not a SynthAffect dataset (no {METADATA_FILE}); "
                         "accepted: a new or empty folder")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out_dir)
    plans = plan_sources(spec, seed)
    total = sum(p.n_frames * len(p.tracks) for p in plans)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        # Longest first, so the last worker to finish is not stuck with a long video.
        jobs = [(seed, plan, str(tmp)) for plan in sorted(plans, key=lambda p: -p.n_frames * len(p.tracks))]
        n_workers = _default_workers(total, len(jobs)) if workers is None else max(1, int(workers))
        videos: list[dict] = []
        from tqdm import tqdm

        with tqdm(total=total, unit="frame", desc=f"SynthAffect {spec.name} seed {seed}", disable=quiet,
                  dynamic_ncols=True) as bar:
            for stats in _run_jobs(jobs, n_workers):
                videos.extend(stats)
                bar.update(sum(v["frames"] for v in stats))
        videos.sort(key=lambda v: v["video"])
        metadata = _summary(spec, seed, plans, videos)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _move_into_place(tmp, out_dir, spec, seed)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _move_into_place(tmp: Path, out_dir: Path, spec: SizeSpec, seed: int) -> None:
    try:
        os.replace(tmp, out_dir)  # atomic; POSIX also replaces an empty folder
        return
    except OSError:
        pass
    existing = read_metadata(out_dir) if out_dir.is_dir() else None
    if existing is not None and _matches(existing, spec, seed):
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished the same dataset first
        return
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
        os.replace(tmp, out_dir)
        return
    raise ValueError(f"{out_dir}: appeared while generating and is not the same SynthAffect dataset")
