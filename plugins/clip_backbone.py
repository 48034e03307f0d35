"""Built-in backbone ``clip``: an open_clip image tower (ViT-B-16 in the paper).

Registration only; open_clip and torch are imported when a backbone is built (affbench_plugins.clip_model).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from affbench import hookimpl


def clip(*, arch: str | Mapping[str, Any] = "ViT-B-16", pretrained: str | None = None,
         features: str = "embedding", quick_gelu: bool | None = None, resize: str = "squash", seed: int = 0,
         cache_dir: str | None = None):
    """open_clip image tower; pretrained = open_clip tag (downloads on request) or local checkpoint file."""
    from affbench_plugins.clip_model import ClipBackbone

    return ClipBackbone(arch=arch, pretrained=pretrained, features=features, quick_gelu=quick_gelu,
                        resize=resize, seed=seed, cache_dir=cache_dir)


# A two-layer ViT on 32x32 inputs: the whole open_clip code path in milliseconds.
TINY_VIT = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2,
                                            "head_width": 16}}
clip.test_options = {"arch": TINY_VIT}


@hookimpl
def affbench_register_backbones(register):
    register("clip", clip)
