"""The plugin registry: discovery, isolation of broken plugins, teaching errors, the CLI listing."""

import sys
import textwrap
import tomllib
import types
from importlib import metadata
from pathlib import Path

import pytest

import affbench
from affbench.cli import main
from affbench.core import registry as registry_module
from affbench.core.registry import (
    ComponentOptionError,
    DuplicateComponentError,
    Registry,
    UnknownComponentError,
)

ROOT = Path(__file__).resolve().parents[1]


def make_plugin_module(name, body):
    """A real module object holding hookimpls, importable by `name` for the test's duration."""
    module = types.ModuleType(name)
    module.__dict__["affbench"] = affbench
    exec(textwrap.dedent(body), module.__dict__)
    return module


class FakeDist:
    def __init__(self, name, version):
        self.name = name
        self.version = version


class FakeEntryPoint:
    """What importlib.metadata hands out, with a loader we control."""

    def __init__(self, name, value, loader, dist=("thirdparty", "2.0")):
        self.name = name
        self.value = value
        self.group = "affbench"
        self.dist = FakeDist(*dist) if dist else None
        self._loader = loader

    def load(self):
        return self._loader()


GOOD = """
class Tiny:
    '''A tiny test backbone.'''
    def __init__(self, *, width=4):
        self.out_dim = width

@affbench.hookimpl
def affbench_register_backbones(register):
    register("tiny", Tiny)
"""


@pytest.fixture
def isolated(monkeypatch):
    """A registry that sees only the entry points a test gives it (no built-ins)."""

    def build(*eps):
        monkeypatch.setattr(registry_module, "_entry_points", lambda: list(eps))
        monkeypatch.setattr(registry_module, "DEFAULT_PLUGINS", {})
        return Registry()

    return build


def test_third_party_entry_point_registers_a_backbone(isolated):
    module = make_plugin_module("tp_good", GOOD)
    reg = isolated(FakeEntryPoint("good", "tp_good", lambda: module))
    (comp,) = reg.list("backbone")
    assert (comp.name, comp.plugin, comp.version) == ("tiny", "good", "2.0")
    assert reg.create("backbone", "tiny", width=7).out_dim == 7


def test_plugins_load_lazily_and_once(isolated):
    calls = []
    module = make_plugin_module("tp_count", GOOD)
    reg = isolated(FakeEntryPoint("good", "tp_count", lambda: calls.append(1) or module))
    assert calls == []
    reg.list("backbone")
    reg.get("backbone", "tiny")
    reg.list()
    assert calls == [1]


def test_plugin_failing_to_import_warns_with_its_name_and_others_load(isolated):
    def broken():
        raise ImportError("no module named 'missing_dependency'")

    module = make_plugin_module("tp_good2", GOOD)
    reg = isolated(
        FakeEntryPoint("broken", "tp_broken", broken),
        FakeEntryPoint("good", "tp_good2", lambda: module),
    )
    with pytest.warns(RuntimeWarning, match=r"plugin 'broken' \(tp_broken\).*missing_dependency"):
        names = [c.name for c in reg.list("backbone")]
    assert names == ["tiny"]
    failed = [p for p in reg.plugins() if p.error]
    assert [p.name for p in failed] == ["broken"]


def test_plugin_raising_while_registering_is_rolled_back(isolated):
    half = make_plugin_module(
        "tp_half",
        """
        @affbench.hookimpl
        def affbench_register_backbones(register):
            register("half_done", object)
            raise RuntimeError("boom while registering")
        """,
    )
    good = make_plugin_module("tp_good3", GOOD)
    reg = isolated(FakeEntryPoint("half", "tp_half", lambda: half), FakeEntryPoint("good", "tp_good3", lambda: good))
    with pytest.warns(RuntimeWarning, match="plugin 'half'.*boom while registering"):
        names = [c.name for c in reg.list("backbone")]
    assert names == ["tiny"]


def test_duplicate_name_is_an_error_naming_both_plugins(isolated):
    first = make_plugin_module("tp_first", GOOD)
    second = make_plugin_module("tp_second", GOOD)
    reg = isolated(
        FakeEntryPoint("first", "tp_first", lambda: first),
        FakeEntryPoint("second", "tp_second", lambda: second),
    )
    with pytest.warns(RuntimeWarning, match="registered twice: by plugin 'first' and by plugin 'second'"):
        reg.load()
    assert reg.get("backbone", "tiny").plugin == "first"
    register = reg._registrar("backbone", "third", "1", [])
    with pytest.raises(DuplicateComponentError, match="'first'.*'third'"):
        register("tiny", object)


def test_unknown_name_lists_registered_and_closest(isolated):
    module = make_plugin_module("tp_good4", GOOD)
    reg = isolated(FakeEntryPoint("good", "tp_good4", lambda: module))
    with pytest.raises(UnknownComponentError, match=r"unknown backbone 'tinny'; registered backbones: tiny\. "
                                                     r"Did you mean 'tiny'\?"):
        reg.create("backbone", "tinny")
    with pytest.raises(UnknownComponentError, match="unknown component kind 'backbones'.*Did you mean 'backbone'"):
        reg.list("backbones")


