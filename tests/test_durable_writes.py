"""What stage 2 writes reaches the disk before it is trusted: a shard set's files and folder are flushed before
the set is swapped in, and a feature file written beside the frame loop that fails stops the extraction."""

from __future__ import annotations

import os

import pytest
from stage_fixtures import tiny_config

from affbench.data import shard_manifest
from affbench.data.shard_manifest import MANIFEST_NAME, ShardSetWriter
from affbench.stages import extract
from affbench.stages.extract import extract_features
from affbench.stages.stage_inputs import load_stage_inputs

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures


def test_a_shard_set_is_flushed_before_it_is_swapped_in(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = shard_manifest.fsync_path, os.rename

    def fsync(path):
        events.append(("fsync", str(path)))
        real_fsync(path)

    def rename(src, dst):
        events.append(("rename", str(dst)))
        real_rename(src, dst)

    monkeypatch.setattr("affbench.output.fsync_path", fsync)  # what fsync_paths flushes with
    monkeypatch.setattr(shard_manifest, "fsync_path", fsync)
    monkeypatch.setattr(shard_manifest.os, "rename", rename)
    out = tmp_path / "set"
    with ShardSetWriter(out, kind="test", maxcount=2) as writer:
        for i in range(5):
            writer.write({"__key__": f"v/{i:05d}", "json": b"{}"})
        tmp_dir = writer.tmp_dir
        manifest = writer.commit({})
    swap = events.index(("rename", str(out)))
    flushed = {path for kind, path in events[:swap] if kind == "fsync"}
    shards = {str(tmp_dir / entry["name"]) for entry in manifest["shards"]}
    assert len(shards) == 3 and shards | {str(tmp_dir / MANIFEST_NAME), str(tmp_dir)} <= flushed
    assert ("fsync", str(out.parent)) in events[swap:]


def test_a_failed_feature_write_stops_the_extraction(home, synth_root, monkeypatch):
    config = tiny_config(synth_root, finetune={"enabled": False})
    inputs = load_stage_inputs(config, 0)
    written = []

    def store(directory, record, *args):
        if written:
            raise OSError(28, "No space left on device")
        written.append(record.video)

    monkeypatch.setattr(extract, "_store_video", store)
    with pytest.raises(OSError, match="No space left"):
        extract_features(config, fold=0, quiet=True, inputs=inputs)
    assert len(written) == 1
