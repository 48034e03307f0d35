"""Damaged data and caches: a broken image is named and never cached, a replaced image is seen, damaged
feature files heal, killed writers' leftovers are cleaned, and a failed `data frames --out` leaves nothing."""

from __future__ import annotations

import logging
import os
import shutil
import time

import numpy as np
import pytest
from faults import assert_input_error, cli, flip_byte, replace_file, truncate, valid_jpeg
from stage_fixtures import tiny_config

from affbench.data.shard_manifest import ShardSetWriter
from affbench.stages import feature_cache as cache
from affbench.stages.extract import extract_features
from affbench.stages.stage_inputs import load_stage_inputs

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures


@pytest.fixture
def own_root(synth_root, tmp_path):
    """A private copy of SynthAffect tiny that a test may damage."""
    root = tmp_path / "synth"
    shutil.copytree(synth_root, root)
    return root


def _config(root):
    return tiny_config(root, finetune={"enabled": False})


def _some_image(root, config, nth: int = 0):
    inputs = load_stage_inputs(config, 0)
    record = next(r for r in inputs.records if r.has_image.sum() > nth)
    image = [i for i in record.images if i][nth]
    return record, inputs.dataset.image_root / image


def _committed(stage: str) -> list:
    return list((cache.cache_root() / stage).glob(f"*/{cache.MANIFEST}"))


def test_a_broken_jpeg_is_named_never_cached_and_heals_once_fixed(home, own_root):
    config = _config(own_root)
    _, image = _some_image(own_root, config, nth=4)
    good = image.read_bytes()
    truncate(image)  # a zero-byte JPEG
    with pytest.raises(ValueError, match=f"face image {image} is broken"):
        extract_features(config, fold=0, quiet=True)
    assert _committed("frames") == []  # nothing was baked into a cached shard
    replace_file(image, good)
    assert extract_features(config, fold=0, quiet=True).extracted_frames > 0  # no manual cache clearing


def test_a_replaced_image_is_extracted_again(home, own_root):
    config = _config(own_root)
    record, image = _some_image(own_root, config)
    first = extract_features(config, fold=0, quiet=True)
    before = cache.load_video_features(first.directory, record.video)
    assert extract_features(config, fold=0, quiet=True).extracted_frames == 0
    replace_file(image, valid_jpeg(seed=7))  # another valid image under the same name
    again = extract_features(config, fold=0, quiet=True)
    assert again.extracted_frames == int(record.has_image.sum())  # that video only
    after = cache.load_video_features(again.directory, record.video)
    row = before[0].index(str(image.relative_to(image.parents[1])))
    assert not np.array_equal(before[1][row], after[1][row])


def test_content_stamps_see_a_same_size_replacement_with_the_old_mtime(home, own_root, monkeypatch):
    monkeypatch.setenv("AFFBENCH_IMAGE_STAMPS", "content")
    config = _config(own_root)
    record, image = _some_image(own_root, config)
    extract_features(config, fold=0, quiet=True)
    data = bytearray(image.read_bytes())
    data[-3] ^= 0x01  # same size: a different (still decodable) image
    stat = image.stat()
    image.write_bytes(bytes(data))
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime preserved, as `cp -p` does
    assert extract_features(config, fold=0, quiet=True).extracted_frames == int(record.has_image.sum())


@pytest.mark.parametrize("damage", ["truncated", "zero_bytes", "flipped"])
def test_a_damaged_feature_file_is_named_and_recomputed(home, own_root, caplog, damage):
    config = _config(own_root)
    first = extract_features(config, fold=0, quiet=True)
    path = sorted(first.directory.glob("*.npz"))[0]
    video = path.stem
    if damage == "flipped":
        data = bytearray(path.read_bytes())
        data[200] ^= 0xFF  # inside the features member: its zip crc32 no longer matches
        path.write_bytes(bytes(data))
    else:
        truncate(path, keep=0 if damage == "zero_bytes" else path.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="affbench.cache"):
        # Found when the member is read (the features array is read when windows are cut from it).
        assert cache.load_video_features(first.directory, video) is None
        again = extract_features(config, fold=0, quiet=True)
    assert again.extracted_frames > 0 and str(path) in caplog.text
    assert extract_features(config, fold=0, quiet=True).extracted_frames == 0  # healed


def test_a_video_without_an_image_folder_is_warned_and_recorded(home, own_root):
    config = _config(own_root)
    record, image = _some_image(own_root, config)
    shutil.rmtree(image.parent)
    with pytest.warns(RuntimeWarning, match=rf"1 video\(s\) have annotations but no face image at all \('{record.video}'\)"):
        inputs = load_stage_inputs(config, 0)
    assert inputs.fold_info["videos_without_images"] == [record.video]


