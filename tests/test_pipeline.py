"""Stage chaining: window shards of a fold cover every frame of its videos once per window grid, record the
missing-face policy and the provenance, and a second request reuses everything."""

from __future__ import annotations

import numpy as np
import pytest
from stage_fixtures import forwards, tiny_config

from affbench.core.config import ConfigError
from affbench.data.window_shards import WindowShards
from affbench.stages.pipeline import prepare_window_shards, stage3_records
from affbench.stages.stage_inputs import load_stage_inputs

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures


def _windows_by_video(directory):
    out = {}
    for window in WindowShards(directory).iter_windows():
        out.setdefault(window["video"], []).append(window)
    return out


@pytest.mark.parametrize("policy", ["mask", "ffill"])
def test_window_shards_cover_every_frame_of_the_fold(home, synth_root, policy):
    config = tiny_config(synth_root, data={"missing_faces": policy})
    inputs = load_stage_inputs(config, 0)
    data = prepare_window_shards(config, fold=0, quiet=True)
    assert data.feature_dim == 8
    splits = stage3_records(config, inputs)
    assert sorted(data.dirs) == sorted(splits) == ["selection", "train", "validation"]
    for split, records in splits.items():
        shards = WindowShards(data.dirs[split])
        windows = _windows_by_video(data.dirs[split])
        assert sorted(windows) == sorted(r.video for r in records)
        for record in records:
            covered = np.zeros(record.n_frames, dtype=int)
            for w in windows[record.video]:
                real = w["frames"] > 0
                idx = w["frames"][real] - 1
                covered[idx] += 1
                np.testing.assert_array_equal(w["labels"][real], record.labels[idx])
                np.testing.assert_array_equal(w["valid"][real], record.valid[idx])
                expected_mask = record.has_image[idx] if policy == "mask" else np.ones(idx.size, bool)
                np.testing.assert_array_equal(w["mask"][real], expected_mask)
                assert not w["mask"][~real].any()
            assert covered.min() >= 1, f"{record.video}: frames without a window"
        prov = shards.provenance
        assert prov["missing_faces"]["policy"] == policy
        assert prov["missing_faces"]["frames_without_face"] == sum(int((~r.has_image).sum()) for r in records)
        assert prov["split"] == split and prov["backbone"]["name"] == config["backbone"]["name"]
        assert prov["finetune"]["weights_id"].startswith("sha256:")
        assert shards.window == 32 and shards.stride == 16
    assert data.fold_manifest["train"] == inputs.fold_info["train"]
    assert data.provenance["missing_faces"]["train"]["policy"] == policy


def test_dropped_tails_shape_the_training_windows_only(home, synth_root):
    covering = prepare_window_shards(tiny_config(synth_root), fold=0, quiet=True)
    config = tiny_config(synth_root, data={"tails": "drop"})
    data = prepare_window_shards(config, fold=0, quiet=True)
    # Scored splits are the same covering sets; the training set is a new one of full windows only.
    assert data.dirs["validation"] == covering.dirs["validation"]
    assert data.dirs["selection"] == covering.dirs["selection"]
    assert data.dirs["train"] != covering.dirs["train"]
    assert WindowShards(data.dirs["train"]).provenance["tails"] == "drop"
    records = {r.video: r for r in stage3_records(config, load_stage_inputs(config, 0))["train"]}
    windows = _windows_by_video(data.dirs["train"])
    for video, record in records.items():
        starts = sorted(int(w["frames"][0]) - 1 for w in windows.get(video, []))
        assert starts == list(range(0, record.n_frames - 32 + 1, 16)), video
        assert all((w["frames"] > 0).all() for w in windows.get(video, []))  # no padded window


