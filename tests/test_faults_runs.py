"""Run folders cannot be mixed or half-restored: one process per run folder, unique temporary names, shard-set
commits that never fail on a rename, resumed runs that restore their best outputs, and checkpoints checked
against their run folder."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from trainer_fixtures import tiny_config, write_tiny_data

from affbench.cli_support import run_reporting_input_errors
from affbench.output import write_text_atomic
from affbench.run_lock import FolderInUseError, run_folder_lock
from affbench.stages.checkpoints import CheckpointError
from affbench.stages.evaluate import evaluate
from affbench.stages.run_dir import run_dir_path
from affbench.stages.trainer import train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_data(tmp_path_factory.mktemp("tiny") / "data")


def _hold_lock(run_dir):
    """Another process that holds the run folder's lock until its stdin closes."""
    code = ("import sys; from affbench.run_lock import run_folder_lock\n"
            f"with run_folder_lock({str(run_dir)!r}):\n    print('held', flush=True); sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_of_one_row_is_refused_with_the_owner(tmp_path, data, capsys):
    config = tiny_config(epochs=1)
    run_dir = run_dir_path(tmp_path, config, 0)
    holder = _hold_lock(run_dir)
    try:
        with pytest.raises(FolderInUseError, match=f"in use by PID {holder.pid}"):
            train(config, fold=0, out_dir=tmp_path, quiet=True, data=data)
        code = run_reporting_input_errors("affbench train", lambda _: train(
            config, fold=0, out_dir=tmp_path, quiet=True, data=data), None)
        assert code == 2 and f"in use by PID {holder.pid}" in capsys.readouterr().err
        assert not (run_dir / "metrics.csv").exists()  # nothing of the second run was written
    finally:
        holder.stdin.close()
        holder.wait()
    assert train(config, fold=0, out_dir=tmp_path, quiet=True, data=data)["epochs_run"] == 1  # free again


def test_writers_of_one_path_never_share_a_temporary_file(tmp_path):
    errors = []

    def write(i):
        try:
            for j in range(40):
                write_text_atomic(tmp_path / "metrics.csv", f"{i},{j}\n" * 50)
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]
    assert len(set((tmp_path / "metrics.csv").read_text().splitlines())) == 1  # one whole version


def test_four_processes_commit_one_shard_set_without_failing(tmp_path):
    code = ("import sys\nfrom affbench.data.shard_manifest import ShardSetWriter\n"
            "for i in range(25):\n"
            "    with ShardSetWriter(sys.argv[1], kind='window_shards', maxcount=2) as w:\n"
            "        for k in range(3): w.write({'__key__': f'p{sys.argv[2]}-{i}-{k}', 'json': b'{}'})\n"
            "        w.commit({'writer': int(sys.argv[2])})\n")
    target = tmp_path / "set"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(target), str(n)], stderr=subprocess.PIPE, text=True)
             for n in range(4)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    from affbench.data.window_shards import WindowShards

    assert len(WindowShards(target)) == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_a_run_resumed_after_its_last_epoch_restores_its_best_outputs(tmp_path, data):
    config = tiny_config(epochs=2)
    train(config, fold=0, out_dir=tmp_path, quiet=True, data=data)
    run_dir = run_dir_path(tmp_path, config, 0)
    predictions = (run_dir / "predictions.validation.csv").read_bytes()
    # Killed after the last epoch's checkpoint, before the final outputs were written.
    (run_dir / "predictions.validation.csv").unlink()
    (run_dir / "metrics.json").unlink()
    result = train(config, fold=0, out_dir=tmp_path, resume=True, quiet=True, data=data)
    assert (run_dir / "predictions.validation.csv").read_bytes() == predictions
    assert (run_dir / "metrics.json").is_file() and result["epochs_run"] == 2


def test_resuming_a_finished_run_with_a_corrupt_best_checkpoint_refuses(tmp_path, data):
    config = tiny_config(epochs=1)
    train(config, fold=0, out_dir=tmp_path, quiet=True, data=data)
    best = run_dir_path(tmp_path, config, 0) / "best.pt"
    best.write_bytes(best.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=str(best)):
        train(config, fold=0, out_dir=tmp_path, resume=True, quiet=True, data=data)


def test_evaluate_reads_last_pt_and_refuses_a_foreign_checkpoint(tmp_path, data):
    ours, theirs = tiny_config(epochs=1), tiny_config(epochs=1, seed=1)
    train(ours, fold=0, out_dir=tmp_path / "a", quiet=True, data=data)
    train(theirs, fold=0, out_dir=tmp_path / "b", quiet=True, data=data)
    run_dir = run_dir_path(tmp_path / "a", ours, 0)
    last = evaluate(run_dir / "last.pt", data=data, quiet=True)
    best = evaluate(run_dir / "best.pt", data=data, quiet=True)
    assert last["metrics"] == best["metrics"]  # one epoch: last is best
    (run_dir / "best.pt").write_bytes((run_dir_path(tmp_path / "b", theirs, 0) / "best.pt").read_bytes())
    with pytest.raises(CheckpointError, match="trained with another config than its run folder"):
        evaluate(run_dir / "best.pt", data=data, quiet=True)


def test_two_suites_on_one_out_take_turns(tmp_path):
    """The second suite waits for the row the first one trains, then finds its metrics and skips it."""
    run_dir = tmp_path / "va" / "row" / "fold0"
    order = []

    def suite_row(name, hold_s):
        with run_folder_lock(run_dir, wait=True):
            order.append((name, "in"))
            time.sleep(hold_s)
            order.append((name, "out"))

    holder = _hold_lock(run_dir)  # the first suite, in another process, training the row
    waiter = threading.Thread(target=suite_row, args=("second", 0.0))
    waiter.start()
    time.sleep(0.3)
    assert order == []  # waiting, not crashing
    holder.stdin.close()
    holder.wait()
    waiter.join(timeout=30)
    assert order == [("second", "in"), ("second", "out")]
    with run_folder_lock(run_dir):  # and released
        pass
