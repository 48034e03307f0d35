"""Reading a pytest-benchmark JSON of affbench's suites: rates, same-run ratios, goals, projected Aff-Wild2 times.

Pure functions over the JSON that ``pytest benchmarks --benchmark-json PATH`` (or ``affbench bench``) writes:
every benchmark carries ``extra_info["items_per_second"]`` and ``extra_info["unit"]``; a benchmark's baselines
are the benchmarks of its group whose name contains ``baseline`` and whose parameters it shares (ResNet-50 at
batch 32 for a backbone at batch 32), and the ratio to them is the figure that counts on a noisy machine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GROUP_ORDER = ("backbone", "extraction", "compile", "loader", "temporal", "inference", "synth", "memory", "startup")

# Aff-Wild2 (6th ABAW edition) sizes the projection assumes.
AFFWILD2_FRAMES_TO_EXTRACT = 3_000_000  # about 600 videos, ~3 M frames in all
AFFWILD2_TRAIN_FRAMES_PER_FOLD = 2_200_000  # labelled frames in one fold's train split
AFFWILD2_VALIDATION_FRAMES_PER_FOLD = 550_000  # the fold's held-out fifth, scored after every epoch
AFFWILD2_TRAIN_VIDEOS_PER_FOLD = 480  # four fifths of ~600 face tracks
FOLDS = 5


class BenchmarkFileError(ValueError):
    """A benchmark JSON that cannot be read as affbench results (names the file and what is wrong)."""


@dataclass
class Result:
    """One benchmark of a run: its group, short name, parameters, throughput and everything in extra_info."""

    group: str
    name: str
    params: dict[str, Any]
    items_per_second: float | None
    unit: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_baseline(self) -> bool:
        return "baseline" in self.name

    @property
    def base_name(self) -> str:
        """The test name without its parameter id."""
        return self.name.split("[", 1)[0]


def short_name(name: str) -> str:
    """``test_extraction[clip_small]`` -> ``extraction[clip_small]``."""
    return name[len("test_"):] if name.startswith("test_") else name


def load_results(path: str | Path) -> tuple[list[Result], dict[str, Any]]:
    """(results, machine_info) of a pytest-benchmark JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchmarkFileError(f"{path}: no such file; write one with `affbench bench --json {path}`") from None
    except ValueError as exc:
        raise BenchmarkFileError(f"{path}: not JSON ({exc})") from None
    return parse_results(data, where=str(path))


def parse_results(data: Any, where: str = "<json>") -> tuple[list[Result], dict[str, Any]]:
    """(results, machine_info) of a decoded pytest-benchmark JSON document."""
    if not isinstance(data, Mapping) or not isinstance(data.get("benchmarks"), list):
        raise BenchmarkFileError(f"{where}: expected a pytest-benchmark JSON object with a 'benchmarks' list")
    results = []
    for i, bench in enumerate(data["benchmarks"]):
        if not isinstance(bench, Mapping) or "name" not in bench:
            raise BenchmarkFileError(f"{where}: benchmarks[{i}] has no 'name'")
        extra = dict(bench.get("extra_info") or {})
        rate = extra.get("items_per_second")
        results.append(Result(
            group=str(bench.get("group") or "ungrouped"),
            name=short_name(str(bench["name"])),
            params=dict(bench.get("params") or {}),
            items_per_second=float(rate) if isinstance(rate, int | float) else None,
            unit=str(extra.get("unit", "")),
            extra=extra,
        ))
    return results, dict(data.get("machine_info") or {})


def group_sort_key(group: str) -> tuple[int, str]:
    return (GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER), group)


def baselines_for(result: Result, results: Sequence[Result]) -> list[Result]:
    """The baselines of `result`'s group whose parameters `result` shares (a baseline without any matches all)."""
    candidates = [r for r in results if r.group == result.group and r.is_baseline and r is not result
                  and r.items_per_second]
    matching = [b for b in candidates if all(result.params.get(k) == v for k, v in b.params.items())]
    return matching


