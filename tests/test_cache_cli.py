"""`affbench cache list|clear`: where the cache is, what it holds, and removal that never leaves half an entry."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from faults import assert_input_error, cli

from affbench import cache_inventory
from affbench.home import affbench_home, cache_root
from affbench.stages import feature_cache as cache

DAY = 86400.0


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AFFBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _entry(folder: Path, *, size: int, days_old: float, complete: bool = True, marker: str = "manifest.json") -> Path:
    """A cache entry of `size` payload bytes (plus its marker), last touched `days_old` days ago."""
    folder.mkdir(parents=True)
    (folder / "payload.bin").write_bytes(b"x" * size)
    if complete:
        (folder / marker).write_text("{}")
    stamp = time.time() - days_old * DAY
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (stamp, stamp))
    return folder


def _sizes(home: Path) -> dict[str, Path]:
    return {
        "old_frames": _entry(home / "cache" / "frames" / "aaaa", size=1000, days_old=30),
        "new_frames": _entry(home / "cache" / "frames" / "bbbb", size=2000, days_old=0.01),
        "old_windows": _entry(home / "cache" / "windows" / "cccc", size=500, days_old=10, complete=False),
        "synth": _entry(home / "synthaffect" / "tiny-seed0", size=300, days_old=20, marker="synthaffect.json"),
    }


def test_the_cache_is_under_affbench_home(home, monkeypatch, tmp_path):
    assert cache_root() == home / "cache"
    assert cache.stage_dir("frames", "k") == home / "cache" / "frames" / "k"
    from affbench_plugins.datasets.synthaffect.generate import default_root

    assert default_root("tiny", 0) == home / "synthaffect" / "tiny-seed0"
    # Unset (or empty): ~/.cache/affbench, the cache in its cache/ folder like with the variable set.
    monkeypatch.setenv("AFFBENCH_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert affbench_home() == tmp_path / "user" / ".cache" / "affbench"
    assert cache_root() == tmp_path / "user" / ".cache" / "affbench" / "cache"
    assert default_root("tiny", 0).parent.parent == affbench_home()


def test_list_shows_each_stage_with_entries_size_and_age(home):
    entries = _sizes(home)
    out = cli("cache", "list", "--entries")
    assert out.code == 0, out.err
    summary, _, detail_text = out.out.partition("\n\nSTAGE ")[2].partition("\n\n")
    lines = {line.split()[0]: line for line in summary.splitlines()}
    assert f"cache: {home / 'cache'}" in out.out
    assert lines["frames"].split()[1:4] == ["2", "3.0", "kB"]  # 1000 + 2000 bytes + two 2-byte manifests
    frames = cache_inventory.list_entries(["frames"])
    assert [(e.path.name, e.size, e.files, e.complete) for e in frames] == [("aaaa", 1002, 2, True),
                                                                         ("bbbb", 2002, 2, True)]
    assert "1 (1 partial)" in lines["windows"] and "30 d" not in lines["windows"]
    assert "10.0 d ago" in lines["windows"]
    assert "0 B" in lines["features"] and "0 B" in lines["finetune"]
    assert "synthaffect" in lines and str(home / "synthaffect") in lines["synthaffect"]
    assert lines["total"].split()[1] == "4"
    detail = {line.split()[1]: line for line in detail_text.splitlines()[1:]}
    assert "30.0 d ago" in detail["aaaa"] and "complete" in detail["aaaa"]
    assert "partial" in detail["cccc"]
    assert entries["old_frames"].is_dir()


def test_clear_older_than_removes_only_unused_entries_and_dry_run_removes_nothing(home):
    entries = _sizes(home)
    dry = cli("cache", "clear", "--older-than", "15", "--dry-run")
    assert dry.code == 0, dry.err
    assert "would remove 2 entries unused for more than 15 days" in dry.out
    assert all(p.is_dir() for p in entries.values())

    done = cli("cache", "clear", "--older-than", "15")
    assert done.code == 0, done.err
    assert not entries["old_frames"].exists() and not entries["synth"].exists()
    assert entries["new_frames"].is_dir() and entries["old_windows"].is_dir()
    assert "removed 2 entries" in done.out

    only = cli("cache", "clear", "--stage", "windows")
    assert only.code == 0 and not entries["old_windows"].exists() and entries["new_frames"].is_dir()
    assert cli("cache", "clear").code == 0
    assert not any(p.exists() for p in entries.values())
    assert not [p for p in (home / "cache" / "frames").iterdir()]  # no hidden leftovers either


def test_a_cache_hit_counts_as_use(home):
    entry = _entry(home / "cache" / "windows" / "dddd", size=10, days_old=40)
    assert cache.read_manifest(entry) == {}
    assert cli("cache", "clear", "--older-than", "1").out.startswith("removed 0 entries")
    assert entry.is_dir()


def test_an_interrupted_removal_never_leaves_a_valid_looking_entry(home, monkeypatch):
    entry = _entry(home / "cache" / "features" / "eeee", size=100, days_old=3)

    def killed(path, *args, **kwargs):
        (Path(path) / "manifest.json").unlink()  # part of the folder is gone when the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        cache_inventory.remove_entry(cache_inventory.list_entries(["features"])[0])
    monkeypatch.undo()
    monkeypatch.setenv("AFFBENCH_HOME", str(home))
    assert not entry.exists()  # the key a run would look up is gone, not half there
    leftover = cache_inventory.list_entries(["features"])
    assert [e.leftover for e in leftover] == [True] and leftover[0].path.name.startswith(".eeee.old-")
    # Left by this (live) process it is a writer at work; once stale, `clear` removes it.
    assert cli("cache", "clear").out.startswith("removed 0 entries")
    stamp = time.time() - 2 * DAY
    os.utime(leftover[0].path, (stamp, stamp))
    out = cli("cache", "list")
    assert "1 temporary folder(s) of interrupted writers" in out.out
    assert cli("cache", "clear").out.startswith(f"removed features {leftover[0].path}")
    assert not leftover[0].path.exists()


def test_bad_input_is_one_line(home):
    assert_input_error(cli("cache", "clear", "--older-than", "soon"), "--older-than", "a number of days")
    assert_input_error(cli("cache", "list", "--stage", "weights"), "--stage", "invalid choice")
