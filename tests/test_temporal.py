"""tcn, transformer and none: structure, padding modes, option checks."""

import pytest
import torch

import affbench


def test_tcn_paper_structure():
    tcn = affbench.create("temporal", "tcn", in_dim=512, channels=[768, 256, 128], kernel_size=5,
                          weight_norm=True)
    assert tcn.out_dim == 128
    assert [b.conv1.conv.dilation[0] for b in tcn.blocks] == [1, 2, 4]
    assert all(hasattr(b.conv1.conv, "parametrizations") for b in tcn.blocks)  # weight norm
    assert isinstance(tcn.blocks[0].act1, torch.nn.PReLU)
    plain = affbench.create("temporal", "tcn", in_dim=4, channels=[4], weight_norm=False)
    assert not hasattr(plain.blocks[0].conv1.conv, "parametrizations")
    assert isinstance(plain.blocks[0].residual, torch.nn.Identity)


@pytest.mark.parametrize("padding", ["centered", "causal"])
def test_tcn_receptive_field_direction(padding):
    """Causal: step t sees nothing after t. Centred: it sees both sides."""
    torch.manual_seed(0)
    tcn = affbench.create("temporal", "tcn", in_dim=3, channels=[4, 4], kernel_size=3, dropout=0.0,
                          padding=padding).eval()
    x = torch.randn(1, 20, 3)
    y = x.clone()
    y[0, 12:] += 5.0  # change the future of step 10
    with torch.no_grad():
        a, b = tcn(x), tcn(y)
    same_past = torch.allclose(a[0, :12], b[0, :12])
    assert same_past == (padding == "causal")
    assert not torch.allclose(a[0, 12:], b[0, 12:])


def test_tcn_bad_options():
    with pytest.raises(ValueError, match="padding='same'.*'centered', 'causal'"):
        affbench.create("temporal", "tcn", in_dim=4, padding="same")
    with pytest.raises(ValueError, match="activation='tanh'"):
        affbench.create("temporal", "tcn", in_dim=4, activation="tanh")
    with pytest.raises(ValueError, match="channels"):
        affbench.create("temporal", "tcn", in_dim=4, channels=[])
    with pytest.raises(ValueError, match=r"channels\[1\]"):
        affbench.create("temporal", "tcn", in_dim=4, channels=[4, 0])
    with pytest.raises(ValueError, match="dropout"):
        affbench.create("temporal", "tcn", in_dim=4, dropout=1.5)
    with pytest.raises(ValueError, match="kernel_size"):
        affbench.create("temporal", "tcn", in_dim=4, kernel_size=0)


def test_transformer_structure_and_positions():
    block = affbench.create("temporal", "transformer", in_dim=6, d_model=8, heads=2, layers=3, ff_dim=16,
                            dropout=0.0)
    assert block.out_dim == 8 and len(block.encoder.layers) == 3
    assert block.encoder.layers[0].self_attn.num_heads == 2
    assert block.encoder.layers[0].linear1.out_features == 16
    block.eval()
    # Without positions attention is permutation-equivariant; with them it is not.
    x = torch.randn(1, 5, 6)
    perm = torch.tensor([4, 2, 0, 1, 3])
    with torch.no_grad():
        torch.testing.assert_close(block(x)[:, perm], block(x[:, perm]), atol=1e-5, rtol=1e-5)
    for positions in ("sinusoidal", "learned"):
        torch.manual_seed(0)
        pos = affbench.create("temporal", "transformer", in_dim=6, d_model=8, heads=2, layers=1, ff_dim=16,
                              dropout=0.0, positions=positions).eval()
        with torch.no_grad():
            assert not torch.allclose(pos(x)[:, perm], pos(x[:, perm]), atol=1e-4)


def test_transformer_limits_and_empty_windows():
    block = affbench.create("temporal", "transformer", in_dim=4, d_model=8, heads=2, layers=1, ff_dim=8,
                            positions="learned", max_len=6)
    with pytest.raises(ValueError, match="max_len=6"):
        block(torch.randn(1, 7, 4))
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, :3] = True  # second window is all padding: no NaN anywhere
    out = block(torch.randn(2, 5, 4), mask)
    assert torch.isfinite(out).all() and (out[1] == 0).all()


def test_transformer_bad_options():
    with pytest.raises(ValueError, match="divisible"):
        affbench.create("temporal", "transformer", in_dim=4, d_model=10, heads=4)
    with pytest.raises(ValueError, match="positions='rope'.*'none', 'sinusoidal', 'learned'"):
        affbench.create("temporal", "transformer", in_dim=4, positions="rope")
    with pytest.raises(ValueError, match="layers"):
        affbench.create("temporal", "transformer", in_dim=4, layers=0)
    with pytest.raises(affbench.ComponentOptionError, match="needs option"):
        affbench.create("temporal", "transformer")


def test_none_is_identity():
    block = affbench.create("temporal", "none", in_dim=5)
    x = torch.randn(2, 3, 5)
    assert block.out_dim == 5 and block(x) is x