def find(results: Sequence[Result], name: str) -> Result | None:
    """The result called `name` (short name, with its parameter id if it has one)."""
    for r in results:
        if r.name == name:
            return r
    return None


def ratio(results: Sequence[Result], name: str, baseline: str) -> float | None:
    """items/s of `name` over items/s of `baseline`, or None where either is missing.

    A benchmark that timed a round of `baseline` right before each of its own rounds stores the median of the
    per-pair ratios (``extra_info["paired_ratio"]``, ``paired_baseline``); that figure is used when present,
    as it cancels the machine's drift between two benchmarks.
    """
    a, b = find(results, name), find(results, baseline)
    if a is not None and a.extra.get("paired_baseline") == baseline and \
            isinstance(a.extra.get("paired_ratio"), int | float):
        return float(a.extra["paired_ratio"])
    if a is None or b is None or not a.items_per_second or not b.items_per_second:
        return None
    return a.items_per_second / b.items_per_second


@dataclass
class Goal:
    """One target of the suites and its measured value (None: not measured in this run)."""

    group: str
    text: str
    value: float | None
    target: float
    higher_is_better: bool
    fmt: str = "{:.2f}"

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def describe(self, *, graded: bool = True) -> str:
        shown = "not measured" if self.value is None else self.fmt.format(self.value)
        verdict = {True: "met", False: "MISSED", None: "-"}[self.met] if graded else "not graded at quick sizes"
        sign = ">=" if self.higher_is_better else "<="
        return f"{self.group:<11} {self.text:<58} {shown:>12}  (goal {sign} {self.fmt.format(self.target)})  {verdict}"


def _extra(results: Sequence[Result], name: str, key: str) -> float | None:
    r = find(results, name)
    value = None if r is None else r.extra.get(key)
    return float(value) if isinstance(value, int | float) else None


