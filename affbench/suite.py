"""Suites: a list of run configs x folds, run in order, with the shared stages reused through the caches.

A suite file (YAML)::

    name: paper
    configs: [va/ours.yaml, va/wo_finetune.yaml, ...]   # paths (or glob patterns) relative to this file
    folds: 5                                            # run folds 0..4 (or a list such as [0, 2], or "all")
    main: ours                                          # optional: the row Table 1 shows (default "ours")
    overrides: {train.epochs: 2}                        # optional: dotted keys applied to every config
    seeds: [0, 1, 2]                                    # optional: every run once per seed (train.seed and
                                                        # finetune.seed), in OUT/seed<s>/...
    bootstrap: {draws: 1000, seed: 0}                   # optional: the report's cluster bootstrap

``run_suite`` trains every (config, fold, seed) whose run directory lacks final metrics (``metrics.json``) or was
written by a different resolved config, skips the others unless ``force``, and writes ``suite.json`` (every run's
resolved config, seed, plugin versions, data provenance, metrics and timings) and the report. One fine-tune and one extraction per backbone and fold
serve every row that needs them: the stages are content-addressed (see affbench.stages.feature_cache).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import platform
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from affbench.yaml_strict import load_unique

SUITE_KEYS = ("name", "configs", "folds", "main", "overrides", "seeds", "bootstrap", "description")
BOOTSTRAP_KEYS = ("draws", "seed")
# A suite seed replicates the whole pipeline: stage 1's seed follows stage 3's, the folds and the data do not.
SEED_KEYS = ("train.seed", "finetune.seed")
DATA_CHOICES = ("synthaffect", "affwild2")
SUITE_FILE_NAMES = ("suite.yaml", "suite.yml")
# Built-in suite name -> its SynthAffect-scaled suite file (relative to the configs root).
SYNTHAFFECT_SCALED = {"paper": "synthaffect/suite.yaml"}


class SuiteError(ValueError):
    """A suite file or a suite request that cannot be run; names the file and key."""


@dataclasses.dataclass
class Suite:
    """A parsed suite file."""

    name: str
    path: Path
    configs: list[Path]
    folds: int | list[int] | str
    main: str | None = None
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    seeds: list[int] | None = None  # None: each config's own train.seed, run folders without a seed level
    bootstrap: dict[str, int] = dataclasses.field(default_factory=dict)


def load_suite(path: str | Path) -> Suite:
    """Parse a suite file; config paths are resolved relative to it and must exist."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"suite file not found: {path}")
    try:
        data = load_unique(path.read_text(encoding="utf-8"), str(path)) or {}
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML: {exc}") from None
    except ValueError as exc:  # a duplicate key
        raise SuiteError(str(exc)) from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite is a mapping with keys {', '.join(SUITE_KEYS)}")
    unknown = sorted(set(data) - set(SUITE_KEYS))
    if unknown:
        raise SuiteError(f"{path}: unknown key '{unknown[0]}'; accepted: {', '.join(SUITE_KEYS)}")
    entries = data.get("configs")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, str) for e in entries):
        raise SuiteError(f"{path}: configs: expected a non-empty list of config paths, got {entries!r}")
    configs: list[Path] = []
    for entry in entries:
        matches = sorted(glob.glob(str(path.parent / entry))) if glob.has_magic(entry) else [str(path.parent / entry)]
        if not matches or not all(Path(m).is_file() for m in matches):
            raise SuiteError(f"{path}: configs: {entry!r} matches no file (relative to {path.parent})")
        configs += [Path(m) for m in matches]
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise SuiteError(f"{path}: overrides: expected a mapping of dotted keys, got {overrides!r}")
    folds = data.get("folds", "all")
    parse_folds(folds, 1000, where=f"{path}: folds")  # validate the form now; the range is checked per config
    return Suite(str(data.get("name") or path.stem), path, configs, folds, data.get("main"), dict(overrides),
                 _parse_seeds(data.get("seeds"), path), _parse_bootstrap(data.get("bootstrap"), path))


