"""Registry-driven tests: every registered backbone, temporal block and task is built from its factory's
``test_options`` (no options when it has none) and run forward and backward on CPU, so a new plugin is covered
the moment it registers."""

import pytest
import torch

import affbench
from affbench.core.registry import get_registry
from affbench.model import Preprocess

TEMPORAL_IN_DIM = 8


def _ids(kind):
    return [c.name for c in affbench.list_components(kind)]


def build(kind, name, **extra):
    component = get_registry().get(kind, name)
    options = dict(getattr(component.factory, "test_options", {}) or {})
    options.update(extra)
    return affbench.create(kind, name, **options)


def temporal_block(name):
    component = get_registry().get("temporal", name)
    options = dict(getattr(component.factory, "test_options", {}) or {})
    in_dim = options.pop("in_dim", TEMPORAL_IN_DIM)
    return affbench.create("temporal", name, in_dim=in_dim, **options), in_dim


@pytest.mark.parametrize("name", _ids("backbone"))
def test_backbone_contract_forward_backward(name):
    torch.manual_seed(0)
    backbone = build("backbone", name)
    assert isinstance(backbone, torch.nn.Module)
    assert isinstance(backbone.out_dim, int) and backbone.out_dim > 0
    assert isinstance(backbone.preprocess, Preprocess)
    assert isinstance(backbone.weights_id, str) and backbone.weights_id
    size = backbone.preprocess.image_size
    images = torch.randn(2, 3, size, size, requires_grad=True)
    out = backbone(images)
    assert out.shape == (2, backbone.out_dim)
    out.square().mean().backward()
    grads = [p.grad for p in backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", _ids("temporal"))
def test_temporal_contract_forward_backward(name):
    torch.manual_seed(0)
    block, in_dim = temporal_block(name)
    assert isinstance(block.out_dim, int) and block.out_dim > 0
    x = torch.randn(2, 7, in_dim, requires_grad=True)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    out = block(x, mask)
    assert out.shape == (2, 7, block.out_dim)
    assert block(x, None).shape == (2, 7, block.out_dim)
    out[mask].square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", _ids("temporal"))
def test_temporal_padding_does_not_change_valid_steps(name):
    """Garbage (even NaN) at padded steps, at the end or in the middle, leaves valid outputs unchanged."""
    torch.manual_seed(0)
    block, in_dim = temporal_block(name)
    block.eval()
    t = 12
    x = torch.randn(3, t, in_dim)
    mask = torch.ones(3, t, dtype=torch.bool)
    mask[1, 9:] = False          # end padding
    mask[2, 3:5] = False         # a gap (missing faces)
    mask[2, 10:] = False
    with torch.no_grad():
        a = x.clone()
        a[~mask] = 1e3
        b = x.clone()
        b[~mask] = float("nan")
        out_a, out_b = block(a, mask), block(b, mask)
        torch.testing.assert_close(out_a[mask], out_b[mask], atol=1e-5, rtol=1e-5)
        assert torch.isfinite(out_b[mask]).all()
        # End padding is equivalent to the unpadded, shorter sequence.
        alone = block(x[1:2, :9], None)
        torch.testing.assert_close(out_a[1, :9], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", _ids("temporal"))
def test_temporal_rejects_wrong_shapes(name):
    block, in_dim = temporal_block(name)
    with pytest.raises(ValueError, match=f"D={in_dim}"):
        block(torch.randn(2, 5, in_dim + 1))
    with pytest.raises(ValueError, match="mask"):
        block(torch.randn(2, 5, in_dim), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        block(torch.randn(2, 5, in_dim), torch.ones(2, 5))
    with pytest.raises(ValueError):
        block(torch.randn(5, in_dim))


@pytest.mark.parametrize("name", _ids("task"))
def test_task_contract_loss_backward_postprocess(name):
    torch.manual_seed(0)
    task = build("task", name)
    assert len(task.label_names) >= task.label_dim
    assert task.primary_metric
    pred = torch.randn(2, 6, task.out_dim, requires_grad=True)
    if task.label_dim == 1:
        target = torch.randint(0, task.out_dim, (2, 6, 1)).float()
    elif name == "va":
        target = torch.rand(2, 6, task.label_dim) * 2 - 1
    else:
        target = torch.randint(0, 2, (2, 6, task.label_dim)).float()
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[0, :2] = False
    loss = task.loss(pred, target, valid)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert pred.grad[valid].abs().sum() > 0
    assert pred.grad[~valid].abs().sum() == 0  # invalid rows carry no loss
    # An all-invalid batch: zero loss that still backpropagates.
    pred2 = torch.randn(3, task.out_dim, requires_grad=True)
    zero = task.loss(pred2, target[0, :3], torch.zeros(3, dtype=torch.bool))
    assert zero.item() == 0.0
    zero.backward()
    values = task.postprocess(pred.detach().reshape(-1, task.out_dim))
    flat_target = target.reshape(-1, task.label_dim)
    values = values.reshape(len(flat_target), -1)
    scores = task.metrics(values, flat_target)
    assert task.primary_metric in scores


@pytest.mark.parametrize("kind", ["backbone", "temporal", "task"])
def test_every_component_rejects_unknown_options(kind):
    for component in affbench.list_components(kind):
        extra = {"in_dim": TEMPORAL_IN_DIM} if kind == "temporal" else {}
        with pytest.raises(affbench.ComponentOptionError, match="no_such_option"):
            affbench.create(kind, component.name, no_such_option=1, **extra)


def test_metrics_registered_as_functions():
    from affbench import metrics

    for name in ("ccc", "va_score", "expr_f1", "au_f1"):
        fn = affbench.create("metric", name)
        assert fn is getattr(metrics, name)


def test_builtins_are_listed():
    names = {(c.kind, c.name) for kind in affbench.KINDS for c in affbench.list_components(kind)}
    for pair in [("backbone", "clip"), ("backbone", "timm"), ("temporal", "tcn"), ("temporal", "transformer"),
                 ("temporal", "none"), ("task", "va"), ("task", "expr"), ("task", "au"), ("metric", "ccc"),
                 ("metric", "va_score"), ("metric", "expr_f1"), ("metric", "au_f1")]:
        assert pair in names