def goals(results: Sequence[Result]) -> list[Goal]:
    """Every goal of the suites with its value from `results`."""
    merge_vs_model = None
    merge, model = find(results, "merge_only"), find(results, "baseline_model_only")
    if merge and model and merge.items_per_second and model.items_per_second:
        merge_vs_model = model.items_per_second / merge.items_per_second  # merge seconds / model seconds
    synth_seconds = _extra(results, "generate_small", "seconds")
    synth_size = (find(results, "generate_small").extra.get("size") if find(results, "generate_small") else None)
    return [
        Goal("extraction", "ViT-B/16 extraction / forward on pre-decoded tensors",
             ratio(results, "extraction[clip_vit_b16]", "baseline_forward_only[clip_vit_b16]"), 0.9, True),
        Goal("extraction", "small CLIP extraction / forward on pre-decoded tensors",
             ratio(results, "extraction[clip_small]", "baseline_forward_only[clip_small]"), 0.5, True),
        Goal("loader", "window shards / one .npy per frame",
             ratio(results, "window_shards_loader", "baseline_per_frame_npy"), 10.0, True, "{:.1f}"),
        Goal("loader", "window shards / one .npz per video",
             ratio(results, "window_shards_loader", "baseline_per_video_npz"), 2.0, True, "{:.1f}"),
        Goal("loader", "window shards / webdataset.WebDataset on the same shards",
             ratio(results, "window_shards_loader", "baseline_webdataset"), 1.0, True, "{:.2f}"),
        Goal("loader", "shard checksum seconds / loader seconds, per epoch",
             _extra(results, "window_shards_loader", "checksum_overhead"), 0.03, False, "{:.2%}"),
        Goal("loader", "step fed by the loader / step fed from memory",
             ratio(results, "plain_loop_loader_fed", "baseline_plain_loop"), 0.95, True, "{:.3f}"),
        Goal("temporal", "affbench trainer / plain PyTorch loop",
             ratio(results, "affbench_trainer", "baseline_plain_loop"), 1 / 1.05, True, "{:.3f}"),
        Goal("finetune", "stage-1 step, depthwise gradients tap by tap / PyTorch's own",
             ratio(results, "finetune_step", "baseline_pytorch_depthwise_grads"), 1.0, True, "{:.2f}"),
        Goal("inference", "merging seconds / model seconds", merge_vs_model, 0.05, False, "{:.4f}"),
        Goal("synth", f"seconds to generate SynthAffect '{synth_size or 'small'}'", synth_seconds, 60.0, False,
             "{:.1f}"),
        Goal("memory", "sharding peak RSS growth, 4x data",
             _extra(results, "sharding_peak_rss[4x]", "rss_growth_vs_1x"), 0.10, False, "{:+.1%}"),
        Goal("memory", "loader peak RSS growth, 4x data",
             _extra(results, "loader_peak_rss[4x]", "rss_growth_vs_1x"), 0.10, False, "{:+.1%}"),
        Goal("startup", "seconds to answer `affbench --help`",
             _extra(results, "cli_startup[help]", "seconds_per_call"), 0.5, False, "{:.2f}"),
    ]


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_table(results: Sequence[Result]) -> str:
    """The per-group table: items/s, unit and the ratio to each matching baseline."""
    lines = [f"{'group':<11} {'benchmark':<44} {'items/s':>12}  {'unit':<10} ratio to baseline (same run)"]
    lines.append("-" * len(lines[0]))
    for group in sorted({r.group for r in results}, key=group_sort_key):
        for r in [r for r in results if r.group == group]:
            if r.is_baseline:
                note = "baseline"
            else:
                parts = [f"{r.items_per_second / b.items_per_second:.2f}x {b.name}"
                         for b in baselines_for(r, results) if r.items_per_second]
                if isinstance(r.extra.get("paired_ratio"), int | float):
                    parts.append(f"paired rounds: {r.extra['paired_ratio']:.2f}x {r.extra.get('paired_baseline')}")
                note = "; ".join(parts) or "-"
            if group == "memory" and isinstance(r.extra.get("peak_rss_mb"), int | float):
                note = f"peak RSS {r.extra['peak_rss_mb']:.0f} MiB" + (
                    f", {r.extra['rss_growth_vs_1x']:+.1%} vs 1x" if "rss_growth_vs_1x" in r.extra else "") + (
                    " (baseline)" if r.is_baseline else "")
            lines.append(f"{group:<11} {r.name:<44} {_rate(r.items_per_second):>12}  {r.unit:<10} {note}")
    return "\n".join(lines)


def format_goals(results: Sequence[Result], *, quick: bool = False) -> str:
    """One line per goal: measured value, target, met / MISSED; at --quick sizes (one round of toy problems)
    the values are printed but not graded."""
    return "\n".join(goal.describe(graded=not quick) for goal in goals(results))


def measured_quick(machine: Mapping[str, Any]) -> bool:
    """Whether a run measured --quick sizes (recorded in its machine info)."""
    return bool((machine.get("affbench") or {}).get("quick"))


def machine_line(machine: Mapping[str, Any]) -> str:
    """A one-line description of the machine a run measured."""
    info = machine.get("affbench") or {}
    cpu = (machine.get("cpu") or {}).get("brand_raw") or machine.get("processor") or machine.get("machine") or "?"
    parts = [f"{info.get('cpu_count', '?')} CPU(s) ({cpu})", f"torch {info.get('torch', '?')}",
             f"{info.get('torch_threads', '?')} threads"]
    if info.get("cuda"):
        parts.append(f"GPU {info['cuda'].get('name')}")
    for key in ("load_average_at_start", "load_average_at_end"):
        if info.get(key):
            parts.append(f"load {key.split('_')[-1]} {' '.join(f'{x:.2f}' for x in info[key])}")
    return "machine: " + ", ".join(parts)


# -- projection ---------------------------------------------------------------------------------------------------