def _parse_seeds(seeds: Any, path: Path) -> list[int] | None:
    if seeds is None:
        return None
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise SuiteError(f"{path}: seeds: expected a non-empty list of distinct integers >= 0 such as [0, 1, 2], "
                         f"got {seeds!r}")
    return list(seeds)


def _parse_bootstrap(options: Any, path: Path) -> dict[str, int]:
    from affbench.report_numbers import BootstrapSettings

    if options is None:
        return {}
    if not isinstance(options, dict):
        raise SuiteError(f"{path}: bootstrap: expected a mapping with keys {', '.join(BOOTSTRAP_KEYS)}, got {options!r}")
    unknown = sorted(set(options) - set(BOOTSTRAP_KEYS))
    if unknown:
        raise SuiteError(f"{path}: bootstrap: unknown key '{unknown[0]}'; accepted: {', '.join(BOOTSTRAP_KEYS)}")
    try:
        BootstrapSettings(**options)
    except ValueError as exc:
        raise SuiteError(f"{path}: {exc}") from None
    return dict(options)


def builtin_suite_path(name: str, data: str | None) -> Path:
    """The built-in suite `name` for a data choice: its SynthAffect-scaled version unless data is 'affwild2'.

    ``configs/<name>/suite.yaml`` runs on the data its configs name (Aff-Wild2 for ``paper``);
    ``configs/synthaffect/suite.yaml`` is the paper suite scaled to SynthAffect, and other scaled suites live
    at ``configs/synthaffect/<name>.yaml``.
    """
    from affbench.core.config import builtin_configs_root

    root = builtin_configs_root()
    if data == "affwild2":
        candidates = [root / name / n for n in SUITE_FILE_NAMES]
    else:
        candidates = [root / "synthaffect" / f"{name}.yaml", *(root / "synthaffect" / name / n
                                                               for n in SUITE_FILE_NAMES)]
        if name in SYNTHAFFECT_SCALED:
            candidates.append(root / SYNTHAFFECT_SCALED[name])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = sorted({p.parent.name for p in root.glob("*/suite.y*ml")} - {"synthaffect"})
    raise SuiteError(f"no built-in suite '{name}' for data '{data or 'synthaffect'}' under {root}; give a suite "
                     f"file path{', or one of: ' + ', '.join(known) if known else ''}")


def resolve_suite(name_or_path: str, data: str | None = None) -> Suite:
    """A suite file path, or a built-in suite name resolved for the data choice."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_suite(path)
    return load_suite(builtin_suite_path(name_or_path, data))


def parse_folds(spec: Any, k: int, *, where: str = "--folds") -> list[int]:
    """Fold indices from 0 | "0-4" | "0,2" | "all" | an int count in a suite file | a list, checked < k."""
    if isinstance(spec, bool):
        raise SuiteError(f"{where}: expected fold indices, 'a-b', 'all' or a list, got {spec!r}")
    if isinstance(spec, int):  # a suite file's count: folds 0..spec-1
        folds = list(range(spec))
    elif isinstance(spec, list):
        folds = spec
    elif isinstance(spec, str):
        text = spec.strip().lower()
        try:
            if text == "all":
                folds = list(range(k))
            elif "-" in text:
                lo, hi = (int(x) for x in text.split("-", 1))
                folds = list(range(lo, hi + 1))
            else:
                folds = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise SuiteError(f"{where}: expected '0', '0-4', '0,2' or 'all', got {spec!r}") from None
    else:
        raise SuiteError(f"{where}: expected fold indices, 'a-b', 'all' or a list, got {spec!r}")
    if not folds or not all(isinstance(f, int) and not isinstance(f, bool) and 0 <= f < k for f in folds):
        raise SuiteError(f"{where}: {spec!r} must name folds in 0..{k - 1} (data.folds = {k})")
    return sorted(set(folds))


def suite_overrides(data: str | None, root: str | Path | None, device: str | None = None) -> dict[str, Any]:
    """Config overrides of a suite command's `--data` / `--root` / `--device` (none when none is given)."""
    return {**data_overrides(data, root), **({"device": device} if device else {})}


