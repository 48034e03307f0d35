"""The `affbench data` command group: wiring into `affbench`, generic datasets, `data synth`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import affbench
from affbench import hookimpl
from affbench.cli import main as affbench_main
from affbench.core.registry import reset_registry
from affbench.data.records import VideoRecord

FIXTURE = Path(__file__).parent / "fixtures" / "affwild2"

pytestmark = pytest.mark.filterwarnings("ignore:affbench. skipped plugin:RuntimeWarning")


def test_affbench_command_runs_data_frames(capsys):
    code = affbench_main(["--quiet", "data", "frames", "--root", str(FIXTURE / "root"), "--task", "va",
                          "--split", "validation"])
    assert code == 0
    assert capsys.readouterr().out == (FIXTURE / "expected" / "va_validation.csv").read_text()


class ToyDataset:
    """A dataset that keeps no label texts: the table formats the float32 values."""

    name = "toyset"

    def __init__(self, root, size="tiny", seed=0):
        self.root = Path(root).resolve()
        self.image_root = self.root / "faces"
        self.size, self.seed = size, seed

    def videos(self, task, split):
        labels = np.array([[0.5, -0.25], [-5, -5]], np.float32)
        return [VideoRecord(f"{split}_{self.size}_{self.seed}", "s", ["x/00001.jpg", ""], labels,
                            np.array([True, False]))]

    def provenance(self):
        return {"name": self.name, "size": self.size, "seed": self.seed}


def test_folds_for_any_registered_dataset(toy_registry, tmp_path, capsys):
    # Two splits, one source video "s": k=2 needs two sources, so this is the clear k error, via the registry.
    code = affbench_main(["data", "folds", "--dataset", "toyset", "--root", str(tmp_path), "--dataset-seed", "1",
                          "--task", "va", "--k", "2"])
    assert code == 2
    assert "k=2 folds need at least 2 source videos, but the records hold 1" in capsys.readouterr().err


class ToyPlugin:
    @hookimpl
    def affbench_register_datasets(self, register):
        register("toyset", ToyDataset)


@pytest.fixture
def toy_registry():
    reset_registry()
    affbench.get_registry().register_plugin(ToyPlugin(), "toy")
    yield
    reset_registry()


def test_frames_for_any_registered_dataset(toy_registry, tmp_path, capsys):
    code = affbench_main(["data", "frames", "--dataset", "toyset", "--root", str(tmp_path), "--size", "small",
                          "--option", "seed=3", "--task", "va", "--split", "train"])
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.splitlines() == [
        "video,frame,image,valid,valence,arousal",
        "train_small_3,1,faces/x/00001.jpg,1,0.5,-0.25",
        "train_small_3,2,,0,-5,-5",
    ]
    code = affbench_main(["data", "frames", "--dataset", "toyset", "--root", str(tmp_path), "--seed", "5",
                          "--task", "va", "--split", "validation"])
    assert code == 0
    assert capsys.readouterr().out.splitlines()[1] == "validation_tiny_5,1,faces/x/00001.jpg,1,0.5,-0.25"


def test_unknown_dataset_option_is_reported(toy_registry, tmp_path, capsys):
    code = affbench_main(["data", "frames", "--dataset", "toyset", "--root", str(tmp_path), "--option",
                          "colour=red", "--task", "va", "--split", "train"])
    assert code == 2
    assert "has no option 'colour'" in capsys.readouterr().err


def test_bad_option_syntax(toy_registry, tmp_path, capsys):
    code = affbench_main(["data", "frames", "--dataset", "toyset", "--root", str(tmp_path), "--option", "seed",
                          "--task", "va", "--split", "train"])
    assert code == 2
    assert "--option 'seed': expected KEY=VALUE" in capsys.readouterr().err


def test_synth_calls_the_generator(monkeypatch, tmp_path, capsys):
    import affbench_plugins.datasets.synthaffect as synthaffect

    calls = []

    def fake_generate(out_dir, *, size="small", seed=0, quiet=False):
        calls.append((Path(out_dir), size, seed, quiet))
        return Path(out_dir)

    monkeypatch.setattr(synthaffect, "generate_synthaffect", fake_generate, raising=False)
    code = affbench_main(["--quiet", "data", "synth", "--out", str(tmp_path / "s"), "--size", "tiny", "--seed", "2"])
    assert code == 0
    assert calls == [(tmp_path / "s", "tiny", 2, True)]
    assert capsys.readouterr().out.strip() == str(tmp_path / "s")


def test_synth_rejects_unknown_size(capsys):
    with pytest.raises(SystemExit) as info:
        affbench_main(["data", "synth", "--out", "x", "--size", "huge"])
    assert info.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err
