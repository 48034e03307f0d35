"""`affbench suite NAME --launcher submitit`: a suite's jobs on a Slurm cluster (or submitit's local executor).

submitit does the scheduling; this module only says what the jobs are. Two waves, from affbench.suite_plan:

1. one job per distinct stage entry (its fine-tune, then the extraction of every task that reads it);
2. one job per run, once every stage job has finished (a run then only reads the caches).

Each job is resumable: submitit requeues a job that Slurm preempts or times out (``Checkpointable``), and the
requeued run continues from its run folder's last.pt (a fine-tune from its epoch checkpoint, an extraction
from the videos already written). Finished runs are skipped as in a serial suite. The launcher waits for the
waves and then writes suite.json and the report with the serial suite's own writer.

With ``--gpus-per-run N`` > 1 a run job has N tasks on one node; submitit exports torchrun's variables
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and stage 3 trains data-parallel on them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from affbench.suite import (
    Suite,
    SuiteError,
    preflight_suite,
    run_label,
    run_one,
    write_suite_outputs,
)
from affbench.suite_plan import PlannedRun, SuitePlan, plan_suite

CLUSTERS = ("slurm", "local")
JOBS_FOLDER = "submitit"  # under the suite's --out: every job's pickled call, stdout and stderr


class SuiteJobsFailed(RuntimeError):
    """Some jobs of a launched suite failed; names each and where its log is."""


def _submitit():
    try:
        import submitit
    except ModuleNotFoundError:
        raise SuiteError("--launcher submitit needs the submitit package: pip install 'affbench[slurm]'") from None
    return submitit


def _join_job_ranks(device: str | None):
    """The job's place in a data-parallel run: with more than one task, submitit exports torchrun's variables."""
    import submitit

    from affbench.stages.distributed import init_distributed

    if submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return init_distributed(device)


class _Requeued:
    """A job callable that submitit requeues, with the same arguments, when Slurm preempts it or it times out
    (submitit looks for a ``checkpoint`` method); the requeued call resumes from what the first one wrote."""

    def checkpoint(self, *args: Any, **kwargs: Any):
        return _submitit().helpers.DelayedSubmission(self, *args, **kwargs)


class FillStage(_Requeued):
    """Stage 1 and 2 of one stage entry: `affbench extract` of each (config, fold) in turn."""

    def __call__(self, entries: list[tuple[Any, int]], quiet: bool) -> list[str]:
        from affbench.stages.pipeline import prepare_window_shards

        return [prepare_window_shards(config, fold=fold, quiet=quiet).provenance["features_dir"]
                for config, fold in entries]


class TrainRun(_Requeued):
    """One run of the suite (rank 0 holds its run folder for the other ranks)."""

    def __call__(self, config: Any, fold: int, seed: int | None, out_dir: str, label: str, force: bool,
                 quiet: bool) -> dict[str, Any]:
        info = _join_job_ranks(config.get("device"))
        return run_one(config, fold, seed, Path(out_dir), label=label, force=force, quiet=quiet, lock=info.is_main)


def make_executor(folder: Path, *, cluster: str, partition: str | None, gpus_per_run: int, timeout_min: int,
                  tasks: int, name: str):
    """A submitit executor for one wave: one node, `tasks` processes, `gpus_per_run` GPUs."""
    submitit = _submitit()
    if cluster not in CLUSTERS:
        raise SuiteError(f"--cluster: {cluster!r} is not one of {', '.join(CLUSTERS)}")
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params: dict[str, Any] = {"name": name, "timeout_min": timeout_min, "nodes": 1, "tasks_per_node": tasks}
    if gpus_per_run:
        params["gpus_per_node"] = gpus_per_run
    if partition:
        params["slurm_partition"] = partition
    executor.update_parameters(**params)
    return executor


def _wait(jobs: list[tuple[str, Any]]) -> list[Any]:
    """Every job's result in order; a SuiteJobsFailed naming every failed job and its log."""
    results, failed = [], []
    for label, job in jobs:
        try:
            results.append(job.result())
        except Exception as exc:  # noqa: BLE001 - a job's failure is reported with its log, not raised here
            failed.append(f"{label}: {type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc) else ''} "
                          f"(log: {job.paths.stderr})")
            results.append(None)
    if failed:
        raise SuiteJobsFailed(f"{len(failed)} of {len(jobs)} jobs failed; rerun the same command to resume:\n  "
                              + "\n  ".join(failed))
    return results


def launch_suite(suite: Suite, out_dir: str | Path, *, cluster: str = "slurm", partition: str | None = None,
                 gpus_per_run: int = 1, timeout_min: int = 24 * 60, folds: str | None = None,
                 data: str | None = None, root: str | Path | None = None, device: str | None = None,
                 force: bool = False, quiet: bool = False,
                 report: bool = True, plots: bool = True, echo: bool = True) -> dict[str, Any]:
    """Run `suite` as submitit jobs (stage jobs, then run jobs), then write suite.json and the report."""
    if gpus_per_run < 0:
        raise SuiteError(f"--gpus-per-run: expected an integer >= 0, got {gpus_per_run}")
    _submitit()
    out_dir = Path(out_dir)
    started = time.time()
    plan: SuitePlan = plan_suite(suite, out_dir, folds=folds, data=data, root=root, device=device)
    planned = [(r.config, r.fold, r.seed) for r in plan.runs]
    preflight_suite(planned, out_dir)
    common = {"cluster": cluster, "partition": partition, "gpus_per_run": gpus_per_run, "timeout_min": timeout_min}
    folder = out_dir / JOBS_FOLDER / "%j"

    # Wave 1: the stages run in one process each (their caches are written by one writer).
    stage_executor = make_executor(folder, tasks=1, name=f"affbench-{suite.name}-stages", **common)
    with stage_executor.batch():
        stage_jobs = [(s.id, stage_executor.submit(FillStage(), [(r.config, r.fold) for r in s.runs], True))
                      for s in plan.stages]
    _progress(quiet, f"suite '{suite.name}': {len(stage_jobs)} stage job(s) submitted to {cluster}")
    _wait(stage_jobs)

    # Wave 2: the runs, each data-parallel over its GPUs.
    run_executor = make_executor(folder, tasks=max(1, gpus_per_run), name=f"affbench-{suite.name}-runs", **common)
    labels = [run_label(r.config, r.fold, r.seed, i, len(plan.runs)) for i, r in enumerate(plan.runs)]
    with run_executor.batch():
        run_jobs = [(label, run_executor.submit(TrainRun(), *_run_args(r, label, force, quiet)))
                    for label, r in zip(labels, plan.runs, strict=True)]
    _progress(quiet, f"suite '{suite.name}': {len(run_jobs)} run job(s) submitted to {cluster}")
    runs = _wait(run_jobs)
    return write_suite_outputs(suite, out_dir, planned, runs, data=data, root=root, device=device, force=force,
                               started=started, report=report, plots=plots, echo=echo)


def _run_args(run: PlannedRun, label: str, force: bool, quiet: bool) -> tuple:
    # The run's own runs root: run_one adds the seed level again, so pass the suite's --out.
    suite_out = run.out_dir.parent if run.seed is not None else run.out_dir
    return run.config, run.fold, run.seed, str(suite_out), label, force, quiet


def _progress(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, flush=True)