@dataclass
class Projection:
    """One projected piece of Aff-Wild2-sized work: how much, at which measured rate, how long."""

    what: str
    amount: float
    unit: str
    rate: float | None
    rate_source: str

    @property
    def seconds(self) -> float | None:
        return None if not self.rate else self.amount / self.rate


def windows_per_fold(frames: int = AFFWILD2_TRAIN_FRAMES_PER_FOLD, videos: int = AFFWILD2_TRAIN_VIDEOS_PER_FOLD,
                     stride: int = 200) -> int:
    """Training windows of one fold: about frames / stride, plus the end-aligned window of each video."""
    return math.ceil(frames / stride) + videos


def paper_training_settings() -> dict[str, Any]:
    """epochs, batch size, window and stride of the built-in paper config (the paper states no epoch count)."""
    settings = {"epochs": 20, "batch_size": 32, "window": 300, "stride": 200, "source": "affbench defaults"}
    try:
        from affbench.core.config import find_config, load_config

        path = find_config("paper/va/ours.yaml")
        config = load_config(path, check_components=False)
        settings.update(epochs=int(config["train"]["epochs"]), batch_size=int(config["train"]["batch_size"]),
                        window=int(config["data"]["window"]), stride=int(config["data"]["stride"]),
                        source=str(path))
    except Exception:  # the projection must still print from a bare results file
        pass
    return settings


def projections(results: Sequence[Result], *, epochs: int, stride: int = 200) -> list[Projection]:
    """Extraction of Aff-Wild2 and five folds of stage-3 training at the paper's settings, on this machine."""
    extract = find(results, "extraction[clip_vit_b16]")
    if extract is not None and extract.items_per_second:
        extract_rate, extract_src = extract.items_per_second, "extraction[clip_vit_b16] (end to end)"
    else:
        fwd = find(results, "backbone_clip_vit_b16[b32]")
        extract_rate = fwd.items_per_second if fwd else None
        extract_src = "backbone_clip_vit_b16[b32] (forward only: no extraction measured)" if fwd else "not measured"
    trainer = find(results, "affbench_trainer")
    train_rate = trainer.items_per_second if trainer else None
    train_src = (f"affbench_trainer at batch {trainer.extra.get('batch_size')}" if trainer else "not measured")
    infer = find(results, "whole_video_inference")
    infer_rate = infer.items_per_second if infer else None
    windows = windows_per_fold(stride=stride)
    return [
        Projection(f"extract {AFFWILD2_FRAMES_TO_EXTRACT / 1e6:.1f} M frames with CLIP ViT-B/16",
                   AFFWILD2_FRAMES_TO_EXTRACT, "frames", extract_rate, extract_src),
        Projection(f"train {FOLDS} folds x {epochs} epochs x {windows:,} windows", FOLDS * epochs * windows,
                   "windows", train_rate, train_src),
        Projection(f"validate {FOLDS} folds x {epochs} epochs x {AFFWILD2_VALIDATION_FRAMES_PER_FOLD / 1e6:.2f} M "
                   "frames", FOLDS * epochs * AFFWILD2_VALIDATION_FRAMES_PER_FOLD, "frames", infer_rate,
                   "whole_video_inference" if infer else "not measured"),
    ]


