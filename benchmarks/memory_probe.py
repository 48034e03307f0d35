"""Run one data step in a fresh process and report its peak resident memory (a script of the memory suite).

    python memory_probe.py idle
    python memory_probe.py shard OUT_DIR --videos N --frames F --dim D --window W --stride S
    python memory_probe.py load SHARD_DIR --batch B --workers K

Prints one JSON line: {"peak_rss_mb", "children_peak_rss_mb", "seconds", "items", "unit", ...}; on Linux the
peak covers the step only (VmHWM is reset once torch and affbench are imported), elsewhere the whole process. A process of its
own makes each figure independent of what ran before (ru_maxrss only ever grows within a process).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path


def _peak_mb(who: int) -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(who).ru_maxrss / 1024.0


def _status_mb(field: str) -> float | None:
    """VmRSS / VmHWM of this process from /proc (Linux), in MiB; None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class RssSampler:
    """Samples RssAnon / RssFile of this process every few ms: the peak RSS split into heap and mapped files.

    File-backed pages (mapped shards) count in RSS but are page cache the kernel can drop; anonymous pages are
    what the process really holds.
    """

    FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")

    def __init__(self, interval: float = 0.005) -> None:
        import threading

        self.interval = interval
        self.peaks = {f: 0.0 for f in self.FIELDS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for field in self.FIELDS:
            value = _status_mb(field)
            if value is not None and value > self.peaks[field]:
                self.peaks[field] = value

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak excludes the imports' transient memory."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memory_probe")
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("idle", help="import what the other steps import, do nothing")
    shard = sub.add_parser("shard", help="write window shards of synthetic videos, one video in memory at a time")
    shard.add_argument("out", type=Path)
    shard.add_argument("--videos", type=int, required=True)
    shard.add_argument("--frames", type=int, required=True)
    shard.add_argument("--dim", type=int, required=True)
    shard.add_argument("--window", type=int, required=True)
    shard.add_argument("--stride", type=int, required=True)
    load = sub.add_parser("load", help="one shuffled pass of WindowShards.loader over a shard set")
    load.add_argument("shards", type=Path)
    load.add_argument("--batch", type=int, required=True)
    load.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).parent))
    import gc

    import torch  # noqa: F401  (every step pays for it, the idle one included)
    from benchdata import video_specs, write_shards

    from affbench.data.window_shards import WindowShards

    gc.collect()
    rss_after_import = _status_mb("VmRSS")
    reset = _reset_peak()
    start = time.perf_counter()
    with RssSampler() as sampler:
        if args.step == "idle":
            items, unit = 0, "none"
        elif args.step == "shard":
            specs = video_specs(args.videos, args.frames, prefix="mem")
            manifest = write_shards(args.out, specs, dim=args.dim, window=args.window, stride=args.stride)
            items, unit = args.videos * args.frames, "frames/s"
            assert manifest["counts"]["frames"] == items
        else:
            shards = WindowShards(args.shards)
            items, unit = 0, "windows/s"
            for batch in shards.loader(args.batch, shuffle_seed=0, num_workers=args.workers):
                items += int(batch["features"].shape[0])
            assert items == len(shards)
    seconds = time.perf_counter() - start
    step_peak = _status_mb("VmHWM") if reset else None
    print(json.dumps({
        "peak_rss_mb": step_peak if step_peak is not None else _peak_mb(resource.RUSAGE_SELF),
        "process_peak_rss_mb": _peak_mb(resource.RUSAGE_SELF),
        "rss_after_import_mb": rss_after_import,
        "sampled_peak_anon_mb": sampler.peaks["RssAnon"] or None,
        "sampled_peak_file_mb": sampler.peaks["RssFile"] or None,
        "peak_covers": "the step only (VmHWM reset after imports)" if step_peak is not None else "whole process",
        "children_peak_rss_mb": _peak_mb(resource.RUSAGE_CHILDREN),
        "seconds": seconds,
        "items": items,
        "unit": unit,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
