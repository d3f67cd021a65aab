"""Plugins through entry points: the example package in tests/plugins/example_plugin registers a cell,
a read-out and a data set kind; the config knows their names without importing them, and a run uses
them. The package is "installed" by putting a dist-info folder with its entry points on sys.path."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, tiny_raw

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

from harness import data as data_mod
from harness import names, plugins, records, runner
from harness.config import ConfigError, config_from_dict
from harness.models import CELL_FACTORIES, READOUTS, build_model
from harness.models.cells import BuiltinCell

PLUGIN_DIR = ROOT / "tests" / "plugins" / "example_plugin"
MODULE = "harness_example_plugin"


def _entry_points_txt(groups: dict[str, dict[str, str]]) -> str:
    return "".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for g, eps in groups.items())


def install(site: Path, name: str, groups: dict[str, dict[str, str]]) -> None:
    """A dist-info folder for distribution `name` with these entry points, as pip would write it."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(_entry_points_txt(groups))


@pytest.fixture
def example_plugin(tmp_path, monkeypatch):
    """The example plugin installed for this test only (its entry points read from its pyproject)."""
    project = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())["project"]
    install(tmp_path / "site", project["name"], project["entry-points"])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    yield project["entry-points"]
    sys.modules.pop(MODULE, None)


def plugin_raw(name="plug", **grid):
    raw = tiny_raw(name, {"cell": ["minimal_gru", "gru"], "seed": [0], **grid})
    raw["data"] = {"kind": "tiny_topics", "pad_size": 12, "synth": {"n_train": 256, "n_dev": 64, "n_test": 64}}
    raw["model"].update({"readout": "first", "num_layers": 1})
    return raw


def test_the_config_knows_plugin_names_without_importing_them(example_plugin):
    cfg = config_from_dict(plugin_raw())
    assert cfg.grid["model.cell"] == ["minimal_gru", "gru"] and cfg.model.readout == "first"
    assert cfg.data.kind == "tiny_topics"
    assert MODULE not in sys.modules  # validated by entry-point name alone
    # The built-ins first, then every installed plugin's (another plugin package in this environment
    # adds its names too: compared with the registry as it is, not a literal list).
    allowed = plugins.allowed_names(plugins.CELL_GROUP)
    assert allowed[:3] == ("rnn", "lstm", "gru") and "minimal_gru" in allowed
    assert set(allowed) == {"rnn", "lstm", "gru", *plugins.plugin_names(plugins.CELL_GROUP)}
    with pytest.raises(ConfigError) as e:
        config_from_dict({**plugin_raw(), "grid": {"cell": ["minimal_gru", "tcn"]}})
    assert "grid.cell" in str(e.value) and ", ".join(allowed) in str(e.value)


def test_without_the_plugin_its_names_are_refused():
    for section, key, value, group in (("grid", "cell", ["minimal_gru"], plugins.CELL_GROUP),
                                       ("model", "readout", "first", plugins.READOUT_GROUP),
                                       ("data", "kind", "tiny_topics", plugins.DATASET_GROUP)):
        allowed = ", ".join(plugins.allowed_names(group))  # the built-ins and any other plugin installed here
        assert allowed.startswith(", ".join(plugins.BUILTIN[group]))
        raw = tiny_raw()
        raw[section][key] = value
        with pytest.raises(ConfigError) as e:
            config_from_dict(raw)
        assert f"'{section}.{key}'" in str(e.value) and f"allowed: {allowed}" in str(e.value), str(e.value)


def test_a_run_uses_the_plugin_cell_readout_and_data_set(example_plugin, tmp_path):
    counts = runner.run(config_from_dict(plugin_raw()), tmp_path / "out", workers=1, device="cpu", threads=1,
                        progress=False)
    assert counts["complete"] == 2 and counts["missing"] == 0
    res = records.load(tmp_path / "out")
    runs = res.runs.set_index("cell")
    assert sorted(runs.index) == ["gru", "minimal_gru"] and (runs["readout"] == "first").all()
    assert (runs["dataset"] == "tiny_topics").all() and runs["data_id"].str.startswith("tiny_topics-").all()
    assert (res.confusion["true_name"].isin(["weather", "sport", "money"])).all()
    # The plugin cell trained: its gradient-reach probe covers its layer like any built-in's.
    layers = res.grad_time.merge(res.runs[["trial_id", "cell"]])
    assert set(layers.loc[layers["cell"] == "minimal_gru", "layer"]) == {"input", "rnn.l0"}
    assert res.config.data.kind == "tiny_topics"


