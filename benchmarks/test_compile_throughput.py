"""Group ``compile``: the backbone through ``torch.compile`` (config key ``compile``) vs eager, frames/s.

``compiled_forward`` runs the compiled backbone at the extraction batch, ``baseline_eager_forward`` the same
module eagerly on the same tensors. Compilation happens in the untimed warm-up call; its seconds are stored in
``extra_info["compile_seconds"]`` (a stage pays them once per process). Paired rounds: an eager round runs right
before each compiled round and the median of the per-pair ratios is ``extra_info["paired_ratio"]``.
``extra_info["max_abs_diff"]`` is the largest difference between compiled and eager features of the same
images: the reason ``compile`` joins no cache key (rounding, not a different function).

Backbones: the CLIP test config at 32x32 (as in the ``extraction`` group) everywhere; the paper's CLIP ViT-B/16
on a GPU only (compiling it on a 2-core CPU takes minutes, and a CPU is not where it would run). ``--quick``
compiles with the ``eager`` backend: it checks the benchmark runs, and measures nothing.
"""

from __future__ import annotations

import time

import pytest
import torch
from benchkit import PairedRounds, autocast, measure, synchronize

import affbench
from affbench_plugins.clip_backbone import TINY_VIT

BACKBONES = {"clip_small": {"arch": TINY_VIT}, "clip_vit_b16": {"arch": "ViT-B-16"}}


@pytest.fixture(scope="module", params=list(BACKBONES))
def compile_case(request, device, sizes):
    """(name, eager backbone, compiled backbone, images, compile seconds, max |compiled - eager|)."""
    name = request.param
    if name == "clip_vit_b16" and device.type != "cuda":
        pytest.skip("ViT-B/16 is compiled on a GPU only")
    backbone = affbench.create("backbone", "clip", **BACKBONES[name]).to(device).eval()
    size = backbone.preprocess.image_size
    images = torch.randn(sizes.extract_batch, 3, size, size, device=device)
    compiled = torch.compile(backbone, backend="eager" if sizes.quick else "inductor")
    with torch.inference_mode(), autocast(device):
        eager_out = backbone(images).float()
        start = time.perf_counter()
        compiled_out = compiled(images).float()  # the compilation
        synchronize(device)
        seconds = time.perf_counter() - start
    return {"name": name, "eager": backbone, "compiled": compiled, "images": images, "compile_seconds": seconds,
            "max_abs_diff": float((compiled_out - eager_out).abs().max())}


def _forward(module, images, device):
    def forward() -> None:
        with torch.inference_mode(), autocast(device):
            module(images)
    return forward


def test_compiled_forward(benchmark, compile_case, device, sizes):
    """The compiled backbone, each round preceded by an eager round (the pair's ratio)."""
    benchmark.group = "compile"
    case = compile_case
    images = case["images"]
    paired = PairedRounds(f"baseline_eager_forward[{case['name']}]", _forward(case["eager"], images, device),
                          images.shape[0], device)
    measure(benchmark, _forward(case["compiled"], images, device), items=images.shape[0], unit="frames/s",
            device=device, batch_size=images.shape[0], shapes={"images": tuple(images.shape)}, sizes=sizes,
            setup=paired.setup, backbone=case["name"], compile_seconds=case["compile_seconds"],
            max_abs_diff=case["max_abs_diff"], min_rounds=5)
    paired.record(benchmark)


def test_baseline_eager_forward(benchmark, compile_case, device, sizes):
    """The same backbone, eager, same tensors."""
    benchmark.group = "compile"
    case = compile_case
    images = case["images"]
    measure(benchmark, _forward(case["eager"], images, device), items=images.shape[0], unit="frames/s",
            device=device, batch_size=images.shape[0], shapes={"images": tuple(images.shape)}, sizes=sizes,
            backbone=case["name"], min_rounds=5)
