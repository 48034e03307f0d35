"""Weight gradients of depthwise convolutions whose kernel covers the whole image, summed tap by tap on the CPU.

Where oneDNN has no depthwise kernel for a shape (on AVX2 CPUs: a kernel at least as large as its input, as in
the last blocks of an EfficientNet on 64-px images), PyTorch computes the weight gradient with one small GEMM
per channel: about 45 ms for a 1152-channel 5x5 layer at 2x2 whose arithmetic is a fraction of a millisecond.
Those layers took most of a stage-1 step on the demo's 2-core CPU. Summing the k*k taps directly,
grad_w[c, i, j] = sum over (n, y, x) of grad_out[n, c, y, x] * padded_input[n, c, s*y + i, s*x + j],
takes a few milliseconds. The forward pass and the input gradient are PyTorch's own, bit for bit; the weight
gradient agrees with PyTorch's to float rounding (another summation order).

`tapwise_depthwise_grads(model)` routes the qualifying convolutions of `model` through this for the duration of
a block, on the CPU only; every other convolution, and every call without gradients, runs as before.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


def _tapwise_weight_grad(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                         stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """grad of a depthwise convolution's weight [C, 1, kh, kw], one multiply-and-sum per kernel tap."""
    kh, kw = weight.shape[-2:]
    (sh, sw), (ph, pw) = stride, padding
    out_h, out_w = grad_out.shape[-2:]
    padded = F.pad(x, (pw, pw, ph, ph))
    taps = [(grad_out * padded[:, :, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw]).sum((0, 2, 3))
            for i in range(kh) for j in range(kw)]
    return torch.stack(taps, dim=1).view(weight.shape[0], 1, kh, kw).to(weight.dtype)


class _TapwiseDepthwiseConv(torch.autograd.Function):
    """A depthwise conv2d (dilation 1, zero padding) whose weight gradient is `_tapwise_weight_grad`."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):  # noqa: ANN001, ANN205 (autograd's signature)
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_b = grad_w = None
        if need_x or need_b:
            grad_x, _, grad_b = torch.ops.aten.convolution_backward(
                grad_out, x, weight, [weight.shape[0]] if ctx.has_bias else None, ctx.stride, ctx.padding,
                (1, 1), False, (0, 0), weight.shape[0], (need_x, False, need_b and ctx.has_bias))
        if need_w:
            grad_w = _tapwise_weight_grad(grad_out, x, weight, ctx.stride, ctx.padding)
        return grad_x, grad_w, grad_b, None, None


def qualifies(module: nn.Module) -> bool:
    """Whether `module` is a plain depthwise nn.Conv2d this route can stand in for."""
    return (isinstance(module, nn.Conv2d) and type(module)._conv_forward is nn.Conv2d._conv_forward
            and module.groups == module.in_channels == module.out_channels and module.groups > 1
            and module.padding_mode == "zeros" and isinstance(module.padding, tuple)
            and tuple(module.dilation) == (1, 1))


def _conv_forward(self: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    kh, kw = self.kernel_size
    if (x.device.type == "cpu" and weight.requires_grad and torch.is_grad_enabled()
            and x.shape[-2] <= kh and x.shape[-1] <= kw):
        return _TapwiseDepthwiseConv.apply(x, weight, bias, tuple(self.stride), tuple(self.padding))
    return nn.Conv2d._conv_forward(self, x, weight, bias)


@contextlib.contextmanager
def tapwise_depthwise_grads(model: nn.Module) -> Iterator[int]:
    """Within the block, `model`'s qualifying depthwise convolutions compute their weight gradient tap by tap
    when the kernel covers the input on the CPU; yields how many convolutions were routed. Restored on exit."""
    routed = [m for m in model.modules() if qualifies(m)]
    for module in routed:
        module._conv_forward = types.MethodType(_conv_forward, module)
    try:
        yield len(routed)
    finally:
        for module in routed:
            del module._conv_forward
