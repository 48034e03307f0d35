"""The config key `compile`: stages 1 and 2 run the backbone through torch.compile's result when it is true and
never call torch.compile when it is false; it is recorded in the fine-tune's manifest, and no cache key holds it."""

from __future__ import annotations

import torch
from stage_fixtures import tiny_config

import affbench.stages.finetune as ft
from affbench.stages.extract import extract_features

pytest_plugins = ["stage_plugin"]  # the synth_root and home fixtures


class CompileRecorder:
    """Stands in for torch.compile: returns a wrapper that counts its calls and runs the module eagerly."""

    def __init__(self) -> None:
        self.compiled: list[torch.nn.Module] = []
        self.calls = 0

    def __call__(self, module: torch.nn.Module, **options):
        self.compiled.append(module)
        recorder = self

        def run(*args, **kwargs):
            recorder.calls += 1
            return module(*args, **kwargs)

        return run


def test_compile_is_off_by_default_and_never_called(home, synth_root, monkeypatch):
    recorder = CompileRecorder()
    monkeypatch.setattr(torch, "compile", recorder)
    config = tiny_config(synth_root)
    assert config["compile"] is False
    features = extract_features(config, fold=0, quiet=True)  # fine-tunes (stage 1), then extracts (stage 2)
    assert features.extracted_frames > 0 and recorder.compiled == [] and recorder.calls == 0
    assert features.finetune["compile"] is False


def test_compile_runs_both_stages_through_the_compiled_callable(home, synth_root, monkeypatch):
    recorder = CompileRecorder()
    monkeypatch.setattr(torch, "compile", recorder)
    eager = tiny_config(synth_root)
    config = tiny_config(synth_root, compile=True)
    features = extract_features(config, fold=0, quiet=True)
    # One compile for the fine-tune's backbone + head, one for the extractor's backbone; every batch goes through.
    assert len(recorder.compiled) == 2
    assert isinstance(recorder.compiled[0], ft.BackboneWithHead)
    assert recorder.calls >= 2
    assert features.finetune["compile"] is True
    # Not a cache key: the eager config finds the same fine-tune and features (see the `compile` key's doc).
    again = extract_features(eager, fold=0, quiet=True)
    assert again.key == features.key and again.extracted_frames == 0
    assert ft.finetune(eager, fold=0, quiet=True).reused
