"""Group ``temporal``: training steps (forward, backward, AdamW) of the paper's TCN + Transformer, windows/s.

The model is the paper's stage-3 stack (TCN [768, 256, 128] k5 -> Transformer d512 x 8 layers -> MLP head) on
windows of 300 frames of 768-d features. ``affbench_trainer`` runs ``affbench.stages.trainer.train`` for one
epoch over window shards holding exactly ``steps x batch`` windows and reads the trainer's own windows/s for
that epoch (the step loop, fed by the shard loader; validation and checkpoint writing come after it and are
not part of the figure). ``baseline_plain_loop`` is a hand-written PyTorch loop on the same model and batches
held in memory; ``plain_loop_loader_fed`` is that loop fed by ``WindowShards.loader`` (isolates the loader's
share of a step). Every round starts from a freshly built model and optimizer, as the trainer does.

Paired rounds: the machine's speed drifts by 10-20 % between benchmarks on a shared 2-core host, more than
the 5 % these goals allow. So each round of ``affbench_trainer`` and ``plain_loop_loader_fed`` is preceded
(untimed by pytest-benchmark) by one round of the plain loop, and the median of the per-pair ratios is
stored as ``extra_info["paired_ratio"]`` against ``baseline_plain_loop``: the figure the goals use.

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
from affbench.core.config import resolve
from affbench.data.window_shards import WindowShards
from affbench.stages.pipeline import WindowData


def temporal_config(sizes):
    """The paper's stage-3 config (schema defaults) at the benchmark's batch, one epoch."""
    return resolve({
        "name": "bench_temporal",
        "task": "va",
        "backbone": None,
        "data": {"dataset": "synthaffect", "window": sizes.window, "stride": sizes.stride},
        # validation: the shards hold no selection split; one validation window is scored after the epoch.
        "train": {"epochs": 1, "batch_size": sizes.temporal_batch, "amp": "bf16", "workers": 0, "seed": 0,
                  "select": "validation"},
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


def memory_batches(temporal_data, sizes, device) -> list[tuple]:
    """The training batches as float32 tensors on the device (features, mask, labels, valid)."""
    return [
        tuple(t.to(device) for t in (b["features"].float(), b["mask"], b["labels"], b["valid"] & (b["frames"] > 0)))
        for b in WindowShards(temporal_data.train_dir).loader(sizes.temporal_batch, shuffle_seed=0)
    ]


class PlainLoopPartner:
    """Times one plain-loop round (fresh model, memory-fed) right before each round of a compared benchmark."""

    def __init__(self, config, sizes, device, batches) -> None:
        self.config, self.sizes, self.device, self.batches = config, sizes, device, batches
        self.rates: list[float] = []

    def run(self) -> None:
        import time

        model, optimizer = _fresh_model(self.config, self.sizes, self.device)
        start = time.perf_counter()
        for features, mask, labels, valid in self.batches:
            _plain_step(model, optimizer, features, mask, labels, valid, self.device)
        synchronize(self.device)
        self.rates.append(len(self.batches) * self.sizes.temporal_batch / (time.perf_counter() - start))

    def paired(self, rates: list[float]) -> dict:
        """extra_info entries: the median of rate_i / partner_rate_i over the rounds."""
        ratios = [r / p for r, p in zip(rates, self.rates[-len(rates):], strict=True)]
        return {"paired_baseline": "baseline_plain_loop", "paired_ratio": statistics.median(ratios),
                "paired_ratios": ratios, "paired_baseline_rates": self.rates[-len(rates):]}


def test_affbench_trainer(benchmark, temporal_data, bench_dir, device, sizes):
    """affbench's trainer, fed by window shards: its own windows/s over the epoch's step loop."""
    from affbench.stages.trainer import train

    benchmark.group = "temporal"
    config = temporal_config(sizes)
    partner = PlainLoopPartner(config, sizes, device, memory_batches(temporal_data, sizes, device))
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
    benchmark.pedantic(one_epoch, setup=partner.run, rounds=sizes.temporal_rounds, warmup_rounds=0, iterations=1)
    record_rate(benchmark, items_per_second=statistics.median(rates), unit="windows/s", device=device,
                batch_size=sizes.temporal_batch, shapes=_shapes(sizes), steps=sizes.temporal_steps,
                rounds=len(rates), timing="trainer's windows_per_s (step loop only)",
                config="schema defaults = paper stage 3", rates=rates, **partner.paired(rates))


def test_baseline_plain_loop(benchmark, temporal_data, device, sizes):
    """A hand-written loop on the same model and the same batches held in memory (float32 tensors)."""
    benchmark.group = "temporal"
    config = temporal_config(sizes)
    batches = memory_batches(temporal_data, sizes, device)
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
    partner = PlainLoopPartner(config, sizes, device, memory_batches(temporal_data, sizes, device))
    state: dict = {}

    def setup() -> None:
        partner.run()
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
    benchmark.extra_info.update(partner.paired(benchmark.extra_info["round_rates"]))
