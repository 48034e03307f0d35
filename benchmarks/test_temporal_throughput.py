"""Group ``temporal``: training steps (forward, backward, AdamW) of the paper's TCN + Transformer, windows/s.

The model is the paper's stage-3 stack (TCN [768, 256, 128] k5 -> Transformer d512 x 8 layers -> MLP head) on
windows of 300 frames of 768-d features. ``affbench_trainer`` runs ``affbench.train.trainer.train`` for one
epoch over window shards holding exactly ``steps x batch`` windows and reads the trainer's own windows/s for
that epoch (the step loop, fed by the shard loader; validation and checkpoint writing come after it and are
not part of the figure). ``baseline_plain_loop`` is a hand-written PyTorch loop on the same model and batches
held in memory; ``plain_loop_loader_fed`` is that loop fed by ``WindowShards.loader`` (isolates the loader's
share of a step). Every round starts from a freshly built model and optimizer, as the trainer does.

On 2 CPU cores one step at the paper's batch of 32 takes about half a minute, so the CPU default is
``--temporal-batch 2`` (same model and window; the batch is recorded in extra_info).
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest
import torch
from benchdata import video_specs, write_shards
from benchkit import autocast, measure, record_rate, synchronize
from benchmarks_paths import fresh_dir

import affbench
from affbench.data.window_shards import WindowShards
from affbench.train.config import resolve
from affbench.train.pipeline import WindowData


def temporal_config(sizes):
    """The paper's stage-3 config (schema defaults) at the benchmark's batch, one epoch."""
    return resolve({
        "name": "bench_temporal",
        "task": "va",
        "backbone": None,
        "data": {"dataset": "synthaffect", "window": sizes.window, "stride": sizes.stride},
        "train": {"epochs": 1, "batch_size": sizes.temporal_batch, "amp": "bf16", "workers": 0, "seed": 0},
        "eval": {"batch_size": sizes.temporal_batch},
    }, path="bench_temporal.yaml")


@pytest.fixture(scope="module")
def temporal_data(bench_dir, sizes):
    """Window shards with exactly steps x batch training windows (one per video) and one validation window."""
    root = fresh_dir(bench_dir / "temporal")
    n_train = sizes.temporal_steps * sizes.temporal_batch
    train = video_specs(n_train, sizes.window, prefix="ttrain")
    validation = video_specs(1, sizes.window, prefix="tval", seed=1)
    write_shards(root / "train", train, dim=sizes.feature_dim, window=sizes.window, stride=sizes.stride)
    write_shards(root / "validation", validation, dim=sizes.feature_dim, window=sizes.window,
                 stride=sizes.stride)
    return WindowData(root / "train", root / "validation", sizes.feature_dim, {"source": "benchmarks"}, {})


def _shapes(sizes):
    return {"features": (sizes.temporal_batch, sizes.window, sizes.feature_dim)}


def _fresh_model(config, sizes, device):
    torch.manual_seed(0)
    model = affbench.create_model({**config.to_dict(), "backbone": None, "feature_dim": sizes.feature_dim})
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["train"]["lr"],
                                  weight_decay=config["train"]["weight_decay"])
    return model, optimizer


def _plain_step(model, optimizer, features, mask, labels, valid, device) -> None:
    with autocast(device):
        out = model(features, mask)
    loss = model.task.loss(out.float().reshape(-1, out.shape[-1]), labels.reshape(-1, labels.shape[-1]),
                           valid.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _params(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def test_affbench_trainer(benchmark, temporal_data, bench_dir, device, sizes):
    """affbench's trainer, fed by window shards: its own windows/s over the epoch's step loop."""
    from affbench.train.trainer import train

    benchmark.group = "temporal"
    config = temporal_config(sizes)
    rates: list[float] = []
    runs = {"n": 0}

    def one_epoch() -> None:
        out = fresh_dir(bench_dir / "temporal-runs" / f"r{runs['n']}")
        runs["n"] += 1
        result = train(config, fold=None, out_dir=out, quiet=True, data=temporal_data)
        synchronize(device)
        with open(Path(result["run_dir"]) / "metrics.csv", newline="") as fh:
            row = list(csv.DictReader(fh))[-1]
        rates.append(float(row["windows_per_s"]))

    if device.type == "cuda" and not torch.cuda.is_available():  # pragma: no cover - the fixture skips first
        pytest.skip("no CUDA")
    one_epoch()  # warm-up: first use of the kernels in this process
    rates.clear()
    benchmark.pedantic(one_epoch, rounds=sizes.temporal_rounds, warmup_rounds=0, iterations=1)
    record_rate(benchmark, items_per_second=statistics.median(rates), unit="windows/s", device=device,
                batch_size=sizes.temporal_batch, shapes=_shapes(sizes), steps=sizes.temporal_steps,
                rounds=len(rates), timing="trainer's windows_per_s (step loop only)",
                config="schema defaults = paper stage 3", rates=rates)


def test_baseline_plain_loop(benchmark, temporal_data, device, sizes):
    """A hand-written loop on the same model and the same batches held in memory (float32 tensors)."""
    benchmark.group = "temporal"
    config = temporal_config(sizes)
    batches = [
        tuple(t.to(device) for t in (b["features"].float(), b["mask"], b["labels"], b["valid"] & (b["frames"] > 0)))
        for b in WindowShards(temporal_data.train_dir).loader(sizes.temporal_batch, shuffle_seed=0)
    ]
    state: dict = {}

    def setup() -> None:
        state["model"], state["optimizer"] = _fresh_model(config, sizes, device)

    def steps() -> None:
        for features, mask, labels, valid in batches:
            _plain_step(state["model"], state["optimizer"], features, mask, labels, valid, device)

    measure(benchmark, steps, items=sizes.temporal_steps * sizes.temporal_batch, unit="windows/s", device=device,
            batch_size=sizes.temporal_batch, shapes=_shapes(sizes), sizes=sizes, setup=setup,
            rounds=sizes.temporal_rounds, steps=sizes.temporal_steps,
            params_millions=round(_params(_fresh_model(config, sizes, "cpu")[0]), 2))


def test_plain_loop_loader_fed(benchmark, temporal_data, device, sizes):
    """The same hand-written loop fed by WindowShards.loader (float16 windows cast on the device)."""
    benchmark.group = "temporal"
    config = temporal_config(sizes)
    shards = WindowShards(temporal_data.train_dir)
    state: dict = {}

    def setup() -> None:
        state["model"], state["optimizer"] = _fresh_model(config, sizes, device)

    def steps() -> None:
        for b in shards.loader(sizes.temporal_batch, shuffle_seed=0, pin_memory=device.type == "cuda"):
            features = b["features"].to(device, non_blocking=True).float()
            valid = (b["valid"] & (b["frames"] > 0)).to(device, non_blocking=True)
            _plain_step(state["model"], state["optimizer"], features, b["mask"].to(device, non_blocking=True),
                        b["labels"].to(device, non_blocking=True), valid, device)

    measure(benchmark, steps, items=sizes.temporal_steps * sizes.temporal_batch, unit="windows/s", device=device,
            batch_size=sizes.temporal_batch, shapes=_shapes(sizes), sizes=sizes, setup=setup,
            rounds=sizes.temporal_rounds, steps=sizes.temporal_steps)
