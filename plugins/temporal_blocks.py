"""The built-in temporal blocks: a dilated residual TCN, a Transformer encoder, and the identity.

Every block maps x[B,T,D] with mask[B,T] (True = real step) to [B,T,out_dim], and padded steps never change the
outputs at real steps: the TCN zeroes padded steps before every convolution (a centred kernel reads future
steps, so padding would otherwise leak in from the right), the Transformer excludes them as attention keys.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from affbench.model import check_choice, check_sequence

PADDINGS = ("centered", "causal")
ACTIVATIONS = ("prelu", "relu", "gelu")
POSITIONS = ("none", "sinusoidal", "learned")


def _zero_padded(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """x[B,C,T] with padded steps set to exactly 0 (torch.where, so NaN/inf padding cannot leak either)."""
    if mask is None:
        return x
    return torch.where(mask[:, None, :], x, torch.zeros((), dtype=x.dtype, device=x.device))


def _check_dropout(dropout: float, where: str) -> float:
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"{where}: dropout must be in [0, 1), got {dropout}")
    return float(dropout)


def _positive_int(value: object, option: str, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{where}: {option} must be a positive int, got {value!r}")
    return value


def _activation(name: str, channels: int) -> nn.Module:
    return {"prelu": lambda: nn.PReLU(channels), "relu": nn.ReLU, "gelu": nn.GELU}[name]()


class DilatedConv1d(nn.Module):
    """A 1-D convolution over time with explicit centred or causal zero padding."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dilation: int, padding: str,
                 weight_norm: bool) -> None:
        super().__init__()
        conv = nn.Conv1d(in_ch, out_ch, kernel_size, dilation=dilation)
        self.conv = nn.utils.parametrizations.weight_norm(conv) if weight_norm else conv
        total = (kernel_size - 1) * dilation
        self.pad = (total, 0) if padding == "causal" else (total // 2, total - total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


class TemporalResidualBlock(nn.Module):
    """conv -> act -> dropout -> conv -> act -> dropout, plus a (1x1-projected) residual, then act."""

    def __init__(self, in_ch: int, out_ch: int, *, kernel_size: int, dilation: int, dropout: float,
                 padding: str, weight_norm: bool, activation: str) -> None:
        super().__init__()
        self.conv1 = DilatedConv1d(in_ch, out_ch, kernel_size, dilation, padding, weight_norm)
        self.act1 = _activation(activation, out_ch)
        self.conv2 = DilatedConv1d(out_ch, out_ch, kernel_size, dilation, padding, weight_norm)
        self.act2 = _activation(activation, out_ch)
        self.drop = nn.Dropout(dropout)
        self.residual = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.out_act = _activation(activation, out_ch)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = _zero_padded(x, mask)
        h = self.drop(self.act1(self.conv1(x)))
        h = self.drop(self.act2(self.conv2(_zero_padded(h, mask))))
        return self.out_act(h + self.residual(x))


class TemporalConvNet(nn.Module):
    """Stacked residual blocks of dilated 1-D convolutions; level i uses dilation 2**i."""

    def __init__(self, in_dim: int, *, channels: Sequence[int] = (768, 256, 128), kernel_size: int = 5,
                 dropout: float = 0.3, weight_norm: bool = True, padding: str = "centered",
                 activation: str = "prelu") -> None:
        super().__init__()
        where = "temporal 'tcn'"
        self.in_dim = _positive_int(in_dim, "in_dim", where)
        if isinstance(channels, int | str) or not isinstance(channels, Sequence) or len(channels) == 0:
            raise ValueError(f"{where}: channels must be a non-empty list of positive ints, got {channels!r}")
        channels = [_positive_int(c, f"channels[{i}]", where) for i, c in enumerate(channels)]
        _positive_int(kernel_size, "kernel_size", where)
        check_choice(padding, "padding", PADDINGS, where)
        check_choice(activation, "activation", ACTIVATIONS, where)
        _check_dropout(dropout, where)
        self.out_dim = channels[-1]
        self.blocks = nn.ModuleList()
        prev = self.in_dim
        for level, ch in enumerate(channels):
            self.blocks.append(TemporalResidualBlock(
                prev, ch, kernel_size=kernel_size, dilation=2 ** level, dropout=dropout, padding=padding,
                weight_norm=bool(weight_norm), activation=activation))
            prev = ch

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x[B,T,in_dim], mask[B,T] -> [B,T,out_dim]."""
        mask = check_sequence(x, mask, self.in_dim, "temporal 'tcn'")
        h = x.transpose(1, 2)
        for block in self.blocks:
            h = block(h, mask)
        return _zero_padded(h, mask).transpose(1, 2)


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """The fixed sine/cosine position table [length, dim] of "Attention is all you need"."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class TemporalTransformer(nn.Module):
    """Linear projection to d_model (a 1x1 convolution over time), optional positions, Transformer encoder."""

    def __init__(self, in_dim: int, *, d_model: int = 512, heads: int = 4, layers: int = 8, ff_dim: int = 512,
                 dropout: float = 0.3, positions: str = "none", max_len: int = 1024,
                 activation: str = "relu", norm_first: bool = False) -> None:
        super().__init__()
        where = "temporal 'transformer'"
        self.in_dim = _positive_int(in_dim, "in_dim", where)
        for option, value in (("d_model", d_model), ("heads", heads), ("layers", layers), ("ff_dim", ff_dim),
                              ("max_len", max_len)):
            _positive_int(value, option, where)
        if d_model % heads:
            raise ValueError(f"{where}: d_model ({d_model}) must be divisible by heads ({heads})")
        check_choice(positions, "positions", POSITIONS, where)
        check_choice(activation, "activation", ("relu", "gelu"), where)
        _check_dropout(dropout, where)
        self.out_dim = d_model
        self.positions = positions
        self.max_len = max_len
        self.project = nn.Linear(in_dim, d_model) if in_dim != d_model else nn.Identity()
        self.position_table = nn.Parameter(torch.zeros(max_len, d_model)) if positions == "learned" else None
        if self.position_table is not None:
            nn.init.normal_(self.position_table, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff_dim, dropout, activation=activation,
                                           batch_first=True, norm_first=norm_first)
        # No nested-tensor fast path: it zeroes padded outputs in eval mode only; forward() zeroes them in
        # both modes, so training and evaluation behave alike.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x[B,T,in_dim], mask[B,T] -> [B,T,d_model]; padded steps are excluded as attention keys."""
        where = "temporal 'transformer'"
        mask = check_sequence(x, mask, self.in_dim, where)
        t = x.shape[1]
        if mask is not None:
            x = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        h = self.project(x)
        if self.positions == "sinusoidal":
            h = h + sinusoidal_positions(t, h.shape[-1], h.device).to(h.dtype)
        elif self.positions == "learned":
            if t > self.max_len:
                raise ValueError(f"{where}: sequence length {t} exceeds max_len={self.max_len} of the learned "
                                 f"positions; raise max_len")
            h = h + self.position_table[:t].to(h.dtype)
        key_padding = None
        if mask is not None:
            # A window with no real step would make every attention row -inf (NaN): let it attend to its
            # padding; its outputs are masked out downstream anyway.
            key_padding = ~mask & mask.any(dim=1, keepdim=True)
        h = self.encoder(h, src_key_padding_mask=key_padding)
        if mask is not None:
            h = torch.where(mask[..., None], h, torch.zeros((), dtype=h.dtype, device=h.device))
        return h


class TemporalIdentity(nn.Module):
    """No temporal modelling: features pass through unchanged (per-frame baseline)."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.in_dim = _positive_int(in_dim, "in_dim", "temporal 'none'")
        self.out_dim = self.in_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x[B,T,D] -> x."""
        check_sequence(x, mask, self.in_dim, "temporal 'none'")
        return x