def test_inner_holds_training_videos_out_of_stages_1_and_3(home, synth_root):
    config = tiny_config(synth_root, train={"select_fraction": 0.3})
    inputs = load_stage_inputs(config, 0)
    data = prepare_window_shards(config, fold=0, quiet=True)
    held = data.provenance["select"]["videos"]
    assert data.provenance["select"] == {"mode": "inner", "fraction": 0.3, "seed": 0, "videos": held}
    assert data.fold_manifest["selection"]["videos"] == held
    train_videos = {w["video"] for w in WindowShards(data.train_dir).iter_windows()}
    selection_videos = {w["video"] for w in WindowShards(data.selection_dir).iter_windows()}
    assert selection_videos == set(held) and train_videos.isdisjoint(held)
    assert train_videos | selection_videos == set(inputs.fold_info["train"])  # stage 2 extracted all of them
    for directory in (data.train_dir, data.selection_dir):
        assert WindowShards(directory).provenance["selection"]["videos"] == held
    # Stage 1 never saw the slice, so a mode without one fine-tunes on more videos: another backbone.
    plain = prepare_window_shards(tiny_config(synth_root, train={"select": "validation"}), fold=0, quiet=True)
    assert plain.selection_dir is None and "selection" not in WindowShards(plain.train_dir).provenance
    assert plain.provenance["finetune"]["key"] != data.provenance["finetune"]["key"]
    # Without a fine-tune the same features serve every mode; the validation shards are shared, the train
    # shards are not.
    frozen = {"finetune": {"enabled": False}}
    inner = prepare_window_shards(tiny_config(synth_root, train={"select_fraction": 0.3}, **frozen), fold=0,
                                  quiet=True)
    before = forwards()
    plain = prepare_window_shards(tiny_config(synth_root, train={"select": "validation"}, **frozen), fold=0,
                                  quiet=True)
    assert forwards() == before and plain.selection_dir is None
    assert plain.validation_dir == inner.validation_dir and plain.train_dir != inner.train_dir


def test_second_request_reuses_all_stages(home, synth_root):
    config = tiny_config(synth_root)
    first = prepare_window_shards(config, fold=0, quiet=True)
    manifest = first.train_dir / "manifest.json"
    # A hit touches the manifest (its last use, for `affbench cache clear --older-than`) but never rewrites it:
    # an atomic rewrite would give the file a new inode.
    inode, text = manifest.stat().st_ino, manifest.read_bytes()
    before = forwards()
    again = prepare_window_shards(config, fold=0, quiet=True)
    assert forwards() == before and again.provenance["extracted_frames"] == 0
    assert again.dirs == first.dirs and manifest.stat().st_ino == inode and manifest.read_bytes() == text
    # A different window grid reuses the features: no forward, new window shards.
    regrid = prepare_window_shards(tiny_config(synth_root, data={"window": 20, "stride": 10}), fold=0, quiet=True)
    assert forwards() == before and regrid.train_dir != first.train_dir


def test_official_split_and_bad_fold(home, synth_root):
    config = tiny_config(synth_root, finetune={"enabled": False})
    data = prepare_window_shards(config, fold=None, quiet=True)
    assert data.fold_manifest["split"] == "official"
    with pytest.raises(ValueError, match="fold must be an integer in 0..1"):
        prepare_window_shards(config, fold=2, quiet=True)


def test_inner_refuses_a_fold_with_one_training_source(home, tmp_path):
    # Two source videos and two folds: each fold trains on one source, which leaves none to hold out.
    duo = {"name": "duo", "singles": 2, "pairs": 0, "mean_frames": 40}
    config = tiny_config(tmp_path, task="expr", data={"dataset": {"name": "synthaffect", "options": {
        "size": duo, "seed": 0, "root": str(tmp_path / "duo")}}})
    before = forwards()
    with pytest.raises(ConfigError, match=r"train.select: inner: task 'expr' fold 0: .*at least 2 source videos.*"
                                          r"set train.select to last or validation"):
        prepare_window_shards(config, fold=0, quiet=True)
    assert forwards() == before  # refused before any stage ran
