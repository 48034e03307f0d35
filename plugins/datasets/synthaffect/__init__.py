"""SynthAffect, the built-in dataset: procedurally rendered face videos in the Aff-Wild2 layout.

``affbench.create("dataset", "synthaffect", size="small", seed=0)`` generates the data on first use under
$AFFBENCH_HOME/synthaffect/<size>-seed<seed>; ``generate_synthaffect(out_dir, size=..., seed=...)`` writes it
anywhere.
"""

from __future__ import annotations

from affbench import hookimpl
from affbench_plugins.datasets.synthaffect.dataset import SynthAffectDataset
from affbench_plugins.datasets.synthaffect.generate import (
    GENERATOR_VERSION,
    default_root,
    generate_synthaffect,
)
from affbench_plugins.datasets.synthaffect.plan import SIZES, SizeSpec


@hookimpl
def affbench_register_datasets(register):
    register("synthaffect", SynthAffectDataset)


def _synth_arguments(parser) -> None:
    from pathlib import Path

    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--size", choices=tuple(SIZES), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=_run_synth)


def _run_synth(args) -> int:
    """`affbench data synth`: generate SynthAffect into --out and print its folder."""
    print(generate_synthaffect(args.out, size=args.size, seed=args.seed, quiet=bool(getattr(args, "quiet", False))))
    return 0


@hookimpl
def affbench_register_commands(register):
    register("data synth", _synth_arguments,
             "generate the SynthAffect dataset (synthetic faces with known labels) in the Aff-Wild2 layout")


__all__ = [
    "GENERATOR_VERSION",
    "SIZES",
    "SizeSpec",
    "SynthAffectDataset",
    "affbench_register_commands",
    "affbench_register_datasets",
    "default_root",
    "generate_synthaffect",
]
