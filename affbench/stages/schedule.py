"""Learning-rate schedules as pure functions of the optimizer step, so resuming needs only the step count."""

from __future__ import annotations

import math

import torch

SCHEDULES = ("cosine", "linear", "constant")


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimizer `step` (0-based): linear warm-up, then `schedule`."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay_steps))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def build_scheduler(optimizer: torch.optim.Optimizer, *, steps_per_epoch: int, epochs: int,
                    warmup_epochs: float, schedule: str) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepping once per optimizer step: `warmup_epochs` of linear warm-up, then `schedule` to 0."""
    total = max(1, steps_per_epoch * epochs)
    warmup = min(total, int(round(warmup_epochs * steps_per_epoch)))

    def factor(step: int) -> float:
        return lr_factor(step, total_steps=total, warmup_steps=warmup, schedule=schedule)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
