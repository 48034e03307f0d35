"""K-fold cross-validation splits grouped by source video, and the fold manifest a run keeps.

Folds are built over the official train and validation videos together. All face tracks of one source video
(``<name>_left`` / ``<name>_right``) go to the same fold, so one scene never sits on both sides. The order of
source videos is a seeded hash (stable across Python and NumPy versions and platforms); each source video, in
that order, joins the fold with the fewest frames so far, which balances folds by frame count.
``hold_out_sources`` cuts a seeded slice of whole source videos off one side the same way (stage 3 picks its
epoch on a slice of the fold's training videos).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from affbench.data.records import VideoRecord
from affbench.output import write_text_atomic

MANIFEST_FORMAT = "affbench-folds"
MANIFEST_VERSION = 1


class FoldError(ValueError):
    """Folds that cannot be built, or a fold manifest that does not hold what it should."""


class FoldManifest(NamedTuple):
    """What `read_fold_manifest` returns: the folds and the metadata written with them."""

    folds: list[dict[str, list[str]]]
    meta: dict[str, Any]


def _seeded_order(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}\0{name}".encode()).hexdigest()


def group_by_source(records: Iterable[VideoRecord]) -> dict[str, list[VideoRecord]]:
    """Face-track records grouped by source video (a video name seen twice is an error)."""
    groups: dict[str, list[VideoRecord]] = {}
    seen: set[str] = set()
    for record in records:
        if record.video in seen:
            raise FoldError(f"video '{record.video}' appears twice in the records; every face track must be listed "
                            "once (train and validation videos together)")
        seen.add(record.video)
        groups.setdefault(record.source, []).append(record)
    return groups


def make_folds(records: Sequence[VideoRecord], k: int = 5, seed: int = 0) -> list[dict[str, list[str]]]:
    """K folds over `records` grouped by source video: [{"train": [video...], "validation": [video...]}, ...]."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise FoldError(f"k must be an integer >= 2 (the number of folds), got {k!r}")
    groups = group_by_source(records)
    if k > len(groups):
        raise FoldError(
            f"k={k} folds need at least {k} source videos, but the records hold {len(groups)} "
            f"({len(records)} face tracks; _left/_right tracks of one video count once); use k <= {len(groups)}"
        )
    order = sorted(groups, key=lambda source: (_seeded_order(source, seed), source))
    frames = [0] * k
    members: list[list[str]] = [[] for _ in range(k)]
    for source in order:
        # Fewest frames first; on a tie the fold with fewer source videos, then the lowest index.
        target = min(range(k), key=lambda i: (frames[i], len(members[i]), i))
        members[target].append(source)
        frames[target] += sum(r.n_frames for r in groups[source])
    all_videos = sorted(r.video for r in records)
    folds = []
    for fold_sources in members:
        held_out = sorted(r.video for source in fold_sources for r in groups[source])
        held = set(held_out)
        folds.append({"train": [v for v in all_videos if v not in held], "validation": held_out})
    return folds


def labelled_tasks(dataset: Any, task: str) -> list[str]:
    """The tasks a dataset labels (its ``tasks()``), or just `task` for a dataset that does not say."""
    tasks = list(dataset.tasks()) if callable(getattr(dataset, "tasks", None)) else []
    return tasks if task in tasks else [task]


class _VideoSize(NamedTuple):
    """What a fold split reads of a face track: its name, source video and length."""

    video: str
    source: str
    n_frames: int


def task_folds(dataset: Any, task: str, *, k: int, seed: int) -> tuple[list[dict[str, list[str]]], list[str]]:
    """(K folds of `task`'s videos, the tasks they were cut over), over the official splits together.

    The split is made once over the face tracks of every task the dataset labels, then each fold keeps the
    tracks `task` labels: fold k holds the same source videos for every task, so a model or fine-tune that
    learns from several tasks' labels never trains on a video that another task validates on. A track
    labelled for several tasks weighs in with its longest annotation.
    """
    tasks = labelled_tasks(dataset, task)
    sizes: dict[str, _VideoSize] = {}
    mine: set[str] = set()
    for name in tasks:
        for split in ("train", "validation"):
            for r in dataset.videos(name, split):
                if name == task:
                    mine.add(r.video)
                if r.video not in sizes or sizes[r.video].n_frames < r.n_frames:
                    sizes[r.video] = _VideoSize(r.video, r.source, r.n_frames)
    folds = make_folds([sizes[v] for v in sorted(sizes)], k=k, seed=seed)
    mine_folds = [{side: [v for v in fold[side] if v in mine] for side in fold} for fold in folds]
    empty = [i for i, fold in enumerate(mine_folds) if not fold["validation"]]
    if empty:
        sources = len({sizes[v].source for v in mine})
        raise FoldError(f"k={k} folds over the {', '.join(tasks)} videos leave fold {empty[0]} without any "
                        f"'{task}' video ({sources} source videos are labelled for '{task}'); use a smaller k")
    return mine_folds, tasks


