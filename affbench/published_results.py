"""Results that documentation quotes: a file a suite run wrote, and the README block rendered from it.

A suite writes ``results.json`` beside its report: the report's tables as Markdown, the affbench version,
the digest of every resolved config it ran, the dataset's identity, the machine and the wall time. ``affbench
suite publish`` copies that file into the repository and rewrites the README's block between the two markers
below from it, so a table in the README is never typed by hand. The unit tests check that the README block is
the rendering of the committed file and that the committed digests are those of today's built-in configs: a
change to a config, or a hand edit of the numbers, fails until the suite is run and published again.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"
FORMAT = "affbench-results"
FORMAT_VERSION = 1
BEGIN = "<!-- results:begin (written by `affbench publish`; do not edit by hand) -->"
END = "<!-- results:end -->"


class PublishError(ValueError):
    """A results file or README that cannot be published: names the file and what is wrong."""


def machine_description() -> dict[str, Any]:
    """What ran the suite: CPU, core count, accelerator, OS and torch, as a reader needs to weigh timings."""
    import torch

    from affbench.stages.finetune import cpu_cores

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # not Linux: platform's answer stands
        pass
    cores = cpu_cores()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        load = round(os.getloadavg()[0], 1)  # timings on a busy machine say little: record how busy it was
    except OSError:
        load = None
    return {"cpu": cpu, "cores": cores, "gpu": gpu, "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "torch": torch.__version__, "load_average_1min": load}


def config_digests(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """(task, row, config file, sha256 of the resolved config) for each distinct config the runs used."""
    from affbench.core.config import config_digest

    seen: dict[tuple[str, str], dict[str, str]] = {}
    for run in runs:
        key = (run["task"], run["name"])
        if key not in seen:
            seen[key] = {"task": run["task"], "row": run["name"], "config_file": _relative_config(run["config_file"]),
                         "digest": config_digest(run["config"])}
    return list(seen.values())


def _relative_config(path: str | None) -> str:
    """A built-in config's path from the configs root (machine-independent); other paths as given."""
    from affbench.core.config import builtin_configs_root

    if not path:
        return ""
    try:
        return Path(path).resolve().relative_to(builtin_configs_root().resolve()).as_posix()
    except ValueError:
        return str(path)


def results_record(record: Mapping[str, Any], tables_markdown: str, *, wall_seconds: float) -> dict[str, Any]:
    """The results file's content for a finished suite record (suite.json), its rendered tables and wall time."""
    from affbench import __version__

    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "affbench_version": __version__,
        "suite": record["suite"],
        "suite_file": _relative_config(record.get("suite_file")),
        "folds": record["folds"],
        "datasets": [{k: d.get(k) for k in ("name", "size", "seed", "generator_version", "options") if k in d}
                     for d in record["data"]["datasets"]],
        "configs": config_digests(record["runs"]),
        "runs": {"total": len(record["runs"]),
                 "trained": sum(1 for r in record["runs"] if r["status"] == "trained")},
        "jobs": record.get("jobs"),  # runs trained at once on this machine (None: a cluster's jobs)
        "machine": machine_description(),
        "started": record["started"],
        "wall_seconds": wall_seconds,
        "tables_markdown": tables_markdown,
    }


def read_results(path: str | Path) -> dict[str, Any]:
    """A results file, checked for its format."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PublishError(f"{path}: no such results file; a suite writes one as OUT/{RESULTS_FILE}") from None
    except json.JSONDecodeError as exc:
        raise PublishError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); expected a results file") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PublishError(f"{path}: key 'format' must be '{FORMAT}'; not an affbench results file")
    if data.get("version") != FORMAT_VERSION:
        raise PublishError(f"{path}: key 'version' is {data.get('version')!r}; this affbench reads {FORMAT_VERSION}")
    return data


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(round(float(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def render_block(results: Mapping[str, Any], source: str) -> str:
    """The README block for a results file (`source`: its path as the README names it)."""
    m = results["machine"]
    hardware = m["gpu"] or f"{m['cores']}-core CPU ({m['cpu']}), no GPU"
    if m.get("load_average_1min") is not None:
        hardware += f" (load average {m['load_average_1min']} when it finished)"
    data = "; ".join(", ".join(f"{k} {d[k]}" for k in ("name", "size", "seed", "generator_version") if k in d)
                     for d in results["datasets"])
    digests = sorted(c["digest"][:12] for c in results["configs"])
    side_by_side = f", {results['jobs']} at a time" if (results.get("jobs") or 1) > 1 else ""
    lines = [
        BEGIN,
        f"Suite `{results['suite']}` (`{results['suite_file']}`; folds {', '.join(str(f) for f in results['folds'])}; "
        f"{results['runs']['total']} runs, {results['runs']['trained']} trained{side_by_side}) took "
        f"**{_minutes(results['wall_seconds'])}** wall on a {hardware}, {m['system']}, torch {m['torch']}, "
        f"affbench {results['affbench_version']}, started {results['started']}. Data: {data}.",
        "",
        results["tables_markdown"].strip(),
        "",
        f"Source: [`{source}`]({source}), {len(digests)} config digests recorded "
        f"({', '.join(digests[:3])}{', ...' if len(digests) > 3 else ''}).",
        END,
    ]
    return "\n".join(lines)


def replace_block(readme_text: str, block: str, *, readme: str = "README.md") -> str:
    """`readme_text` with its results block replaced by `block` (the markers must occur once each, in order)."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    found = pattern.findall(readme_text)
    if len(found) != 1:
        raise PublishError(f"{readme}: expected one results block between '{BEGIN}' and '{END}', found "
                           f"{len(found)}; add the two marker lines where the table belongs")
    return pattern.sub(lambda _: block, readme_text)


def current_block(readme_text: str) -> str | None:
    """The results block the README holds now (None when it has none)."""
    match = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), readme_text, re.DOTALL)
    return match.group(0) if match else None


def publish(results_path: str | Path, to: str | Path, readme: str | Path) -> Path:
    """Copy a suite's results file to `to` and rewrite `readme`'s results block from it; returns `to`."""
    from affbench.output import write_text_atomic

    results = read_results(results_path)
    to, readme = Path(to), Path(readme)
    try:
        text = readme.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PublishError(f"{readme}: no such README") from None
    source = os.path.relpath(to.resolve(), readme.resolve().parent)
    updated = replace_block(text, render_block(results, Path(source).as_posix()), readme=str(readme))
    to.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(to, json.dumps(results, indent=2, sort_keys=True) + "\n")
    write_text_atomic(readme, updated)
    return to
