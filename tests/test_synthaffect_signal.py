"""SynthAffect frames carry their labels' signal: a quick per-frame linear model learns it across identities."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from affbench_plugins.datasets.synthaffect import SizeSpec, SynthAffectDataset

# A bit bigger than `tiny`, so the train split holds enough different people to generalise over.
SIGNAL_SIZE = SizeSpec("signal", singles=22, pairs=1, mean_frames=130, spread=0.2)


def _orientation_histograms(gray: np.ndarray, cells: int = 8, bins: int = 8) -> np.ndarray:
    """HOG-like features: gradient-magnitude orientation histograms per cell, each cell L2-normalised."""
    gy, gx = np.gradient(gray)
    magnitude = np.hypot(gx, gy)
    orientation = np.minimum((np.mod(np.arctan2(gy, gx), np.pi) / np.pi * bins).astype(int), bins - 1)
    h = gray.shape[0] // cells
    hist = np.stack([(magnitude * (orientation == k)).reshape(cells, h, cells, h).sum((1, 3))
                     for k in range(bins)], axis=-1)
    hist /= np.sqrt((hist ** 2).sum(-1, keepdims=True)) + 1e-2
    return hist.ravel()


def _features(path) -> np.ndarray:
    gray = np.asarray(Image.open(path).convert("L").resize((64, 64), Image.BOX), dtype=np.float32) / 255.0
    return _orientation_histograms(gray)


def _frames(dataset: SynthAffectDataset, task: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of every valid frame with a face; features centred per video (person-specific)."""
    xs, ys = [], []
    for record in dataset.videos(task, split):
        keep = np.flatnonzero(record.valid & record.has_image)
        if len(keep) == 0:
            continue
        x = np.stack([_features(dataset.image_root / record.images[i]) for i in keep])
        xs.append(x - x.mean(axis=0))
        ys.append(record.labels[keep])
    return np.concatenate(xs), np.concatenate(ys)


def _ccc(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.mean((a - a.mean()) * (b - b.mean())) / (a.var() + b.var() + (a.mean() - b.mean()) ** 2))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> SynthAffectDataset:
    data = SynthAffectDataset(size=SIGNAL_SIZE, seed=0, root=tmp_path_factory.mktemp("synth") / "signal",
                              quiet=True)
    data.prepare()
    return data


def test_expression_is_learnable_from_single_frames(dataset):
    from sklearn.linear_model import RidgeClassifier
    from sklearn.metrics import f1_score

    x_train, y_train = _frames(dataset, "expr", "train")
    x_val, y_val = _frames(dataset, "expr", "validation")
    y_train, y_val = y_train[:, 0].astype(int), y_val[:, 0].astype(int)
    predicted = RidgeClassifier(alpha=30, class_weight="balanced").fit(x_train, y_train).predict(x_val)
    f1 = f1_score(y_val, predicted, average="macro")
    rng = np.random.default_rng(0)
    chance = max(
        np.mean([f1_score(y_val, rng.choice(np.unique(y_train), len(y_val)), average="macro") for _ in range(20)]),
        f1_score(y_val, np.zeros_like(y_val), average="macro"),  # always Neutral
    )
    print(f"EXPR macro F1 {f1:.3f}, chance {chance:.3f}")
    assert f1 > 1.3 * chance, (f1, chance)


def test_action_units_are_learnable_from_single_frames(dataset):
    from sklearn.linear_model import RidgeClassifier
    from sklearn.metrics import f1_score

    x_train, y_train = _frames(dataset, "au", "train")
    x_val, y_val = _frames(dataset, "au", "validation")
    model_f1, constant_f1 = [], []
    for j in range(y_train.shape[1]):
        if len(np.unique(y_train[:, j])) < 2 or y_val[:, j].sum() == 0:
            continue
        predicted = RidgeClassifier(alpha=30, class_weight="balanced").fit(x_train, y_train[:, j]).predict(x_val)
        model_f1.append(f1_score(y_val[:, j], predicted))
        constant_f1.append(f1_score(y_val[:, j], np.ones_like(y_val[:, j])))  # the best constant guess
    print(f"AU mean F1 {np.mean(model_f1):.3f}, constant {np.mean(constant_f1):.3f}")
    assert len(model_f1) >= 6
    assert np.mean(model_f1) > np.mean(constant_f1) + 0.05, (model_f1, constant_f1)


def test_valence_and_arousal_are_learnable_from_single_frames(dataset):
    from sklearn.linear_model import Ridge

    x_train, y_train = _frames(dataset, "va", "train")
    x_val, y_val = _frames(dataset, "va", "validation")
    predicted = np.clip(Ridge(alpha=30).fit(x_train, y_train).predict(x_val), -1, 1)
    valence, arousal = _ccc(predicted[:, 0], y_val[:, 0]), _ccc(predicted[:, 1], y_val[:, 1])
    print(f"CCC valence {valence:.3f}, arousal {arousal:.3f}")
    assert min(valence, arousal) > 0.05, (valence, arousal)
    assert (valence + arousal) / 2 > 0.12, (valence, arousal)
