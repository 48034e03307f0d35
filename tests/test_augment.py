"""Stage 1 augmentation: each transform does exactly what it says per image, draws are reproducible, the
fine-tune key and weights follow the setting, and bad strengths are refused at load."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from stage_fixtures import tiny_config

import affbench.stages.finetune as stage1
from affbench.core.config import ConfigError, load_config
from affbench.stages.augment import augment_images, augments

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures

OFF = {"flip": False, "shift": 0.0, "lighting": 0.0}


def _images(n: int = 16, size: int = 8) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_flip_mirrors_about_half_the_images_exactly_and_leaves_the_rest():
    x = _images(64)
    torch.manual_seed(0)
    y = augment_images(x, {**OFF, "flip": True})
    mirrored = [torch.equal(y[i], x[i].flip(-1)) for i in range(len(x))]
    kept = [torch.equal(y[i], x[i]) for i in range(len(x))]
    assert all(m != k for m, k in zip(mirrored, kept, strict=True))
    assert 16 <= sum(mirrored) <= 48


def test_shift_moves_each_image_by_at_most_its_fraction_with_edges_repeated():
    x = torch.arange(8, dtype=torch.float32).repeat(8, 1).expand(32, 3, 8, 8).contiguous()  # column index
    torch.manual_seed(0)
    y = augment_images(x, {**OFF, "shift": 0.25})  # up to 2 of 8 pixels
    offsets = y[:, 0, 0, 3] - x[:, 0, 0, 3]  # interior column: the horizontal shift in pixels
    assert offsets.abs().max() <= 2.0 + 1e-5 and offsets.abs().max() > 0.5
    assert y.min() >= 0 and y.max() <= 7 + 1e-5  # the border is repeated, never filled with zeros


def test_lighting_stays_within_its_bounds_and_off_changes_nothing():
    x = torch.ones(32, 3, 4, 4)
    torch.manual_seed(0)
    y = augment_images(x, {**OFF, "lighting": 0.2})
    assert y.min() >= 1 * 0.8 - 0.2 - 1e-6 and y.max() <= 1 * 1.2 + 0.2 + 1e-6 and not torch.equal(y, x)
    assert not augments(OFF) and torch.equal(augment_images(x, OFF), x)


def test_draws_follow_the_seed():
    x = _images()
    options = {"flip": True, "shift": 0.1, "lighting": 0.1}
    torch.manual_seed(3)
    a = augment_images(x, options)
    torch.manual_seed(3)
    assert torch.equal(a, augment_images(x, options))


def test_augmentation_trains_other_weights_under_another_key(home, synth_root):
    plain = stage1.finetune(tiny_config(synth_root), fold=0, quiet=True)
    config = tiny_config(synth_root, finetune={"augment": {"flip": True, "shift": 0.1, "lighting": 0.1}})
    augmented = stage1.finetune(config, fold=0, quiet=True)
    assert augmented.directory != plain.directory
    a, b = load_file(str(plain.weights_path)), load_file(str(augmented.weights_path))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert augmented.manifest["options"]["augment"]["flip"] is True


@pytest.mark.parametrize("key, value", [("shift", 0.5), ("lighting", -0.1)])
def test_a_strength_out_of_range_is_refused_with_its_key(tmp_path, key, value):
    path = tmp_path / "bad.yaml"
    path.write_text(f"task: va\nfinetune:\n  augment: {{{key}: {value}}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"bad.yaml:3: finetune.augment.{key}: must lie in \[0, 0.5\)"):
        load_config(path)
