"""``affbench bench``: run the pytest-benchmark suites and print items/s, same-run ratios, goals, projections.

The suites live in the source checkout's ``benchmarks/`` folder (they are not installed with the package);
``--suite-dir`` or ``$AFFBENCH_BENCHMARKS`` points elsewhere. ``--from-json`` prints the report of an earlier
run without measuring anything. Arguments after ``--`` go to pytest unchanged (e.g. ``--benchmark-autosave``,
``--benchmark-compare --benchmark-compare-fail=median:10%``, ``-k loader``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITES_ENV = "AFFBENCH_BENCHMARKS"


class BenchUsageError(ValueError):
    """A bench invocation that cannot run (bad option value, suites not found, plugin missing)."""


def find_suite_dir(explicit: str | None = None) -> Path:
    """The benchmarks folder: --suite-dir, $AFFBENCH_BENCHMARKS, the checkout next to the package, ./benchmarks."""
    import affbench

    tried: list[Path] = []
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    elif os.environ.get(SUITES_ENV):
        candidates.append(Path(os.environ[SUITES_ENV]))
    else:
        candidates += [Path(affbench.__file__).resolve().parent.parent / "benchmarks", Path.cwd() / "benchmarks"]
    for path in candidates:
        tried.append(path)
        if (path / "conftest.py").is_file():
            return path
    where = ", ".join(str(p) for p in tried)
    raise BenchUsageError(f"no affbench benchmark suites found (looked for conftest.py in: {where}); run from a "
                          f"source checkout, or pass --suite-dir DIR / set ${SUITES_ENV} to its benchmarks folder")


def pytest_command(suite_dir: Path, json_path: Path, args: argparse.Namespace, extra: list[str]) -> list[str]:
    """The pytest command line that runs the suites and writes `json_path`."""
    cmd = [sys.executable, "-m", "pytest", str(suite_dir), "-p", "no:cacheprovider", "-q",
           f"--benchmark-json={json_path}", f"--device={args.device or 'cpu'}"]
    if args.quick:
        cmd.append("--quick")
    if args.temporal_batch is not None:
        cmd.append(f"--temporal-batch={args.temporal_batch}")
    if args.loader_workers is not None:
        cmd.append(f"--loader-workers={args.loader_workers}")
    if args.select:
        cmd += ["-k", args.select]
    return cmd + extra


def _check_args(args: argparse.Namespace) -> list[str]:
    extra = list(args.pytest_args or [])
    if extra and extra[0] == "--":
        extra = extra[1:]
    if args.from_json and (extra or args.select or args.quick):
        raise BenchUsageError("--from-json prints an earlier run: it takes no -k, --quick or pytest arguments")
    if args.temporal_batch is not None and args.temporal_batch < 1:
        raise BenchUsageError(f"--temporal-batch: must be >= 1 window, got {args.temporal_batch}")
    if args.loader_workers is not None and args.loader_workers < 0:
        raise BenchUsageError(f"--loader-workers: must be >= 0, got {args.loader_workers}")
    if args.epochs is not None and args.epochs < 1:
        raise BenchUsageError(f"--epochs: must be >= 1, got {args.epochs}")
    if args.json and Path(args.json).is_dir():
        raise BenchUsageError(f"--json {args.json}: is a directory; give a file path such as out.json")
    return extra


def run_bench(args: argparse.Namespace) -> int:
    """Run (or read) the suites and print the report; the exit code is pytest's (0 when only printing)."""
    from affbench.bench_report import BenchmarkFileError, load_results, report

    if args.config:
        return run_config_profile(args)
    try:
        extra = _check_args(args)
        if args.from_json:
            results, machine = load_results(args.from_json)
            print(report(results, machine, projection=args.projection, epochs=args.epochs))
            return 0
        try:
            import pytest_benchmark  # noqa: F401
        except ImportError:
            raise BenchUsageError("affbench bench needs pytest-benchmark: pip install 'affbench[bench]'") from None
        suite_dir = find_suite_dir(args.suite_dir)
    except (BenchUsageError, BenchmarkFileError) as exc:
        print(f"affbench bench: error: {exc}", file=sys.stderr)
        return 2

    temp = None
    if args.json:
        json_path = Path(args.json).absolute()
        json_path.parent.mkdir(parents=True, exist_ok=True)
    else:
        temp = tempfile.NamedTemporaryFile(prefix="affbench-bench-", suffix=".json", delete=False)
        temp.close()
        json_path = Path(temp.name)
    cmd = pytest_command(suite_dir, json_path, args, extra)
    if not args.quiet:
        print("running: " + " ".join(cmd), flush=True)
    started = time.perf_counter()
    # The suites run from the checkout root, so pytest-benchmark's --benchmark-autosave folder (.benchmarks/)
    # is the same wherever `affbench bench` was started.
    code = _run_pytest(cmd, suite_dir.parent, verbose=args.verbose)
    seconds = time.perf_counter() - started
    try:
        results, machine = load_results(json_path)
    except BenchmarkFileError as exc:
        print(f"affbench bench: error: pytest exited with {code} and left no results: {exc}", file=sys.stderr)
        return code or 1
    finally:
        if temp is not None:
            json_path.unlink(missing_ok=True)
    print()
    print(report(results, machine, projection=args.projection, epochs=args.epochs))
    print(f"\n{len(results)} benchmarks in {seconds / 60:.1f} min" + (f"; results in {json_path}" if args.json else ""))
    return code


