"""`affbench suite NAME`: run a suite of configs x folds and print its report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from affbench.cli_support import add_quiet_argument

DEFAULT_OUT = "runs/suites"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "suite", help="run a suite (configs x folds) with shared stages cached, then print and save the report",
        description="Run every config of a suite on the chosen folds. Rows whose run directory already holds "
                    "metrics.json are skipped unless --force. Shared stages (fine-tune, extraction) run once "
                    "per backbone and fold and are reused from the stage cache ($AFFBENCH_HOME/cache; AFFBENCH_HOME "
                    "defaults to ~/.cache/affbench, see `affbench cache list`).")
    p.add_argument("name", help="a built-in suite name (paper) or a suite YAML file")
    p.add_argument("--data", choices=("synthaffect", "affwild2"), default=None,
                   help="dataset: synthaffect (default: the SynthAffect-scaled configs) or affwild2 "
                        "(the paper's configs; needs --root)")
    p.add_argument("--root", default=None, metavar="DIR", help="dataset root directory")
    p.add_argument("--folds", default=None, metavar="SPEC",
                   help="folds to run: 0 | 0-4 | 0,2 | all (default: the suite file's folds)")
    p.add_argument("--out", default=None, metavar="DIR", help=f"output directory (default: {DEFAULT_OUT}/NAME)")
    p.add_argument("--force", action="store_true", help="retrain rows that already have final metrics")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_quiet_argument(p)
    from affbench.devices import add_device_argument

    add_device_argument(p)
    p.add_argument("--plan", action="store_true",
                   help="print every stage job and run as one JSON line (its command, run folder and cache keys) "
                        "and run nothing")
    p.add_argument("--launcher", choices=("serial", "submitit"), default="serial",
                   help="serial: every run in this process, one after another (default); submitit: stage jobs, "
                        "then one job per run, on Slurm (or --cluster local)")
    p.add_argument("--jobs", default=None, metavar="N|auto",
                   help="with the serial launcher: runs that train at once, each in its own process, after the "
                        "shared stages are filled here (default auto: on a CPU, the usable cores divided by the "
                        "largest train.threads, at most one per run; on a GPU, 1). 1: every run in this process. "
                        "Numbers do not depend on it: train.threads fixes each run's torch threads")
    p.add_argument("--cluster", choices=("slurm", "local"), default="slurm",
                   help="with --launcher submitit: slurm, or local (submitit's executor: jobs as processes here)")
    p.add_argument("--partition", default=None, help="with --launcher submitit: the Slurm partition")
    p.add_argument("--gpus-per-run", type=int, default=1, metavar="N",
                   help="with --launcher submitit: GPUs (and data-parallel processes) per run job (default 1; "
                        "0 on CPU)")
    p.add_argument("--timeout-min", type=int, default=24 * 60, metavar="MIN",
                   help="with --launcher submitit: each job's time limit; a job past it is requeued and resumes")
    p.set_defaults(func=_suite)

    p = subparsers.add_parser(
        "publish", help="copy a suite's results.json into the repository and rewrite the README's results block",
        description="Numbers in the README come from a file a suite wrote: this copies OUT/results.json to --to "
                    "and replaces the README block between the results markers with its tables, the machine, "
                    "the wall time and the config digests.")
    p.add_argument("out", metavar="OUT", help="a suite's output directory (or its results.json)")
    p.add_argument("--to", default="docs/results/paper-synthaffect.json", metavar="FILE",
                   help="where the results file is kept (default: %(default)s)")
    p.add_argument("--readme", default="README.md", metavar="FILE", help="the README to update (default: %(default)s)")
    p.set_defaults(func=_publish)


def _suite(args: argparse.Namespace) -> int:
    from affbench.suite import resolve_suite, run_suite
    from affbench.suite_pool import parse_jobs

    quiet = bool(getattr(args, "quiet", False))
    jobs = parse_jobs(args.jobs)  # a bad value fails before anything is planned
    # Input errors (SuiteError, ConfigError, a missing dataset ...) are reported by the `affbench` entry point.
    suite = resolve_suite(args.name, args.data)
    out = Path(args.out) if args.out else Path(DEFAULT_OUT) / suite.name
    where = {"folds": args.folds, "data": args.data, "root": args.root, "device": args.device}
    if args.plan:
        from affbench.suite_plan import plan_suite

        for line in plan_suite(suite, out, **where).lines():
            print(json.dumps(line, sort_keys=True))
        return 0
    if args.launcher == "submitit":
        from affbench.suite_launch import SuiteJobsFailed, launch_suite

        if args.jobs is not None:
            from affbench.suite import SuiteError

            raise SuiteError("--jobs is for --launcher serial; with submitit every run is a job of its own")

        try:
            record = launch_suite(suite, out, cluster=args.cluster, partition=args.partition,
                                  gpus_per_run=args.gpus_per_run, timeout_min=args.timeout_min, force=args.force,
                                  quiet=quiet, plots=not args.no_plots, **where)
        except SuiteJobsFailed as exc:
            print(f"affbench suite: {exc}", file=sys.stderr)
            return 1
    else:
        if not quiet:
            print(f"suite '{suite.name}': runs and report go to {out}; {_where_home()}", flush=True)
        record = run_suite(suite, out, force=args.force, quiet=quiet, plots=not args.no_plots,
                           jobs=jobs, **where)
    print(_closing(record, out, main=suite.main, quiet=quiet))
    return 0


def _where_home() -> str:
    """Where generated data and the stage cache live, and how big the cache is now."""
    from affbench.cache_inventory import folder_size, format_size
    from affbench.home import HOME_ENV, affbench_home, cache_root

    return (f"generated data and the stage cache under {affbench_home()} (${HOME_ENV}), the cache "
            f"{format_size(folder_size(cache_root()))}")


def _closing(record: dict, out: Path, *, main: str | None, quiet: bool) -> str:
    """Where the report is, how to read its tables, what this run can show, and where everything went."""
    from affbench.cache_inventory import folder_size, format_size
    from affbench.report import main_row, reading_guide, scope_note

    done = (f"suite '{record['suite']}': {len(record['runs'])} runs in {record['seconds']:.1f} s. Report: "
            f"{out / 'report.md'} (also report.csv, report.json, plots/, suite.json)")
    if quiet:
        return done
    roots = sorted({str(d["root"]) for d in record["data"]["datasets"] if d.get("root")})
    scope = scope_note(record["data"]["datasets"], record["folds"])
    lines = [
        "", done, "",
        "Reading the tables:",
        *(f"  {line}" for line in reading_guide(main_row(record["runs"], main), record["runs"])),
        *(["", f"What this run can show: {scope}"] if scope else []),
        "",
        f"Runs: {out} ({format_size(folder_size(out))}). Data: {', '.join(roots) or 'as configured'}. "
        f"{_where_home()} (`affbench cache list`, `affbench cache clear`).",
    ]
    return "\n".join(lines)


def _publish(args: argparse.Namespace) -> int:
    from affbench.published_results import RESULTS_FILE, publish

    source = Path(args.out)
    if source.is_dir():
        source = source / RESULTS_FILE
    # A PublishError (a ValueError) is an input error: the `affbench` entry point prints it on one line.
    to = publish(source, args.to, args.readme)
    print(f"published {source} as {to}; {args.readme} updated")
    return 0
