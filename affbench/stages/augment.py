"""Stage 1 augmentation: label-preserving changes of a batch of face crops, drawn anew for every image.

A fine-tune on a few dozen faces learns who is on screen as readily as what the face does. Mirroring, small
shifts and lighting changes leave valence, arousal, the expression and the (bilateral) action units unchanged
while changing the pixels that identify a face and its framing. Draws come from torch's global generator, which
stage 1 seeds and its epoch checkpoints capture, so a resumed fine-tune draws what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F


def augments(options: Mapping[str, Any]) -> bool:
    """Whether the `finetune.augment` section changes anything."""
    return bool(options["flip"]) or float(options["shift"]) > 0 or float(options["lighting"]) > 0


def augment_images(images: torch.Tensor, options: Mapping[str, Any]) -> torch.Tensor:
    """`images` [B,3,S,S] (normalised backbone input) mirrored, shifted and relit per image by `options`."""
    n = images.shape[0]
    shift = float(options["shift"])
    if options["flip"] or shift > 0:
        # One affine resampling does both: x-scale -1 mirrors, the translation shifts (in units of half the
        # image, hence the factor 2); a pure mirror or whole-pixel shift lands exactly on the pixel grid.
        theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
        mirror = torch.rand(n, device=images.device) < 0.5 if options["flip"] else torch.zeros(n, dtype=torch.bool)
        theta[:, 0, 0] = torch.where(mirror.to(images.device), -1.0, 1.0)
        theta[:, 1, 1] = 1.0
        theta[:, :, 2] = (torch.rand(n, 2, device=images.device) * 2 - 1) * (2 * shift)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    lighting = float(options["lighting"])
    if lighting > 0:
        contrast = 1 + (torch.rand(n, 1, 1, 1, device=images.device) * 2 - 1) * lighting
        brightness = (torch.rand(n, 1, 1, 1, device=images.device) * 2 - 1) * lighting
        images = images * contrast + brightness
    return images
