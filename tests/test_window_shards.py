"""Window shards: exact round trip, provenance checks, loaders, corrupt-input policy, safety, atomic writes."""

from __future__ import annotations

import io
import json
import os
import pathlib
import pickle
import tarfile

import numpy as np
import pytest

from affbench.data.checksums import ALGORITHM, file_checksum
from affbench.data.records import VideoRecord
from affbench.data.shard_manifest import MANIFEST_NAME, ProvenanceMismatchError
from affbench.data.shard_payloads import CorruptShardError, decode_npy, encode_npy
from affbench.data.window_shards import WindowShards, cut_windows, encode_window, write_window_shards

WINDOW, STRIDE, DIM = 8, 5, 6
PROVENANCE = {
    "dataset": {"name": "synthaffect", "seed": 0},
    "task": "va",
    "backbone": {"name": "tiny", "weights_id": "sha256:abc", "preprocess": {"image_size": 112}},
}


def make_video(name: str, n: int, seed: int, dim: int = DIM):
    rng = np.random.default_rng(seed)
    images = [f"{name}/{i + 1:05d}.jpg" if i % 7 else "" for i in range(n)]
    labels = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    valid = rng.random(n) > 0.2
    labels[~valid] = -5
    record = VideoRecord(video=name, source=name, images=images, labels=labels, valid=valid)
    features = rng.normal(size=(n, dim)).astype(np.float32)
    mask = record.has_image
    return record, features, mask


VIDEOS_SPEC = [("vid_a", 23, 1), ("vid_b", 5, 2), ("vid_c", 8, 3), ("vid_d", 17, 4), ("vid_e", 31, 5)]


def videos():
    return [make_video(name, n, seed) for name, n, seed in VIDEOS_SPEC]


def write(out, maxcount=3, vids=None, **kw):
    return write_window_shards(
        out,
        videos() if vids is None else vids,
        window=WINDOW,
        stride=STRIDE,
        manifest_extra=PROVENANCE,
        maxcount=maxcount,
        quiet=True,
        **kw,
    )


def expected_windows():
    out = []
    for record, features, mask in videos():
        out.extend(cut_windows(record, features, mask, window=WINDOW, stride=STRIDE))
    return out


@pytest.fixture
def shard_dir(tmp_path):
    out = tmp_path / "windows"
    write(out)
    return out


def test_round_trip_is_exact(shard_dir):
    reader = WindowShards(shard_dir, expect=PROVENANCE)
    got = list(reader.iter_windows())
    want = expected_windows()
    assert len(got) == len(want) == len(reader)
    for g, w in zip(got, want, strict=True):
        assert (g["video"], g["start"], g["n_frames"]) == (w["video"], w["start"], w["n_frames"])
        for name in ("features", "labels", "valid", "mask", "frames"):
            assert g[name].dtype == w[name].dtype
            assert g[name].tobytes() == w[name].tobytes(), name
    # The stored features are the float16 image of the inputs, zeroed where the frame has no feature.
    record, features, mask = videos()[0]
    first = got[0]
    np.testing.assert_array_equal(first["features"][mask[:WINDOW]], features[:WINDOW][mask[:WINDOW]].astype(np.float16))
    assert not first["features"][~mask[:WINDOW]].any()
    # Short video: one padded, masked window.
    short = [g for g in got if g["video"] == "vid_b"]
    assert len(short) == 1 and short[0]["frames"].tolist() == [1, 2, 3, 4, 5, 0, 0, 0]
    assert not short[0]["valid"][5:].any() and not short[0]["mask"][5:].any()


