"""Built-in backbone ``timm``: any timm model as a feature extractor, with explicit checkpoint mapping.

Registration only; timm and torch are imported when a backbone is built (affbench_plugins.timm_model).
"""

from __future__ import annotations

from collections.abc import Sequence

from affbench import hookimpl


def timm(*, model: str | None = None, checkpoint: str | None = None, pretrained: bool = False,
         key_mapping: str = "auto", image_size: int | None = None, resize: str = "squash",
         mean: Sequence[float] | None = None, std: Sequence[float] | None = None, seed: int = 0):
    """timm model features (classifier removed); checkpoint = file or pkg:efficientnet_lite0."""
    from affbench_plugins.timm_model import TimmBackbone

    return TimmBackbone(model=model, checkpoint=checkpoint, pretrained=pretrained, key_mapping=key_mapping,
                        image_size=image_size, resize=resize, mean=mean, std=std, seed=seed)


timm.test_options = {"model": "test_efficientnet", "image_size": 32}


@hookimpl
def affbench_register_backbones(register):
    register("timm", timm)