def data_overrides(data: str | None, root: str | Path | None) -> dict[str, Any]:
    """Config overrides for `--data` / `--root` (none when neither is given)."""
    if data is None:
        if root is not None:
            raise SuiteError("--root needs --data (synthaffect or affwild2)")
        return {}
    if data not in DATA_CHOICES:
        raise SuiteError(f"--data: {data!r} is not one of {', '.join(DATA_CHOICES)}")
    if data == "affwild2":
        if root is None:
            raise SuiteError("--data affwild2 needs --root DIR (the folder with the annotations and cropped_aligned/)")
        return {"data.dataset": {"name": "affwild2", "options": {"root": str(Path(root).expanduser().absolute())}}}
    # The SynthAffect suites' configs already name synthaffect (with their size and seed): only move its root.
    return {"data.dataset.options.root": str(Path(root).expanduser().absolute())} if root else {}


def plan_runs(suite: Suite, *, folds: str | None = None, overrides: Mapping[str, Any] | None = None
              ) -> list[tuple[Any, int, int | None]]:
    """(resolved config, fold, suite seed or None) in run order: fold by fold, seed by seed, configs in suite order.

    A suite seed sets ``train.seed`` and ``finetune.seed`` of every config (over any override).
    """
    from affbench.core.config import load_config

    seeds: list[int | None] = list(suite.seeds) if suite.seeds else [None]
    configs = {seed: [load_config(p, run_overrides(suite, seed, overrides)) for p in suite.configs]
               for seed in seeds}
    per_config = [parse_folds(folds if folds is not None else suite.folds, int(c["data"]["folds"]),
                              where="--folds" if folds is not None else f"{suite.path}: folds")
                  for c in configs[seeds[0]]]
    planned = []
    for fold in sorted({f for fs in per_config for f in fs}):
        for seed in seeds:
            planned += [(c, fold, seed) for c, fs in zip(configs[seed], per_config, strict=True) if fold in fs]
    return planned


