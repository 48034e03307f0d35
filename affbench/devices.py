"""Which torch device a command runs its models on: one rule for every stage and command.

The request comes from ``--device`` (any command that runs a model), else the config key ``device``, else
``$AFFBENCH_DEVICE``, else ``auto``. ``auto`` is the GPU of this process's local rank when one is visible, else
the CPU; ``cuda`` is that GPU too (torchrun starts one process per GPU); ``cuda:N`` is GPU N.
"""

from __future__ import annotations

import os
import re

DEVICE_ENV = "AFFBENCH_DEVICE"
DEVICE_FORMS = "auto, cpu, cuda or cuda:N"
_FORM = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class DeviceError(ValueError):
    """A device request that is malformed or names a GPU this machine does not have."""


def check_device(text: str, *, where: str = "--device") -> str:
    """`text` if it is a device form this library accepts, else a DeviceError naming `where`."""
    if not isinstance(text, str) or not _FORM.match(text.strip()):
        raise DeviceError(f"{where}: {text!r} is not a device; accepted: {DEVICE_FORMS}")
    return text.strip()


def requested_device(explicit: str | None = None) -> str:
    """The device request in force: `explicit` (a command's --device or a config's device), else
    $AFFBENCH_DEVICE, else auto."""
    if explicit and explicit != "auto":
        return check_device(explicit)
    forced = os.environ.get(DEVICE_ENV, "").strip()
    return check_device(forced, where=f"${DEVICE_ENV}") if forced else "auto"


def resolve_device(explicit: str | None = None, local_rank: int | None = None):
    """The torch.device of a request (see `requested_device`) for the process of `local_rank` (default: the
    LOCAL_RANK torchrun set, else 0); a request for a GPU that is not there is a DeviceError."""
    import torch

    request = requested_device(explicit)
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if request == "cpu" or (request == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"device '{request}': no CUDA GPU is visible to torch here; accepted: cpu or auto")
    count = torch.cuda.device_count()
    index = int(request.split(":")[1]) if ":" in request else local_rank % count
    if index >= count:
        raise DeviceError(f"device '{request}': this machine has {count} GPU(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def add_device_argument(parser) -> None:
    """``--device`` on a command that runs a model."""
    parser.add_argument("--device", default=None, type=device_arg, metavar="DEVICE",
                        help=f"where models run: {DEVICE_FORMS} (default: the config's device, else "
                             f"${DEVICE_ENV}, else auto: the GPU if one is visible)")


def device_arg(text: str) -> str:
    """argparse type of a --device value."""
    import argparse

    try:
        return check_device(text)
    except DeviceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def autocast(device, amp: str):
    """The mixed-precision context of `amp` ("bf16" | "fp16" | "none") on `device`: reduced precision on a GPU
    only (CPU autocast is slower than float32 here), a disabled context everywhere else."""
    import torch

    if device.type == "cuda" and amp in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
    return torch.autocast(device.type, enabled=False)
