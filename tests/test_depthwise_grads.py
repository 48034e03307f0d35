"""Tap-by-tap depthwise weight gradients: the same forward and input gradient as PyTorch bit for bit, the same
weight gradient to float rounding, only where the kernel covers the input, and stage 1 uses them."""

from __future__ import annotations

import pytest
import torch
from stage_fixtures import TinyNet, tiny_config
from torch import nn

import affbench.stages.depthwise_grads as dw
import affbench.stages.finetune as stage1

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures

# (channels, input height, width, kernel, stride, bias): the demo backbone's covering layers, a strided one,
# a non-square input, a biased one
COVERING = [(16, 2, 2, 5, 1, False), (12, 4, 4, 5, 2, False), (8, 2, 3, 3, 1, False), (6, 4, 4, 5, 1, True)]


def _grads(conv: nn.Conv2d, x: torch.Tensor, grad_out: torch.Tensor):
    x = x.detach().clone().requires_grad_()
    conv.zero_grad(set_to_none=True)
    y = conv(x)
    y.backward(grad_out)
    return y.detach(), x.grad, conv.weight.grad, None if conv.bias is None else conv.bias.grad


def _count_routed_calls(monkeypatch) -> list:
    """The input shapes of every call that takes the tap-by-tap route from now on."""
    calls = []
    real = dw._TapwiseDepthwiseConv.apply
    monkeypatch.setattr(dw._TapwiseDepthwiseConv, "apply", lambda *a: calls.append(a[0].shape) or real(*a))
    return calls


def _case(channels, height, width, kernel, stride, bias, channels_last):
    torch.manual_seed(0)
    conv = nn.Conv2d(channels, channels, kernel, stride=stride, padding=kernel // 2, groups=channels, bias=bias)
    x = torch.randn(5, channels, height, width)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn_like(conv(x))
    return conv, x, grad_out


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("case", COVERING, ids=lambda c: "c{}-{}x{}-k{}-s{}{}".format(*c[:5], "-bias" * c[5]))
def test_a_covering_kernel_matches_pytorch(case, channels_last, monkeypatch):
    conv, x, grad_out = _case(*case, channels_last)
    ref = _grads(conv, x, grad_out)
    calls = _count_routed_calls(monkeypatch)
    with dw.tapwise_depthwise_grads(conv) as routed:
        got = _grads(conv, x, grad_out)
    assert routed == 1 and len(calls) == 1
    assert torch.equal(got[0], ref[0]), "forward is PyTorch's own"
    assert torch.equal(got[1], ref[1]), "input gradient is PyTorch's own"
    torch.testing.assert_close(got[2], ref[2], rtol=1e-5, atol=1e-6)
    assert not torch.equal(got[2], torch.zeros_like(got[2]))
    if case[5]:
        assert torch.equal(got[3], ref[3])


def test_a_non_square_kernel_stride_and_padding_match_pytorch(monkeypatch):
    calls = _count_routed_calls(monkeypatch)
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 6, (3, 5), stride=(2, 1), padding=(1, 2), groups=6, bias=False)
    x = torch.randn(3, 6, 3, 4)
    grad_out = torch.randn_like(conv(x))
    ref = _grads(conv, x, grad_out)
    with dw.tapwise_depthwise_grads(conv):
        got = _grads(conv, x, grad_out)
    assert len(calls) == 1  # a 3x4 input under a 3x5 kernel
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    torch.testing.assert_close(got[2], ref[2], rtol=1e-5, atol=1e-6)


def test_weight_gradient_against_a_hand_computed_sum():
    # One channel, 2x2 input, 3x3 kernel, padding 1: grad_w[i, j] = sum over outputs of g[y, x] * xpad[y+i, x+j].
    conv = nn.Conv2d(2, 2, 3, padding=1, groups=2, bias=False)
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).expand(1, 2, 2, 2).contiguous()
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0]]).expand(1, 2, 2, 2).contiguous()
    padded = torch.nn.functional.pad(x[0, 0], (1, 1, 1, 1))
    expected = torch.tensor([[float((g[0, 0] * padded[i:i + 2, j:j + 2]).sum()) for j in range(3)] for i in range(3)])
    with dw.tapwise_depthwise_grads(conv):
        conv(x).backward(g)
    assert torch.equal(conv.weight.grad[0, 0], expected) and torch.equal(conv.weight.grad[1, 0], expected)


def test_only_covering_kernels_with_gradients_take_the_route(monkeypatch):
    calls = _count_routed_calls(monkeypatch)
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=4)
    with dw.tapwise_depthwise_grads(conv):
        conv(torch.randn(2, 4, 8, 8)).sum().backward()  # 8x8 input, 3x3 kernel: PyTorch's kernel is fast there
        with torch.no_grad():
            conv(torch.randn(2, 4, 3, 3))
        conv.weight.requires_grad_(False)
        conv(torch.randn(2, 4, 3, 3, requires_grad=True)).sum().backward()
    assert calls == []


@pytest.mark.parametrize("conv", [
    nn.Conv2d(4, 8, 3, padding=1, groups=4),  # grouped, not depthwise
    nn.Conv2d(4, 4, 3, padding=1),  # dense
    nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4),
    nn.Conv2d(4, 4, 3, padding="same", groups=4),
    nn.Conv2d(4, 4, 3, padding=1, groups=4, padding_mode="reflect"),
], ids=["grouped", "dense", "dilated", "same-padding", "reflect-padding"])
def test_other_convolutions_are_left_alone(conv):
    with dw.tapwise_depthwise_grads(conv) as routed:
        assert routed == 0 and "_conv_forward" not in vars(conv)


def test_the_route_is_removed_on_exit_even_after_an_error():
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=4)
    with pytest.raises(RuntimeError, match="boom"), dw.tapwise_depthwise_grads(conv):
        assert "_conv_forward" in vars(conv)
        raise RuntimeError("boom")
    assert "_conv_forward" not in vars(conv)


class _DepthwiseTinyNet(TinyNet):
    """The tiny backbone with a depthwise 5x5 layer on a 2x2 map (the covering case)."""

    def __init__(self) -> None:
        super().__init__()
        channels = self.conv.out_channels
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.dw = nn.Conv2d(channels, channels, 5, padding=2, groups=channels, bias=False)
        self.weights_id = "random:tinynet-dw:seed0"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dw(self.pool(torch.relu(self.conv(images)))).mean(dim=(2, 3)))


def test_stage_one_trains_covering_depthwise_layers_tap_by_tap(home, synth_root, monkeypatch):
    built = []
    monkeypatch.setattr(stage1, "build_backbone", lambda spec: built.append(_DepthwiseTinyNet()) or built[-1])
    calls = _count_routed_calls(monkeypatch)
    stage1.finetune(tiny_config(synth_root), fold=0, quiet=True)
    assert calls, "stage 1 must route the covering depthwise layer"
    assert "_conv_forward" not in vars(built[-1].dw), "the route ends with the fine-tune"