def test_manifest_records_counts_stats_and_provenance(shard_dir):
    manifest = json.loads((shard_dir / MANIFEST_NAME).read_text())
    assert manifest["format"] == "affbench.window_shards"
    assert manifest["window"] == WINDOW and manifest["stride"] == STRIDE and manifest["feature_dim"] == DIM
    assert manifest["counts"]["videos"] == 5
    assert manifest["counts"]["frames"] == sum(n for _, n, _ in VIDEOS_SPEC)
    assert manifest["counts"]["windows"] == len(expected_windows()) == manifest["num_samples"]
    assert sum(s["count"] for s in manifest["shards"]) == manifest["num_samples"]
    all_valid = np.concatenate([r.labels[r.valid] for r, _, _ in videos()])
    stats = manifest["label_stats"]
    assert stats["valid_frames"] == all_valid.shape[0]
    assert stats["columns"][0]["mean"] == pytest.approx(all_valid[:, 0].mean())
    assert stats["columns"][1]["std"] == pytest.approx(all_valid[:, 1].std())
    prov = manifest["provenance"]
    assert prov["backbone"]["weights_id"] == "sha256:abc" and prov["window"] == WINDOW


@pytest.mark.parametrize(
    ("expect", "field", "found", "wanted"),
    [
        ({"backbone": {"weights_id": "sha256:zzz"}}, "backbone.weights_id", "sha256:abc", "sha256:zzz"),
        ({"window": 300}, "window", "8", "300"),
        ({"backbone.preprocess.image_size": 224}, "backbone.preprocess.image_size", "112", "224"),
        ({"missing_faces": "mask"}, "missing_faces", "<missing>", "mask"),
    ],
)
def test_provenance_mismatch_is_refused(shard_dir, expect, field, found, wanted):
    with pytest.raises(ProvenanceMismatchError) as info:
        WindowShards(shard_dir, expect=expect)
    message = str(info.value)
    assert f"'{field}'" in message and found in message and wanted in message and str(shard_dir) in message
    WindowShards(shard_dir, expect={"backbone": {"name": "tiny"}, "stride": STRIDE, "dataset": {"seed": 0}})


def test_loader_batches_cover_every_window_once(shard_dir):
    reader = WindowShards(shard_dir)
    loader = reader.loader(4, shuffle_seed=3, epoch=1, shuffle_buffer=4)
    batches = list(loader)
    assert len(batches) == len(loader)
    keys = [k for b in batches for k in b["key"]]
    assert sorted(keys) == sorted(f"{w['video']}/{w['start']:07d}" for w in expected_windows())
    b = batches[0]
    assert b["features"].dtype.is_floating_point and b["features"].element_size() == 2
    assert tuple(b["features"].shape[1:]) == (WINDOW, DIM)
    assert str(b["labels"].dtype) == "torch.float32" and str(b["valid"].dtype) == "torch.bool"
    assert str(b["mask"].dtype) == "torch.bool" and str(b["frames"].dtype) == "torch.int32"
    assert len(b["video"]) == b["start"].shape[0] == b["features"].shape[0]
    by_key = {f"{w['video']}/{w['start']:07d}": w for w in expected_windows()}
    for batch in batches:
        for i, key in enumerate(batch["key"]):
            assert batch["features"][i].numpy().tobytes() == by_key[key]["features"].tobytes()
    # Same seed and epoch: same order; another epoch: another order.
    again = [k for b in reader.loader(4, shuffle_seed=3, epoch=1, shuffle_buffer=4) for k in b["key"]]
    other = [k for b in reader.loader(4, shuffle_seed=3, epoch=2, shuffle_buffer=4) for k in b["key"]]
    assert again == keys and other != keys and sorted(other) == sorted(keys)


def test_ranks_split_shards_and_workers_run(shard_dir):
    reader = WindowShards(shard_dir)
    seen = []
    for rank in range(2):
        loader = reader.loader(2, shuffle_seed=0, rank=rank, world_size=2, num_workers=2)
        seen.append([k for b in loader for k in b["key"]])
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(f"{w['video']}/{w['start']:07d}" for w in expected_windows())


def test_fewer_shards_than_readers_is_an_error(shard_dir):
    reader = WindowShards(shard_dir)
    n = len(reader.shards)
    with pytest.raises(ValueError, match=rf"{n} shard\(s\) cannot feed 2 rank\(s\) x {n} worker\(s\)"):
        reader.loader(2, world_size=2, num_workers=n)
    reader.loader(2, world_size=2, num_workers=n, resampled_len=3)  # resampling needs no split


