"""Group ``backbone``: forward frames/s of every registered backbone, batch 1 and 32 (and 256 on a GPU).

Registry-driven: each backbone is built with its factory's ``test_options`` (the small config a new plugin is
tested with), and the paper's CLIP ViT-B/16 runs next to them. The baseline is torchvision's ResNet-50 at
224x224 (the ABAW organisers' baseline backbone), measured in the same run.
"""

from __future__ import annotations

import pytest
import torch
from benchkit import autocast, measure

import affbench

BATCHES = (1, 32, 256)  # 256: on a GPU only (the batch the paper's extraction runs at)
PAPER_BACKBONE = ("clip", {"arch": "ViT-B-16"})  # random weights: the speed does not depend on them


def _registered() -> list[tuple[str, dict]]:
    cases = []
    for component in affbench.list_components("backbone"):
        options = dict(getattr(component.factory, "test_options", {}) or {})
        cases.append((component.name, options))
    return cases


def _skip_gpu_only(batch: int, sizes) -> None:
    if batch > max(32, *sizes.backbone_batches):
        pytest.skip(f"batch {batch}: measured on a GPU only")


def _forward_frames(benchmark, module: torch.nn.Module, image_size: int, batch: int, device, sizes, **extra):
    if batch not in sizes.backbone_batches:
        batch = sizes.backbone_batches[-1] if batch > 1 else sizes.backbone_batches[0]
    module = module.to(device).eval()
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    images = torch.randn(batch, 3, image_size, image_size, device=device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)

    def forward() -> None:
        with torch.inference_mode(), autocast(device):
            module(images)

    measure(benchmark, forward, items=batch, unit="frames/s", device=device, batch_size=batch,
            shapes={"images": tuple(images.shape)}, sizes=sizes, **extra)


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
@pytest.mark.parametrize("name,options", _registered(), ids=[f"{n}-small" for n, _ in _registered()])
def test_backbone_small_config(benchmark, name, options, batch, device, sizes):
    """A registered backbone with its small test config."""
    _skip_gpu_only(batch, sizes)
    benchmark.group = "backbone"
    backbone = affbench.create("backbone", name, **options)
    _forward_frames(benchmark, backbone, backbone.preprocess.image_size, batch, device, sizes,
                    backbone=name, options=options, out_dim=int(backbone.out_dim))


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
def test_backbone_clip_vit_b16(benchmark, batch, device, sizes):
    """The paper's image encoder, CLIP ViT-B/16 at 224x224."""
    _skip_gpu_only(batch, sizes)
    if not sizes.paper_backbone:
        pytest.skip("--quick: the paper's backbone is left out")
    benchmark.group = "backbone"
    name, options = PAPER_BACKBONE
    backbone = affbench.create("backbone", name, **options)
    _forward_frames(benchmark, backbone, backbone.preprocess.image_size, batch, device, sizes,
                    backbone=name, options=options, out_dim=int(backbone.out_dim))


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
def test_baseline_torchvision_resnet50(benchmark, batch, device, sizes):
    """Reference model: a plain torchvision ResNet-50 forward at 224x224 (random weights)."""
    _skip_gpu_only(batch, sizes)
    import torchvision

    benchmark.group = "backbone"
    size = 224 if not sizes.quick else 64
    model = torchvision.models.resnet50(weights=None)
    model.fc = torch.nn.Identity()
    _forward_frames(benchmark, model, size, batch, device, sizes, backbone="torchvision.resnet50", out_dim=2048)
