"""Frame shards: JPEG bytes and labels round trip, loaders decode in workers, corrupt input, atomic writes."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from affbench.data.checksums import ALGORITHM, file_checksum
from affbench.data.frame_shards import FrameShards, decode_jpeg, write_frame_shards
from affbench.data.records import VideoRecord
from affbench.data.shard_manifest import MANIFEST_NAME
from affbench.data.shard_payloads import CorruptShardError

SIZE = 12


def make_dataset(root, specs=(("a_left", 9), ("a_right", 4), ("b", 6))):
    rng = np.random.default_rng(0)
    records = []
    for name, n in specs:
        (root / name).mkdir(parents=True, exist_ok=True)
        images = []
        for i in range(n):
            if i % 4 == 3:  # no face found on this frame
                images.append("")
                continue
            rel = f"{name}/{i + 1:05d}.jpg"
            pixels = rng.integers(0, 255, size=(SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / rel, quality=90)
            images.append(rel)
        labels = rng.integers(0, 8, size=(n, 1)).astype(np.float32)
        valid = rng.random(n) > 0.3
        labels[~valid] = -1
        records.append(VideoRecord(video=name, source=name.split("_")[0], images=images, labels=labels, valid=valid))
    return records


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "cropped_aligned"
    return root, make_dataset(root)


def write(records, root, out, maxcount=4):
    return write_frame_shards(
        records, root, out, task="expr", dataset_provenance={"name": "synthaffect", "seed": 0}, maxcount=maxcount, quiet=True
    )


def expected(records):
    for r in records:
        for i, image in enumerate(r.images):
            if image:
                yield r, i


def test_round_trip_is_exact(dataset, tmp_path):
    root, records = dataset
    manifest = write(records, root, tmp_path / "frames")
    reader = FrameShards(tmp_path / "frames")
    got = list(reader)
    want = list(expected(records))
    assert len(got) == len(want) == len(reader) == manifest["counts"]["images"]
    for sample, (record, i) in zip(got, want, strict=True):
        assert sample["key"] == f"{record.video}/{i + 1:05d}"
        assert sample["jpg"] == (root / record.images[i]).read_bytes()
        assert (sample["video"], sample["frame"], sample["valid"]) == (record.video, i + 1, bool(record.valid[i]))
        assert sample["labels"].dtype == np.float32 and sample["labels"].tobytes() == record.labels[i].tobytes()
    assert manifest["provenance"] == {"dataset": {"name": "synthaffect", "seed": 0}, "task": "expr"}
    stats = manifest["label_stats"]
    assert stats["frames"] == sum(r.n_frames for r in records)
    all_valid = np.concatenate([r.labels[r.valid, 0] for r in records])
    counts = stats["columns"][0]["value_counts"]
    assert sum(counts.values()) == all_valid.size and counts.get("0", 0) == int((all_valid == 0).sum())


def test_loader_decodes_jpeg_in_workers(dataset, tmp_path):
    root, records = dataset
    write(records, root, tmp_path / "frames", maxcount=3)
    reader = FrameShards(tmp_path / "frames")
    n = len(reader)
    loader = reader.loader(4, num_workers=2, shuffle_seed=1)
    batches = list(loader)
    assert len(batches) == len(loader)
    assert sum(len(b["key"]) for b in batches) == n
    b = batches[0]
    assert tuple(b["image"].shape) == (4, SIZE, SIZE, 3) and str(b["image"].dtype) == "torch.uint8"
    key = b["key"][0]
    video, frame = key.split("/")
    np.testing.assert_array_equal(b["image"][0].numpy(), decode_jpeg((root / video / f"{frame}.jpg").read_bytes()))
    assert str(b["labels"].dtype) == "torch.float32" and tuple(b["labels"].shape) == (4, 1)
    raw = next(iter(reader.loader(2, decode="bytes")))
    assert isinstance(raw["jpg"][0], bytes) and "image" not in raw
    scaled = next(iter(reader.loader(2, transform=lambda im: im[::2, ::2])))
    assert tuple(scaled["image"].shape) == (2, SIZE // 2, SIZE // 2, 3)
    with pytest.raises(ValueError, match="decode"):
        reader.loader(2, decode="pil")


def test_missing_image_is_named(dataset, tmp_path):
    root, records = dataset
    (root / records[1].images[0]).unlink()
    with pytest.raises(FileNotFoundError, match=r"'a_right' frame 1"):
        write(records, root, tmp_path / "frames")
    assert not (tmp_path / "frames").exists()


def _rewrite(directory, index, mutate):
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    entry = manifest["shards"][index]
    path = directory / entry["name"]
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    members = mutate(members)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    entry["bytes"] = path.stat().st_size
    entry["count"] = len({name.split(".")[0] for name, _ in members})
    entry[ALGORITHM] = file_checksum(path)
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    return entry["name"]


@pytest.mark.parametrize("damage", ["truncated", "empty", "missing_jpg", "pickle_member", "bad_json"])
def test_corrupt_shards_under_both_policies(dataset, tmp_path, damage):
    root, records = dataset
    out = tmp_path / "frames"
    manifest = write(records, root, out, maxcount=3)
    total = manifest["num_samples"]
    first = manifest["shards"][0]
    if damage == "truncated":
        data = (out / first["name"]).read_bytes()
        (out / first["name"]).write_bytes(data[:700])
        lost, level = first["count"], "shards"
    elif damage == "empty":
        (out / first["name"]).write_bytes(b"")
        lost, level = first["count"], "shards"
    elif damage == "missing_jpg":
        _rewrite(out, 0, lambda ms: [m for m in ms if m[0] != "a_left/00002.jpg"])
        lost, level = 1, "samples"
    elif damage == "pickle_member":
        _rewrite(out, 0, lambda ms: ms[:2] + [("a_left/00001.pyd", b"\x80\x04K\x01.")] + ms[2:])
        lost, level = 1, "samples"
    else:
        _rewrite(out, 0, lambda ms: [(n, b"{not json" if n == "a_left/00001.json" else d) for n, d in ms])
        lost, level = 1, "samples"
    with pytest.raises(CorruptShardError, match=first["name"]):
        list(FrameShards(out))
    reader = FrameShards(out, on_corrupt="skip")
    assert len(list(reader)) == total - lost
    assert getattr(reader.skipped, level) == 1 and reader.skipped.total == 1
    loader = reader.loader(2, decode="bytes")
    assert sum(len(b["key"]) for b in loader) == total - lost
    assert loader.skipped.total == 1


def test_crash_mid_write_keeps_previous_set(dataset, tmp_path):
    root, records = dataset
    out = tmp_path / "frames"
    write(records, root, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def crashing():
        yield records[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write(crashing(), root, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cropped_aligned", "frames"]


def test_shard_frames_command(tmp_path, capsys):
    from pathlib import Path

    import affbench
    from affbench.cli import main

    root = Path(__file__).parent / "fixtures" / "affwild2" / "root"
    out = tmp_path / "va_train"
    assert main(["--quiet", "shard", "frames", "--root", str(root), "--task", "va", "--split", "train", "--out", str(out)]) == 0
    dataset = affbench.create("dataset", "affwild2", root=str(root))
    records = dataset.videos("va", "train")
    reader = FrameShards(out)
    got = list(reader)
    assert [s["key"] for s in got] == [f"{r.video}/{i + 1:05d}" for r, i in expected(records)]
    assert all(s["jpg"] == (dataset.image_root / f"{s['key']}.jpg").read_bytes() for s in got)
    assert reader.provenance["task"] == "va" and reader.provenance["dataset"]["split"] == "train"
    assert main(["--quiet", "shard", "frames", "--root", str(tmp_path / "nowhere"), "--task", "va",
                 "--split", "train", "--out", str(tmp_path / "x")]) == 2
    assert "affbench shard frames: error:" in capsys.readouterr().err


def test_decoded_crops_are_stored_at_the_input_size_and_read_as_pixels(dataset, tmp_path):
    import torch

    from affbench.model import Preprocess, input_pixels
    from affbench.stages.frame_batches import batch_to_input, frame_batches

    root, records = dataset
    crops = Preprocess(image_size=8, mean=(0.5,) * 3, std=(0.25,) * 3, resize="pad")
    manifest = write_frame_shards(records, root, tmp_path / "frames", task="expr",
                                  dataset_provenance={"name": "synthaffect"}, maxcount=4, quiet=True, crops=crops)
    assert manifest["crops"] == {"image_size": 8, "resize": "pad"}
    samples = list(FrameShards(tmp_path / "frames"))
    assert len(samples) == len(list(expected(records)))
    for sample, (record, i) in zip(samples, expected(records), strict=True):
        assert "jpg" not in sample and sample["pixels"].dtype == np.uint8 and sample["pixels"].shape == (8, 8, 3)
        jpeg = decode_jpeg((root / record.images[i]).read_bytes())
        np.testing.assert_array_equal(sample["pixels"], input_pixels(jpeg, crops)[0].numpy())
    # The backbone's input is the same from a stored crop and from the JPEG it came from (affbench predict --video).
    batch = next(frame_batches(tmp_path / "frames", batch_size=3, workers=0))
    assert batch["image"].shape == (3, 8, 8, 3)
    jpegs = np.stack([decode_jpeg((root / f"{v}/{f:05d}.jpg").read_bytes()) for v, f in
                      zip(batch["video"], batch["frame"], strict=True)])
    cpu = torch.device("cpu")
    torch.testing.assert_close(batch_to_input(batch["image"], crops, cpu), batch_to_input(jpegs, crops, cpu),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match="decode='bytes' reads JPEG frame shards"):
        next(iter(FrameShards(tmp_path / "frames").loader(2, decode="bytes")))


def test_small_backbones_get_decoded_crops_and_large_ones_keep_the_jpeg(dataset, tmp_path, monkeypatch):
    from affbench.data.frame_shards import DECODED_MAX_SIZE
    from affbench.model import Preprocess
    from affbench.stages.stage_inputs import ensure_frame_shards

    monkeypatch.setenv("AFFBENCH_HOME", str(tmp_path / "home"))
    root, records = dataset

    def shards(size):
        data = type("Dataset", (), {"image_root": root})()
        return ensure_frame_shards(records, data, task="expr", provenance={"name": "x"}, selection={"stage": "t"},
                                   stamps="s", preprocess=Preprocess(size, (0.5,) * 3, (0.5,) * 3), quiet=True)

    small, other_small, large = shards(16), shards(32), shards(DECODED_MAX_SIZE + 1)
    assert len({small, other_small, large}) == 3  # the crop size is part of the key
    assert next(iter(FrameShards(small)))["pixels"].shape == (16, 16, 3)
    assert next(iter(FrameShards(other_small)))["pixels"].shape == (32, 32, 3)
    first = next(iter(FrameShards(large)))
    assert first["jpg"] == (root / records[0].images[0]).read_bytes()
    assert shards(DECODED_MAX_SIZE + 7) == large  # JPEG sets serve every large backbone
