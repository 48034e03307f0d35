"""Group ``finetune``: stage 1's training step (backbone + new layers, forward, loss, backward, AdamW), frames/s.

The demo's backbone (EfficientNet-Lite0 at 64x64, BatchNorm frozen, channels-last, random weights: the speed
does not depend on them) at the demo's batch of 64 (8 with ``--quick``). ``finetune_step`` is the step as
stage 1 runs it on a CPU, its covering depthwise layers' weight gradients summed tap by tap
(``affbench.stages.depthwise_grads``); ``baseline_pytorch_depthwise_grads`` is the same step with PyTorch's own
depthwise gradients. Paired rounds: a baseline round runs right before each timed round, and the median of the
per-pair ratios is ``extra_info["paired_ratio"]``. The route is CPU-only, so the group runs on a CPU only.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from benchkit import PairedRounds, measure

import affbench
from affbench.stages import finetune as stage1
from affbench.stages.frame_batches import image_model_on

BACKBONE = {"model": "efficientnet_lite0", "image_size": 64}
OUT_DIM = 22  # the demo's three tasks: 2 VA + 8 EXPR + 12 AU outputs


@pytest.fixture(scope="module")
def step_case(device, sizes):
    """The model, its optimizer, a batch of images and targets."""
    if device.type != "cpu":
        pytest.skip("the tap-by-tap route is for CPUs only")
    torch.manual_seed(0)
    backbone = affbench.create("backbone", "timm", **BACKBONE)
    head = stage1._new_head(int(backbone.out_dim), OUT_DIM)
    model = image_model_on(stage1.BackboneWithHead({"backbone": backbone, "head": head}), device)
    stage1.set_train_mode(model, freeze_batchnorm=True)
    batch = 8 if sizes.quick else 64
    size = BACKBONE["image_size"]
    images = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    return {"model": model, "optimizer": torch.optim.AdamW(model.parameters(), lr=1e-5), "images": images,
            "targets": torch.randn(batch, OUT_DIM)}


def _step(case, *, tapwise: bool):
    model, optimizer, images, targets = case["model"], case["optimizer"], case["images"], case["targets"]

    def step() -> None:
        with stage1.backbone_threads(), (stage1.stage1_gradients(model, {}) if tapwise else contextlib.nullcontext()):
            loss = torch.nn.functional.mse_loss(model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return step


def _shapes(case) -> dict:
    return {"images": tuple(case["images"].shape)}


def test_finetune_step(benchmark, step_case, device, sizes):
    """Stage 1's step as it runs on a CPU, each round preceded by a baseline round (the pair's ratio)."""
    benchmark.group = "finetune"
    batch = step_case["images"].shape[0]
    paired = PairedRounds("baseline_pytorch_depthwise_grads", _step(step_case, tapwise=False), batch, device)
    measure(benchmark, _step(step_case, tapwise=True), items=batch, unit="frames/s", device=device,
            batch_size=batch, shapes=_shapes(step_case), sizes=sizes, setup=paired.setup, backbone=BACKBONE,
            min_rounds=5)
    paired.record(benchmark)


def test_baseline_pytorch_depthwise_grads(benchmark, step_case, device, sizes):
    """The same step with PyTorch's own depthwise weight gradients."""
    benchmark.group = "finetune"
    batch = step_case["images"].shape[0]
    measure(benchmark, _step(step_case, tapwise=False), items=batch, unit="frames/s", device=device,
            batch_size=batch, shapes=_shapes(step_case), sizes=sizes, backbone=BACKBONE, min_rounds=5)
