"""Group ``loader``: window shards -> [32, 300, D] training batches on the device, windows/s.

One round is one shuffled pass over every window. Baselines, measured in the same run on the same features:
``baseline_per_frame_npy`` (one .npy per frame assembled into windows, the layout published ABAW code uses),
``baseline_per_video_npz`` (one .npz per video), and webdataset's own reader on the very same shards:
``baseline_webdataset`` (``webdataset.WebDataset``'s streaming tar reader with affbench's sample decoding and
batching, so only the reader differs) and ``baseline_webdataset_decoders`` (webdataset's own .npy/.json
decoders too). ``wids`` (webdataset's indexed random access) does not apply: it reads one sample per index
through a per-shard index file, where stage 3 reads whole shards in a shuffled order. Every reader runs with the same number of DataLoader
workers (``--loader-workers``), and every batch is moved to the device as float32, as the trainer does. The
files are in the page cache after writing: this measures the readers' CPU cost, not the disk.

The cost of the shards' checksums, in ``window_shards_loader``'s extra_info: shards are verified once per process
per file version (affbench/data/checksums.py), so after a shard's first read the reader only looks its version
up. ``checksum_overhead`` (goal <= 3 %) is the CPU seconds of the reader's own verification calls for every
shard of a pass, with the versions remembered as in every epoch after the first, over the seconds of the
fastest round; ``checksum_overhead_first_pass`` is the same with every shard hashed (the first epoch of a
process). End to end, each round is also paired with a round of ``window_shards_loader_without_checksums``
(the same loader with the manifest's checksums ignored) run right before it and the one after: the median of
the per-round ratios is ``extra_info["paired_ratio"]``. On a shared 2-core machine those rounds vary by
+-15 %, far more than the 3 % the goal allows, which is why the graded figure is measured directly.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import time

import pytest
import torch
from benchdata import (
    PerFrameNpyWindows,
    PerVideoNpzWindows,
    baseline_loader,
    video_specs,
    write_per_frame_npy,
    write_per_video_npz,
    write_shards,
)
from benchkit import measure, synchronize
from benchmarks_paths import fresh_dir

from affbench.data.window_shards import WindowShards


@pytest.fixture(scope="module")
def layouts(bench_dir, sizes):
    """The same features written as window shards, per-frame .npy files and per-video .npz files."""
    specs = video_specs(sizes.loader_videos, sizes.loader_frames, prefix="loader")
    root = fresh_dir(bench_dir / "loader")
    # Enough shards for every worker to get some (a pass over the data splits shards between workers).
    n_windows_est = sizes.loader_videos * math.ceil(sizes.loader_frames / sizes.stride)
    maxcount = max(1, n_windows_est // max(4, 2 * sizes.loader_workers))
    manifest = write_shards(root / "shards", specs, dim=sizes.feature_dim, window=sizes.window,
                            stride=sizes.stride, maxcount=maxcount)
    write_per_frame_npy(root / "per_frame", specs, dim=sizes.feature_dim)
    write_per_video_npz(root / "per_video", specs, dim=sizes.feature_dim)
    return {"specs": specs, "root": root, "windows": int(manifest["num_samples"])}


def _consume(batches, device) -> int:
    n = 0
    for batch in batches:
        features = batch["features"].to(device, non_blocking=True).float()
        batch["mask"].to(device, non_blocking=True)
        batch["labels"].to(device, non_blocking=True)
        n += features.shape[0]
    return n


def _shapes(sizes):
    return {"batch": (sizes.loader_batch, sizes.window, sizes.feature_dim)}


CHECKSUM_PAIRS = 8  # paired rounds of the end-to-end ratio
CHECKSUM_REPEATS = 20  # timings of the verification calls; their median is the graded figure's numerator


def _without_checksums(layouts) -> WindowShards:
    shards = WindowShards(layouts["root"] / "shards")
    shards.shards = [dataclasses.replace(s, checksum=None) for s in shards.shards]
    return shards


def test_window_shards_loader(benchmark, layouts, device, sizes):
    """affbench: WindowShards.loader, float16 windows in tar shards, batches built in the reader; each round
    paired with rounds of the same loader without checksums (their ratio is the checksums' cost)."""
    partner = ShardPassPartner(_without_checksums(layouts), layouts, device, sizes)
    _measure_shards(benchmark, WindowShards(layouts["root"] / "shards"), layouts, device, sizes,
                    partner=partner, min_rounds=CHECKSUM_PAIRS)
    rates = benchmark.extra_info["round_rates"]
    if rates:
        benchmark.extra_info.update(partner.paired(rates))
        fastest = layouts["windows"] / max(rates)
        shards = WindowShards(layouts["root"] / "shards").shards
        remembered, first = _verification_seconds(shards, remembered=True), _verification_seconds(shards)
        benchmark.extra_info.update({
            "checksum_seconds_per_pass": remembered, "checksum_seconds_first_pass": first,
            "checksum_overhead": remembered / fastest, "checksum_overhead_first_pass": first / fastest})


def _verification_seconds(shards, *, remembered: bool = False) -> float:
    """CPU seconds of the reader's checksum calls for every shard of a pass (median of CHECKSUM_REPEATS), with
    each shard's version remembered from an earlier read or (``remembered=False``) every shard hashed."""
    from affbench.data import checksums
    from affbench.data.shard_reading import _map_shard

    mapped = [(s, *_map_shard(s.path)) for s in shards]

    def verify_all() -> None:
        for shard, buffer, st in mapped:
            version = checksums.file_version(shard.path, st, shard.checksum) if remembered else None
            assert checksums.verify_buffer(buffer, shard.checksum, version) is None

    verify_all()  # remembers the versions (and touches every page, as the passes did)
    seconds = []
    for _ in range(CHECKSUM_REPEATS):
        start = time.process_time()
        verify_all()
        seconds.append(time.process_time() - start)
    return statistics.median(seconds)


def test_window_shards_loader_without_checksums(benchmark, layouts, device, sizes):
    """The same loader with the manifest's checksums ignored."""
    _measure_shards(benchmark, _without_checksums(layouts), layouts, device, sizes)


def _shard_pass(shards, layouts, device, sizes, epoch: int) -> None:
    loader = shards.loader(sizes.loader_batch, shuffle_seed=0, epoch=epoch, num_workers=sizes.loader_workers,
                           pin_memory=device.type == "cuda")
    assert _consume(loader, device) == layouts["windows"]


class ShardPassPartner:
    """Times one pass of another shard loader before each round of the measured one (and once after the last),
    so each measured round is compared with the mean of the partner rounds either side of it."""

    def __init__(self, shards, layouts, device, sizes) -> None:
        self.shards, self.layouts, self.device, self.sizes = shards, layouts, device, sizes
        self.rates: list[float] = []

    def run(self) -> None:
        start = time.perf_counter()
        _shard_pass(self.shards, self.layouts, self.device, self.sizes, epoch=len(self.rates))
        synchronize(self.device)
        self.rates.append(self.layouts["windows"] / (time.perf_counter() - start))

    def paired(self, rates: list[float]) -> dict:
        """extra_info entries: the median over the measured rounds of rate_i / mean(partner before, after)."""
        self.run()  # the partner round after the last measured one
        around = [(a + b) / 2 for a, b in itertools.pairwise(self.rates[-len(rates) - 1:])]
        ratios = [r / p for r, p in zip(rates, around, strict=True)]
        ratio = statistics.median(ratios)
        return {"paired_baseline": "window_shards_loader_without_checksums", "paired_ratio": ratio,
                "paired_ratios": ratios, "paired_baseline_rates": around}


def _measure_shards(benchmark, shards, layouts, device, sizes, *, partner: ShardPassPartner | None = None,
                    min_rounds: int | None = None) -> None:
    benchmark.group = "loader"
    epoch = {"n": 0}

    def one_pass() -> None:
        _shard_pass(shards, layouts, device, sizes, epoch["n"])
        epoch["n"] += 1

    measure(benchmark, one_pass, items=layouts["windows"], unit="windows/s", device=device,
            batch_size=sizes.loader_batch, shapes=_shapes(sizes), sizes=sizes, workers=sizes.loader_workers,
            setup=None if partner is None else partner.run, min_rounds=min_rounds,
            storage="float16 window shards", shards=len(shards.shards))


def _measure_baseline(benchmark, dataset, layouts, device, sizes, storage: str) -> None:
    """Windows/s of one pass over a baseline layout through a plain DataLoader."""
    benchmark.group = "loader"
    assert len(dataset) == layouts["windows"]

    def one_pass() -> None:
        loader = baseline_loader(dataset, batch_size=sizes.loader_batch, workers=sizes.loader_workers)
        assert _consume(loader, device) == layouts["windows"]

    measure(benchmark, one_pass, items=layouts["windows"], unit="windows/s", device=device,
            batch_size=sizes.loader_batch, shapes=_shapes(sizes), sizes=sizes, workers=sizes.loader_workers,
            storage=storage)


def test_baseline_per_frame_npy(benchmark, layouts, device, sizes):
    """Published layout: one float32 .npy per frame, windows assembled per item."""
    dataset = PerFrameNpyWindows(layouts["root"] / "per_frame", layouts["specs"], dim=sizes.feature_dim,
                                 window=sizes.window, stride=sizes.stride)
    _measure_baseline(benchmark, dataset, layouts, device, sizes, "float32 .npy per frame")


def test_baseline_per_video_npz(benchmark, layouts, device, sizes):
    """One float32 .npz per video, loaded for each window."""
    dataset = PerVideoNpzWindows(layouts["root"] / "per_video", layouts["specs"], window=sizes.window,
                                 stride=sizes.stride)
    _measure_baseline(benchmark, dataset, layouts, device, sizes, "float32 .npz per video")


def _webdataset_pass(layouts, sizes, *, own_decoders: bool):
    """One shuffled pass over the window shards read by webdataset.WebDataset, batched as affbench batches."""
    import webdataset as wds

    from affbench.data.window_shards import _collate_windows, decode_window

    shards = WindowShards(layouts["root"] / "shards")
    urls = [str(s.path) for s in shards.shards]
    if own_decoders:
        def as_sample(raw):  # webdataset's decoders turned .npy and .json into arrays and a dict
            meta = raw["json"]
            return {"key": raw["__key__"], "video": meta["video"], "start": meta["start"],
                    "n_frames": meta["n_frames"], **{k[:-4]: v for k, v in raw.items() if k.endswith(".npy")}}
        samples = wds.WebDataset(urls, shardshuffle=len(urls), seed=0, empty_check=False).decode().map(as_sample)
    else:
        samples = wds.WebDataset(urls, shardshuffle=len(urls), seed=0, empty_check=False).map(
            lambda raw: decode_window({k: v for k, v in raw.items() if not k.startswith("__")}, raw["__key__"]))
    # The same shuffle buffer and batching as WindowShards.loader's defaults.
    pipeline = samples.shuffle(64).batched(sizes.loader_batch, collation_fn=_collate_windows, partial=True)
    return wds.WebLoader(pipeline, batch_size=None, num_workers=sizes.loader_workers)


def _measure_webdataset(benchmark, layouts, device, sizes, *, own_decoders: bool) -> None:
    pytest.importorskip("webdataset")
    benchmark.group = "loader"

    def one_pass() -> None:
        assert _consume(_webdataset_pass(layouts, sizes, own_decoders=own_decoders), device) == layouts["windows"]

    measure(benchmark, one_pass, items=layouts["windows"], unit="windows/s", device=device,
            batch_size=sizes.loader_batch, shapes=_shapes(sizes), sizes=sizes, workers=sizes.loader_workers,
            storage="float16 window shards (webdataset reader" + (", its decoders)" if own_decoders else ")"))


def test_baseline_webdataset(benchmark, layouts, device, sizes):
    """webdataset.WebDataset reading the same window shards, affbench's decoding and batching: only the reader
    differs from window_shards_loader."""
    _measure_webdataset(benchmark, layouts, device, sizes, own_decoders=False)


def test_baseline_webdataset_decoders(benchmark, layouts, device, sizes):
    """webdataset.WebDataset with its own .npy/.json decoders on the same shards."""
    _measure_webdataset(benchmark, layouts, device, sizes, own_decoders=True)


def test_in_memory_batches(benchmark, layouts, device, sizes):
    """Upper bound: the same batches already in memory (float32 tensors), only moved to the device."""
    benchmark.group = "loader"
    shards = WindowShards(layouts["root"] / "shards")
    batches = [{k: (v.float() if k == "features" else v) for k, v in b.items() if isinstance(v, torch.Tensor)}
               for b in shards.loader(sizes.loader_batch, shuffle_seed=0)]

    def one_pass() -> None:
        assert _consume(batches, device) == layouts["windows"]

    measure(benchmark, one_pass, items=layouts["windows"], unit="windows/s", device=device,
            batch_size=sizes.loader_batch, shapes=_shapes(sizes), sizes=sizes, storage="in memory")
