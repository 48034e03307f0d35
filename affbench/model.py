"""Model assembly: image preprocessing, the MLP head, and backbone -> temporal stack -> head as one module.

``create_model(config)`` reads the run config's ``task``, ``backbone`` (or ``feature_dim`` when the model runs
on precomputed features), ``model.temporal`` and ``model.head`` and builds every part through the registry,
so a third-party backbone, temporal block or task is used exactly like a built-in one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

RESIZE_MODES = ("squash", "shorter_side_crop", "pad")
HEAD_NORMS = ("batch", "layer", "none")
HEAD_ACTIVATIONS = ("relu", "none")


def check_choice(value: Any, option: str, choices: Sequence[Any], where: str) -> Any:
    """Return `value` if it is one of `choices`, else raise ValueError naming the option and the choices."""
    if value not in choices:
        raise ValueError(f"{where}: {option}={value!r} is not accepted; choose one of: "
                         f"{', '.join(repr(c) for c in choices)}")
    return value


def check_sequence(x: torch.Tensor, mask: torch.Tensor | None, in_dim: int, where: str) -> torch.Tensor | None:
    """Check a temporal block's input x[B,T,in_dim] and mask[B,T] bool; return the mask (None stays None)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{where}: expected x of shape [B, T, {in_dim}], got {shape}")
    if x.shape[-1] != in_dim:
        raise ValueError(f"{where}: expected x with feature size D={in_dim} (shape [B, T, {in_dim}]), "
                         f"got D={x.shape[-1]} (shape {tuple(x.shape)})")
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(x.shape[:2]):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{where}: mask must have shape [B, T] = {tuple(x.shape[:2])} to match x, got {shape}")
    if mask.dtype != torch.bool:
        raise ValueError(f"{where}: mask must be a bool tensor (True = real step), got dtype {mask.dtype}")
    return mask


# ---------------------------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocess:
    """What input a backbone expects: square size, per-channel mean/std (0-1 scale) and how to resize.

    ``resize``: ``squash`` resizes the whole image to size x size (face crops keep the whole face; the default),
    ``shorter_side_crop`` resizes the shorter side then centre-crops, ``pad`` pads to a square with the mean
    colour then resizes.
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "squash"

    def __post_init__(self) -> None:
        check_choice(self.resize, "resize", RESIZE_MODES, "Preprocess")
        if not isinstance(self.image_size, int) or self.image_size <= 0:
            raise ValueError(f"Preprocess: image_size must be a positive int, got {self.image_size!r}")
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ValueError(f"Preprocess: {name} needs 3 values (R, G, B), got {value}")
            object.__setattr__(self, name, value)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"Preprocess: std values must be > 0, got {self.std}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for manifests and provenance)."""
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "resize": self.resize}


def _as_uint8_batch(images: Any) -> list[torch.Tensor]:
    """Group the input into uint8 tensors [b,H,W,3] of one size each (a numpy batch stays one group)."""
    if isinstance(images, np.ndarray | torch.Tensor):
        if isinstance(images, np.ndarray):
            # torch wants writable memory (np.asarray(PIL image) is read-only); copy only then.
            images = np.ascontiguousarray(images) if images.flags.writeable else np.array(images)
            arr = torch.from_numpy(images)
        else:
            arr = images
        if arr.dim() == 3:
            arr = arr.unsqueeze(0)
        if arr.dim() != 4 or arr.shape[-1] != 3:
            raise ValueError(f"preprocess_images: expected uint8 images [B, H, W, 3] (RGB), got shape "
                             f"{tuple(arr.shape)}")
        if arr.dtype != torch.uint8:
            raise ValueError(f"preprocess_images: expected dtype uint8 (0-255), got {arr.dtype}")
        return [arr]
    if not isinstance(images, Sequence) or len(images) == 0:
        raise ValueError("preprocess_images: expected a uint8 array [B, H, W, 3] or a non-empty list of images")
    tensors = []
    for i, image in enumerate(images):
        if hasattr(image, "convert"):  # PIL image
            arr = np.asarray(image.convert("RGB"))
        else:
            arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"preprocess_images: image {i} must be RGB uint8 [H, W, 3], got shape {arr.shape} "
                             f"dtype {arr.dtype}")
        tensors.append(torch.from_numpy(arr if arr.flags.writeable and arr.flags.c_contiguous else arr.copy()))
    if all(t.shape == tensors[0].shape for t in tensors):
        return [torch.stack(tensors)]
    return [t.unsqueeze(0) for t in tensors]


