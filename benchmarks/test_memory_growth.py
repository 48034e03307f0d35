"""Group ``memory``: peak RSS of window sharding and of the shard loader when the data grows 4x.

Each step runs in a fresh process (``memory_probe.py``) that reports its own peak RSS (ru_maxrss of itself
and of its DataLoader workers), so no measurement inherits another's peak. ``baseline_idle_process`` is the
same process importing torch and affbench and doing nothing: the floor every step starts from. Goal: the
peak at 4x the data stays within +10 % of the peak at 1x, for sharding and for loading (only one video, one
shard and one batch are ever held). The throughput of each step (frames/s, windows/s) is recorded too.

The loader maps shards (zero-copy views of the page cache); mapped pages it touched count in RSS until the
last sample viewing them leaves the shuffle buffer, so its peak is about two shards (~2 x 120 MB at the
default 256 windows per shard). Hence 1x holds three full shards: with less, 4x would show the step from
"one shard" to "two overlapping shards", not growth with the data. A sampler thread splits the peak into
anonymous memory (RssAnon) and mapped file pages (RssFile).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from benchkit import record_rate
from benchmarks_paths import fresh_dir

PROBE = Path(__file__).with_name("memory_probe.py")
PEAKS: dict[str, float] = {}


def run_probe(*args: str) -> dict:
    """Run memory_probe.py in a new interpreter; its JSON report."""
    done = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory_probe.py {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def memory_root(bench_dir):
    return fresh_dir(bench_dir / "memory")


def _record(benchmark, report: dict, device, *, key: str, scale: int, base: str | None, **extra) -> None:
    peak = max(report["peak_rss_mb"], report["children_peak_rss_mb"])
    PEAKS[key] = peak
    info = {"peak_rss_mb": peak, "self_peak_rss_mb": report["peak_rss_mb"],
            "workers_peak_rss_mb": report["children_peak_rss_mb"], "scale": scale, "probe_seconds": report["seconds"],
            "process_peak_rss_mb": report.get("process_peak_rss_mb"),
            "rss_after_import_mb": report.get("rss_after_import_mb"), "peak_covers": report.get("peak_covers"),
            "sampled_peak_anon_mb": report.get("sampled_peak_anon_mb"),
            "sampled_peak_file_mb": report.get("sampled_peak_file_mb")}
    if base is not None and base in PEAKS:
        info["rss_growth_vs_1x"] = peak / PEAKS[base] - 1.0
    rate = report["items"] / max(report["seconds"], 1e-9) if report["items"] else 0.0
    record_rate(benchmark, items_per_second=rate, unit=report["unit"],
                device=device, batch_size=extra.pop("batch_size", None), shapes=extra.pop("shapes", {}),
                **info, **extra)


def _pedantic(benchmark, fn, rounds: int = 1) -> dict:
    """Run the probe `rounds` times; the report of the round with the median peak (peaks vary by a few %)."""
    reports: list[dict] = []

    def call() -> None:
        reports.append(fn())

    benchmark.pedantic(call, rounds=rounds, warmup_rounds=0, iterations=1)
    reports.sort(key=lambda r: max(r["peak_rss_mb"], r["children_peak_rss_mb"]))
    return reports[len(reports) // 2]


def test_baseline_idle_process(benchmark, device):
    """A process that imports torch and affbench and does nothing."""
    benchmark.group = "memory"
    report = _pedantic(benchmark, lambda: run_probe("idle"))
    _record(benchmark, report, device, key="idle", scale=0, base=None)


@pytest.mark.parametrize("scale", [1, 4], ids=lambda s: f"{s}x")
def test_sharding_peak_rss(benchmark, memory_root, sizes, device, scale):
    """write_window_shards of scale x the videos, one video generated at a time."""
    benchmark.group = "memory"
    videos = sizes.memory_videos * scale
    out = memory_root / f"shards-{scale}x"
    report = _pedantic(benchmark, lambda: run_probe(
        "shard", str(out), "--videos", str(videos), "--frames", str(sizes.memory_frames),
        "--dim", str(sizes.feature_dim), "--window", str(sizes.window), "--stride", str(sizes.stride)))
    _record(benchmark, report, device, key=f"shard{scale}", scale=scale, base="shard1" if scale > 1 else None,
            shapes={"videos": videos, "frames_per_video": sizes.memory_frames, "dim": sizes.feature_dim})


@pytest.mark.parametrize("scale", [1, 4], ids=lambda s: f"{s}x")
def test_loader_peak_rss(benchmark, memory_root, sizes, device, scale):
    """One pass of WindowShards.loader over the shards the sharding step wrote."""
    benchmark.group = "memory"
    shards = memory_root / f"shards-{scale}x"
    if not (shards / "manifest.json").is_file():
        pytest.skip(f"{shards} was not written (run the sharding benchmark first)")
    report = _pedantic(benchmark, lambda: run_probe(
        "load", str(shards), "--batch", str(sizes.loader_batch), "--workers", str(sizes.loader_workers)),
        rounds=1 if sizes.quick else 3)
    _record(benchmark, report, device, key=f"load{scale}", scale=scale, base="load1" if scale > 1 else None,
            batch_size=sizes.loader_batch, workers=sizes.loader_workers,
            shapes={"batch": [sizes.loader_batch, sizes.window, sizes.feature_dim]})
