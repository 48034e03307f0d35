"""Preprocess, preprocess_images, MLPHead and create_model."""

import numpy as np
import pytest
import torch
from PIL import Image

import affbench
from affbench.model import AffectModel, MLPHead, Preprocess, preprocess_images
from affbench_plugins.clip_backbone import TINY_VIT

PAPER_LIKE = {
    "task": "va",
    "backbone": None,
    "feature_dim": 12,
    "model": {
        "temporal": [
            {"name": "tcn", "options": {"channels": [12, 8, 6], "kernel_size": 5, "weight_norm": True}},
            {"name": "transformer", "options": {"d_model": 8, "heads": 4, "layers": 2, "ff_dim": 8,
                                                "positions": "none"}},
        ],
        "head": {"hidden": 4, "dropout": 0.3},
    },
}


def test_preprocess_squash_keeps_the_whole_face_crop():
    pre = Preprocess(image_size=4, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    img = np.zeros((1, 2, 2, 3), np.uint8)
    img[0, :, 0] = 255  # left column white: after squash, left half white, right half black
    out = preprocess_images(img, pre)
    assert out.shape == (1, 3, 4, 4) and out.dtype == torch.float32
    assert out[0, :, :, 0].min() > 0.9 and out[0, :, :, -1].max() < -0.9
    same = preprocess_images(np.full((2, 4, 4, 3), 255, np.uint8), pre)  # size already right: normalise only
    torch.testing.assert_close(same, torch.ones(2, 3, 4, 4))


def test_preprocess_modes_and_inputs_agree():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    pre = Preprocess(image_size=224, mean=(0.48, 0.45, 0.40), std=(0.27, 0.26, 0.27))
    a = preprocess_images(batch, pre)
    b = preprocess_images([Image.fromarray(x) for x in batch], pre)
    c = preprocess_images(torch.from_numpy(batch), pre)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    assert a.shape == (3, 3, 224, 224)
    wide = np.zeros((1, 10, 20, 3), np.uint8)
    wide[:, :, :5] = 255
    crop = preprocess_images(wide, Preprocess(8, (0, 0, 0), (1, 1, 1), resize="shorter_side_crop"))
    assert crop.shape == (1, 3, 8, 8) and crop.max() < 1.0  # the white left quarter was cropped away
    pad = preprocess_images(wide, Preprocess(8, (0, 0, 0), (1, 1, 1), resize="pad"))
    assert pad.shape == (1, 3, 8, 8) and pad[0, :, 0, :].abs().max() == 0  # padded rows hold the mean
    mixed = preprocess_images([Image.new("RGB", (10, 20)), Image.new("RGB", (30, 30))], pre)
    assert mixed.shape == (2, 3, 224, 224)


def test_preprocess_normalises_exactly_as_the_formula_says():
    """(pixels - mean * 255) / (std * 255), float32, bit for bit, contiguous [B,3,S,S]: features cached from
    earlier extractions stay those of the same images."""
    rng = np.random.default_rng(1)
    prep = Preprocess(image_size=16, mean=(0.48145466, 0.4578275, 0.40821073),
                      std=(0.26862954, 0.26130258, 0.27577711), resize="pad")
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(prep.std).view(1, 3, 1, 1) * 255.0
    at_size = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    got = preprocess_images(at_size, prep)
    assert got.is_contiguous() and got.shape == (5, 3, 16, 16) and got.dtype == torch.float32
    assert torch.equal(got, (torch.from_numpy(at_size).permute(0, 3, 1, 2).float() - mean) / std)
    mixed = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)]
    got = preprocess_images(mixed, prep)
    assert got.is_contiguous() and got.shape == (2, 3, 16, 16)
    assert torch.equal(got[0], ((torch.from_numpy(mixed[0]).permute(2, 0, 1).float() - mean[0]) / std[0]))