def _run_pytest(cmd: list[str], cwd: Path, *, verbose: bool) -> int:
    """Run the suites; pytest's own output (pytest-benchmark's wide tables) shows with --verbose, or when pytest
    fails (then its last lines say why). The summary affbench prints is the figure to read."""
    if verbose:
        return subprocess.call(cmd, cwd=cwd)
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        print("\n".join(proc.stdout.splitlines()[-60:]))
    return proc.returncode


def run_config_profile(args: argparse.Namespace) -> int:
    """``bench --config FILE``: the config's own components measured, one run of it projected."""
    from affbench.config_profile import format_profile, profile_config
    from affbench.core.config import find_config, load_config
    from affbench.stages.cli import parse_overrides

    if args.from_json or args.select or args.pytest_args:
        raise BenchUsageError("--config profiles one config: it takes no --from-json, -k or pytest arguments")
    config = load_config(find_config(args.config), parse_overrides(args.set))
    profile = profile_config(config, device=args.device, quick=args.quick)  # no --device: the config's own
    print(format_profile(profile, quick=args.quick))
    if args.json:
        from affbench.output import write_json

        write_json(Path(args.json), profile.to_dict())
        print(f"\nresults in {args.json}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``affbench bench``."""
    parser = subparsers.add_parser(
        "bench", help="run the throughput benchmarks (pytest-benchmark) and print items/s and ratios",
        description="Run affbench's pytest-benchmark suites (backbone, extraction, loader, temporal, inference, "
                    "synth, memory) and print items/s, the ratio of each benchmark to its same-run baseline, "
                    "the goals, and optionally the projected time of Aff-Wild2-sized work. Arguments after "
                    "'--' are passed to pytest (e.g. -- --benchmark-autosave).")
    parser.add_argument("--json", metavar="PATH", help="also keep pytest-benchmark's JSON results in PATH")
    from affbench.devices import device_arg

    parser.add_argument("--device", default=None, type=device_arg,
                        help="run the models on cpu (the suites' default), cuda or cuda:N (AMP bf16, synchronised "
                             "timing); with --config the default is the config's device")
    parser.add_argument("--verbose", action="store_true",
                        help="also show pytest's output, with pytest-benchmark's own wide tables")
    parser.add_argument("--config", metavar="FILE",
                        help="profile this config's own components at its options and project one run of it on "
                             "its dataset (instead of the suites)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="with --config: override a config key")
    parser.add_argument("--projection", action="store_true",
                        help="print the projected time of Aff-Wild2 extraction and 5-fold training on this machine")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per fold for --projection (default: train.epochs of the paper config)")
    parser.add_argument("--from-json", metavar="PATH", help="print the report of an earlier run's JSON; run nothing")
    parser.add_argument("-k", dest="select", metavar="EXPR", help="only benchmarks matching EXPR (pytest -k)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every suite runs")
    parser.add_argument("--temporal-batch", type=int, default=None,
                        help="windows per temporal training step (default 2 on cpu, 32 on cuda)")
    parser.add_argument("--loader-workers", type=int, default=None, help="DataLoader workers of the loader suites")
    parser.add_argument("--suite-dir", metavar="DIR", help=f"the benchmarks folder (default: ${SUITES_ENV}, or "
                                                           "benchmarks/ of the source checkout)")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after '--': arguments for pytest")
    parser.set_defaults(func=run_bench)