def split_records(
    records: Sequence[VideoRecord], fold: dict[str, list[str]]
) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """(train records, validation records) of one fold, in the order of `records`."""
    by_video = {r.video: r for r in records}
    for side in ("train", "validation"):
        unknown = [v for v in fold[side] if v not in by_video]
        if unknown:
            raise FoldError(f"fold {side} lists videos not in the records: {', '.join(unknown[:5])}"
                            + (" ..." if len(unknown) > 5 else ""))
    train, validation = set(fold["train"]), set(fold["validation"])
    return [r for r in records if r.video in train], [r for r in records if r.video in validation]


def hold_out_sources(
    records: Sequence[VideoRecord], fraction: float, seed: int
) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """(kept, held out): whole source videos held out of `records` until they hold `fraction` of the frames.

    Source videos are drawn in the seeded hash order of the folds (``_left``/``_right`` together); at least one
    is held out and at least one kept. Both lists keep the order of `records`.
    """
    if not 0.0 < fraction < 1.0:
        raise FoldError(f"the held-out fraction must be between 0 and 1 (exclusive), got {fraction!r}")
    groups = group_by_source(records)
    if len(groups) < 2:
        raise FoldError(f"holding out training videos needs at least 2 source videos, but the training side holds "
                        f"{len(groups)} ({', '.join(r.video for r in records) or 'none'})")
    total = sum(r.n_frames for r in records)
    held: set[str] = set()
    held_frames = 0
    # Salted, so the draw is not the fold assignment's order again when both seeds are equal.
    for source in sorted(groups, key=lambda s: (_seeded_order(f"hold-out\0{s}", seed), s))[:-1]:
        if held and held_frames >= fraction * total:
            break
        held.add(source)
        held_frames += sum(r.n_frames for r in groups[source])
    return [r for r in records if r.source not in held], [r for r in records if r.source in held]


def fold_frame_counts(records: Sequence[VideoRecord], folds: Sequence[dict[str, list[str]]]) -> list[int]:
    """Frames held out (validation) in each fold."""
    frames = {r.video: r.n_frames for r in records}
    return [sum(frames[v] for v in fold["validation"]) for fold in folds]


def fold_manifest_text(folds: Sequence[dict[str, list[str]]], meta: dict[str, Any] | None = None) -> str:
    """The JSON text of a fold manifest (what `write_fold_manifest` writes)."""
    checked = _check_folds(folds, "folds")
    payload = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "k": len(checked),
        "meta": dict(meta or {}),
        "folds": checked,
    }
    return json.dumps(payload, indent=2) + "\n"


def write_fold_manifest(path: str | os.PathLike[str], folds: Sequence[dict[str, list[str]]],
                        meta: dict[str, Any] | None = None) -> Path:
    """Write the folds and their metadata (task, k, seed, dataset provenance...) as a JSON manifest."""
    return write_text_atomic(path, fold_manifest_text(folds, meta))  # never a half-written manifest


def read_fold_manifest(path: str | os.PathLike[str]) -> FoldManifest:
    """Read a manifest written by `write_fold_manifest`: (folds, meta)."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FoldError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); expected a fold manifest") from None
    if not isinstance(payload, dict) or payload.get("format") != MANIFEST_FORMAT:
        raise FoldError(f"{path}: key 'format' must be '{MANIFEST_FORMAT}'; not a fold manifest")
    if payload.get("version") != MANIFEST_VERSION:
        raise FoldError(f"{path}: key 'version' is {payload.get('version')!r}; this affbench reads version "
                        f"{MANIFEST_VERSION}")
    meta = payload.get("meta", {})
    if not isinstance(meta, dict):
        raise FoldError(f"{path}: key 'meta' must be a mapping")
    folds = _check_folds(payload.get("folds"), f"{path}: key 'folds'")
    if payload.get("k") != len(folds):
        raise FoldError(f"{path}: key 'k' is {payload.get('k')!r} but 'folds' holds {len(folds)} folds")
    return FoldManifest(folds, meta)


def _check_folds(folds: Any, where: str) -> list[dict[str, list[str]]]:
    if not isinstance(folds, (list, tuple)) or not folds:
        raise FoldError(f"{where} must be a non-empty list of {{'train': [...], 'validation': [...]}}")
    checked = []
    for i, fold in enumerate(folds):
        if not isinstance(fold, dict) or set(fold) != {"train", "validation"}:
            raise FoldError(f"{where}[{i}] must be a mapping with exactly the keys 'train' and 'validation'")
        for side in ("train", "validation"):
            if not isinstance(fold[side], (list, tuple)) or not all(isinstance(v, str) for v in fold[side]):
                raise FoldError(f"{where}[{i}].{side} must be a list of video names")
        both = set(fold["train"]) & set(fold["validation"])
        if both:
            raise FoldError(f"{where}[{i}]: videos on both sides: {', '.join(sorted(both))}")
        checked.append({"train": list(fold["train"]), "validation": list(fold["validation"])})
    return checked