def format_duration(seconds: float | None) -> str:
    """Seconds as a short human duration (``3.2 h``, ``41 min``, ``12 s``, ``5.1 days``)."""
    if seconds is None:
        return "n/a"
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def format_projection(results: Sequence[Result], *, epochs: int | None = None) -> str:
    """The projected time of Aff-Wild2-sized work on the machine that produced `results`."""
    settings = paper_training_settings()
    if epochs is not None:
        settings.update(epochs=int(epochs), source="--epochs")
    items = projections(results, epochs=settings["epochs"], stride=settings["stride"])
    lines = [
        "Projection for Aff-Wild2-sized work on this machine (from the rates measured above):",
        f"  assumptions: {AFFWILD2_FRAMES_TO_EXTRACT / 1e6:.1f} M frames to extract; per fold "
        f"{AFFWILD2_TRAIN_FRAMES_PER_FOLD / 1e6:.1f} M labelled training frames in ~{AFFWILD2_TRAIN_VIDEOS_PER_FOLD} "
        f"videos -> windows of {settings['window']} stride {settings['stride']} = "
        f"{windows_per_fold(stride=settings['stride']):,} windows, batch {settings['batch_size']}, "
        f"{settings['epochs']} epochs (train.epochs of {settings['source']}; the paper states no epoch count); "
        "windows/s measured at a smaller batch are taken as they are",
    ]
    total = 0.0
    for p in items:
        secs = p.seconds
        total += secs or 0.0
        rate = f"{_rate(p.rate)} {p.unit}/s" if p.rate else "no rate"
        lines.append(f"  {p.what:<58} {format_duration(secs):>10}   at {rate} ({p.rate_source})")
    lines.append(f"  {'total':<58} {format_duration(total if all(p.seconds for p in items) else None):>10}")
    return "\n".join(lines)


def report(results: Sequence[Result], machine: Mapping[str, Any], *, projection: bool = False,
           epochs: int | None = None) -> str:
    """The whole printed report: machine, table, goals and (optionally) the projection."""
    parts = [machine_line(machine), "", format_table(results), "", "Goals:",
             format_goals(results, quick=measured_quick(machine))]
    if projection:
        parts += ["", format_projection(results, epochs=epochs)]
    return "\n".join(parts)


# -- the paper suite on Aff-Wild2 -----------------------------------------------------------------------------------

AFFWILD2_FINETUNE_FRAMES_PER_FOLD = 1_600_000  # the expression-labelled training frames stage 1 learns from
PAPER_SUITE_ROWS = 5  # ours, wo_finetune, wo_tcn, wo_temporal_encoder, baseline
PAPER_SUITE_TASKS = 3
PAPER_SUITE_FINETUNED_ROWS = 3  # ours, wo_tcn, wo_temporal_encoder read the fold's fine-tuned backbone


def paper_suite_projection(*, finetune_fps: float | None, extract_fps: float | None, train_windows_per_s: float | None,
                           inference_fps: float | None, epochs: int = 20, finetune_epochs: int = 1,
                           stride: int = 200) -> dict[str, Any]:
    """Hours of `affbench suite paper --data affwild2` (5 rows x 3 tasks x 5 folds = 75 runs) from four rates.

    Stage 1: one fine-tune per fold (configs/paper: ``finetune.tasks: [expr]`` shares it over the tasks).
    Stage 2: each fold's fine-tuned backbone extracts every frame, and the pretrained one (wo_finetune, baseline)
    once for all folds. Stage 3: every run trains ``epochs`` epochs at the rate of the full model (the lighter
    rows are counted at that rate: an upper bound) and scores one fold's validation frames per epoch.
    """
    folds, runs = FOLDS, PAPER_SUITE_ROWS * PAPER_SUITE_TASKS * FOLDS
    work = {
        "stage1_finetune": (folds * finetune_epochs * AFFWILD2_FINETUNE_FRAMES_PER_FOLD, finetune_fps, "frames"),
        "stage2_extract": ((folds + 1) * AFFWILD2_FRAMES_TO_EXTRACT, extract_fps, "frames"),
        "stage3_train": (runs * epochs * windows_per_fold(stride=stride), train_windows_per_s, "windows"),
        "stage3_score": (runs * epochs * AFFWILD2_VALIDATION_FRAMES_PER_FOLD, inference_fps, "frames"),
    }
    stages = {name: {"amount": amount, "unit": unit, "rate": rate,
                     "hours": None if not rate else amount / rate / 3600}
              for name, (amount, rate, unit) in work.items()}
    hours = [s["hours"] for s in stages.values()]
    return {"runs": runs, "folds": folds, "epochs": epochs, "stages": stages,
            "total_hours": None if any(h is None for h in hours) else sum(hours)}
