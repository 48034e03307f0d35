"""K-fold splits grouped by source video, and the fold manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from affbench.data.cli import main as data_main
from affbench.data.folds import (
    FoldError,
    fold_frame_counts,
    hold_out_sources,
    make_folds,
    read_fold_manifest,
    split_records,
    write_fold_manifest,
)
from affbench.data.records import VideoRecord, source_video

FIXTURE_ROOT = Path(__file__).parent / "fixtures" / "affwild2" / "root"

pytestmark = pytest.mark.filterwarnings("ignore:affbench. skipped plugin:RuntimeWarning")


def record(video: str, n: int) -> VideoRecord:
    return VideoRecord(video, source_video(video), [""] * n, np.zeros((n, 2), np.float32), np.ones(n, bool))


def corpus(n_sources: int = 30, seed: int = 1) -> list[VideoRecord]:
    """Source videos of varied length; every third one has _left and _right tracks."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n_sources):
        n = int(rng.integers(20, 400))
        if i % 3 == 0:
            records += [record(f"src{i:03d}_left", n), record(f"src{i:03d}_right", n + 7)]
        else:
            records.append(record(f"src{i:03d}", n))
    return records


def test_left_and_right_never_straddle_folds():
    records = corpus()
    for seed in range(5):
        for fold in make_folds(records, k=5, seed=seed):
            for side in ("train", "validation"):
                sources = {source_video(v) for v in fold[side]}
                other = "validation" if side == "train" else "train"
                assert not sources & {source_video(v) for v in fold[other]}


def test_every_video_is_validation_exactly_once_and_train_otherwise():
    records = corpus()
    folds = make_folds(records, k=5, seed=3)
    assert len(folds) == 5
    everything = sorted(r.video for r in records)
    held_out = sorted(v for fold in folds for v in fold["validation"])
    assert held_out == everything
    for fold in folds:
        assert sorted(fold["train"] + fold["validation"]) == everything
        assert fold["train"] == sorted(fold["train"]) and fold["validation"] == sorted(fold["validation"])


def test_stable_for_a_seed_and_different_for_another():
    records = corpus()
    assert make_folds(records, k=5, seed=7) == make_folds(list(reversed(records)), k=5, seed=7)
    assert make_folds(records, k=5, seed=7) != make_folds(records, k=5, seed=8)


def test_known_assignment_is_pinned():
    # Guards the seeded order against accidental changes: a saved manifest must stay reproducible.
    records = [record(f"v{i}", 10 * (i + 1)) for i in range(6)]
    folds = make_folds(records, k=3, seed=0)
    assert [f["validation"] for f in folds] == [["v5"], ["v2", "v4"], ["v0", "v1", "v3"]]
    assert fold_frame_counts(records, folds) == [60, 80, 70]
    assert [f["validation"] for f in make_folds(records, k=3, seed=1)] == [["v1", "v4"], ["v2", "v5"], ["v0", "v3"]]


def test_folds_are_balanced_by_frames():
    records = corpus(60)
    counts = fold_frame_counts(records, make_folds(records, k=5, seed=0))
    largest_group = max(r.n_frames for r in records) * 2 + 7
    assert max(counts) - min(counts) <= largest_group
    assert sum(counts) == sum(r.n_frames for r in records)


def test_k_larger_than_source_videos_is_a_clear_error():
    records = [record("a_left", 5), record("a_right", 5), record("b", 5), record("c", 5)]
    with pytest.raises(FoldError, match=r"k=4 folds need at least 4 source videos, but the records hold 3"):
        make_folds(records, k=4)
    assert len(make_folds(records, k=3)) == 3


@pytest.mark.parametrize("k", [0, 1, 2.5, True])
def test_k_must_be_an_integer_of_at_least_two(k):
    with pytest.raises(FoldError, match="k must be an integer >= 2"):
        make_folds(corpus(5), k=k)


def test_duplicate_video_is_an_error():
    with pytest.raises(FoldError, match="video 'a' appears twice"):
        make_folds([record("a", 3), record("a", 4), record("b", 2)], k=2)


def test_split_records():
    records = corpus(10)
    fold = make_folds(records, k=2, seed=0)[1]
    train, validation = split_records(records, fold)
    assert {r.video for r in train} == set(fold["train"])
    assert {r.video for r in validation} == set(fold["validation"])
    with pytest.raises(FoldError, match="not in the records: ghost"):
        split_records(records, {"train": ["ghost"], "validation": []})


