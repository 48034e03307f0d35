"""Built-in temporal blocks: ``tcn``, ``transformer``, ``none``.

Registration only: the factories import torch and the implementations (affbench_plugins.temporal_blocks) when
called, so ``affbench list`` stays fast. Each factory carries ``test_options``: small options the
registry-driven tests build it with.
"""

from __future__ import annotations

from collections.abc import Sequence

from affbench import hookimpl


def tcn(in_dim: int, *, channels: Sequence[int] = (768, 256, 128), kernel_size: int = 5, dropout: float = 0.3,
        weight_norm: bool = True, padding: str = "centered", activation: str = "prelu"):
    """Residual dilated 1-D convolutions (dilation 2**level); centred or causal padding."""
    from affbench_plugins.temporal_blocks import TemporalConvNet

    return TemporalConvNet(in_dim, channels=channels, kernel_size=kernel_size, dropout=dropout,
                           weight_norm=weight_norm, padding=padding, activation=activation)


tcn.test_options = {"channels": [8, 6], "kernel_size": 3, "dropout": 0.1}


def transformer(in_dim: int, *, d_model: int = 512, heads: int = 4, layers: int = 8, ff_dim: int = 512,
                dropout: float = 0.3, positions: str = "none", max_len: int = 1024, activation: str = "relu",
                norm_first: bool = False):
    """Linear projection -> Transformer encoder with key-padding mask; optional positions."""
    from affbench_plugins.temporal_blocks import TemporalTransformer

    return TemporalTransformer(in_dim, d_model=d_model, heads=heads, layers=layers, ff_dim=ff_dim,
                               dropout=dropout, positions=positions, max_len=max_len, activation=activation,
                               norm_first=norm_first)


transformer.test_options = {"d_model": 8, "heads": 2, "layers": 2, "ff_dim": 16, "dropout": 0.1,
                            "positions": "sinusoidal"}


def none(in_dim: int):
    """Identity: no temporal modelling (per-frame predictions)."""
    from affbench_plugins.temporal_blocks import TemporalIdentity

    return TemporalIdentity(in_dim)


none.test_options = {}


@hookimpl
def affbench_register_temporal(register):
    register("tcn", tcn)
    register("transformer", transformer)
    register("none", none)
