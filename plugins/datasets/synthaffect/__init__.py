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


__all__ = [
    "GENERATOR_VERSION",
    "SIZES",
    "SizeSpec",
    "SynthAffectDataset",
    "affbench_register_datasets",
    "default_root",
    "generate_synthaffect",
]