def test_plugin_objects_are_what_the_harness_calls(example_plugin, tmp_path):
    cfg = config_from_dict(plugin_raw())
    ds = data_mod.load(cfg.data, tmp_path / "cache")
    assert ds.class_names == ["weather", "sport", "money"] and ds.name == "tiny_topics" and len(ds.train.labels) == 256
    spec_model = cfg.model.__class__(**{**cfg.model.__dict__, "cell": "minimal_gru"})
    model = build_model(spec_model, ds.vocab_size, 3, ds.pad_index)
    tokens, lengths = torch.from_numpy(ds.dev.tokens[:5]), torch.from_numpy(ds.dev.lengths[:5])
    logits, hidden = model(tokens, lengths, return_hidden=True)
    assert logits.shape == (5, 3) and hidden[1].shape == (5, 12, 2 * cfg.model.hidden_size)
    module = sys.modules[MODULE]
    assert type(model.rnn[0]) is module.MinimalGatedLayer and model.readout is module.readout_first
    with pytest.raises(ValueError, match="minimal_gru has no recurrent-LayerNorm form"):
        build_model(cfg.model.__class__(**{**spec_model.__dict__, "layernorm": "recurrent"}), ds.vocab_size, 3,
                    ds.pad_index)


def test_a_broken_plugin_is_named_when_it_is_loaded(tmp_path, monkeypatch):
    install(tmp_path, "broken-plugin", {"harness.cells": {"broken": "harness_no_such_module:cell"},
                                        "harness.readouts": {"wide": "harness.models:readout_mean"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = {**tiny_raw(), "grid": {"seed": [0]}}
    raw["model"].update({"cell": "broken"})
    cfg = config_from_dict(raw)  # the name is known; nothing is imported yet
    with pytest.raises(plugins.PluginError, match=r"'broken' \(harness.cells = harness_no_such_module:cell\)"):
        build_model(cfg.model, 50, 3, 0)
    # A cell whose layer has the wrong width is refused at the first forward pass, naming the cell (a
    # registry entry of the name takes the entry point's place).
    with names.registered_cell("broken", label="the broken cell", color="k", factory=f"{__name__}:too_wide"):
        model = build_model(cfg.model, 50, 3, 0)
        with pytest.raises(ValueError, match=r"cell 'broken': layer 0 returned shape \(2, 4, 9\)"):
            model(torch.zeros(2, 4, dtype=torch.long), torch.tensor([4, 4]))


def too_wide(i, h, bidirectional, layernorm):
    return torch.nn.GRU(i, h + 1, batch_first=True)


def test_builtin_cells_and_readouts_are_registry_entries_not_entry_points():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert plugins.CELL_GROUP not in declared and plugins.READOUT_GROUP not in declared
    assert plugins.BUILTIN[plugins.CELL_GROUP] == names.CELLS == ("rnn", "lstm", "gru")
    assert plugins.BUILTIN[plugins.READOUT_GROUP] == names.READOUTS == ("last", "last_valid", "mean", "max")
    for name in names.CELLS:
        assert isinstance(CELL_FACTORIES[name], BuiltinCell) and plugins.load(plugins.CELL_GROUP, name) is \
            CELL_FACTORIES[name]
    for name in names.READOUTS:
        assert plugins.load(plugins.READOUT_GROUP, name) is READOUTS[name] is getattr(
            importlib.import_module("harness.models"), f"readout_{name}")
    # The built-in data set kinds are still declared as entry points.
    implementations = {"synthetic": data_mod.prepare_synthetic, "thucnews": data_mod.prepare_thucnews}
    assert tuple(declared[plugins.DATASET_GROUP]) == plugins.BUILTIN[plugins.DATASET_GROUP]
    for name, target in declared[plugins.DATASET_GROUP].items():
        module, attr = target.split(":")
        assert getattr(importlib.import_module(module), attr) is implementations[name]


def test_an_old_install_declaring_builtins_as_entry_points_changes_nothing(tmp_path, monkeypatch):
    """A package installed before the built-ins left pyproject.toml (or another package) still declares
    their names: a built-in name always means the built-in, listed once, whatever the entry point says."""
    install(tmp_path, "old-harness", {"harness.cells": {"rnn": "harness.models:rnn_cell",
                                                        "lstm": "harness_no_such_module:lstm_cell"},
                                      "harness.readouts": {"mean": "harness_no_such_module:readout_mean"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert plugins.allowed_names(plugins.CELL_GROUP)[:3] == ("rnn", "lstm", "gru")
    assert plugins.allowed_names(plugins.CELL_GROUP).count("lstm") == 1
    assert "lstm" not in plugins.plugin_names(plugins.CELL_GROUP)
    assert "mean" not in plugins.plugin_names(plugins.READOUT_GROUP)
    assert plugins.load(plugins.CELL_GROUP, "lstm") is CELL_FACTORIES["lstm"]
    assert plugins.load(plugins.READOUT_GROUP, "mean") is READOUTS["mean"]
    raw = {**tiny_raw(), "grid": {"seed": [0]}}
    raw["model"].update({"cell": "lstm", "readout": "mean"})
    model = build_model(config_from_dict(raw).model, 50, 3, 0)
    assert isinstance(model.rnn[0], torch.nn.LSTM) and model.readout is READOUTS["mean"]
