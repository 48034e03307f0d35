"""Which frames a run's reported metrics count, and how often: the ``eval.scoring`` rule.

* ``frames`` (the default, ABAW's rule): every labelled frame of every video once.
* ``windows`` (the authors' earlier code): each video is cut into full windows of ``data.window`` frames every
  ``data.stride`` frames, stopping when the next window would pass the end (``data.tails: drop``'s rule), and
  every frame counts as often as those windows hold it: a video's tail and a video shorter than the window are
  never scored, a frame in two overlapping windows counts twice. The value counted at a frame is the merged
  per-frame prediction (every window's output averaged), not each window's own output.

Every scored value goes through :meth:`ScoringRule.scored_index`, both when a run is scored
(affbench.stages.evaluate.score) and when the report rescores it from its predictions (affbench.frame_stats), so
both count the same frames the same number of times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from affbench.core.config import SCORING_RULES
from affbench.data.windows import window_counts

FRAMES, WINDOWS = SCORING_RULES


@dataclass(frozen=True)
class ScoringRule:
    """``frames``, or ``windows`` of `window` frames every `stride` frames."""

    rule: str = FRAMES
    window: int | None = None
    stride: int | None = None

    def __post_init__(self) -> None:
        if self.rule not in SCORING_RULES:
            raise ValueError(f"eval.scoring must be one of {', '.join(SCORING_RULES)}, got {self.rule!r}")
        if self.rule == WINDOWS and (self.window is None or self.stride is None):
            raise ValueError("eval.scoring: windows needs data.window and data.stride")

    @classmethod
    def of(cls, config: Mapping[str, Any] | None) -> ScoringRule:
        """The rule of a resolved config (a config without ``eval.scoring``, as older runs have: frames)."""
        config = config or {}
        rule = str(((config.get("eval") or {}).get("scoring")) or FRAMES)
        if rule == FRAMES:
            return cls()
        data = config.get("data") or {}
        return cls(rule, int(data["window"]), int(data["stride"]))

    @property
    def on_windows(self) -> bool:
        return self.rule == WINDOWS

    def scored_index(self, valid: np.ndarray) -> np.ndarray:
        """int64 [k]: the 0-based frames of one video that are scored, each repeated as often as it counts
        (`valid` [n]: the frames with a usable label)."""
        valid = np.asarray(valid, bool)
        if not self.on_windows:
            return np.flatnonzero(valid)
        if valid.size == 0:
            return np.zeros(0, np.int64)
        counts = window_counts(valid.size, self.window, self.stride) * valid
        return np.repeat(np.arange(valid.size), counts)

    def to_dict(self) -> dict[str, Any]:
        """What metrics.json and the report record of the rule."""
        if not self.on_windows:
            return {"rule": FRAMES}
        return {"rule": WINDOWS, "window": self.window, "stride": self.stride}
