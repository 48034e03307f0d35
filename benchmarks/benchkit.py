"""What every affbench benchmark shares: sizes per device, timing with throughput in extra_info, AMP and sync.

``measure`` runs one untimed warm-up call, picks the number of rounds that fits a time budget, runs the rounds
through ``benchmark.pedantic`` and stores ``items_per_second`` (items per call / median seconds per call),
``unit``, the batch size, the shapes and the device in ``benchmark.extra_info``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch


@dataclasses.dataclass(frozen=True)
class BenchSizes:
    """Problem sizes of one run; small on a CPU so the whole suite stays within minutes."""

    device: str
    quick: bool
    budget_s: float  # time one benchmark may spend in its timed rounds
    max_rounds: int
    backbone_batches: tuple[int, ...]
    paper_backbone: bool  # include CLIP ViT-B/16 (the paper's) next to the small test configs
    extract_frames_paper: int  # frames extracted with ViT-B/16 per round
    extract_frames_small: int  # frames extracted with the small backbone per round
    extract_batch: int
    loader_videos: int
    loader_frames: int  # frames per video
    loader_batch: int
    loader_workers: int
    feature_dim: int
    window: int
    stride: int
    temporal_batch: int
    temporal_steps: int
    temporal_rounds: int  # timed rounds per temporal benchmark (each from a fresh model)
    inference_videos: int
    inference_frames: int
    inference_batch: int
    synth_size: str
    memory_videos: int  # videos at scale 1x (4x has four times as many)
    memory_frames: int


def sizes_for(device: str, *, quick: bool = False, temporal_batch: int | None = None,
              loader_workers: int = 0) -> BenchSizes:
    """The sizes for `device` ("cpu" | "cuda"); `quick` shrinks everything to a smoke run."""
    if temporal_batch is not None and temporal_batch < 1:
        raise ValueError(f"--temporal-batch must be >= 1, got {temporal_batch}")
    if loader_workers < 0:
        raise ValueError(f"--loader-workers must be >= 0, got {loader_workers}")
    cuda = device == "cuda"
    if quick:
        return BenchSizes(device=device, quick=True, budget_s=0.5, max_rounds=2, backbone_batches=(1, 4),
                          paper_backbone=False, extract_frames_paper=8, extract_frames_small=64,
                          extract_batch=8, loader_videos=4, loader_frames=400, loader_batch=4,
                          loader_workers=loader_workers, feature_dim=32, window=50, stride=40,
                          temporal_batch=temporal_batch or 2, temporal_steps=2, temporal_rounds=1,
                          inference_videos=2,
                          inference_frames=120, inference_batch=4, synth_size="tiny", memory_videos=4,
                          memory_frames=200)
    return BenchSizes(
        device=device, quick=False,
        budget_s=10.0 if cuda else 6.0,
        max_rounds=50 if cuda else 10,
        backbone_batches=(1, 32, 256) if cuda else (1, 32),
        paper_backbone=True,
        extract_frames_paper=2048 if cuda else 64,
        extract_frames_small=4096 if cuda else 600,
        extract_batch=32,
        loader_videos=24, loader_frames=1000, loader_batch=32, loader_workers=loader_workers,
        feature_dim=768, window=300, stride=200,
        # The paper's step is [32, 300, 768]; on 2 CPU cores one such step takes about half a minute, so the
        # CPU default is 2 windows (same model and window, throughput scales about linearly with the batch).
        temporal_batch=temporal_batch or (32 if cuda else 2),
        temporal_steps=20 if cuda else 3,
        # Rounds of 3 steps vary by about +-10 % on a shared 2-core machine: the median of 4 judges a 5 % goal.
        temporal_rounds=5 if cuda else 4,
        inference_videos=16 if cuda else 3, inference_frames=1500 if cuda else 700,
        inference_batch=64 if cuda else 8,
        synth_size="small",
        # 1x = 768 windows, three full default-size shards (256 windows), so 4x changes the amount of data,
        # not how many shards overlap in the reader (see test_memory_growth.py).
        memory_videos=128, memory_frames=1200,
    )


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timed step ends when its work does."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device):
    """bf16 autocast on a GPU (the suites' AMP setting); nothing on a CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def amp_name(device: torch.device) -> str:
    """The AMP mode recorded in extra_info."""
    return "bf16" if device.type == "cuda" else "none"


def measure(benchmark: Any, fn: Callable[[], Any], *, items: int | Callable[[], int], unit: str,
            device: torch.device, batch_size: int | None, shapes: Mapping[str, Any], sizes: BenchSizes,
            setup: Callable[[], None] | None = None, rounds: int | None = None, warmup: bool = True,
            min_rounds: int | None = None, **extra: Any) -> float:
    """Time `fn` (each call handles `items` items) and record throughput; returns items per second.

    ``setup`` runs untimed before every round (e.g. to delete what the previous round wrote). Rounds are
    chosen so the timed part takes about ``sizes.budget_s``: at least 2, or 1 when ``--quick`` or when the
    warm-up call alone took longer than the budget; ``min_rounds`` raises that floor for a benchmark whose
    ratio a goal judges (a single round varies by +-15 % on a shared machine).
    """
    durations: list[float] = []

    def timed() -> None:
        start = time.perf_counter()
        fn()
        synchronize(device)
        durations.append(time.perf_counter() - start)

    if rounds is None:
        first = 0.0
        if warmup:
            if setup is not None:
                setup()
            start = time.perf_counter()
            fn()
            synchronize(device)
            first = time.perf_counter() - start
        # A call longer than the whole budget (ViT-B/16 at batch 32 on a CPU) is timed once after its warm-up:
        # the suite must stay within minutes, and such a call averages over many kernels already.
        minimum = 1 if sizes.quick or first > sizes.budget_s else 2
        if min_rounds is not None and not sizes.quick:
            minimum = max(minimum, min_rounds)
        rounds = max(minimum, min(sizes.max_rounds, math.ceil(sizes.budget_s / max(first, 1e-6))))
    elif warmup:
        if setup is not None:
            setup()
        fn()
        synchronize(device)

    pedantic_setup = None
    if setup is not None:
        def pedantic_setup():  # pytest-benchmark's setup hook must return None or (args, kwargs)
            setup()

    benchmark.pedantic(timed, setup=pedantic_setup, rounds=rounds, warmup_rounds=0, iterations=1)
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    median = float(stats.median) if stats is not None else statistics.median(durations)
    n_items = items() if callable(items) else items
    rate = n_items / max(median, 1e-12)
    benchmark.extra_info.update({
        "items_per_second": rate,
        "unit": unit,
        "items_per_call": n_items,
        "seconds_per_call": median,
        "batch_size": batch_size,
        "shapes": {k: list(v) if isinstance(v, tuple) else v for k, v in shapes.items()},
        "device": str(device),
        "amp": amp_name(device),
        "rounds": rounds,
        "round_rates": [n_items / d for d in durations[-rounds:]] if len(durations) >= rounds else None,
        "torch_threads": torch.get_num_threads(),
        **extra,
    })
    return rate


def record_rate(benchmark: Any, *, items_per_second: float, unit: str, device: torch.device,
                batch_size: int | None, shapes: Mapping[str, Any], **extra: Any) -> None:
    """Store a throughput measured inside the benchmarked code (e.g. the trainer's own windows/s)."""
    benchmark.extra_info.update({
        "items_per_second": float(items_per_second),
        "unit": unit,
        "batch_size": batch_size,
        "shapes": {k: list(v) if isinstance(v, tuple) else v for k, v in shapes.items()},
        "device": str(device),
        "amp": amp_name(device),
        "torch_threads": torch.get_num_threads(),
        **extra,
    })


class PairedRounds:
    """A baseline round timed right before each timed round of a benchmark, for drift-free ratios.

    On a shared machine speed drifts between two benchmarks by more than many goals' margins. Pass ``setup`` (or
    call it from the benchmark's own setup) to ``measure``: it runs ``baseline`` once and records its rate; then
    ``record`` stores the median of the per-round ratios as ``extra_info["paired_ratio"]`` against
    ``baseline_name``, which ``affbench.bench_report.ratio`` uses in place of the two medians' ratio.
    """

    def __init__(self, baseline_name: str, baseline: Callable[[], Any], items: int, device: torch.device) -> None:
        self.baseline_name, self.baseline, self.items, self.device = baseline_name, baseline, items, device
        self.rates: list[float] = []

    def setup(self) -> None:
        start = time.perf_counter()
        self.baseline()
        synchronize(self.device)
        self.rates.append(self.items / (time.perf_counter() - start))

    def record(self, benchmark: Any) -> None:
        rates = benchmark.extra_info.get("round_rates") or []
        partners = self.rates[-len(rates):] if rates else []
        ratios = [r / p for r, p in zip(rates, partners, strict=True)]
        benchmark.extra_info.update({"paired_baseline": self.baseline_name,
                                     "paired_ratio": statistics.median(ratios) if ratios else None,
                                     "paired_ratios": ratios, "paired_baseline_rates": partners})
