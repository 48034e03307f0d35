"""The CLIP image tower (open_clip) as an affbench backbone.

Architectures are open_clip configs (a registered name such as ``ViT-B-16``, or a config mapping with
``embed_dim`` and ``vision_cfg``); weights are an open_clip pretrained tag (downloaded only when asked for), a
local checkpoint file, or a seeded random initialisation. Only the image tower is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from affbench.model import RESIZE_MODES, Preprocess, check_choice

FEATURES = ("embedding", "pre_projection")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (the identity of a checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _arch_config(arch: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(label, config) of an open_clip registered name or a config mapping."""
    import open_clip

    if isinstance(arch, Mapping):
        if "vision_cfg" not in arch or "embed_dim" not in arch:
            raise ValueError("backbone 'clip': an arch mapping needs 'embed_dim' and 'vision_cfg' (an open_clip "
                             f"model config), got keys {sorted(arch)}")
        cfg = json.loads(json.dumps(dict(arch)))  # a deep, JSON-clean copy
        label = "custom-" + hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
        return label, cfg
    if not isinstance(arch, str):
        raise ValueError(f"backbone 'clip': arch must be an open_clip model name or a config mapping, got {arch!r}")
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        import difflib

        hint = difflib.get_close_matches(arch, open_clip.list_models(), n=3)
        raise ValueError(f"backbone 'clip': unknown arch '{arch}'; open_clip.list_models() holds "
                         f"{len(open_clip.list_models())} names" + (f", e.g. {', '.join(hint)}" if hint else ""))
    return arch, cfg


def _visual_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The image-tower tensors of a checkpoint: a full CLIP state dict, an affbench clip backbone's, or a tower's."""
    from open_clip.factory import load_state_dict  # unwraps {'state_dict': ...}, 'module.', safetensors

    state = load_state_dict(path)
    if any(k.startswith("visual.") for k in state):
        return {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    return dict(state)


class ClipBackbone(nn.Module):
    """open_clip image tower -> [B, out_dim] image embedding (or pooled features before the projection)."""

    def __init__(self, *, arch: str | Mapping[str, Any] = "ViT-B-16", pretrained: str | None = None,
                 features: str = "embedding", quick_gelu: bool | None = None, resize: str = "squash",
                 seed: int = 0, cache_dir: str | None = None) -> None:
        super().__init__()
        import open_clip

        where = "backbone 'clip'"
        check_choice(features, "features", FEATURES, where)
        check_choice(resize, "resize", RESIZE_MODES, where)
        check_choice(quick_gelu, "quick_gelu", (None, True, False), where)
        label, cfg = _arch_config(arch)
        if quick_gelu is not None:
            cfg["quick_gelu"] = quick_gelu
        self.arch = label
        self.features_kind = features
        mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD

        tag_cfg = open_clip.get_pretrained_cfg(label, pretrained) if isinstance(pretrained, str) and \
            isinstance(arch, str) else {}
        if pretrained is None or pretrained == "":
            self.visual = self._random_tower(cfg, seed)
            self.weights_id = f"random:clip:{label}:seed{seed}"
        elif tag_cfg:
            self._warn_quick_gelu(label, pretrained, cfg, tag_cfg)
            self.visual = self._tagged_tower(label, pretrained, cfg, cache_dir)
            mean, std = tag_cfg.get("mean", mean), tag_cfg.get("std", std)
            self.weights_id = f"open_clip:{label}:{pretrained}"
        elif Path(str(pretrained)).is_file():
            self.visual = self._random_tower(cfg, seed)
            self._load_file(str(pretrained), drop_proj=features == "pre_projection")
            self.weights_id = "sha256:" + file_sha256(pretrained)
        else:
            tags = open_clip.list_pretrained_tags_by_model(label) if isinstance(arch, str) else []
            raise ValueError(f"{where}: pretrained={pretrained!r} is neither an open_clip tag for arch '{label}' "
                             f"(tags: {', '.join(tags) or 'none'}) nor an existing checkpoint file")

        if features == "pre_projection":
            proj = getattr(self.visual, "proj", None)
            if not isinstance(proj, torch.Tensor):
                raise ValueError(f"{where}: features='pre_projection' needs a ViT image tower with a 'proj' "
                                 f"matrix; arch '{label}' has none")
            self.out_dim = int(proj.shape[0])
            self.visual.proj = None
        else:
            proj = getattr(self.visual, "proj", None)
            self.out_dim = int(proj.shape[1]) if isinstance(proj, torch.Tensor) else int(cfg["embed_dim"])
        size = getattr(self.visual, "image_size", cfg["vision_cfg"].get("image_size", 224))
        size = size if isinstance(size, int) else tuple(size)
        if not isinstance(size, int):
            if size[0] != size[1]:
                raise ValueError(f"{where}: only square inputs are supported, arch '{label}' expects {size}")
            size = size[0]
        self.preprocess = Preprocess(image_size=int(size), mean=tuple(mean), std=tuple(std), resize=resize)

    @staticmethod
    def _random_tower(cfg: dict[str, Any], seed: int) -> nn.Module:
        from open_clip import model as oc_model

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # a seeded init makes "random:<seed>" a real weights identity
            return oc_model._build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"],
                                                quick_gelu=bool(cfg.get("quick_gelu", False)))

    @staticmethod
    def _warn_quick_gelu(label: str, tag: str, cfg: dict[str, Any], tag_cfg: dict[str, Any]) -> None:
        model_qg = bool(cfg.get("quick_gelu", False))
        tag_qg = bool(tag_cfg.get("quick_gelu", False))
        if model_qg != tag_qg:
            fix = (f"use arch '{label}-quickgelu' or quick_gelu: true" if tag_qg
                   else "set quick_gelu: false")
            warnings.warn(f"backbone 'clip': pretrained '{tag}' was trained with quick_gelu={tag_qg} but arch "
                          f"'{label}' builds quick_gelu={model_qg}; features will be degraded: {fix}",
                          UserWarning, stacklevel=4)

    @staticmethod
    def _tagged_tower(label: str, tag: str, cfg: dict[str, Any], cache_dir: str | None) -> nn.Module:
        import open_clip

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="QuickGELU mismatch")  # ours above names the fix
            model = open_clip.create_model(label, pretrained=tag, force_quick_gelu=bool(cfg.get("quick_gelu")),
                                           cache_dir=cache_dir)
        return model.visual

    def _load_file(self, path: str, *, drop_proj: bool) -> None:
        state = _visual_state_dict(path)
        if drop_proj:
            state.pop("proj", None)
        own = self.visual.state_dict()
        missing = [k for k in own if k not in state and not (drop_proj and k == "proj")]
        unexpected = [k for k in state if k not in own]
        wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
                 if k in own and tuple(v.shape) != tuple(own[k].shape)]
        if missing or unexpected or wrong:
            raise ValueError(f"backbone 'clip': checkpoint {path} does not fit arch '{self.arch}': missing "
                             f"{missing[:5]}, unexpected {unexpected[:5]}, shape (file vs model) {wrong[:5]}")
        self.visual.load_state_dict(state, strict=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images[B,3,S,S] (preprocessed) -> [B, out_dim]."""
        size = self.preprocess.image_size
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (size, size):
            raise ValueError(f"backbone 'clip' ({self.arch}): expected images [B, 3, {size}, {size}], got "
                             f"{tuple(images.shape)}; use affbench.model.preprocess_images(images, "
                             f"backbone.preprocess)")
        out = self.visual(images)
        if isinstance(out, tuple):  # towers configured with output_tokens return (pooled, tokens)
            out = out[0]
        return out