def test_resampled_stream_gives_equal_steps_per_rank(tmp_path):
    out = tmp_path / "uneven"
    vids = [make_video("long", 120, 0), make_video("mid", 40, 1), make_video("tiny", 3, 2)]
    manifest = write(out, maxcount=9, vids=vids)
    counts = [s["count"] for s in manifest["shards"]]
    assert len(set(counts)) > 1, "the test needs uneven shards"
    reader = WindowShards(out)
    plain = [len(list(reader.loader(2, rank=r, world_size=2))) for r in range(2)]
    assert plain[0] != plain[1], "without resampling uneven shards give uneven steps"
    steps = []
    for rank in range(2):
        loader = reader.loader(2, shuffle_seed=7, rank=rank, world_size=2, resampled_len=11, num_workers=0)
        batches = list(loader)
        assert len(loader) == 11
        assert all(b["features"].shape[0] == 2 for b in batches)
        steps.append(len(batches))
    assert steps == [11, 11]
    two_workers = list(reader.loader(2, shuffle_seed=7, rank=1, world_size=2, resampled_len=5, num_workers=2))
    assert len(two_workers) == 5


# ---------------------------------------------------------------- corrupt input


def _manifest(directory):
    return json.loads((directory / MANIFEST_NAME).read_text())


def _rewrite_shard(directory, index, samples):
    """Replace shard `index` with a tar of raw members and update the manifest's size, count and checksum to match."""
    manifest = _manifest(directory)
    entry = manifest["shards"][index]
    path = directory / entry["name"]
    with tarfile.open(path, "w") as tar:
        for sample in samples:
            key = sample["__key__"]
            for ext, data in sample.items():
                if ext == "__key__":
                    continue
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    entry["bytes"] = path.stat().st_size
    entry["count"] = len(samples)
    entry[ALGORITHM] = file_checksum(path)
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    return path


def _shard_windows(directory, index):
    """The (encoded) window samples stored in shard `index`, for building altered copies."""
    manifest = _manifest(directory)
    before = sum(s["count"] for s in manifest["shards"][:index])
    return [encode_window(w) for w in expected_windows()[before : before + manifest["shards"][index]["count"]]]


def _total():
    return len(expected_windows())


def test_truncated_shard_raises_with_name_or_is_skipped(shard_dir):
    name = _manifest(shard_dir)["shards"][1]["name"]
    path = shard_dir / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptShardError, match=name):
        list(WindowShards(shard_dir).iter_windows())
    reader = WindowShards(shard_dir, on_corrupt="skip")
    got = list(reader.iter_windows())
    assert len(got) == _total() - _manifest(shard_dir)["shards"][1]["count"]
    assert reader.skipped.shards == 1 and reader.skipped.samples == 0
    for workers in (0, 2):  # worker processes report their skips to the main process
        loader = reader.loader(2, num_workers=workers)
        assert sum(len(b["key"]) for b in loader) == len(got)
        assert loader.skipped.shards == 1 and name in loader.skipped.reasons[0]


def test_broken_tar_stream_detected_while_reading(shard_dir):
    # Same size as the manifest says, but a member header in the middle is garbage.
    name = _manifest(shard_dir)["shards"][0]["name"]
    path = shard_dir / name
    data = bytearray(path.read_bytes())
    third_header = data.index(b"vid_a/0000010.features.npy")
    data[third_header : third_header + 512] = b"\xff" * 512
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match=f"{name}: {ALGORITHM} checksum"):
        list(WindowShards(shard_dir).iter_windows())
    reader = WindowShards(shard_dir, on_corrupt="skip")
    assert len(list(reader.iter_windows())) == _total() - 3  # a shard failing its checksum is dropped whole
    assert reader.skipped.shards == 1
    # Without a recorded checksum (a set written before checksums) the tar reader itself finds the damage.
    manifest = _manifest(shard_dir)
    for entry in manifest["shards"]:
        del entry[ALGORITHM]
    (shard_dir / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CorruptShardError, match=name):
        list(WindowShards(shard_dir).iter_windows())
    reader = WindowShards(shard_dir, on_corrupt="skip")
    got = list(reader.iter_windows())
    assert reader.skipped.shards == 1
    # The first window is kept; the second cannot be proven complete (its last member precedes the damage).
    # Shard 0 holds vid_a's windows 0, 5, 10; shard 1 starts with 15.
    assert [g["start"] for g in got if g["video"] == "vid_a"] == [0, 15] and len(got) == _total() - 2