def test_bad_option_names_the_option_and_the_component(isolated):
    module = make_plugin_module("tp_good5", GOOD)
    reg = isolated(FakeEntryPoint("good", "tp_good5", lambda: module))
    with pytest.raises(ComponentOptionError, match=r"backbone 'tiny' \(plugin 'good'\) has no option 'widht'; "
                                                    r"accepted options: width\. Did you mean 'width'\?"):
        reg.create("backbone", "tiny", widht=3)


def test_missing_required_option_is_named(isolated):
    module = make_plugin_module(
        "tp_req",
        """
        def build(in_dim, *, hidden):
            return (in_dim, hidden)

        @affbench.hookimpl
        def affbench_register_temporal(register):
            register("needs", build)
        """,
    )
    reg = isolated(FakeEntryPoint("req", "tp_req", lambda: module))
    with pytest.raises(ComponentOptionError, match="needs option.*hidden"):
        reg.create("temporal", "needs", in_dim=3)


def test_list_filters_with_fnmatch(isolated):
    module = make_plugin_module(
        "tp_many",
        """
        @affbench.hookimpl
        def affbench_register_temporal(register):
            for name in ("tcn", "tcn_causal", "transformer"):
                register(name, lambda in_dim: None)
        """,
    )
    reg = isolated(FakeEntryPoint("many", "tp_many", lambda: module))
    assert [c.name for c in reg.list("temporal", "tcn*")] == ["tcn", "tcn_causal"]
    assert [c.name for c in reg.list("temporal", "*former")] == ["transformer"]


def test_disable_autoload_keeps_only_builtins(isolated, monkeypatch):
    builtin = make_plugin_module("tp_builtin", GOOD.replace('"tiny"', '"builtin_tiny"'))
    third = make_plugin_module("tp_third", GOOD)
    eps = (
        FakeEntryPoint("core", "tp_builtin", lambda: builtin, dist=("affbench", "0.1.0")),
        FakeEntryPoint("third", "tp_third", lambda: third),
    )
    monkeypatch.setenv("AFFBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert [c.name for c in isolated(*eps).list("backbone")] == ["builtin_tiny"]
    monkeypatch.delenv("AFFBENCH_DISABLE_PLUGIN_AUTOLOAD")
    assert [c.name for c in isolated(*eps).list("backbone")] == ["builtin_tiny", "tiny"]


@pytest.fixture
def installed_thirdparty(tmp_path, monkeypatch):
    """A third-party package installed the way pip installs one: a module plus a .dist-info with entry points."""
    site = tmp_path / "site"
    (site / "affbench_example_backbone").mkdir(parents=True)
    (site / "affbench_example_backbone" / "__init__.py").write_text(textwrap.dedent('''
        import torch
        import affbench

        class MeanColour(torch.nn.Module):
            """Mean colour of the image: a 3-dimensional feature."""
            out_dim = 3
            def forward(self, images):
                return images.mean(dim=(2, 3))

        @affbench.hookimpl
        def affbench_register_backbones(register):
            register("mean_colour", MeanColour)
    '''))
    info = site / "affbench_example_backbone-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: affbench-example-backbone\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[affbench]\nexample = affbench_example_backbone\n")
    monkeypatch.syspath_prepend(str(site))
    registry_module.reset_registry()
    yield
    sys.modules.pop("affbench_example_backbone", None)
    registry_module.reset_registry()


def test_installed_package_is_discovered_through_its_entry_point(installed_thirdparty, capsys):
    eps = {ep.name: ep for ep in metadata.entry_points(group="affbench")}
    assert eps["example"].value == "affbench_example_backbone"
    (comp,) = affbench.list_components("backbone", "mean_*")
    assert (comp.plugin, comp.version) == ("example", "1.2.3")
    import torch

    out = affbench.create("backbone", "mean_colour")(torch.ones(2, 3, 8, 8))
    assert out.shape == (2, 3)
    assert main(["list", "backbone", "--filter", "mean_*"]) == 0
    printed = capsys.readouterr().out
    assert "mean_colour" in printed and "example 1.2.3" in printed and "Mean colour of the image" in printed
    assert main(["plugins"]) == 0
    printed = capsys.readouterr().out
    assert "example" in printed and "third-party" in printed and "affbench_register_backbones" in printed


def test_builtin_entry_points_match_the_source_fallback():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["affbench"] == registry_module.DEFAULT_PLUGINS


def test_builtins_are_listed(capsys):
    registry_module.reset_registry()
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    for kind, name in [("backbone", "clip"), ("backbone", "timm"), ("temporal", "tcn"),
                       ("temporal", "transformer"), ("temporal", "none"), ("task", "va"), ("task", "expr"),
                       ("task", "au"), ("metric", "ccc"), ("dataset", "affwild2"), ("dataset", "synthaffect")]:
        assert any(line.split()[:2] == [kind, name] for line in printed.splitlines()), (kind, name)
    assert not [p for p in registry_module.get_registry().plugins() if p.error]