def _resize(x: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """x float [b,3,H,W] on the 0-255 scale -> [b,3,S,S]."""
    size = preprocess.image_size
    h, w = x.shape[-2:]
    if preprocess.resize == "pad" and h != w:
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        fill = torch.tensor(preprocess.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) * 255.0
        canvas = fill.expand(x.shape[0], 3, side, side).clone()
        canvas[:, :, top:top + h, left:left + w] = x
        x, h, w = canvas, side, side
    if preprocess.resize == "shorter_side_crop" and h != w:
        scale = size / min(h, w)
        new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        return x[:, :, top:top + size, left:left + size]
    if (h, w) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def input_pixels(images: Any, preprocess: Preprocess) -> torch.Tensor:
    """uint8 RGB images (as `preprocess_images` takes them) -> uint8 [B,S,S,3] at the backbone's input size.

    The resize of `preprocess_images`, rounded back to uint8: what frame shards keep for small backbones so that
    neither JPEG decoding nor resizing is paid again on every read (``preprocess_images`` of the result only
    normalises, as the images are already S x S).
    """
    out = []
    for group in _as_uint8_batch(images):
        x = _resize(group.permute(0, 3, 1, 2).float(), preprocess)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1))
    return out[0].contiguous() if len(out) == 1 else torch.cat(out)


