"""pytest-benchmark suites of affbench: options, the device fixture, machine info, sizes.

Run with ``pytest benchmarks`` (``tox -e bench``) or ``affbench bench``. The unit tests never collect this
folder (``pytest tests``). Every benchmark stores its throughput in ``extra_info["items_per_second"]`` and
``extra_info["unit"]``; every group holds a baseline (a name containing ``baseline``) measured in the same
run, and the ratio against it is the figure that counts on a noisy machine.
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import pytest

# As the `affbench` command does (affbench/cli.py), before torch loads: OpenMP threads wait passively, so
# `pytest benchmarks`, `tox -e bench` and `affbench bench` all measure what affbench's own commands run.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchkit import BenchSizes, sizes_for  # noqa: E402  (imports torch: after the OpenMP setting)

LOAD_AT_START = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("affbench", "affbench benchmarks")
    group.addoption("--device", default="cpu",
                    help="where the models run: cpu, cuda or cuda:N (AMP bf16 and a synchronize inside each timed "
                         "step)")
    group.addoption("--temporal-batch", type=int, default=None,
                    help="windows per step of the temporal training benchmarks (default: 2 on cpu, 32 on cuda; "
                         "the paper trains with 32)")
    group.addoption("--loader-workers", type=int, default=0,
                    help="DataLoader workers of the loader benchmarks (the same for affbench and baselines)")
    group.addoption("--quick", action="store_true",
                    help="tiny sizes and one round each: checks that every suite runs, measures nothing useful")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[LOAD_AT_START] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    # Caches (SynthAffect, frame shards, features) go to a throwaway home unless the user points elsewhere:
    # a benchmark must never reuse a cache entry it is meant to measure, nor litter ~/.cache.
    if not os.environ.get("AFFBENCH_HOME"):
        os.environ["AFFBENCH_HOME"] = tempfile.mkdtemp(prefix="affbench-bench-home-")


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest):
    """The torch device of ``--device``; cuda benchmarks are skipped where no GPU is visible."""
    import torch

    from affbench.devices import check_device, resolve_device

    name = check_device(request.config.getoption("--device"))
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"--device {name}: no CUDA device visible")
    return resolve_device(name)


@pytest.fixture(scope="session")
def sizes(request: pytest.FixtureRequest, device) -> BenchSizes:
    """Problem sizes and rounds for this device (``--quick`` shrinks everything)."""
    return sizes_for(device.type, quick=request.config.getoption("--quick"),
                     temporal_batch=request.config.getoption("--temporal-batch"),
                     loader_workers=request.config.getoption("--loader-workers"))


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide scratch folder for generated inputs."""
    return tmp_path_factory.mktemp("affbench-bench")


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Record what the figures depend on: torch, threads, the card, and how loaded the machine was."""
    import torch

    info = {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "device_option": config.getoption("--device"),
        "quick": bool(config.getoption("--quick")),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "platform": platform.platform(),
        # pytest-benchmark asks for the machine info when it writes the results, i.e. at the end.
        "load_average_at_start": config.stash.get(LOAD_AT_START, None),
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        info["cuda"] = {"name": torch.cuda.get_device_name(index), "memory_gib": round(props.total_memory / 2**30, 1),
                        "capability": f"{props.major}.{props.minor}", "cuda_version": torch.version.cuda}
    machine_info["affbench"] = info

