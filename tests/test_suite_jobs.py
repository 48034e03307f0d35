"""`affbench suite --jobs N`: runs trained side by side in worker processes give the numbers they give alone,
`auto` divides the cores by the runs' threads, and a bad value or a worker's failure is reported as usual."""

from __future__ import annotations

import json
import pathlib

import pytest
from plugin_install import install_package
from stage_fixtures import TINY_BACKBONE, TINY_PLUGIN, tiny_config

from affbench.cli import main
from affbench.core import registry as registry_module
from affbench.core.config import to_yaml
from affbench.published_results import RESULTS_FILE
from affbench.suite import load_suite, run_suite
from affbench.suite_pool import JobsError, auto_jobs, parse_jobs, run_in_pool

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures

# The tiny backbone as an installed package: a spawned worker is a fresh interpreter that finds plugins by
# their entry points, not by what the test process registered at run time.
PLUGIN_MODULE = f"""
import affbench
from stage_fixtures import TinyNet


@affbench.hookimpl
def affbench_register_backbones(register):
    register({TINY_BACKBONE!r}, TinyNet)
"""


@pytest.fixture
def installed_tiny_backbone(tmp_path, monkeypatch):
    project = {"name": TINY_PLUGIN, "version": "0.0.1", "entry-points": {"affbench": {TINY_PLUGIN: "tinynet_entry"}}}
    monkeypatch.syspath_prepend(str(install_package(tmp_path / "site", project, {"tinynet_entry.py": PLUGIN_MODULE})))
    registry_module.reset_registry()
    yield
    registry_module.reset_registry()


def _tiny_suite(tmp_path, synth_root):
    """Three rows (two VA rows sharing one fine-tune, one EXPR row), each run on one torch thread."""
    configs = {
        "va_ours.yaml": tiny_config(synth_root, train={"threads": 1, "epochs": 2}),
        "va_wo_finetune.yaml": tiny_config(synth_root, name="wo_finetune", finetune={"enabled": False},
                                           train={"threads": 1, "epochs": 2}),
        "expr_ours.yaml": tiny_config(synth_root, task="expr", data={"folds": 2},
                                      train={"select": "last", "threads": 1, "epochs": 2}),
    }
    for name, config in configs.items():
        (tmp_path / name).write_text(to_yaml(config))
    suite = tmp_path / "tiny_suite.yaml"
    suite.write_text("name: tiny\nfolds: [0]\nconfigs: [va_ours.yaml, va_wo_finetune.yaml, expr_ours.yaml]\n")
    return load_suite(suite)


def test_runs_side_by_side_give_the_numbers_they_give_one_after_another(installed_tiny_backbone, home, synth_root,
                                                                        tmp_path, capsys):
    suite = _tiny_suite(tmp_path, synth_root)
    alone = run_suite(suite, tmp_path / "jobs1", jobs=1, plots=False, echo=False)
    capsys.readouterr()
    shared = run_suite(suite, tmp_path / "jobs2", jobs=2, plots=False, echo=False)
    printed = capsys.readouterr().out.splitlines()

    assert [r["status"] for r in shared["runs"]] == ["trained"] * 3
    # suite.json keeps plan order whatever order the workers finished in.
    assert [(r["task"], r["name"]) for r in shared["runs"]] == [("va", "ours"), ("va", "wo_finetune"),
                                                                ("expr", "ours")]
    for one, two in zip(alone["runs"], shared["runs"], strict=True):
        first = json.loads((tmp_path / "jobs1" / one["task"] / one["name"] / "fold0" / "metrics.json").read_text())
        second = json.loads((tmp_path / "jobs2" / two["task"] / two["name"] / "fold0" / "metrics.json").read_text())
        assert first["metrics"] and first["metrics"] == second["metrics"], (one["task"], one["name"])
    assert (tmp_path / "jobs1" / "report.csv").read_text() == (tmp_path / "jobs2" / "report.csv").read_text()

    # Provenance: a reader knows the runs shared the machine.
    assert alone["jobs"] == 1 and shared["jobs"] == 2
    assert json.loads((tmp_path / "jobs2" / "suite.json").read_text())["jobs"] == 2
    assert json.loads((tmp_path / "jobs2" / RESULTS_FILE).read_text())["jobs"] == 2
    # The parent prints each run's one-line summary as it finishes, under the run's place in the plan.
    for label in ("[1/3] va/ours fold 0", "[2/3] va/wo_finetune fold 0", "[3/3] expr/ours fold 0"):
        assert any(label in line and " s, train " in line for line in printed), (label, printed)
    # The run without a fine-tune is prepared first (workers train it while the parent fine-tunes), the others
    # in plan order.
    preparing = [line.split(":")[0] for line in printed if line.endswith("preparing window shards")]
    assert preparing == ["[2/3] va/wo_finetune fold 0", "[1/3] va/ours fold 0", "[3/3] expr/ours fold 0"]

    # Finished runs are skipped on the next call, in the workers as in this process.
    again = run_suite(suite, tmp_path / "jobs2", jobs=2, plots=False, echo=False)
    assert [r["status"] for r in again["runs"]] == ["skipped (has metrics.json)"] * 3


