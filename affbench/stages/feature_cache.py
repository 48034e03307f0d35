"""Content-addressed cache keys and locations for the shared stages (frames, fine-tune, features, windows).

Every stage output lives under ``cache_root()/<stage>/<key>/`` (``$AFFBENCH_HOME/cache``, see affbench.home)
where the key is a hash of everything that determines the output: identical requests land in the same directory, across configs and suites, so a stage
that finds its directory complete does no work. A directory is complete when its ``manifest.json`` exists
(written last, atomically); anything else in it is a resumable partial result.

Per-video features (one ``<video>.npz`` per face track, ``features`` float16 [k, D] and ``images`` [k]) are
kept apart from window shards: the features of a face track depend only on its images and the backbone, so
the VA, EXPR and AU window shards of one backbone are all cut from one extraction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from affbench.home import cache_root
from affbench.output import MANIFEST, read_json_object, to_jsonable, write_bytes_atomic

# Bumped when the bytes a stage writes change meaning, so old cache entries are never read as new ones.
# finetune 2: on the CPU, depthwise weight gradients are summed tap by tap (affbench.stages.depthwise_grads), so
# a fine-tune computes slightly different weights than version 1 did.
FORMAT_VERSIONS = {"frames": 1, "finetune": 2, "features": 2, "windows": 1}

log = logging.getLogger("affbench.cache")


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of `obj` (dict order, tuples vs lists and Paths do not matter)."""
    text = json.dumps(to_jsonable(obj, other=str), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stage_key(stage: str, **parts: Any) -> str:
    """Cache key of one stage output: the stage's format version plus every part that determines it."""
    if stage not in FORMAT_VERSIONS:
        raise ValueError(f"unknown cache stage '{stage}'; stages: {', '.join(FORMAT_VERSIONS)}")
    return stable_hash({"stage": stage, "format": FORMAT_VERSIONS[stage], **parts})


def stage_dir(stage: str, key: str) -> Path:
    """Directory of one cache entry: <cache_root>/<stage>/<key>."""
    return cache_root() / stage / key


def backbone_identity(backbone_spec: dict, weights_id: str, preprocess: Any) -> dict:
    """What makes two backbones produce the same features: name, options, weights, input preprocessing.

    A small backbone sees its images rounded to uint8 crops at its input size (``frame_shards.decoded_crops``),
    which "input" names; identities of larger backbones stay what they were.
    """
    from affbench.data.frame_shards import decoded_crops

    rounded = {} if decoded_crops(preprocess) is None else {"input": "uint8 crops at input size"}
    return {
        "name": backbone_spec["name"],
        "options": to_jsonable(backbone_spec.get("options") or {}, other=str),
        "weights_id": str(weights_id),
        "preprocess": to_jsonable(preprocess, other=str),
        **rounded,
    }


def feature_key(dataset_provenance: dict, identity: dict) -> str:
    """Key of per-video features of one dataset under one backbone identity (see `backbone_identity`)."""
    return stage_key("features", dataset=dataset_provenance, backbone=identity)


def read_manifest(directory: str | Path) -> dict | None:
    """The manifest of a complete cache entry, or None while the entry is missing, partial or its manifest is
    unreadable (then the entry is rebuilt: a damaged cache heals on the next run)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = read_json_object(path)
    except (OSError, ValueError) as exc:
        log.warning("cache manifest is unreadable (%s); rebuilding that entry", exc)
        return None
    # The manifest's mtime is when the entry was last used: `affbench cache clear --older-than` keeps what runs
    # still reuse. A read-only cache is still readable.
    with contextlib.suppress(OSError):
        os.utime(path)
    return manifest


def _video_file(directory: Path, video: str) -> Path:
    # Face-track names are file-safe in Aff-Wild2; anything else is hashed rather than trusted as a path.
    safe = video if all(c.isalnum() or c in "-_." for c in video) and not video.startswith(".") else stable_hash(video)
    return directory / f"{safe}.npz"


def save_video_features(directory: str | Path, video: str, images: list[str], features: np.ndarray,
                        stamps: np.ndarray) -> None:
    """Store one face track's features (float16 [k, D]) for its `images` (k relative paths) and their stamps
    (int64 [k, 2], see affbench.data.image_stamps), atomically. The .npz (a zip) keeps a crc32 per member, which
    numpy verifies on every read: flipped bytes are found like a truncated file."""
    import io

    features = np.asarray(features, dtype=np.float16)
    stamps = np.asarray(stamps, dtype=np.int64)
    if features.ndim != 2 or features.shape[0] != len(images) or stamps.shape != (len(images), 2):
        raise ValueError(f"video '{video}': {len(images)} images but features {features.shape} and stamps "
                         f"{stamps.shape}")
    buffer = io.BytesIO()
    np.savez(buffer, features=features, images=np.asarray(images, dtype=str), video=np.asarray(video),
             stamps=stamps)
    write_bytes_atomic(_video_file(Path(directory), video), buffer.getvalue())


# What a damaged .npz raises: truncated or zero bytes (BadZipFile, EOFError), a bad member crc32 (BadZipFile),
# a missing member (KeyError), a malformed array header (ValueError), or an unreadable file (OSError).
_DAMAGED_NPZ = (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError)


def _read_npz(directory: str | Path, video: str, members: tuple[str, ...]) -> tuple | None:
    """The named members of one face track's file; None when it is missing, or damaged (then it is deleted
    with a warning naming it, and the caller extracts that video again)."""
    path = _video_file(Path(directory), video)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:  # npz members load lazily: only these are read
            return tuple(data[m] for m in members)
    except _DAMAGED_NPZ as exc:
        log.warning("cached features %s are damaged (%s: %s); extracting video '%s' again", path,
                    type(exc).__name__, exc, video)
        path.unlink(missing_ok=True)
        return None


def load_video_features(directory: str | Path, video: str) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """(images, features float16 [k, D], stamps int64 [k, 2]) of one face track, or None when it has not been
    extracted (or its file was damaged)."""
    found = _read_npz(directory, video, ("images", "features", "stamps"))
    if found is None:
        return None
    images, features, stamps = found
    return [str(p) for p in images], features, stamps


def load_video_images(directory: str | Path, video: str) -> dict[str, tuple[int, int]] | None:
    """{image: stamp} of the images whose features a face track has in the cache (features are not read)."""
    found = _read_npz(directory, video, ("images", "stamps"))
    if found is None:
        return None
    images, stamps = found
    return {str(p): (int(a), int(b)) for p, (a, b) in zip(images, stamps.tolist(), strict=True)}
