"""Stage 1: fine-tuning changes the backbone, saves and reloads it safely, trains on the fold's training frames
only, is cached, and resumes from its epoch checkpoint."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from stage_fixtures import TinyNet, tiny_config

import affbench.stages.finetune as stage1
from affbench.data.frame_shards import FrameShards
from affbench.stages.stage_inputs import load_stage_inputs, selection_spec

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures


def test_finetune_changes_weights_and_saves_a_loadable_state_dict(home, synth_root):
    config = tiny_config(synth_root)
    result = stage1.finetune(config, fold=0, quiet=True)
    assert not result.reused and result.weights_path.is_file()
    assert result.weights_id == stage1.finetuned_weights_id(result.weights_path)

    base = stage1.build_backbone(config["backbone"])
    saved = load_file(str(result.weights_path))
    assert set(saved) == set(base.state_dict())
    changed = [k for k, v in base.state_dict().items() if not torch.equal(v, saved[k])]
    assert changed, "fine-tuning left every backbone tensor unchanged"

    reloaded = stage1.load_finetuned(stage1.build_backbone(config["backbone"]), result.weights_path)
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, saved[key])
    assert result.manifest["frames_per_epoch"] == config["finetune"]["max_frames"]
    assert len(result.manifest["history"]) == config["finetune"]["epochs"]
    assert not (result.directory / stage1.EPOCH_CHECKPOINT).exists()


def test_finetune_is_cached_and_keyed_by_its_inputs(home, synth_root):
    config = tiny_config(synth_root)
    first = stage1.finetune(config, fold=0, quiet=True)
    mtime = first.weights_path.stat().st_mtime_ns
    again = stage1.finetune(config, fold=0, quiet=True)
    assert again.reused and again.weights_path == first.weights_path
    assert again.weights_path.stat().st_mtime_ns == mtime
    other_fold = stage1.finetune(config, fold=1, quiet=True)
    other_lr = stage1.finetune(tiny_config(synth_root, finetune={"lr": 1.0e-3}), fold=0, quiet=True)
    assert len({first.directory, other_fold.directory, other_lr.directory}) == 3
    assert other_fold.weights_id != first.weights_id


@pytest.mark.parametrize("select", ["last", "inner"])
def test_finetune_reads_only_the_folds_training_videos(home, synth_root, select):
    """Never a validation video; under train.select: inner never the selection slice either."""
    config = tiny_config(synth_root, finetune={"max_frames": None}, train={"select": select})
    inputs = load_stage_inputs(config, 0)
    held = set((selection_spec(config, inputs) or {"videos": []})["videos"])
    assert bool(held) == (select == "inner")
    result = stage1.finetune(config, fold=0, quiet=True, inputs=inputs)
    frames_dirs = [p for p in (home / "cache" / "frames").iterdir() if (p / "manifest.json").is_file()]
    assert len(frames_dirs) == 1
    samples = list(FrameShards(frames_dirs[0]))
    videos = {s["video"] for s in samples}
    assert videos <= set(inputs.fold_info["train"]) - held
    assert not videos & set(inputs.fold_info["validation"])
    assert all(s["valid"] for s in samples)
    usable = sum(int((r.has_image & r.valid).sum()) for r in inputs.train if r.video not in held)
    assert len(samples) == usable == result.manifest["frames_per_epoch"]


def test_finetune_resumes_after_the_last_finished_epoch(home, synth_root, monkeypatch):
    config = tiny_config(synth_root, finetune={"epochs": 2})
    real_epoch = stage1._train_epoch
    calls = []

    def crash_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(stage1, "_train_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        stage1.finetune(config, fold=0, quiet=True)
    directories = list((home / "cache" / "finetune").iterdir())
    assert len(directories) == 1 and (directories[0] / stage1.EPOCH_CHECKPOINT).is_file()
    assert not (directories[0] / stage1.WEIGHTS_FILE).exists()

    calls.clear()
    monkeypatch.setattr(stage1, "_train_epoch", lambda *a, **k: (calls.append(1), real_epoch(*a, **k))[1])
    result = stage1.finetune(config, fold=0, quiet=True)
    assert len(calls) == 1, "the resumed run retrained the finished epoch"
    assert [h["epoch"] for h in result.manifest["history"]] == [1, 2]


def test_finetune_needs_a_backbone(home, synth_root):
    config = tiny_config(synth_root, backbone=None)
    with pytest.raises(ValueError, match="backbone is null"):
        stage1.finetune(config, fold=0, quiet=True)


class _BatchNormTinyNet(TinyNet):
    """The tiny backbone with a BatchNorm layer whose running statistics stand for pretrained ones."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(self.conv.out_channels)
        self.bn.running_mean.fill_(0.25)
        self.bn.running_var.fill_(2.0)
        self.weights_id = "random:tinynet-bn:seed0"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(images))).mean(dim=(2, 3)))