def test_preprocess_rejects_bad_input():
    pre = Preprocess(8, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_images(np.zeros((1, 8, 8, 3), np.float32), pre)
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        preprocess_images(np.zeros((1, 3, 8, 8), np.uint8), pre)
    with pytest.raises(ValueError, match="resize='crop'.*'squash'"):
        Preprocess(8, (0.5,) * 3, (0.5,) * 3, resize="crop")
    with pytest.raises(ValueError, match="std"):
        Preprocess(8, (0.5,) * 3, (0.0,) * 3)


def test_head_batchnorm_ignores_padded_steps():
    torch.manual_seed(0)
    head = MLPHead(4, 2, hidden=6, dropout=0.0, norm="batch")
    x = torch.randn(2, 5, 4)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    a = x.clone()
    a[~mask] = 100.0
    head.train()
    torch.testing.assert_close(head(a, mask)[mask], head(x, mask)[mask])
    for norm in ("layer", "none"):
        assert MLPHead(4, 2, hidden=6, norm=norm)(x).shape == (2, 5, 2)
    assert MLPHead(4, 3, hidden=None)(x).shape == (2, 5, 3)
    with pytest.raises(ValueError, match="norm='group'.*'batch', 'layer', 'none'"):
        MLPHead(4, 2, norm="group")


def test_create_model_on_features_forward_backward_and_masking():
    torch.manual_seed(0)
    model = affbench.create_model(PAPER_LIKE)
    assert isinstance(model, AffectModel) and model.backbone is None and model.out_dim == 2
    assert [type(b).__name__ for b in model.temporal] == ["TemporalConvNet", "TemporalTransformer"]
    x = torch.randn(3, 10, 12)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[2, 6:] = False
    target = torch.rand(3, 10, 2) * 2 - 1
    pred = model(x, mask)
    assert pred.shape == (3, 10, 2)
    loss = model.task.loss(pred, target, mask)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    garbage = x.clone()
    garbage[~mask] = 50.0
    with torch.no_grad():
        torch.testing.assert_close(model(garbage, mask)[mask], model(x, mask)[mask])
    with pytest.raises(ValueError, match="D=12"):
        model(torch.randn(1, 4, 11))
    with pytest.raises(ValueError, match="mask"):
        model(x, mask[:, :5])


def test_create_model_with_backbone_and_empty_stack():
    config = {"task": {"name": "expr", "options": {"label_smoothing": 0.1}},
              "backbone": {"name": "clip", "options": {"arch": TINY_VIT}},
              "model": {"temporal": [], "head": {"hidden": None}}}
    model = affbench.create_model(config)
    assert model.feature_dim == 16 and model.out_dim == 8 and len(model.temporal) == 0
    images = torch.randn(2, 3, 3, 32, 32)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = model(images, mask)
    assert out.shape == (2, 3, 8)
    feats = model.features(images, mask)
    assert (feats[~mask] == 0).all()
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        model(torch.randn(2, 3, 32, 32))


def test_create_model_config_errors():
    with pytest.raises(ValueError, match="feature_dim"):
        affbench.create_model({**PAPER_LIKE, "feature_dim": None})
    with pytest.raises(ValueError, match="config key task"):
        affbench.create_model({**PAPER_LIKE, "task": None})
    with pytest.raises(affbench.UnknownComponentError, match="Did you mean 'tcn'"):
        affbench.create_model({**PAPER_LIKE, "model": {"temporal": ["tnc"]}})
    with pytest.raises(ValueError, match=r"model.head.width: unknown; accepted: hidden, dropout, norm"):
        affbench.create_model({**PAPER_LIKE, "model": {"temporal": [], "head": {"width": 3}}})
    with pytest.raises(ValueError, match=r"model.temporal\[0\].options.in_dim"):
        affbench.create_model({**PAPER_LIKE, "model": {"temporal": [{"name": "none",
                                                                       "options": {"in_dim": 3}}]}})
    with pytest.raises(ValueError, match=r"model.temporal\[0\]: unknown key 'option'"):
        affbench.create_model({**PAPER_LIKE, "model": {"temporal": [{"name": "none", "option": {}}]}})
    with pytest.raises(affbench.ComponentOptionError, match="no option 'channel'"):
        affbench.create_model({**PAPER_LIKE, "model": {"temporal": [{"name": "tcn",
                                                                       "options": {"channel": [4]}}]}})