@pytest.mark.parametrize("kind", ["zero_bytes", "empty_tar"])
def test_empty_shard_under_both_policies(shard_dir, kind):
    name = _manifest(shard_dir)["shards"][0]["name"]
    expected_lost = _manifest(shard_dir)["shards"][0]["count"]
    if kind == "zero_bytes":
        (shard_dir / name).write_bytes(b"")
    else:
        # A well-formed tar with no members, with the manifest size updated: only the count check can tell.
        manifest = _manifest(shard_dir)
        with tarfile.open(shard_dir / name, "w"):
            pass
        manifest["shards"][0]["bytes"] = (shard_dir / name).stat().st_size
        (shard_dir / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CorruptShardError, match=name):
        list(WindowShards(shard_dir).iter_windows())
    reader = WindowShards(shard_dir, on_corrupt="skip")
    assert len(list(reader.iter_windows())) == _total() - expected_lost
    assert reader.skipped.shards == 1


def test_missing_field_under_both_policies(shard_dir):
    samples = _shard_windows(shard_dir, 0)
    del samples[1]["labels.npy"]
    _rewrite_shard(shard_dir, 0, samples)
    with pytest.raises(CorruptShardError, match=r"shard-000000.tar, sample 'vid_a/0000005'.*labels.npy"):
        list(WindowShards(shard_dir).iter_windows())
    reader = WindowShards(shard_dir, on_corrupt="skip")
    got = list(reader.iter_windows())
    assert len(got) == _total() - 1 and "vid_a/0000005" not in {g["key"] for g in got}
    assert (reader.skipped.shards, reader.skipped.samples) == (0, 1)


def test_wrong_dtype_is_corrupt(shard_dir):
    samples = _shard_windows(shard_dir, 0)
    samples[0]["features.npy"] = encode_npy(np.zeros((WINDOW, DIM), np.float64))
    _rewrite_shard(shard_dir, 0, samples)
    with pytest.raises(CorruptShardError, match="features.npy has dtype float64"):
        list(WindowShards(shard_dir).iter_windows())


