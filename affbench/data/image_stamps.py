"""What the caches know of each face image, so a replaced image is never served from a stale cache entry.

A stamp is (size in bytes, mtime in ns) by default: one ``stat`` per image, no read. Setting
``AFFBENCH_IMAGE_STAMPS=content`` stamps (size, xxh3_64 of the bytes) instead, which also sees a same-size
replacement written with a preserved mtime (``cp -p``, ``rsync -t``), at the cost of reading every image.
Frames without an image, and listed images that are missing, stamp (0, 0).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from affbench.data.checksums import file_checksum
from affbench.data.records import VideoRecord

MODE_ENV = "AFFBENCH_IMAGE_STAMPS"
MODES = ("stat", "content")


def stamp_mode() -> str:
    """The stamp mode from AFFBENCH_IMAGE_STAMPS (default 'stat'); an unknown value is an input error."""
    mode = os.environ.get(MODE_ENV, "").strip() or "stat"
    if mode not in MODES:
        raise ValueError(f"${MODE_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def image_stamps(image_root: str | Path, images: Sequence[str], mode: str | None = None) -> np.ndarray:
    """int64 [n, 2] stamps of `images` (paths relative to `image_root`; "" for a frame without an image)."""
    mode = mode or stamp_mode()
    root = Path(image_root)
    out = np.zeros((len(images), 2), dtype=np.int64)
    for i, image in enumerate(images):
        if not image:
            continue
        try:
            st = os.stat(root / image)
        except OSError:
            continue
        # A content checksum is 64 unsigned bits: 63 of them fit the int64 stamp array.
        out[i] = (st.st_size, st.st_mtime_ns if mode == "stat" else file_checksum(root / image) >> 1)
    return out


def record_stamps(image_root: str | Path, records: Iterable[VideoRecord]) -> dict[str, np.ndarray]:
    """{video: stamps [n_frames, 2]} for every record."""
    mode = stamp_mode()
    return {r.video: image_stamps(image_root, r.images, mode) for r in records}


def stamps_digest(stamps: Mapping[str, np.ndarray], videos: Iterable[str]) -> str:
    """One hex digest of the stamps of `videos` (for cache keys of sets built from many images)."""
    import hashlib

    digest = hashlib.sha256()
    for video in sorted(videos):
        digest.update(video.encode("utf-8") + b"\0")
        digest.update(np.ascontiguousarray(stamps[video]).tobytes())
    return digest.hexdigest()[:32]