@pytest.mark.parametrize(("cores", "threads", "runs", "device", "expected"), [
    (2, [1, 1, 1], 16, "cpu", 2),      # the SynthAffect suite on a 2-core machine
    (16, [1, 4, 2], 16, "cpu", 4),     # the widest run sets the width of every slot
    (8, [1], 3, "cpu", 3),             # never more workers than runs
    (8, [1, None], 16, "cpu", 1),      # null threads: a run takes every core
    (3, [2], 16, "cpu", 1),            # a run wider than half the cores: one at a time
    (4, [8], 16, "cpu", 1),            # wider than the machine: still one
    (64, [1], 16, "cuda", 1),          # one GPU: one run on it at a time
    (2, [1], 1, "cpu", 1),
])
def test_auto_jobs(cores, threads, runs, device, expected):
    assert auto_jobs(cores=cores, threads=threads, runs=runs, device=device) == expected


def test_parse_jobs():
    assert parse_jobs(None) == parse_jobs("auto") == parse_jobs(" AUTO ") == "auto"
    assert parse_jobs("3") == parse_jobs(3) == 3
    for bad in ("0", "-1", "x", "1.5", 0, True, ""):
        with pytest.raises(JobsError, match="--jobs"):
            parse_jobs(bad)


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_a_bad_jobs_value_is_one_line_naming_jobs(value, capsys):
    assert main(["suite", "paper", f"--jobs={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--jobs" in err and repr(value) in err


def test_jobs_is_refused_with_the_submitit_launcher(capsys):
    assert main(["suite", "paper", "--launcher", "submitit", "--jobs", "2"]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_a_workers_failure_is_raised_here_as_it_was_raised_there():
    # json.loads is importable in any worker: the first call's input error travels back as itself.
    done = []
    with pytest.raises(json.JSONDecodeError, match="Expecting value") as caught:
        run_in_pool(json.loads, [{"s": "1"}, {"s": "not json"}], jobs=1, on_done=lambda i, r: done.append((i, r)))
    assert done == [(0, 1)]  # the call that finished before it was handed back
    assert "Traceback" in str(caught.value.__cause__)  # the worker's traceback, for a bug's report
    assert run_in_pool(json.loads, [{"s": "[1]"}, {"s": "2"}], jobs=2) == [[1], 2]


def test_calls_start_while_the_caller_still_prepares_the_next_ones(tmp_path):
    """A generator of calls: the first call runs in a worker before the generator yields the second (a
    suite trains a run while it fills the next run's stages), and a failure while preparing is raised here."""
    import time

    marker = tmp_path / "first.txt"

    def calls():
        yield {"file": str(marker), "data": "1"}
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the first call had not run while the second was being prepared"
        yield {"file": str(tmp_path / "second.txt"), "data": "22"}

    assert run_in_pool(pathlib.Path.write_text, ({"self": pathlib.Path(c["file"]), "data": c["data"]}
                                                   for c in calls()), jobs=1) == [1, 2]

    def failing():
        yield {"self": pathlib.Path(tmp_path / "third.txt"), "data": "333"}
        raise ValueError("stage 2 of the next run failed")

    with pytest.raises(ValueError, match="stage 2 of the next run failed"):
        run_in_pool(pathlib.Path.write_text, failing(), jobs=1)


def test_workers_leave_when_their_launcher_is_killed(tmp_path):
    """A suite killed outright leaves no worker behind waiting for work."""
    import os
    import signal
    import subprocess
    import sys
    import time

    launcher = (
        "import functools, time\n"
        "from affbench.suite_pool import run_in_pool\n"
        "if __name__ == '__main__':\n"
        "    run_in_pool(functools.partial(time.sleep, 600), [{}, {}], jobs=2)\n"
    )
    script = tmp_path / "launch.py"
    script.write_text(launcher, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.5)
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
        workers = [int(p) for p in out.split()]
    assert len(workers) >= 2, "the pool's workers never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [p for p in alive if _running(p)]
    assert not alive, f"workers {alive} outlived their killed launcher"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