def test_leftovers_of_killed_writers_are_cleaned_but_not_those_of_live_ones(tmp_path):
    target = tmp_path / "set"
    dead = tmp_path / ".set.tmp-999999999-0123456789ab"  # no such PID
    live = tmp_path / f".set.tmp-{os.getppid()}-0123456789ab"  # a live process still writing
    old_unowned = tmp_path / ".set.old-0123456789ab"
    for folder in (dead, live, old_unowned):
        folder.mkdir()
    os.utime(old_unowned, (0, 0))  # written long ago, by a writer that named no PID
    with ShardSetWriter(target, kind="window_shards", maxcount=2) as writer:
        writer.write({"__key__": "a", "json": b"{}"})
        writer.commit({})
    assert not dead.exists() and not old_unowned.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "set"])


def test_data_frames_out_leaves_nothing_when_it_fails(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(os.path.join(os.path.dirname(__file__), "fixtures", "affwild2", "root"), root)
    bad = next(root.rglob("video_long.txt"))
    bad.write_text("valence,arousal\n0.1,0.2\nnot,a number\n")
    out = tmp_path / "tables" / "va.csv"
    outcome = cli("data", "frames", "--root", str(root), "--task", "va", "--split", "train", "--out", str(out))
    assert_input_error(outcome, str(bad))
    assert list(out.parent.iterdir()) == [] if out.parent.exists() else True


@pytest.fixture
def verified_once(monkeypatch):
    """A fresh record of verified shard versions, counting the hashes; files count as old at once (a test's
    files are milliseconds old, younger than the racy-timestamp margin that makes real readers hash them)."""
    from affbench.data import checksums

    hashed: list[int] = []
    real = checksums.buffer_checksum
    monkeypatch.setattr(checksums, "_verified", set())
    monkeypatch.setattr(checksums, "_RACY_SECONDS", 0.0)
    monkeypatch.setattr(checksums, "buffer_checksum", lambda data: hashed.append(len(data)) or real(data))
    return hashed


def _shard_set(tmp_path):
    from trainer_fixtures import write_tiny_data

    from affbench.data.window_shards import WindowShards

    reader = WindowShards(write_tiny_data(tmp_path / "data").train_dir)
    time.sleep(0.05)  # a later write lands on a later clock tick than the files' creation, as on any real set
    return reader


def test_a_shard_is_hashed_once_per_process_and_a_flip_keeping_mtime_is_still_caught(tmp_path, verified_once):
    from affbench.data.shard_payloads import CorruptShardError

    reader = _shard_set(tmp_path)
    first = list(reader.iter_windows())
    assert len(verified_once) == len(reader.shards)  # every shard hashed on its first read
    assert [w["key"] for w in reader.iter_windows()] == [w["key"] for w in first]
    assert len(verified_once) == len(reader.shards)  # the second epoch hashes nothing
    shard = reader.directory / reader.manifest["shards"][0]["name"]
    mtime = shard.stat().st_mtime_ns
    flip_byte(shard, keep_mtime=True)
    assert shard.stat().st_mtime_ns == mtime
    with pytest.raises(CorruptShardError, match=f"{shard.name}: xxh3_64 checksum"):
        list(reader.iter_windows())


def test_a_freshly_written_shard_is_hashed_on_every_read(tmp_path, verified_once, monkeypatch):
    from affbench.data import checksums

    monkeypatch.setattr(checksums, "_RACY_SECONDS", 3600.0)  # every file is "racily" young
    reader = _shard_set(tmp_path)
    list(reader.iter_windows())
    list(reader.iter_windows())
    assert len(verified_once) == 2 * len(reader.shards)
    assert not checksums.verified_versions()


def test_workers_report_verified_shards_and_a_flip_between_epochs_is_caught(tmp_path, verified_once):
    from affbench.data import checksums
    from affbench.data.shard_payloads import CorruptShardError

    reader = _shard_set(tmp_path)
    loader = reader.loader(2, num_workers=1)
    list(loader)
    assert not verified_once  # the worker process hashed them, not this one
    assert {v[0] for v in checksums.verified_versions()} == {s.path for s in reader.shards}
    shard = reader.directory / reader.manifest["shards"][-1]["name"]
    flip_byte(shard, keep_mtime=True)
    loader.set_epoch(1)
    with pytest.raises(CorruptShardError, match=f"{shard.name}: xxh3_64 checksum"):
        list(loader)
