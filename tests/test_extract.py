"""Stage 2: features are cached per (dataset, backbone, weights, preprocessing), never recomputed for an
identical request, shared across tasks, and a resumed extraction runs only the videos still missing."""

from __future__ import annotations

import numpy as np
from stage_fixtures import forwards, tiny_config

from affbench.model import Preprocess
from affbench.stages import feature_cache as cache
from affbench.stages.extract import cached_rows, extract_features
from affbench.stages.stage_inputs import load_stage_inputs

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures


def _images(records) -> int:
    return sum(int(r.has_image.sum()) for r in records)


def test_identical_request_is_a_cache_hit_without_forwards(home, synth_root):
    config = tiny_config(synth_root, finetune={"enabled": False})
    inputs = load_stage_inputs(config, 0)
    before = forwards()
    first = extract_features(config, fold=0, quiet=True, inputs=inputs)
    assert first.extracted_frames == _images(inputs.records) == forwards() - before
    files = sorted(first.directory.glob("*.npz"))
    mtimes = [p.stat().st_mtime_ns for p in files]

    before = forwards()
    again = extract_features(config, fold=0, quiet=True)  # another fold object, same request
    assert again.key == first.key and again.extracted_frames == 0 and forwards() == before
    assert [p.stat().st_mtime_ns for p in files] == mtimes
    # The pretrained features do not depend on the fold: fold 1 reuses them too.
    assert extract_features(config, fold=1, quiet=True).extracted_frames == 0
    assert forwards() == before


def test_every_image_gets_one_feature_row(home, synth_root):
    config = tiny_config(synth_root, finetune={"enabled": False})
    inputs = load_stage_inputs(config, 0)
    features = extract_features(config, fold=0, quiet=True, inputs=inputs)
    for record in inputs.records:
        rows = cached_rows(features.directory, record)
        assert rows is not None and rows.shape == (record.n_frames, features.feature_dim)
        has = record.has_image
        assert np.all(np.abs(rows[has]).sum(axis=1) > 0)
        assert np.all(rows[~has] == 0)


def test_different_weights_or_preprocessing_give_different_keys(home, synth_root):
    base = tiny_config(synth_root, finetune={"enabled": False})
    keys = {
        extract_features(base, fold=0, quiet=True).key,
        extract_features(tiny_config(synth_root, finetune={"enabled": False},
                                     backbone={"name": base["backbone"]["name"], "options": {"seed": 1}}),
                         fold=0, quiet=True).key,
        extract_features(tiny_config(synth_root, finetune={"enabled": False},
                                     backbone={"name": base["backbone"]["name"], "options": {"image_size": 24}}),
                         fold=0, quiet=True).key,
        extract_features(tiny_config(synth_root), fold=0, quiet=True).key,  # fine-tuned weights
    }
    assert len(keys) == 4
    identity = cache.backbone_identity({"name": "x", "options": {}}, "random:1", Preprocess(16, (0.5,) * 3, (0.5,) * 3))
    assert cache.feature_key({"name": "d"}, identity) != cache.feature_key(
        {"name": "d"}, {**identity, "weights_id": "random:2"})


def test_tasks_share_the_features_of_their_common_videos(home, synth_root):
    va = tiny_config(synth_root, finetune={"enabled": False})
    expr = tiny_config(synth_root, task="expr", finetune={"enabled": False})
    va_inputs, expr_inputs = load_stage_inputs(va, 0), load_stage_inputs(expr, 0)
    extract_features(va, fold=0, quiet=True, inputs=va_inputs)
    shared = {r.video for r in va_inputs.records} & {r.video for r in expr_inputs.records}
    assert shared
    new = [r for r in expr_inputs.records if r.video not in shared]
    before = forwards()
    result = extract_features(expr, fold=0, quiet=True, inputs=expr_inputs)
    assert result.extracted_frames == _images(new) == forwards() - before


def test_resume_extracts_only_the_missing_videos(home, synth_root):
    config = tiny_config(synth_root, finetune={"enabled": False})
    inputs = load_stage_inputs(config, 0)
    first = extract_features(config, fold=0, quiet=True, inputs=inputs)
    files = {p.stem: p for p in first.directory.glob("*.npz")}
    lost = inputs.records[0]
    files.pop(lost.video).unlink()  # as if the run had stopped before this video was written
    kept = {name: p.stat().st_mtime_ns for name, p in files.items()}

    before = forwards()
    again = extract_features(config, fold=0, quiet=True, inputs=inputs)
    assert again.extracted_frames == int(lost.has_image.sum()) == forwards() - before
    assert {name: p.stat().st_mtime_ns for name, p in files.items()} == kept
    assert cached_rows(again.directory, lost) is not None


def test_progress_bars_are_named_by_what_they_do():
    from affbench.stages.stage_inputs import frame_shards_label

    fold_info = {"fold": 0, "k": 5, "seed": 0, "train": ["a", "b"], "validation": ["c"]}
    assert frame_shards_label("va+expr+au", {"stage": "finetune", "fold": fold_info, "seed": 0}) == \
        "frame shards va+expr+au for finetune fold 0"
    assert frame_shards_label("au", {"stage": "extract"}) == "frame shards au for extract"
    assert frame_shards_label("va", {}) == "frame shards va"


def test_a_fine_tuned_extraction_builds_its_backbone_once(home, synth_root, monkeypatch):
    import affbench.stages.finetune as stage1

    built = []
    build = stage1.build_backbone

    def counting(spec):
        built.append(spec)
        return build(spec)

    monkeypatch.setattr(stage1, "build_backbone", counting)
    monkeypatch.setattr("affbench.stages.extract.build_backbone", counting)
    config = tiny_config(synth_root)
    trained = extract_features(config, fold=0, quiet=True)
    assert trained.finetune is not None and len(built) == 1  # stage 1 trained the backbone stage 2 extracts with
    again = extract_features(config, fold=0, quiet=True)
    assert again.key == trained.key and len(built) == 2  # a cached fine-tune: one build again
