"""va, expr, au: losses against hand-computed values, masking, postprocessing, metrics, thresholds."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import affbench


def np_ccc(x, y):
    return 2 * np.mean((x - x.mean()) * (y - y.mean())) / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def test_va_loss_is_one_minus_ccc_over_valid_rows():
    task = affbench.create("task", "va", output="linear")
    rng = np.random.default_rng(0)
    pred = rng.uniform(-1, 1, (10, 2))
    target = rng.uniform(-1, 1, (10, 2))
    valid = np.ones(10, bool)
    valid[[2, 7]] = False
    target[[2, 7]] = -5.0  # invalid marker rows must not count
    expected = np.mean([1 - np_ccc(pred[valid, j], target[valid, j]) for j in range(2)])
    got = task.loss(torch.tensor(pred), torch.tensor(target), torch.tensor(valid))
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # valid=None derives validity from the -5 marker
    assert task.loss(torch.tensor(pred), torch.tensor(target)).item() == pytest.approx(expected, abs=1e-6)
    # [B,T,2] inputs flatten to rows
    got3 = task.loss(torch.tensor(pred).reshape(2, 5, 2), torch.tensor(target).reshape(2, 5, 2),
                     torch.tensor(valid).reshape(2, 5))
    assert got3.item() == pytest.approx(expected, abs=1e-6)


def test_va_tanh_output_and_postprocess():
    task = affbench.create("task", "va")
    raw = torch.tensor([[3.0, -0.2], [-10.0, 0.0]])
    target = torch.tensor([[0.5, 0.1], [-0.5, 0.3]])
    expected = np.mean([1 - np_ccc(np.tanh(raw[:, j].numpy()), target[:, j].numpy()) for j in range(2)])
    assert task.loss(raw, target).item() == pytest.approx(expected, abs=1e-6)
    lin = affbench.create("task", "va", output="linear")
    np.testing.assert_allclose(lin.postprocess(np.array([[1.7, -3.0], [0.2, 0.4]])), [[1, -1], [0.2, 0.4]],
                               rtol=1e-6)
    assert isinstance(lin.postprocess(np.zeros((1, 2))), np.ndarray)
    assert isinstance(lin.postprocess(torch.zeros(1, 2)), torch.Tensor)
    assert task.probabilities(raw) is None


def test_all_invalid_batch_gives_zero_loss_with_grad():
    for name, target in (("va", torch.full((4, 2), -5.0)), ("expr", torch.full((4, 1), -1.0)),
                         ("au", torch.full((4, 12), -1.0))):
        task = affbench.create("task", name)
        pred = torch.randn(4, task.out_dim, requires_grad=True)
        loss = task.loss(pred, target)
        assert loss.item() == 0.0 and loss.requires_grad
        loss.backward()
        assert (pred.grad == 0).all()


def test_expr_loss_matches_cross_entropy():
    weights = [1.0, 2.0, 1.0, 3.0, 1.0, 1.0, 0.5, 1.0]
    task = affbench.create("task", "expr", label_smoothing=0.1, class_weights=weights)
    pred = torch.randn(6, 8)
    target = torch.tensor([[0], [3], [-1], [7], [6], [3]], dtype=torch.float32)
    keep = target[:, 0] >= 0
    expected = F.cross_entropy(pred[keep], target[keep, 0].long(), weight=torch.tensor(weights),
                               label_smoothing=0.1)
    torch.testing.assert_close(task.loss(pred, target), expected)
    assert task.postprocess(pred).tolist() == pred.argmax(-1).tolist()
    torch.testing.assert_close(task.probabilities(pred).sum(-1), torch.ones(6))
    scores = task.metrics(np.array([0, 3, 1, 7, 6, 2]), target.numpy())
    assert scores["f1"] == pytest.approx(affbench.metrics.expr_f1([0, 3, 7, 6, 2], [0, 3, 7, 6, 3]))
    assert scores["accuracy"] == pytest.approx(4 / 5)


def test_au_loss_pos_weight_and_partial_labels():
    pos_weight = [1.0 + i for i in range(12)]
    task = affbench.create("task", "au", pos_weight=pos_weight)
    torch.manual_seed(0)
    pred = torch.randn(5, 12)
    target = torch.randint(0, 2, (5, 12)).float()
    target[1] = -1.0        # an invalid row
    target[3, 4] = -1.0     # one unlabelled AU
    keep = target >= 0
    per = F.binary_cross_entropy_with_logits(pred, target.clamp(min=0), pos_weight=torch.tensor(pos_weight),
                                             reduction="none")
    valid = torch.tensor([True, False, True, True, True])
    torch.testing.assert_close(task.loss(pred, target, valid), per[keep].mean())
    # Without `valid`, a row holding any -1 is invalid as a whole (metrics need all 12 labels).
    torch.testing.assert_close(task.loss(pred, target), per[[0, 2, 4]].mean())


def test_au_thresholds_postprocess_and_tuning():
    task = affbench.create("task", "au", threshold=0.5)
    logits = torch.tensor([[0.0, -0.1] + [2.0] * 10])
    assert task.postprocess(logits).tolist() == [[1, 0] + [1] * 10]  # sigmoid(0) = 0.5 counts as positive
    task.thresholds = [0.6] + [0.5] * 11
    assert task.postprocess(logits)[0, 0].item() == 0
    with pytest.raises(ValueError, match="12 numbers in \\(0, 1\\)"):
        task.thresholds = [0.5] * 3
    with pytest.raises(ValueError, match="threshold"):
        affbench.create("task", "au", threshold=1.5)
    # Tuning picks, per AU, the grid threshold with the best F1: AU1 positives have prob 0.3, negatives 0.1.
    prob = np.full((4, 12), 0.9)
    target = np.ones((4, 12))
    prob[:, 0] = [0.3, 0.3, 0.1, 0.1]
    target[:, 0] = [1, 1, 0, 0]
    best = task.tune_thresholds(prob, target, grid=[0.2, 0.5])
    assert best[0] == 0.2 and task.thresholds[0].item() == pytest.approx(0.2)
    scores = task.metrics(task.postprocess(torch.logit(torch.tensor(prob))).numpy(), target)
    assert scores["f1"] == 1.0 and scores["f1_AU1"] == 1.0


def test_task_bad_options_and_shapes():
    with pytest.raises(ValueError, match="output='sigmoid'.*'tanh', 'linear'"):
        affbench.create("task", "va", output="sigmoid")
    with pytest.raises(ValueError, match="class_weights must be 8"):
        affbench.create("task", "expr", class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="label_smoothing"):
        affbench.create("task", "expr", label_smoothing=1.0)
    with pytest.raises(ValueError, match="pos_weight must be 12"):
        affbench.create("task", "au", pos_weight=[1.0])
    va = affbench.create("task", "va")
    with pytest.raises(ValueError, match="2 outputs"):
        va.loss(torch.zeros(3, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="target must have shape"):
        va.loss(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="valid must have shape"):
        va.loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.ones(2, dtype=torch.bool))
    expr = affbench.create("task", "expr")
    with pytest.raises(ValueError, match="0..7"):
        expr.loss(torch.zeros(2, 8), torch.tensor([[1.0], [9.0]]))


def test_task_label_names_and_metrics_on_valid_rows():
    va = affbench.create("task", "va")
    assert va.label_names == ("valence", "arousal") and va.primary_metric == "mean"
    assert affbench.create("task", "expr").label_names[0] == "Neutral"
    assert affbench.create("task", "au").label_names[-1] == "AU26"
    values = np.array([[0.1, 0.2], [0.5, -0.3], [0.9, 0.9], [0.0, 0.0]])
    target = np.array([[0.2, 0.1], [0.4, -0.2], [-5, -5], [0.1, 0.1]])
    scores = va.metrics(values, target)
    keep = [0, 1, 3]
    assert scores["valence"] == pytest.approx(np_ccc(values[keep, 0], target[keep, 0]))
    assert scores["mean"] == pytest.approx((scores["valence"] + scores["arousal"]) / 2)
    with pytest.raises(ValueError, match="no valid rows"):
        va.metrics(values[2:3], target[2:3])
