"""The `affwild2` dataset plugin: the official Aff-Wild2 / ABAW annotation and cropped-aligned image layout."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from affbench import hookimpl
from affbench.data import affwild2_layout as layout
from affbench.data.records import VideoRecord


class AffWild2Dataset:
    """Aff-Wild2 (ABAW) from the official layout: challenge annotation folders and cropped_aligned/ images.

    ``root`` holds the annotations (challenge folders at most two levels down, e.g. inside
    ``6th_ABAW_Annotations/``) and ``cropped_aligned/``; ``annotations`` / ``images`` name those folders
    separately and win over ``root``.
    """

    name = "affwild2"

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        annotations: str | os.PathLike[str] | None = None,
        images: str | os.PathLike[str] | None = None,
        quiet: bool = False,
    ) -> None:
        self.options = {
            "root": None if root is None else str(root),
            "annotations": None if annotations is None else str(annotations),
            "images": None if images is None else str(images),
        }
        self.annotations_root, self.image_root = layout.resolve_layout(root, annotations, images)
        self.root = Path(root).expanduser().resolve() if root is not None else None
        self.quiet = quiet
        self._cache: dict[tuple[str, str], list[VideoRecord]] = {}
        self._fingerprints: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"AffWild2Dataset(annotations={str(self.annotations_root)!r}, images={str(self.image_root)!r})"

    def tasks(self) -> list[str]:
        """The annotation sets this copy has: those whose challenge folder exists (a task reads one of them)."""
        return [t for t, dirs in layout.find_challenge_dirs(self.annotations_root).items() if dirs]

    def videos(self, task: str, split: str) -> list[VideoRecord]:
        """The face tracks of `task` in the official `split` ("train" | "validation"), sorted by video name."""
        layout.check_task(task)
        layout.check_split(split)
        key = (task, split)
        if key not in self._cache:
            self._cache[key] = layout.read_layout(self.annotations_root, self.image_root, task, split,
                                                  quiet=self.quiet)
        return list(self._cache[key])

    def annotated_videos(self, task: str, split: str) -> Iterator[tuple[VideoRecord, list[tuple[str, ...]]]]:
        """(record, label value texts as written in the file), video by video; for the per-frame table."""
        layout.check_task(task)
        layout.check_split(split)
        return layout.iter_annotated_videos(self.annotations_root, self.image_root, task, split, quiet=self.quiet)

    def challenge_dir(self, task: str) -> Path:
        """The folder that holds the task's Train_Set/ and Validation_Set/."""
        return layout.find_challenge_dir(self.annotations_root, task)

    def fingerprint(self, task: str) -> str:
        """sha256 over the task's annotation files (names and contents, both splits); computed once."""
        layout.check_task(task)
        if task not in self._fingerprints:
            self._fingerprints[task] = layout.annotation_fingerprint(self.annotations_root, task)
        return self._fingerprints[task]

    def provenance(self, task: str | None = None) -> dict[str, Any]:
        """Where the data came from: options, resolved folders and annotation fingerprints.

        With `task`, the fingerprint of that task only; without, of every task whose challenge folder exists.
        """
        tasks = [layout.check_task(task)] if task is not None else self.tasks()
        return {
            "name": self.name,
            "root": None if self.root is None else str(self.root),
            "options": dict(self.options),
            "annotations": str(self.annotations_root),
            "images": str(self.image_root),
            "challenge_dirs": {t: str(self.challenge_dir(t)) for t in tasks},
            "annotation_sha256": {t: self.fingerprint(t) for t in tasks},
        }


@hookimpl
def affbench_register_datasets(register):
    register("affwild2", AffWild2Dataset)