def preprocess_images(images: Any, preprocess: Preprocess, *, device: torch.device | str | None = None,
                      memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 RGB images ([B,H,W,3] numpy/torch, or a list of PIL/arrays) -> normalised float tensor [B,3,S,S],
    laid out in `memory_format` (channels_last: written in the pixels' own HWC order, no transposition)."""
    if not isinstance(preprocess, Preprocess):
        raise TypeError(f"preprocess_images: preprocess must be an affbench.model.Preprocess, got "
                        f"{type(preprocess).__name__}")
    mean = torch.tensor(preprocess.mean, device=device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(preprocess.std, device=device).view(1, 3, 1, 1) * 255.0
    out = []
    for group in _as_uint8_batch(images):
        # Resize on the GPU when one is given: uint8 travels, floats are made where they are used.
        x = group.to(device).permute(0, 3, 1, 2).float()
        x = _resize(x, preprocess)
        # Written straight into a contiguous tensor, then divided in place: the values of (x - mean) / std in one
        # allocation and two passes, not three of each (what a 32 px batch's preprocessing spent most on).
        normalised = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=memory_format)
        out.append(torch.sub(x, mean, out=normalised).div_(std))
    return out[0] if len(out) == 1 else torch.cat(out).contiguous(memory_format=memory_format)


# ---------------------------------------------------------------------------------------------------------------
# Head
# ---------------------------------------------------------------------------------------------------------------
class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over the feature axis of [B,T,C] whose training statistics use real (mask True) steps only.

    Padded steps of a window would otherwise pull the batch mean toward the padding value and make valid
    outputs depend on how much padding a batch holds.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        if not self.training:
            return super().forward(flat).reshape(shape)
        keep = torch.ones(flat.shape[0], dtype=torch.bool, device=x.device) if mask is None else mask.reshape(-1)
        n_valid = int(keep.sum())
        if n_valid < 2:  # batch statistics of fewer than 2 values are undefined: use the running ones
            return F.batch_norm(flat, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0,
                                self.eps).reshape(shape)
        out = torch.zeros_like(flat)
        valid = flat[keep]
        mean = valid.mean(0)
        var = valid.var(0, unbiased=False)
        out_valid = (valid - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
        out = out.index_put((keep.nonzero(as_tuple=True)[0],), out_valid)
        with torch.no_grad():
            momentum = self.momentum if self.momentum is not None else 0.1
            self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
            self.running_var.mul_(1 - momentum).add_(momentum * valid.var(0, unbiased=True).detach())
            self.num_batches_tracked.add_(1)
        return out.reshape(shape)


class MLPHead(nn.Module):
    """Per-step head: Linear(in, hidden) -> norm -> activation -> dropout -> Linear(hidden, out).

    ``hidden=None`` gives a single linear layer. ``norm``: ``batch`` (mask-aware BatchNorm, as the paper's head
    uses BatchNorm), ``layer`` or ``none``. ``activation``: ``relu``, or ``none`` for the authors' earlier code,
    whose head is Linear -> BatchNorm -> Linear with nothing between.
    """

    def __init__(self, in_dim: int, out_dim: int, *, hidden: int | None = 256, dropout: float = 0.3,
                 norm: str = "batch", activation: str = "relu") -> None:
        super().__init__()
        check_choice(norm, "norm", HEAD_NORMS, "MLPHead")
        check_choice(activation, "activation", HEAD_ACTIVATIONS, "MLPHead")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"MLPHead: dropout must be in [0, 1), got {dropout}")
        if hidden is not None and (not isinstance(hidden, int) or hidden <= 0):
            raise ValueError(f"MLPHead: hidden must be a positive int or None, got {hidden!r}")
        self.in_dim, self.out_dim, self.hidden = in_dim, out_dim, hidden
        if hidden is None:
            self.fc1, self.norm, self.act, self.drop = None, None, None, None
            self.fc2 = nn.Linear(in_dim, out_dim)
            return
        self.fc1 = nn.Linear(in_dim, hidden)
        self.norm = {"batch": lambda: MaskedBatchNorm1d(hidden), "layer": lambda: nn.LayerNorm(hidden),
                     "none": lambda: None}[norm]()
        self.act = nn.ReLU() if activation == "relu" else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x[..., in_dim] (mask[...] bool for the BatchNorm statistics) -> [..., out_dim]."""
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"MLPHead: expected input feature size {self.in_dim}, got shape {tuple(x.shape)}")
        if self.fc1 is None:
            return self.fc2(x)
        h = self.fc1(x)
        if isinstance(self.norm, MaskedBatchNorm1d):
            h = self.norm(h, mask)
        elif self.norm is not None:
            h = self.norm(h)
        return self.fc2(self.drop(self.act(h)))


class TaskHeads(nn.Module):
    """One MLP head per task of a multi-task model (affbench.multitask) on the shared temporal features; their
    outputs side by side, in the order of the task's merged output columns."""

    def __init__(self, in_dim: int, out_dims: Sequence[int], **head: Any) -> None:
        super().__init__()
        self.heads = nn.ModuleList([MLPHead(in_dim, int(d), **head) for d in out_dims])
        self.in_dim, self.out_dim = in_dim, sum(int(d) for d in out_dims)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([head(x, mask) for head in self.heads], dim=-1)


# ---------------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------------
class AffectModel(nn.Module):
    """Optional image backbone -> temporal blocks (in order) -> MLP head, one prediction per step."""

    def __init__(self, *, task: nn.Module, temporal: Sequence[nn.Module], head: MLPHead | TaskHeads,
                 backbone: nn.Module | None = None, feature_dim: int | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.task = task
        self.temporal = nn.ModuleList(temporal)
        self.head = head
        if backbone is not None:
            feature_dim = int(backbone.out_dim)
        if feature_dim is None:
            raise ValueError("AffectModel: give a backbone or feature_dim")
        self.feature_dim = int(feature_dim)
        self.out_dim = int(head.out_dim)

    def features(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Backbone features of images[B,T,3,H,W] -> [B,T,D]; masked steps are zeros and never computed."""
        if self.backbone is None:
            raise ValueError("AffectModel.features: this model has no backbone; it consumes features [B, T, D]")
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"AffectModel: with a backbone, x must be images [B, T, 3, H, W], got "
                             f"{tuple(images.shape)}")
        b, t = images.shape[:2]
        flat = images.reshape(b * t, *images.shape[2:])
        if mask is None:
            return self.backbone(flat).reshape(b, t, -1)
        keep = mask.reshape(-1).nonzero(as_tuple=True)[0]
        out = flat.new_zeros(b * t, self.feature_dim)
        if keep.numel():
            out = out.index_put((keep,), self.backbone(flat[keep]).to(out.dtype))
        return out.reshape(b, t, self.feature_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: images [B,T,3,H,W] (with a backbone) or features [B,T,D]; mask[B,T] bool -> [B,T,out_dim]."""
        if mask is not None and (mask.dim() != 2 or tuple(mask.shape) != tuple(x.shape[:2])):
            raise ValueError(f"AffectModel: mask must have shape [B, T] = {tuple(x.shape[:2])}, got "
                             f"{tuple(mask.shape)}")
        if self.backbone is not None:
            h = self.features(x, mask)
        else:
            check_sequence(x, mask, self.feature_dim, "AffectModel (features input)")
            h = x
        for block in self.temporal:
            h = block(h, mask)
        return self.head(h, mask)


def _component_spec(value: Any, key: str, kind: str) -> tuple[str, dict[str, Any]]:
    """(name, options) of a config component, normalised by the config's one normaliser."""
    from affbench.core.config import component_spec

    spec = component_spec(value, key, kind=kind)
    return spec["name"], spec["options"]


HEAD_KEYS = ("hidden", "dropout", "norm", "activation")


def create_model(config: Mapping[str, Any]) -> AffectModel:
    """Build backbone (or none: features in) -> temporal stack -> head for the config's task."""
    import affbench

    if not isinstance(config, Mapping):
        raise TypeError(f"create_model: config must be a mapping, got {type(config).__name__}")
    if config.get("task") is None:
        raise ValueError("config key task: required; a task name (va, expr, au) or {name, options}")
    task_name, task_options = _component_spec(config["task"], "task", "task")
    task = affbench.create("task", task_name, **task_options)

    backbone = None
    feature_dim = config.get("feature_dim")
    if config.get("backbone") is not None:
        name, options = _component_spec(config["backbone"], "backbone", "backbone")
        backbone = affbench.create("backbone", name, **options)
        feature_dim = int(backbone.out_dim)
    elif not isinstance(feature_dim, int) or isinstance(feature_dim, bool) or feature_dim <= 0:
        raise ValueError(f"config key feature_dim: with backbone: null the model consumes features and needs a "
                         f"positive int feature_dim, got {feature_dim!r}")

    model_cfg = config.get("model") or {}
    if not isinstance(model_cfg, Mapping):
        raise ValueError(f"config key model: expected a mapping, got {type(model_cfg).__name__}")
    temporal_cfg = model_cfg.get("temporal") or []
    if not isinstance(temporal_cfg, Sequence) or isinstance(temporal_cfg, str | bytes):
        raise ValueError(f"config key model.temporal: expected a list of components, got {temporal_cfg!r}")
    blocks = []
    dim = feature_dim
    for i, item in enumerate(temporal_cfg):
        name, options = _component_spec(item, f"model.temporal[{i}]", "temporal")
        if "in_dim" in options:
            raise ValueError(f"config key model.temporal[{i}].options.in_dim: set by the model (the previous "
                             f"block's out_dim); remove it")
        block = affbench.create("temporal", name, in_dim=dim, **options)
        blocks.append(block)
        dim = int(block.out_dim)

    head_cfg = dict(model_cfg.get("head") or {})
    unknown = sorted(set(head_cfg) - set(HEAD_KEYS))
    if unknown:
        raise ValueError(f"config key model.head.{unknown[0]}: unknown; accepted: {', '.join(HEAD_KEYS)}")
    from affbench.multitask import is_multitask

    if is_multitask(task):  # one head per task on the shared temporal stack
        head = TaskHeads(dim, task.layout.out_dims, **head_cfg)
    else:
        head = MLPHead(dim, int(task.out_dim), **head_cfg)
    return AffectModel(task=task, temporal=blocks, head=head, backbone=backbone, feature_dim=feature_dim)


__all__ = [
    "HEAD_ACTIVATIONS",
    "HEAD_NORMS",
    "RESIZE_MODES",
    "AffectModel",
    "MLPHead",
    "MaskedBatchNorm1d",
    "Preprocess",
    "TaskHeads",
    "check_choice",
    "check_sequence",
    "create_model",
    "input_pixels",
    "preprocess_images",
]
