"""Several tasks' labels in one row: the merge of per-task records and the masked multi-task loss."""

from __future__ import annotations

import numpy as np
import torch

import affbench
from affbench.data.records import VideoRecord
from affbench.stages.multitask_labels import MultiTaskLabels


def _labels() -> MultiTaskLabels:
    return MultiTaskLabels([affbench.create("task", name) for name in ("va", "expr", "au")])


def _record(video: str, n: int, labels: np.ndarray, valid: np.ndarray | None = None) -> VideoRecord:
    return VideoRecord(video, video, [f"{video}/{i + 1:05d}.jpg" for i in range(n)], labels.astype(np.float32),
                       np.ones(n, dtype=bool) if valid is None else valid)


def test_merge_lays_out_each_tasks_labels_and_usability():
    layout = _labels()
    va = _record("a", 3, np.array([[0.1, 0.2], [0.3, 0.4], [-5, -5]]), np.array([True, True, False]))
    expr = _record("a", 4, np.array([[1], [2], [3], [4]]))
    au_only = _record("b", 2, np.ones((2, 12)))
    merged = {r.video: r for r in layout.merge([{"a": va}, {"a": expr}, {"b": au_only}])}
    a, b = merged["a"], merged["b"]
    assert layout.width == 2 + 1 + 12 + 3 and a.labels.shape == (4, layout.width)
    np.testing.assert_allclose(a.labels[:, :2], [[0.1, 0.2], [0.3, 0.4], [0, 0], [0, 0]], rtol=1e-6)
    np.testing.assert_array_equal(a.labels[:, 2], [1, 2, 3, 4])
    np.testing.assert_array_equal(a.labels[:, 15:], [[1, 1, 0], [1, 1, 0], [0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(b.labels[:, 15:], [[0, 0, 1], [0, 0, 1]])
    assert a.valid.all() and a.n_frames == 4


def test_labels_a_frame_does_not_have_cannot_change_the_gradient():
    layout = _labels()
    torch.manual_seed(0)
    pred = torch.randn(8, layout.out_dim, requires_grad=True)
    labels = torch.zeros(8, layout.width)
    labels[:, :2] = torch.rand(8, 2) * 2 - 1
    labels[:, 2] = torch.randint(0, 8, (8,)).float()
    labels[:, 3:15] = torch.randint(0, 2, (8, 12)).float()
    labels[:, 15] = 1.0                       # VA usable everywhere
    labels[:, 16] = (torch.arange(8) < 4).float()  # EXPR usable on the first half only
    labels[:, 17] = 0.0                       # no AU label at all

    def grad(lab: torch.Tensor) -> torch.Tensor:
        pred.grad = None
        layout.loss(pred, lab).backward()
        return pred.grad.clone()

    before = grad(labels)
    changed = labels.clone()
    changed[4:, 2] = (changed[4:, 2] + 3) % 8          # EXPR labels of frames without a usable EXPR label
    changed[:, 3:15] = 1 - changed[:, 3:15]             # every AU label (none is usable)
    assert torch.equal(grad(changed), before)
    assert before[:, 2 + 8:].abs().sum() == 0           # the AU outputs (after VA 2, EXPR 8) get none
    usable_changed = labels.clone()
    usable_changed[:4, 2] = (usable_changed[:4, 2] + 3) % 8
    assert not torch.equal(grad(usable_changed), before)