class _Boom:
    """Unpickling this object creates a marker file: proof that a payload was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("payload", ["pickle", "pyd", "object_npy"])
def test_pickled_payloads_are_never_loaded(shard_dir, tmp_path, monkeypatch, payload):
    marker = tmp_path / "unpickled"
    samples = _shard_windows(shard_dir, 0)
    if payload == "object_npy":
        buffer = io.BytesIO()
        np.save(buffer, np.array([_Boom(marker)], dtype=object), allow_pickle=True)
        samples[0]["features.npy"] = buffer.getvalue()
    else:
        samples[0][payload] = pickle.dumps(_Boom(marker))
    _rewrite_shard(shard_dir, 0, samples)

    def forbidden(*args, **kwargs):
        raise AssertionError("a shard payload was unpickled")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(np, "load", forbidden)
    with pytest.raises(CorruptShardError, match="object-dtype|unsafe member"):
        list(WindowShards(shard_dir).iter_windows())
    reader = WindowShards(shard_dir, on_corrupt="skip")
    assert len(list(reader.iter_windows())) == _total() - 1
    assert reader.skipped.samples == 1
    assert not marker.exists()


def test_decode_npy_refuses_object_dtype_without_unpickling(tmp_path):
    marker = tmp_path / "m"
    buffer = io.BytesIO()
    np.save(buffer, np.array([_Boom(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="object-dtype"):
        decode_npy(buffer.getvalue())
    assert not marker.exists()
    with pytest.raises(ValueError, match="refusing"):
        encode_npy(np.array([object()], dtype=object))


# ---------------------------------------------------------------- atomic writes


def _snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _crashing(after):
    for i, item in enumerate(videos()):
        if i == after:
            raise RuntimeError("feature extraction crashed")
        yield item


def test_crash_mid_write_leaves_previous_set_intact(shard_dir):
    before = _snapshot(shard_dir)
    with pytest.raises(RuntimeError, match="crashed"):
        write(shard_dir, vids=_crashing(3), maxcount=2)
    assert _snapshot(shard_dir) == before
    assert sorted(p.name for p in shard_dir.parent.iterdir()) == ["windows"], "no temporary directory left"
    assert len(list(WindowShards(shard_dir).iter_windows())) == _total()


def test_crash_mid_write_without_previous_set_leaves_nothing(tmp_path):
    out = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="crashed"):
        write(out, vids=_crashing(2))
    assert list(tmp_path.iterdir()) == []


def test_failed_swap_restores_previous_set(shard_dir, monkeypatch):
    before = _snapshot(shard_dir)
    real_rename = os.rename
    calls = []

    def flaky_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new set moving in
            raise OSError("disk full")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", flaky_rename)
    with pytest.raises(OSError, match="disk full"):
        write(shard_dir, maxcount=2)
    monkeypatch.undo()
    assert _snapshot(shard_dir) == before


def test_rewrite_replaces_set_and_set_without_manifest_is_never_read(shard_dir):
    write(shard_dir, maxcount=100)
    assert len(_manifest(shard_dir)["shards"]) == 1
    assert sorted(p.name for p in shard_dir.iterdir()) == [MANIFEST_NAME, "shard-000000.tar"]
    (shard_dir / MANIFEST_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        WindowShards(shard_dir)


def test_refuses_to_replace_a_foreign_directory(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        write(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_bad_inputs_are_named(tmp_path):
    record, features, mask = make_video("v.1", 10, 0)
    with pytest.raises(ValueError, match="'v.1'"):
        write(tmp_path / "a", vids=[(record, features, mask)])
    record, features, mask = make_video("v", 10, 0)
    with pytest.raises(ValueError, match=r"features must be \[10, D\]"):
        write(tmp_path / "b", vids=[(record, features[:9], mask)])
    with pytest.raises(ValueError, match="float16 range"):
        write(tmp_path / "c", vids=[(record, features * 1e6, mask)])
    with pytest.raises(ValueError, match="stride"):
        write_window_shards(tmp_path / "d", [], window=4, stride=5, manifest_extra={}, quiet=True)
    with pytest.raises(ValueError, match="no samples"):
        write(tmp_path / "e", vids=[])
    assert list(tmp_path.iterdir()) == []


def test_shard_windows_command(tmp_path, capsys):
    import affbench
    from affbench.cli import main

    root = pathlib.Path(__file__).parent / "fixtures" / "affwild2" / "root"
    records = affbench.create("dataset", "affwild2", root=str(root)).videos("va", "train")
    feats = tmp_path / "feats"
    feats.mkdir()
    rng = np.random.default_rng(0)
    for record in records:
        np.save(feats / f"{record.video}.npy", rng.normal(size=(record.n_frames, 4)).astype(np.float32))
    out = tmp_path / "windows"
    args = ["--quiet", "shard", "windows", "--root", str(root), "--task", "va", "--split", "train",
            "--features", str(feats), "--backbone", "mine", "--weights-id", "sha256:1", "--window", "3",
            "--stride", "2", "--out", str(out)]
    assert main(args) == 0
    reader = WindowShards(out, expect={"backbone": {"name": "mine", "weights_id": "sha256:1"}, "window": 3,
                                       "missing_faces": "mask", "task": "va"})
    windows = list(reader.iter_windows())
    assert {w["video"] for w in windows} == {r.video for r in records}
    for record in records:
        mine = [w for w in windows if w["video"] == record.video]
        feature = np.load(feats / f"{record.video}.npy").astype(np.float16)
        for w in mine:
            real = w["frames"] > 0
            idx = w["frames"][real] - 1
            np.testing.assert_array_equal(w["mask"][real], record.has_image[idx])
            np.testing.assert_array_equal(w["features"][real][w["mask"][real]], feature[idx][record.has_image[idx]])
    (feats / f"{records[0].video}.npy").unlink()
    assert main(args) == 2
    assert f"{records[0].video}.npy is missing" in capsys.readouterr().err
    assert len(list(WindowShards(out).iter_windows())) == len(windows), "the failed run kept the previous set"
