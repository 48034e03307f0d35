"""Decoded-crop frame shards read a whole shard at a time give exactly what the sample-by-sample reader gives:
the same batches, bit for bit, in the same order, and the same errors and skips on damaged shards."""

from __future__ import annotations

import io

import numpy as np
import pytest
from test_frame_shards import _rewrite, make_dataset

from affbench.data.frame_shards import FrameShards, read_crop_shard, write_frame_shards
from affbench.data.shard_loader import ShardLoader
from affbench.data.shard_payloads import CorruptShardError
from affbench.model import Preprocess
from affbench.stages.frame_batches import CropShardReader, FrameDecoder, collate_frames

CROPS = Preprocess(image_size=8, mean=(0.5,) * 3, std=(0.25,) * 3, resize="pad")


@pytest.fixture
def crop_set(tmp_path):
    root = tmp_path / "cropped_aligned"
    records = make_dataset(root)
    out = tmp_path / "frames"
    write_frame_shards(records, root, out, task="expr", dataset_provenance={"name": "synthaffect"}, maxcount=3,
                       quiet=True, crops=CROPS)
    return out


def read(directory, *, whole: bool, wanted=None, on_corrupt="raise", **options):
    """(batches, skip counts) of the frame-batch stream, with or without the whole-shard reader."""
    shards = FrameShards(directory, on_corrupt=on_corrupt)
    stream = shards.batch_stream(decode=FrameDecoder(wanted), collate=collate_frames, batch_size=3,
                                 read_shard=CropShardReader(wanted) if whole else None, **options)
    loader = ShardLoader(stream)
    batches = list(loader)
    return batches, (loader.skipped.shards, loader.skipped.samples, loader.skipped.reasons)


def assert_same_batches(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.keys() == b.keys()
        assert a["video"] == b["video"] and a["frame"] == b["frame"]
        assert a["valid"].equal(b["valid"])
        assert (a["labels"] is None and b["labels"] is None) or a["labels"].equal(b["labels"])  # None: all dropped
        images = a["image"] if isinstance(a["image"], list) else list(a["image"])
        others = b["image"] if isinstance(b["image"], list) else list(b["image"])
        assert type(a["image"]) is type(b["image"]) and len(images) == len(others)
        for x, y in zip(images, others, strict=True):
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


@pytest.mark.parametrize("options", [{}, {"wanted": {"a_left", "b"}}, {"shuffle_seed": 5, "epoch": 1},
                                     {"wanted": {"a_right"}, "shuffle_seed": 2, "rank": 1, "world_size": 2}])
def test_whole_shard_reads_give_the_sample_by_sample_batches(crop_set, options):
    wanted = options.get("wanted")
    for shard in FrameShards(crop_set).shards:  # every shard is read whole: the fast path runs
        samples = read_crop_shard(shard, None if wanted is None else frozenset(wanted))
        assert isinstance(samples, list) and len(samples) == shard.count
    whole, skipped = read(crop_set, whole=True, **options)
    assert sum(len(b["video"]) for b in whole) > 0
    single, single_skipped = read(crop_set, whole=False, **options)
    assert_same_batches(whole, single)
    assert skipped == single_skipped == (0, 0, [])


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


DAMAGE = {
    # what the general reader refuses: the sample or the shard is skipped, or the read fails naming it
    "bad_json": lambda ms: [(n, b"{not json" if n.endswith("00002.json") else d) for n, d in ms],
    "labels_not_numbers": lambda ms: [(n, b'{"frame":1,"labels":["x"],"valid":true,"video":"a_left"}'
                                       if n.endswith("00001.json") else d) for n, d in ms],
    "no_pixels": lambda ms: [m for m in ms if not m[0].endswith("00002.pixels.npy")],
    "pickle_member": lambda ms: ms[:2] + [("a_left/00001.pyd", b"\x80\x04K\x01.")] + ms[2:],
    "float_pixels": lambda ms: [(n, _npy(np.zeros((8, 8, 3), np.float32)) if n.endswith("00002.pixels.npy") else d)
                                for n, d in ms],
    "extra_sample": lambda ms: ms + [("a_left/00009.json", b'{"frame":9,"labels":[1],"valid":true,"video":"a_left"}')],
    # what it reads, differently from the shard's other crops: the whole-shard reader leaves it to the general one
    "other_size": lambda ms: [(n, _npy(np.full((4, 4, 3), 7, np.uint8)) if n.endswith("00002.pixels.npy") else d)
                              for n, d in ms],
    "fortran_order": lambda ms: [(n, _npy(np.asfortranarray(np.arange(192, dtype=np.uint8).reshape(8, 8, 3)))
                                  if n.endswith("00002.pixels.npy") else d) for n, d in ms],
}


@pytest.mark.parametrize("damage", [*DAMAGE, "truncated"])
@pytest.mark.parametrize("on_corrupt", ["raise", "skip"])
def test_damaged_shards_read_as_the_sample_by_sample_reader_reads_them(crop_set, damage, on_corrupt):
    first = FrameShards(crop_set).shards[0]
    if damage == "truncated":
        data = open(first.path, "rb").read()
        open(first.path, "wb").write(data[:700])
    else:
        _rewrite(crop_set, 0, DAMAGE[damage])
    assert read_crop_shard(FrameShards(crop_set).shards[0]) is None  # left to the sample-by-sample reader
    assert isinstance(read_crop_shard(FrameShards(crop_set).shards[1]), list)
    outcomes = []
    for whole in (True, False):
        try:
            outcomes.append(read(crop_set, whole=whole, on_corrupt=on_corrupt))
        except CorruptShardError as exc:
            outcomes.append(str(exc))
    if isinstance(outcomes[1], str):
        assert outcomes[0] == outcomes[1] and first.path in outcomes[1]
        return
    (whole, skipped), (single, single_skipped) = outcomes
    assert_same_batches(whole, single)
    assert skipped == single_skipped
    if damage in ("other_size", "fortran_order"):
        assert skipped == (0, 0, [])
    else:
        assert on_corrupt == "skip" and skipped[0] + skipped[1] == 1
