"""Shared pieces of the stage 1-2, pipeline and suite tests: a third-party tiny backbone registered as a plugin
at run time, and tiny configs (the fixtures live in stage_plugin.py)."""

from __future__ import annotations

import copy
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

import affbench
from affbench.core.config import resolve

TINY_BACKBONE = "tinynet_thirdparty"
TINY_PLUGIN = "tinynet-plugin"


class TinyNet(nn.Module):
    """A third-party backbone: conv -> pool -> linear; counts the frames it has seen (for cache tests)."""

    frames_seen = 0  # class-wide: extraction builds fresh instances

    def __init__(self, *, width: int = 4, out_dim: int = 8, image_size: int = 16, seed: int = 0) -> None:
        super().__init__()
        from affbench.model import Preprocess

        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # weights are a function of the seed, as weights_id promises
        self.conv = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.fc = nn.Linear(width, out_dim)
        torch.random.set_rng_state(generator_state)
        self.out_dim = out_dim
        self.preprocess = Preprocess(image_size=image_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                                     resize="squash")
        self.weights_id = f"random:tinynet:w{width}:seed{seed}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        TinyNet.frames_seen += int(images.shape[0])
        return self.fc(torch.relu(self.conv(images)).mean(dim=(2, 3)))


def _plugin_module() -> types.ModuleType:
    module = types.ModuleType("tinynet_plugin")

    @affbench.hookimpl
    def affbench_register_backbones(register):
        register(TINY_BACKBONE, TinyNet)

    module.affbench_register_backbones = affbench_register_backbones
    return module


def ensure_tiny_plugin() -> None:
    """Register the tiny backbone through the plugin API unless the registry already has it."""
    registry = affbench.core.registry.get_registry()
    if not any(c.name == TINY_BACKBONE for c in registry.list("backbone")):
        registry.register_plugin(_plugin_module(), name=TINY_PLUGIN, version="0.0.1")


def merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("backbone", "task"):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tiny_config(synth_root: Path, **top: Any):
    """A resolved config on SynthAffect tiny with the tiny third-party backbone and a tiny stage 3."""
    ensure_tiny_plugin()
    base = {
        "name": "ours",
        "task": "va",
        "data": {"dataset": {"name": "synthaffect", "options": {"size": "tiny", "seed": 0, "root": str(synth_root)}},
                 "window": 32, "stride": 16, "folds": 2, "missing_faces": "mask"},
        "backbone": {"name": TINY_BACKBONE, "options": {}},
        "finetune": {"enabled": True, "epochs": 1, "batch_size": 16, "lr": 1.0e-2, "max_frames": 48, "workers": 0},
        "extract": {"batch_size": 64, "workers": 0},
        "model": {"temporal": [{"name": "tcn", "options": {"channels": [8], "kernel_size": 3, "dropout": 0.0,
                                                             "weight_norm": False}}],
                  "head": {"hidden": 8, "dropout": 0.0}},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1.0e-3, "workers": 0, "warmup_epochs": 0},
        "eval": {"batch_size": 8},
    }
    return resolve(merge(base, top))


def forwards() -> int:
    """Frames the tiny backbone has run so far in this process."""
    return TinyNet.frames_seen


__all__ = ["TINY_BACKBONE", "TinyNet", "ensure_tiny_plugin", "forwards", "tiny_config"]
