"""Options that switch affbench to the authors' earlier code, one difference at a time (README: Fidelity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import affbench
from affbench.core.config import ConfigError, load_config
from affbench.model import MLPHead


def _ccc_terms(x: np.ndarray, y: np.ndarray, ddof: int) -> np.ndarray:
    mx, my = x.mean(0), y.mean(0)
    cov = ((x - mx) * (y - my)).sum(0) / (len(x) - ddof)
    return 1.0 - 2.0 * cov / (x.var(0, ddof=ddof) + y.var(0, ddof=ddof) + (mx - my) ** 2)


@pytest.mark.parametrize(("reduction", "statistics", "ddof"),
                         [("mean", "population", 0), ("sum", "sample", 1), ("sum", "population", 0)])
def test_va_loss_reduction_and_statistics_match_a_numpy_reference(reduction, statistics, ddof):
    task = affbench.create("task", "va", output="linear", loss_reduction=reduction, loss_statistics=statistics,
                           eps=0.0)
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(40, 2)).astype(np.float32)
    target = np.clip(rng.normal(size=(40, 2)), -1, 1).astype(np.float32)
    valid = np.ones(40, dtype=bool)
    valid[::7] = False
    loss = float(task.loss(torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(valid)))
    terms = _ccc_terms(pred[valid].astype(np.float64), target[valid].astype(np.float64), ddof)
    expected = terms.sum() if reduction == "sum" else terms.mean()
    assert loss == pytest.approx(expected, rel=1e-5)


def test_sample_statistics_give_a_different_loss_than_population_statistics():
    pred, target = torch.randn(10, 2), torch.rand(10, 2) * 2 - 1
    population = affbench.create("task", "va", output="linear").loss(pred, target)
    sample = affbench.create("task", "va", output="linear", loss_statistics="sample").loss(pred, target)
    assert float(population) != pytest.approx(float(sample))


def test_head_without_activation_is_affine_in_eval_mode():
    torch.manual_seed(0)
    head = MLPHead(6, 3, hidden=5, dropout=0.0, norm="batch", activation="none").eval()
    a, b = torch.randn(4, 6), torch.randn(4, 6)
    zero = torch.zeros(4, 6)
    with torch.no_grad():
        gap = head(a + b) - head(a) - head(b) + head(zero)
    assert torch.allclose(gap, torch.zeros_like(gap), atol=1e-5)
    relu = MLPHead(6, 3, hidden=5, dropout=0.0, norm="batch", activation="relu").eval()
    relu.load_state_dict(head.state_dict())
    with torch.no_grad():
        relu_gap = relu(a + b) - relu(a) - relu(b) + relu(zero)
    assert relu_gap.abs().max() > 1e-3  # the default head is not affine: the option changes the model


def test_head_activation_is_a_checked_config_key(tmp_path):
    path = tmp_path / "row.yaml"
    path.write_text("task: va\nmodel: {head: {activation: tanh}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="activation"):
        load_config(path)