@pytest.mark.parametrize("mode", ["frozen", "train"])
def test_finetune_keeps_pretrained_batchnorm_statistics_unless_told_to_train_them(home, synth_root, monkeypatch,
                                                                                   mode):
    monkeypatch.setattr(stage1, "build_backbone", lambda spec: _BatchNormTinyNet())
    config = tiny_config(synth_root, finetune={"batchnorm": mode})
    result = stage1.finetune(config, fold=0, quiet=True)
    base, saved = _BatchNormTinyNet().state_dict(), load_file(str(result.weights_path))
    stats = ("bn.running_mean", "bn.running_var", "bn.num_batches_tracked")
    if mode == "frozen":
        assert all(torch.equal(saved[k], base[k]) for k in stats)
    else:
        assert not any(torch.equal(saved[k], base[k]) for k in stats)
    assert not torch.equal(saved["bn.weight"], base["bn.weight"]), "BatchNorm affine parameters must still train"
    other = "train" if mode == "frozen" else "frozen"
    assert stage1.finetune(tiny_config(synth_root, finetune={"batchnorm": other}), fold=0,
                       quiet=True).directory != result.directory


def test_finetune_batchnorm_defaults_to_train(synth_root):
    assert tiny_config(synth_root)["finetune"]["batchnorm"] == "train"


def test_a_shared_fine_tune_serves_every_task_and_never_sees_a_validation_video(home, synth_root):
    shared = {"tasks": ["va", "expr", "au"], "max_frames": None}
    results = {task: stage1.finetune(tiny_config(synth_root, task=task, finetune=shared), fold=0, quiet=True)
               for task in ("va", "expr", "au")}
    assert [r.reused for r in results.values()] == [False, True, True]
    assert len({r.weights_id for r in results.values()}) == 1
    manifest = results["va"].manifest
    assert [t["name"] for t in manifest["tasks"]] == ["va", "expr", "au"]
    trained = set(manifest["fold"]["train"])
    for task in ("va", "expr", "au"):
        inputs = load_stage_inputs(tiny_config(synth_root, task=task), 0)
        assert not trained & set(inputs.fold_info["validation"]), task
        held = set(selection_spec(tiny_config(synth_root, task=task), inputs)["videos"])
        assert held and not trained & held, task
        assert {r.video for r in inputs.train} - held <= trained
    frames_dirs = [p for p in (home / "cache" / "frames").iterdir() if (p / "manifest.json").is_file()]
    assert len(frames_dirs) == 1 and {s["video"] for s in FrameShards(frames_dirs[0])} <= trained


def test_folds_hold_the_same_source_videos_for_every_task(home, synth_root):
    sides = {}
    for task in ("va", "expr", "au"):
        inputs = load_stage_inputs(tiny_config(synth_root, task=task), 1)
        sides[task] = ({r.source for r in inputs.train}, {r.source for r in inputs.validation})
        assert inputs.fold_info["split_over_tasks"] == ["va", "expr", "au"]
    every_validation = set().union(*(v for _, v in sides.values()))
    for train_sources, _ in sides.values():
        assert not train_sources & every_validation
