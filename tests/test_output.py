"""The one home of atomic writes and JSON normalisation: nothing half-written is ever left, and cache keys hash the
same values to the same key as before these helpers were shared."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from affbench.model import Preprocess
from affbench.output import open_atomic, read_json_object, to_jsonable, write_json, write_manifest
from affbench.stages.feature_cache import backbone_identity, stable_hash


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"epoch": 1})
    with pytest.raises(RuntimeError), open_atomic(path) as handle:
        handle.write('{"epoch": 2')
        raise RuntimeError("killed mid-write")
    assert read_json_object(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_bytes_are_written_whole(tmp_path):
    with open_atomic(tmp_path / "w.bin", "wb") as handle:
        handle.write(b"\x00\x01")
    assert (tmp_path / "w.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="mode 'w' or 'wb'"), open_atomic(tmp_path / "x", "a"):
        pass


@dataclasses.dataclass
class _Point:
    x: float
    where: Path


def test_json_normalisation():
    value = {1: (np.int64(3), np.float32(0.5)), "a": np.arange(3), "p": _Point(math.inf, Path("/d"))}
    assert to_jsonable(value) == {"1": [3, 0.5], "a": [0, 1, 2], "p": {"x": "inf", "where": "/d"}}
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        to_jsonable({"f": object()})
    assert to_jsonable({"f": 1j}, other=str) == {"f": "1j"}


def test_a_manifest_and_what_reads_it(tmp_path):
    write_manifest(tmp_path, {"stage": "features", "shape": (2, 3)})
    assert read_json_object(tmp_path / "manifest.json") == {"stage": "features", "shape": [2, 3]}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"bad.json: expected a JSON object, got list"):
        read_json_object(tmp_path / "bad.json")


def test_cache_keys_are_those_of_earlier_releases():
    # Keys computed before the JSON normaliser was shared: a change here would orphan every cache entry.
    parts = {"stage": "windows", "videos": ("a", "b"), "root": Path("/x/y"), "n": np.int64(3), "f": np.float32(0.5),
             "opts": {"k": [1, 2.0, None, True]}}
    assert stable_hash(parts) == "b256d3b640997e45"
    preprocess = Preprocess(image_size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="squash")
    identity = backbone_identity({"name": "clip", "options": {"arch": "ViT-B-16"}}, "openai:sha", preprocess)
    # A 16-px backbone reads decoded crops, which its identity names on purpose; the rest hashes as before.
    assert identity.pop("input") == "uint8 crops at input size"
    assert stable_hash(identity) == "1bd7ce1c2b4f1985"
