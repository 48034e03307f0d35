"""The `synthaffect` dataset component: generates its data on first use, then reads it like Aff-Wild2."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from affbench.data.affwild2_layout import IMAGES_DIR, TASKS, check_split, check_task, read_layout
from affbench.data.records import VideoRecord
from affbench_plugins.datasets.synthaffect.generate import (
    ANNOTATIONS_DIR,
    GENERATOR_VERSION,
    check_seed,
    default_root,
    generate_synthaffect,
    read_metadata,
)
from affbench_plugins.datasets.synthaffect.plan import SizeSpec, size_spec


def _as_size(size: str | SizeSpec | Mapping) -> SizeSpec:
    if isinstance(size, Mapping):
        try:
            return SizeSpec(**size)
        except TypeError as exc:
            raise ValueError(f"SynthAffect size {dict(size)!r}: {exc}; accepted keys: name, singles, pairs, "
                             "mean_frames, spread") from None
    return size_spec(size)


class SynthAffectDataset:
    """SynthAffect: procedurally rendered faces with FACS-grounded labels, in the Aff-Wild2 layout.

    ``size`` is tiny, small (default), medium, large or a custom SizeSpec / mapping; ``seed`` fixes every byte;
    ``root`` is where the data lives (default $AFFBENCH_HOME/synthaffect/<size>-seed<seed>). The data is
    generated on first use (``prepare()``, or the first ``videos()`` call) and reused afterwards.
    """

    name = "synthaffect"

    def __init__(self, *, size: str | SizeSpec | Mapping = "small", seed: int = 0,
                 root: str | os.PathLike[str] | None = None, quiet: bool = False, workers: int | None = None
                 ) -> None:
        self.size = _as_size(size)
        self.seed = check_seed(seed)
        self.root = Path(root).expanduser().absolute() if root is not None else default_root(self.size, self.seed)
        self.image_root = self.root / IMAGES_DIR
        self.annotations_root = self.root / ANNOTATIONS_DIR
        self.quiet = quiet
        self.workers = workers
        self._prepared = False

    def prepare(self) -> Path:
        """Generate the data unless it is already there; return the dataset root."""
        if not self._prepared:
            generate_synthaffect(self.root, size=self.size, seed=self.seed, quiet=self.quiet,
                                 workers=self.workers)
            self._prepared = True
        return self.root

    def tasks(self) -> list[str]:
        """The annotation sets SynthAffect has: every ABAW one (a task reads one of them)."""
        return list(TASKS)

    def videos(self, task: str, split: str) -> list[VideoRecord]:
        """The VideoRecords of `task` ("va", "expr", "au") and `split` ("train", "validation"), by video name."""
        check_task(task)
        check_split(split)
        self.prepare()
        return read_layout(self.annotations_root, self.image_root, task, split)

    def metadata(self) -> dict:
        """The dataset's synthaffect.json (counts per task and split, per-video summary)."""
        self.prepare()
        metadata = read_metadata(self.root)
        assert metadata is not None  # prepare() guarantees a complete dataset
        return metadata

    def provenance(self) -> dict:
        """What identifies this data: name, root, options, seed, size and generator version."""
        return {
            "name": self.name,
            "root": str(self.root),
            "options": {"size": self.size.name, "seed": self.seed},
            "size": self.size.name,
            "size_spec": self.size.as_dict(),
            "seed": self.seed,
            "generator_version": GENERATOR_VERSION,
        }

    def __repr__(self) -> str:
        return f"SynthAffectDataset(size={self.size.name!r}, seed={self.seed}, root={str(self.root)!r})"