def test_manifest_round_trip(tmp_path):
    records = corpus()
    folds = make_folds(records, k=5, seed=11)
    meta = {"task": "va", "k": 5, "seed": 11, "provenance": {"name": "affwild2", "annotation_sha256": "ab" * 32}}
    path = write_fold_manifest(tmp_path / "runs" / "fold_manifest.json", folds, meta)
    assert path.is_file() and not path.with_name(path.name + ".tmp").exists()
    manifest = read_fold_manifest(path)
    assert manifest.folds == folds and manifest.meta == meta
    loaded_folds, loaded_meta = manifest
    assert loaded_folds == folds and loaded_meta == meta
    payload = json.loads(path.read_text())
    assert payload["format"] == "affbench-folds" and payload["version"] == 1 and payload["k"] == 5


def test_manifest_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("{not json")
    with pytest.raises(FoldError, match=rf"{path}:1: not valid JSON"):
        read_fold_manifest(path)
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(FoldError, match="key 'format' must be 'affbench-folds'"):
        read_fold_manifest(path)
    path.write_text(json.dumps({"format": "affbench-folds", "version": 1, "k": 1,
                                "folds": [{"train": ["a"], "validation": ["a"]}]}))
    with pytest.raises(FoldError, match=r"key 'folds'\[0\]: videos on both sides: a"):
        read_fold_manifest(path)
    path.write_text(json.dumps({"format": "affbench-folds", "version": 1, "k": 2,
                                "folds": [{"train": ["a"], "validation": ["b"]}]}))
    with pytest.raises(FoldError, match="key 'k' is 2 but 'folds' holds 1 folds"):
        read_fold_manifest(path)
    with pytest.raises(FoldError, match="exactly the keys 'train' and 'validation'"):
        write_fold_manifest(path, [{"train": []}], {})


def test_cli_folds_on_the_fixture(tmp_path, capsys):
    out = tmp_path / "folds.json"
    code = data_main(["--quiet", "data", "folds", "--root", str(FIXTURE_ROOT), "--task", "expr", "--k", "3",
                      "--seed", "4", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    folds, meta = read_fold_manifest(out)
    assert meta["task"] == "expr" and meta["k"] == 3 and meta["seed"] == 4
    assert len(meta["provenance"]["annotation_sha256"]["expr"]) == 64
    # The fixture's EXPR pair is split across the official train and validation: folds keep it together.
    for fold in folds:
        assert ("12-24-1920x1080_left" in fold["validation"]) == ("12-24-1920x1080_right" in fold["validation"])
    assert sorted(v for f in folds for v in f["validation"]) == [
        "10-60-1280x720", "12-24-1920x1080_left", "12-24-1920x1080_right", "20-30-640x360", "video_short",
    ]
    # Printed to stdout when no --out is given: the same manifest text.
    capsys.readouterr()
    assert data_main(["--quiet", "data", "folds", "--root", str(FIXTURE_ROOT), "--task", "expr", "--k", "3",
                      "--seed", "4"]) == 0
    assert capsys.readouterr().out == out.read_text()


def test_cli_folds_k_too_large(capsys):
    code = data_main(["data", "folds", "--root", str(FIXTURE_ROOT), "--task", "expr", "--k", "5"])
    assert code == 2
    assert "without any 'expr' video (4 source videos are labelled for 'expr'); use a smaller k" in \
        capsys.readouterr().err


def test_held_out_training_videos_are_whole_seeded_sources():
    records = corpus()
    kept, held = hold_out_sources(records, 0.2, seed=0)
    total = sum(r.n_frames for r in records)
    held_frames = sum(r.n_frames for r in held)
    assert {r.source for r in kept}.isdisjoint(r.source for r in held)  # _left/_right never straddle
    assert sorted(r.video for r in kept + held) == sorted(r.video for r in records)
    # Sources are added until they hold the fraction: dropping the last one added falls short of it.
    assert held_frames >= 0.2 * total and held_frames < 0.2 * total + 2 * 410
    assert [r.video for r in held] == [r.video for r in records if r in held]  # the records' order is kept
    again_kept, again_held = hold_out_sources(list(reversed(records)), 0.2, seed=0)
    assert {r.video for r in again_held} == {r.video for r in held}  # the draw ignores the input order
    assert {r.video for r in hold_out_sources(records, 0.2, seed=1)[1]} != {r.video for r in held}


def test_holding_out_keeps_one_source_and_needs_two():
    kept, held = hold_out_sources([record("a_left", 10), record("a_right", 10), record("b", 5)], 0.99, seed=0)
    assert len({r.source for r in kept}) == 1 and len({r.source for r in held}) == 1
    with pytest.raises(FoldError, match="at least 2 source videos"):
        hold_out_sources([record("a_left", 10), record("a_right", 10)], 0.2, seed=0)
    with pytest.raises(FoldError, match="between 0 and 1"):
        hold_out_sources(corpus(), 1.0, seed=0)