def run_overrides(suite: Suite, seed: int | None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The dotted overrides a suite applies to each config of one seed: the suite's, then `overrides`, then the
    seed keys."""
    return {**suite.overrides, **(overrides or {}), **({k: seed for k in SEED_KEYS} if seed is not None else {})}


def seed_out_dir(out_dir: str | Path, seed: int | None) -> Path:
    """Where a suite seed's runs go: ``OUT/seed<s>`` (``OUT`` itself for a suite without seeds)."""
    return Path(out_dir) if seed is None else Path(out_dir) / f"seed{seed}"


def _run_record(config: Any, fold: int, run_dir: Path, metrics: Mapping[str, Any] | None, *, status: str,
                seconds: dict[str, float], data_provenance: Mapping[str, Any] | None) -> dict[str, Any]:
    from affbench.stages.run_dir import plugin_versions

    return {
        "name": config["name"],
        "task": config["task"]["name"],
        "fold": fold,
        "config_file": config.path,
        "run_dir": str(run_dir),
        "status": status,
        "seed": int(config["train"]["seed"]),
        "config": config.to_dict(),
        "metrics": dict((metrics or {}).get("metrics") or {}),
        "primary_metric": (metrics or {}).get("primary_metric"),
        "best_epoch": (metrics or {}).get("best_epoch"),
        "components": plugin_versions(config)["components"],
        "data_provenance": dict(data_provenance or {}),
        "seconds": seconds,
    }


def run_suite(suite: Suite, out_dir: str | Path, *, folds: str | None = None, data: str | None = None,
              root: str | Path | None = None, device: str | None = None, force: bool = False, quiet: bool = False,
              report: bool = True, plots: bool = True, echo: bool = True, jobs: int | str = 1) -> dict[str, Any]:
    """Run every (config, fold) of `suite` into `out_dir`, write suite.json and the report; returns suite.json.

    `device` overrides every config's (see affbench.devices); `quiet` silences progress; `echo` prints the
    report's tables. `jobs` runs train at once in worker processes ('auto': as many as the cores hold, see
    affbench.suite_pool); 1 trains them in this process, one after another.
    """
    from affbench.suite_pool import resolve_jobs

    out_dir = Path(out_dir)
    started = time.time()
    planned = plan_runs(suite, folds=folds, overrides=suite_overrides(data, root, device))
    workers = resolve_jobs(jobs, [config for config, *_ in planned])
    preflight_suite(planned, out_dir)
    if workers > 1:
        runs = _train_side_by_side(planned, out_dir, jobs=workers, force=force, quiet=quiet)
    else:
        runs = [run_one(config, fold, seed, out_dir, label=run_label(config, fold, seed, i, len(planned)),
                        force=force, quiet=quiet) for i, (config, fold, seed) in enumerate(planned)]
    return write_suite_outputs(suite, out_dir, planned, runs, data=data, root=root, device=device, force=force,
                               started=started, report=report, plots=plots, echo=echo, jobs=workers)


def _train_side_by_side(planned: Sequence[tuple[Any, int, int | None]], out_dir: Path, *, jobs: int, force: bool,
                        quiet: bool) -> list[dict[str, Any]]:
    """Stages 1-2 of every run not done yet here, in this process (one writer per cache entry), each run handed
    to `jobs` worker processes for stage 3 as soon as its stages are ready (workers train while later runs'
    stages are filled); each run's line is printed as it finishes. The records come back in plan order.

    Runs without a fine-tune are prepared first, in plan order, then the others: their stages are quick, and the
    workers train them while this process fine-tunes, which leaves part of a CPU's cores idle. The order changes
    no number: each run is seeded and keeps its thread count wherever it trains.
    """
    from affbench.stages.pipeline import prepare_window_shards
    from affbench.stages.run_dir import run_dir_path
    from affbench.suite_pool import run_in_pool

    labels = [run_label(config, fold, seed, i, len(planned)) for i, (config, fold, seed) in enumerate(planned)]
    order = sorted(range(len(planned)), key=lambda i: bool(planned[i][0]["finetune"]["enabled"]))
    if not quiet:
        print(f"training {len(planned)} runs, {jobs} at a time in worker processes, each once its stages are ready",
              flush=True)

    def prepared() -> Iterator[dict[str, Any]]:
        for i in order:
            config, fold, seed = planned[i]
            done = run_is_done(run_dir_path(seed_out_dir(out_dir, seed), config, fold), config, force=force)
            if not quiet and not done:
                print(f"{labels[i]}: preparing window shards", flush=True)
            data = None if done else prepare_window_shards(config, fold=fold, quiet=quiet)
            yield {"config": config, "fold": fold, "seed": seed, "out_dir": out_dir, "label": labels[i],
                   "force": force, "quiet": True, "data": data}

    def finished(index: int, record: dict[str, Any]) -> None:
        if not quiet:
            print(run_summary(labels[order[index]], record), flush=True)

    records = run_in_pool(run_one, prepared(), jobs=jobs, on_done=finished)  # in preparation order
    by_plan_index = dict(zip(order, records, strict=True))
    return [by_plan_index[i] for i in range(len(planned))]


def run_one(config: Any, fold: int, seed: int | None, out_dir: Path, *, label: str, force: bool, quiet: bool,
            lock: bool = True, data: Any = None) -> dict[str, Any]:
    """Train one planned run into its folder under `out_dir` (or skip it when finished); its suite record.

    `lock` holds the run folder meanwhile: another suite on this --out may be training the row, so this waits
    for it and then finds its metrics.json. Ranks other than 0 of a data-parallel run pass False (rank 0 holds
    it for them). `data`: the run's window shards when the caller has prepared them (stages 1-2 then do not
    run here).
    """
    import contextlib

    from affbench.run_lock import run_folder_lock
    from affbench.stages.run_dir import run_dir_path

    run_out = seed_out_dir(out_dir, seed)
    run_dir = run_dir_path(run_out, config, fold)
    with run_folder_lock(run_dir, wait=True) if lock else contextlib.nullcontext():
        return _run_row(config, fold, run_dir, label, out_dir=run_out, force=force, quiet=quiet, data=data)


def run_label(config: Any, fold: int, seed: int | None, index: int, total: int) -> str:
    """How progress lines name a run: ``[3/15] va/ours fold 0 seed 1``."""
    return (f"[{index + 1}/{total}] {config['task']['name']}/{config['name']} fold {fold}"
            f"{'' if seed is None else f' seed {seed}'}")


def write_suite_outputs(suite: Suite, out_dir: Path, planned: Sequence[tuple[Any, int, int | None]],
                        runs: list[dict[str, Any]], *, data: str | None, root: str | Path | None,
                        device: str | None = None, force: bool, started: float, report: bool = True, plots: bool = True, echo: bool = True,
                        jobs: int | None = None) -> dict[str, Any]:
    """suite.json and the report of finished `runs` (one record per planned run, from `_run_row`); whoever ran
    them (this process, or a cluster's jobs) gathers them here. `jobs`: how many runs trained at once on this
    machine (None: they were a cluster's jobs). Returns suite.json's record."""
    from affbench.output import write_json
    from affbench.stages.run_dir import plugin_versions

    record = {
        "suite": suite.name,
        "suite_file": str(suite.path),
        "configs": [str(p) for p in suite.configs],
        "folds": sorted({fold for _, fold, _ in planned}),
        "seeds": suite.seeds,
        "bootstrap": _bootstrap_settings(suite).to_dict(),
        "data": {"choice": data or "synthaffect (suite configs)", "root": None if root is None else str(root),
                 "datasets": _datasets(runs)},
        "overrides": {**suite.overrides, **suite_overrides(data, root, device)},
        "force": force,
        # Runs that shared the machine shared its cores (and its memory bandwidth): a reader weighs timings by it.
        "jobs": jobs,
        "environment": {**plugin_versions(), "machine": platform.machine(), "processor": platform.processor()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 3),
        "runs": runs,
    }
    write_json(out_dir / "suite.json", record)
    if report:
        from affbench.report import write_report

        seeds = f"seeds {suite.seeds}" if suite.seeds else "each config's own seed"
        notes = [f"suite '{suite.name}' from {suite.path}; folds {record['folds']}; {seeds}; {len(runs)} runs "
                 f"({sum(r['status'] == 'trained' for r in runs)} trained now) in {record['seconds']:.0f} s",
                 "numbers are whatever the models reached on this data; nothing is tuned to match the paper"]
        from affbench.multitask import per_task_runs
        from affbench.report import provenance_lines, scope_note

        report_data = write_report(per_task_runs(runs), out_dir, title=f"affbench suite: {suite.name}", main=suite.main,
                                   plots=plots, notes=notes, echo=echo, bootstrap=_bootstrap_settings(suite),
                                   scope=scope_note(record["data"]["datasets"], record["folds"]),
                                   made=provenance_lines(runs, started=record["started"], seconds=record["seconds"]))
        from affbench.published_results import RESULTS_FILE, results_record

        # Its wall time includes the report and plots: a user waits for them too.
        write_json(out_dir / RESULTS_FILE, results_record(record, report_data["tables_markdown"],
                                                          wall_seconds=round(time.time() - started, 3)))
    return record


def _bootstrap_settings(suite: Suite):
    from affbench.report_numbers import BootstrapSettings

    return BootstrapSettings(**suite.bootstrap)


def preflight_suite(planned: Sequence[tuple[Any, ...]], out_dir: Path) -> None:
    """Before the first row: --out and the cache are writable, and every dataset the rows name opens."""
    from affbench.preflight import check_run_folders
    from affbench.stages.stage_inputs import open_dataset

    check_run_folders(out_dir)
    for spec in {json.dumps(config["data"]["dataset"], sort_keys=True) for config, *_ in planned}:
        open_dataset(json.loads(spec))  # built once per process: the rows reuse it


def run_is_done(run_dir: Path, config: Any, *, force: bool) -> bool:
    """Whether a suite skips the row: its folder holds final metrics of this config and `force` is off."""
    return not force and (run_dir / "metrics.json").is_file() and _holds_no_other_config(run_dir, config)


def run_summary(label: str, record: Mapping[str, Any]) -> str:
    """A finished run's progress line: its primary metric and where the time went, or that it was skipped."""
    if record["status"] != "trained":
        return f"{label}: done before, skipped ({Path(record['run_dir']) / 'metrics.json'})"
    primary = record.get("primary_metric")
    value = record["metrics"].get(primary)
    shown = f"{primary} {value:.4f}" if isinstance(value, float) else "no metric"
    seconds = record["seconds"]
    return f"{label}: {shown} (stages 1-2 {seconds['stages_1_2']:.1f} s, train {seconds['train']:.1f} s)"


def _run_row(config: Any, fold: int, run_dir: Path, label: str, *, out_dir: Path, force: bool,
             quiet: bool, data: Any = None) -> dict[str, Any]:
    """Train one (config, fold) row, or skip it when its run folder holds final metrics of this config."""
    from affbench.stages.pipeline import window_data
    from affbench.stages.trainer import train

    no_other_config = _holds_no_other_config(run_dir, config)
    if run_is_done(run_dir, config, force=force):
        metrics = _read_json(run_dir / "metrics.json")
        provenance = _read_json(run_dir / "data_provenance.json")
        record = _run_record(config, fold, run_dir, metrics, status="skipped (has metrics.json)",
                             seconds={}, data_provenance=provenance.get("data", provenance))
        if not quiet:
            print(run_summary(label, record), flush=True)
        return record
    if not quiet and data is None:
        print(f"{label}: preparing window shards", flush=True)
    t0 = time.perf_counter()
    prepared = data is not None
    data = window_data(config, fold=fold, quiet=quiet, data=data)  # the route train() takes when given no data
    t1 = time.perf_counter()
    # A run directory left by another config is retrained from scratch, never resumed or reported.
    metrics = train(config, fold=fold, out_dir=out_dir, resume=no_other_config and not force, quiet=quiet,
                    data=data)
    t2 = time.perf_counter()
    # Shards its caller prepared: stages 1-2 took what they took there.
    stages = float(data.provenance.get("seconds", 0.0)) if prepared else t1 - t0
    seconds = {"stages_1_2": round(stages, 3), "train": round(t2 - t1, 3)}
    record = _run_record(config, fold, run_dir, metrics, status="trained", seconds=seconds,
                         data_provenance=data.provenance)
    if not quiet:
        print(run_summary(label, record), flush=True)
    return record


def _holds_no_other_config(run_dir: Path, config: Any) -> bool:
    """Whether `run_dir` holds no run of another config: it has no config.resolved.yaml yet, or that file holds
    this resolved config's values. Only then may the row be skipped or resumed from what the folder holds."""
    path = run_dir / "config.resolved.yaml"
    if not path.is_file():
        return True  # nothing there yet: a fresh run, which may resume its own last.pt
    saved = json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8"))))
    # Where a run ran does not change what it is: a row trained on the CPU is not retrained for --device cuda.
    saved.pop("device", None)
    return saved == {k: v for k, v in json.loads(json.dumps(config.to_dict())).items() if k != "device"}


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _datasets(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The distinct dataset provenances the runs used."""
    seen: list[dict[str, Any]] = []
    for run in runs:
        prov = (run.get("data_provenance") or {}).get("dataset")
        if prov and prov not in seen:
            seen.append(prov)
    return seen
