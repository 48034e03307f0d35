"""Group ``synth``: SynthAffect generation, frames/s, and the time of the ``small`` size.

``generate_small`` generates the whole ``small`` dataset once (``tiny`` with ``--quick``) into a fresh folder
with the generator's default workers and records the seconds it took (goal: under a minute on 2 CPU cores)
and the frames/s. ``baseline_jpeg_encode_write`` encodes and writes 112x112 face-sized JPEGs with the
generator's encoder settings in one process: the floor cost of writing the dataset's images.
"""

from __future__ import annotations

import io
import json

import numpy as np
from benchkit import measure, record_rate
from benchmarks_paths import fresh_dir
from PIL import Image

from affbench_plugins.datasets.synthaffect.generate import (
    JPEG_SETTINGS,
    METADATA_FILE,
    _default_workers,
    generate_synthaffect,
)
from affbench_plugins.datasets.synthaffect.plan import size_spec

GOAL_SECONDS_SMALL = 60.0


def test_generate_small(benchmark, bench_dir, device, sizes):
    """The whole `small` SynthAffect dataset, generated once from nothing."""
    benchmark.group = "synth"
    out = bench_dir / f"synth-{sizes.synth_size}"
    result: dict = {}

    def setup() -> None:
        fresh_dir(out)
        out.rmdir()  # the generator wants a missing or empty folder

    def generate() -> None:
        generate_synthaffect(out, size=sizes.synth_size, seed=0, quiet=True)

    def timed() -> None:
        import time

        start = time.perf_counter()
        generate()
        result["seconds"] = time.perf_counter() - start

    benchmark.pedantic(timed, setup=setup, rounds=1, warmup_rounds=0, iterations=1)
    meta = json.loads((out / METADATA_FILE).read_text(encoding="utf-8"))
    frames, images = int(meta["counts"]["frames"]), int(meta["counts"]["images"])
    spec = size_spec(sizes.synth_size)
    record_rate(benchmark, items_per_second=frames / result["seconds"], unit="frames/s", device=device,
                batch_size=None, shapes={"image": (112, 112, 3)}, size=sizes.synth_size, seconds=result["seconds"],
                frames=frames, images=images, videos=int(meta["counts"]["videos"]),
                workers=_default_workers(frames, spec.singles + spec.pairs), goal_seconds=GOAL_SECONDS_SMALL,
                goal_met=result["seconds"] < GOAL_SECONDS_SMALL)


def test_baseline_jpeg_encode_write(benchmark, bench_dir, device, sizes):
    """Encode and write face-sized JPEGs with the generator's settings, one process."""
    benchmark.group = "synth"
    rng = np.random.default_rng(0)
    # A smooth image with mild noise compresses like a rendered face, unlike white noise.
    yy, xx = np.mgrid[0:112, 0:112]
    base = np.stack([128 + 60 * np.sin(xx / 9.0), 128 + 60 * np.cos(yy / 11.0), 128 + 40 * np.sin((xx + yy) / 13.0)],
                    axis=-1)
    frames = [np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8) for _ in range(8)]
    n = 64 if sizes.quick else 500
    out = fresh_dir(bench_dir / "jpeg-baseline")

    def encode_write() -> None:
        for i in range(n):
            buffer = io.BytesIO()
            Image.fromarray(frames[i % len(frames)]).save(buffer, **JPEG_SETTINGS)
            (out / f"{i + 1:05d}.jpg").write_bytes(buffer.getvalue())

    measure(benchmark, encode_write, items=n, unit="frames/s", device=device, batch_size=None,
            shapes={"image": (112, 112, 3)}, sizes=sizes, workers=1)
