"""One PNG of a video's per-frame predictions, one panel per face track over time, drawn by the task's output
kind: continuous values (VA) as lines, a class (EXPR) as a coloured band, labels (AU) as a raster; frames
without a face are grey and left empty."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affbench import task_contract as contract
from affbench.output import open_atomic

NO_FACE_GREY = (0.85, 0.85, 0.85)


def _no_face_runs(face: np.ndarray) -> list[tuple[int, int]]:
    """0-based [start, stop) runs of frames without a face."""
    edges = np.diff(np.concatenate([[0], (~face).astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _draw_track(ax, task, track, times: np.ndarray, step: float) -> None:
    import matplotlib.colors as mcolors
    from matplotlib.patches import Patch

    face = track.face
    extent = (times[0], times[-1] + step)
    kind = contract.output_kind(task)
    if kind == "continuous":
        colours = ("tab:blue", "tab:red", *mcolors.TABLEAU_COLORS)
        for k, (name, colour) in enumerate(zip(contract.prediction_columns(task), colours, strict=False)):
            ax.plot(times, np.where(face, track.values[:, k], np.nan), color=colour, lw=1.2, label=name)
        if getattr(task, "value_range", None):
            low, high = task.value_range
            ax.set_ylim(low - 0.025 * (high - low), high + 0.025 * (high - low))
        ax.axhline(0, color="black", lw=0.5)
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8)
    elif kind == "classes":
        palette = np.array([mcolors.to_rgb(c) for c in mcolors.TABLEAU_COLORS.values()])[:len(task.label_names)]
        band = palette[track.values[:, 0].astype(int)]
        band[~face] = NO_FACE_GREY
        ax.imshow(band[None], aspect="auto", extent=(*extent, 0, 1), interpolation="nearest")
        shown = sorted(set(track.values[face, 0].astype(int).tolist()))
        ax.legend(handles=[Patch(color=palette[c], label=task.label_names[c]) for c in shown], loc="upper left",
                  bbox_to_anchor=(1.005, 1.0), fontsize=7, ncol=2 if len(shown) > 4 else 1)
        ax.set_yticks([])
    else:
        raster = np.where(face[None, :], track.values.T, np.nan)
        cmap = mcolors.ListedColormap(["white", "tab:purple"]).with_extremes(bad=NO_FACE_GREY)
        ax.imshow(raster, aspect="auto", extent=(*extent, len(task.label_names), 0), cmap=cmap, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_yticks(np.arange(len(task.label_names)) + 0.5, task.label_names, fontsize=7)
    if kind == "continuous":
        for start, stop in _no_face_runs(face):
            ax.axvspan(times[start], times[stop - 1] + step, color=NO_FACE_GREY, lw=0)
    ax.set_title(f"{track.track}: {int(face.sum())} of {face.size} frames with a face", fontsize=9, loc="left")


def plot_tracks(task, manifest: Mapping[str, Any], tracks: Sequence[Any], path: str | os.PathLike[str], *,
                title: str = "") -> Path:
    """Write the PNG of every track's per-frame predictions (atomically) and return its path."""
    from affbench.plots import _pyplot

    plt = _pyplot()
    fps = float(manifest["fps"]) or 1.0
    step = 1.0 / fps
    n = int(manifest["frames"])
    times = float(manifest.get("start_time_s") or 0.0) + np.arange(n) * step
    height = {"continuous": 2.2, "classes": 1.1, "multilabel": 2.6}[contract.output_kind(task)]
    fig, axes = plt.subplots(len(tracks), 1, figsize=(11, 0.8 + height * len(tracks)), sharex=True, squeeze=False)
    for ax, track in zip(axes[:, 0], tracks, strict=True):
        _draw_track(ax, task, track, times, step)
        ax.set_xlim(times[0], times[-1] + step)
    axes[-1, 0].set_xlabel("time (s); grey: no face in this track")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with open_atomic(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
    return path
