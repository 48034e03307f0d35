"""SynthAffect: determinism, the Aff-Wild2 format of what it writes, atomic generation and the dataset object."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

import affbench
from affbench.data.affwild2_layout import (
    CHALLENGE_DIRS,
    FILE_HEADERS,
    IMAGES_DIR,
    SPLIT_DIRS,
    TASKS,
    read_layout,
)
from affbench_plugins.datasets.synthaffect import (
    GENERATOR_VERSION,
    SizeSpec,
    SynthAffectDataset,
    default_root,
    generate_synthaffect,
)
from affbench_plugins.datasets.synthaffect import generate as generate_module
from affbench_plugins.datasets.synthaffect.facs import AU_THRESHOLD, make_timeline
from affbench_plugins.datasets.synthaffect.plan import SIZES, plan_sources


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate_synthaffect(tmp_path_factory.mktemp("a") / "tiny", size="tiny", seed=0, quiet=True)


def _annotation_files(root: Path, task: str) -> list[Path]:
    return sorted((root / "annotations" / CHALLENGE_DIRS[task][0]).glob("*/*.txt"))


# -- determinism --------------------------------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes_and_another_seed_differs(tiny, tmp_path):
    again = generate_synthaffect(tmp_path / "again", size="tiny", seed=0, quiet=True, workers=2)
    assert _tree_digest(again) == _tree_digest(tiny)  # also across worker processes
    other = generate_synthaffect(tmp_path / "other", size="tiny", seed=1, quiet=True)
    digest, other_digest = _tree_digest(tiny), _tree_digest(other)
    shared = set(digest) & set(other_digest)
    assert sum(digest[k] != other_digest[k] for k in shared) > 0.9 * len(shared)


def test_videos_are_independent_of_each_other():
    # A video's random stream depends only on (seed, video index): the same plan entry renders the same frames
    # whatever else the dataset holds.
    from affbench_plugins.datasets.synthaffect.video import synthesize_source

    plan = plan_sources(SIZES["tiny"], 3)[2]
    a, b = synthesize_source(3, plan), synthesize_source(3, plan)
    for ta, tb in zip(a, b, strict=True):
        assert all((fa is None and fb is None) or np.array_equal(fa, fb)
                   for fa, fb in zip(ta.frames, tb.frames, strict=True))


# -- format -------------------------------------------------------------------------------------------------------
def test_layout_headers_and_value_ranges(tiny):
    for task in TASKS:
        for split in SPLIT_DIRS.values():
            assert (tiny / "annotations" / CHALLENGE_DIRS[task][0] / split).is_dir()
        files = _annotation_files(tiny, task)
        assert files
        for path in files:
            lines = path.read_text().split("\n")
            assert lines[0] == ",".join(FILE_HEADERS[task])
            assert lines[-1] == "" and all(lines[1:-1])
            for line in lines[1:-1]:
                values = [float(v) for v in line.split(",")]
                if task == "va":
                    assert values == [-5.0, -5.0] or all(-1.0 <= v <= 1.0 for v in values)
                elif task == "expr":
                    assert len(values) == 1 and values[0] in set(range(-1, 8))
                    assert line.lstrip("-").isdigit()
                else:
                    assert len(values) == 12
                    assert set(values) <= {0.0, 1.0} or values == [-1.0] * 12


def test_invalid_markers_missing_faces_and_two_face_videos_appear(tiny, tmp_path):
    small_like = generate_synthaffect(tmp_path / "s", quiet=True,
                                      size=SizeSpec("check", singles=6, pairs=2, mean_frames=120))
    for root in (tiny, small_like):
        images = root / IMAGES_DIR
        videos = sorted(p.name for p in images.iterdir())
        assert any(v.endswith("_left") for v in videos) and any(v.endswith("_right") for v in videos)
        for video in videos:
            if video.endswith("_left"):
                assert video[: -len("_left")] + "_right" in videos
        names = [sorted(p.name for p in (images / v).iterdir()) for v in videos]
        assert all(n and all(len(x) == 9 and x.endswith(".jpg") for x in n) for n in names)
        assert all(n[0] == "00001.jpg" or int(n[0][:5]) > 1 for n in names)
    # Across both datasets every nuisance of the format shows up at least once.
    texts = {task: "".join(p.read_text() for root in (tiny, small_like) for p in _annotation_files(root, task))
             for task in TASKS}
    assert "\n-5,-5\n" in texts["va"]
    assert "\n-1\n" in texts["expr"]
    assert "\n" + ",".join(["-1"] * 12) + "\n" in texts["au"]
    assert "\n7\n" in texts["expr"]  # Other
    records = [r for root in (tiny, small_like) for task in TASKS for split in ("train", "validation")
               for r in read_layout(root / "annotations", root / IMAGES_DIR, task, split)]
    has_image = np.concatenate([r.has_image for r in records])
    assert 0.7 < has_image.mean() < 1.0  # some frames have no face image
    # Some annotation files run past the last image (as in Aff-Wild2).
    assert any(not r.has_image[-1] for r in records)


def test_tasks_cover_overlapping_but_different_video_sets(tiny, tmp_path):
    root = generate_synthaffect(tmp_path / "s", quiet=True, size=SizeSpec("sets", singles=12, pairs=1,
                                                                           mean_frames=40))
    sets = {task: {p.stem for p in _annotation_files(root, task)} for task in TASKS}
    assert len(set(map(frozenset, sets.values()))) > 1
    assert sets["va"] & sets["expr"] & sets["au"]
    for task in TASKS:  # every task has both splits
        for split in SPLIT_DIRS.values():
            assert list((root / "annotations" / CHALLENGE_DIRS[task][0] / split).glob("*.txt"))


def test_images_are_112_jpegs(tiny):
    from PIL import Image

    first = next(iter(sorted((tiny / IMAGES_DIR).rglob("*.jpg"))))
    with Image.open(first) as image:
        assert image.format == "JPEG" and image.size == (112, 112) and image.mode == "RGB"


def test_metadata_records_seed_size_version_and_counts(tiny):
    meta = json.loads((tiny / "synthaffect.json").read_text())
    assert meta["seed"] == 0 and meta["size"] == "tiny" and meta["generator_version"] == GENERATOR_VERSION
    counts = meta["counts"]
    assert counts["videos"] == SIZES["tiny"].videos == len(meta["videos"])
    assert 450 <= counts["frames"] <= 750
    assert counts["images"] == sum(1 for _ in (tiny / IMAGES_DIR).rglob("*.jpg"))
    for task in TASKS:
        files = _annotation_files(tiny, task)
        assert sum(counts["per_task"][task][s]["videos"] for s in ("train", "validation")) == len(files)


# -- labels follow FACS -------------------------------------------------------------------------------------------
def test_au_labels_threshold_intensities_and_expressions_drive_prototypes():
    from affbench_plugins.datasets.synthaffect.facs import HAPPINESS, UNIT_INDEX

    timeline = make_timeline(np.random.default_rng(0), 3000, expressiveness=1.0, talkativeness=1.0)
    labels = timeline.au_labels()
    assert np.array_equal(labels, (timeline.intensity[:, :12] >= AU_THRESHOLD).astype(int))
    happy = timeline.expression == HAPPINESS
    assert happy.any()
    assert timeline.intensity[happy, UNIT_INDEX["AU12"]].mean() > 0.5
    assert timeline.intensity[~happy, UNIT_INDEX["AU12"]].mean() < 0.3
    # Valence and arousal are smooth: no jumps bigger than a fraction of the range between frames.
    assert np.abs(np.diff(timeline.valence)).max() < 0.15
    assert np.abs(np.diff(timeline.arousal)).max() < 0.15
    assert timeline.valence[happy].mean() > timeline.valence[~happy].mean() + 0.2


# -- generation mechanics -----------------------------------------------------------------------------------------
def test_existing_dataset_is_reused_and_a_mismatch_is_refused(tiny):
    stamp = (tiny / "synthaffect.json").stat().st_mtime_ns
    assert generate_synthaffect(tiny, size="tiny", seed=0, quiet=True) == tiny
    assert (tiny / "synthaffect.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="seed 0"):
        generate_synthaffect(tiny, size="tiny", seed=5, quiet=True)


def test_refuses_a_non_empty_foreign_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a SynthAffect dataset"):
        generate_synthaffect(tmp_path / "x", size="tiny", quiet=True)


def test_a_crash_leaves_nothing_behind(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(generate_module, "write_track", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_synthaffect(tmp_path / "crash", size="tiny", quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    stale = tmp_path / ".d.tmp-999999999-abc"
    stale.mkdir()
    generate_synthaffect(tmp_path / "d", size=SizeSpec("t", singles=2, pairs=0, mean_frames=30), quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_bad_options_name_what_is_accepted():
    with pytest.raises(ValueError, match="tiny, small, medium, large"):
        SynthAffectDataset(size="huge")
    with pytest.raises(ValueError, match="non-negative integer"):
        SynthAffectDataset(seed=-1)
    with pytest.raises(ValueError, match="mean_frames"):
        SizeSpec("x", singles=2, pairs=0, mean_frames=5)


# -- dataset object -----------------------------------------------------------------------------------------------
def test_registered_dataset_generates_on_first_use_in_affbench_home(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("AFFBENCH_HOME", str(tmp_path))
    assert default_root("tiny", 0) == tmp_path / "synthaffect" / "tiny-seed0"
    dataset = affbench.create("dataset", "synthaffect", size="tiny", seed=0, quiet=True)
    assert dataset.name == "synthaffect"
    assert not dataset.root.exists()  # nothing happens before first use
    records = dataset.videos("va", "train")
    assert dataset.root == tmp_path / "synthaffect" / "tiny-seed0"
    assert dataset.image_root.is_absolute() and dataset.image_root == dataset.root / IMAGES_DIR
    assert [r.video for r in records] == sorted(r.video for r in records)
    for record in records:
        for path in record.images:
            assert path == "" or (dataset.image_root / path).is_file()
    assert _tree_digest(dataset.root) == _tree_digest(tiny)
    prov = dataset.provenance()
    assert prov["name"] == "synthaffect" and prov["seed"] == 0 and prov["size"] == "tiny"
    assert prov["generator_version"] == GENERATOR_VERSION and prov["root"] == str(dataset.root)
    with pytest.raises(ValueError, match="accepted"):
        dataset.videos("valence", "train")
    with pytest.raises(ValueError, match="accepted"):
        dataset.videos("va", "test")
    assert not [p for p in (tmp_path / "synthaffect").iterdir() if p.name.startswith(".")]


def test_explicit_root_and_custom_size(tmp_path):
    dataset = SynthAffectDataset(size={"name": "mini", "singles": 2, "pairs": 1, "mean_frames": 40}, seed=2,
                                 root=tmp_path / "mine", quiet=True)
    videos = {r.video for split in ("train", "validation") for task in TASKS
              for r in dataset.videos(task, split)}
    assert len(videos) == 4 and os.path.isdir(tmp_path / "mine" / IMAGES_DIR)
    assert dataset.metadata()["size_spec"]["singles"] == 2
