"""The "add a cell" recipe (docs/architecture.md "A new cell"): a cell is its module plus one registration,
and everything else follows from the registry: the config's names, the model, the report's colour and
wording, the fused trainer's refusal, a trial. The same for a read-out. The "module" here is this file:
`relu_rnn` below, a factory as harness.models.CellFactory describes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_raw
from torch import nn

from harness import data as data_mod
from harness import names, plugins
from harness.config import ConfigError, config_from_dict, expand_grid
from harness.models import CELL_FACTORIES, READOUTS, build_model, read_positions
from harness.models.fused import FusedRecurrentLayer
from harness.records import TrialRecorder
from harness.report import contrasts, figures, outcomes
from harness.train import run_trial

# ----------------------------------------------------------------------------- the new cell's module

def relu_rnn(input_size: int, hidden_size: int, bidirectional: bool, layernorm: bool) -> nn.Module:
    """An Elman RNN with relu: one layer of nn.RNN(nonlinearity="relu"); no recurrent-LayerNorm form."""
    if layernorm:
        raise ValueError("relu_rnn has no recurrent-LayerNorm form")
    return nn.RNN(input_size, hidden_size, nonlinearity="relu", batch_first=True, bidirectional=bidirectional)


def readout_last_two(out: torch.Tensor, lengths: torch.Tensor, directions: int,
                     starts: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of the last two positions (padding included)."""
    return out[..., -2:, :].mean(-2)


RELU = {"label": "the ReLU RNN", "color": "#9467bd", "factory": f"{__name__}:relu_rnn"}


def trial(tmp_path, **model):
    """A real tiny trial (the trainer's, on the synthetic data) with these model settings."""
    raw = tiny_raw(grid={"pad_size": [12], "seed": [0]})
    raw["model"].update(model)
    cfg = config_from_dict(raw)
    cache = tmp_path / "cache"
    _, data_id = data_mod.prepare(cfg.data, cache)
    spec = expand_grid(cfg, data_id)[0]
    rec = TrialRecorder(spec.trial_id)
    row = run_trial(spec, data_mod.load(spec.data, cache), torch.device("cpu"), rec)
    return spec, row, rec.tables()


def test_a_cell_is_its_module_plus_one_registration(tmp_path):
    assert "relu_rnn" not in names.CELLS
    with names.registered_cell("relu_rnn", **RELU) as entry:  # the one registration
        # The config accepts the name, as model.cell and as a grid axis, after the built-ins.
        assert names.CELLS == ("rnn", "lstm", "gru", "relu_rnn") and entry is names.cell_entry("relu_rnn")
        assert plugins.allowed_names(plugins.CELL_GROUP)[:4] == names.CELLS
        raw = tiny_raw(grid={"cell": ["gru", "relu_rnn"], "seed": [0]})
        assert config_from_dict(raw).grid["model.cell"] == ["gru", "relu_rnn"]
        raw = tiny_raw(grid={"seed": [0]})
        raw["model"]["cell"] = "relu_rnn"
        cfg = config_from_dict(raw)
        assert cfg.model.cell == "relu_rnn"

        # A model builds from the factory, and runs forward and backward.
        assert CELL_FACTORIES["relu_rnn"] is relu_rnn
        model = build_model(cfg.model, 50, 3, 0)
        assert all(type(layer) is nn.RNN and layer.nonlinearity == "relu" for layer in model.rnn)
        tokens, lengths = torch.randint(1, 50, (4, 7)), torch.tensor([7, 5, 3, 1])
        logits, hidden = model(tokens, lengths, return_hidden=True)
        assert logits.shape == (4, 3) and hidden[2].shape == (4, 7, 2 * cfg.model.hidden_size)
        logits.sum().backward()
        assert all(p.grad is not None for p in model.rnn.parameters())
        # Its recurrent-LayerNorm refusal is its own.
        ln = cfg.model.__class__(**{**cfg.model.__dict__, "layernorm": "recurrent"})
        with pytest.raises(ValueError, match="relu_rnn has no recurrent-LayerNorm form"):
            build_model(ln, 50, 3, 0)

        # The report: its colour, its label, its place after the built-ins.
        assert figures.cell_color("relu_rnn") == "#9467bd" == figures.CELL_COLORS["relu_rnn"]
        with figures.arm_colors(["relu_rnn", "other"]):
            assert figures.cell_color("relu_rnn") == "#9467bd" and figures.cell_color("other") == figures.ARM_COLORS[0]
        assert outcomes.cell_name("relu_rnn") == "the ReLU RNN" == contrasts._name("cell", "relu_rnn")
        assert outcomes.group_name("cell", "relu_rnn") == "the ReLU RNN"
        assert names.level_rank("gru") < names.level_rank("relu_rnn") < names.level_rank("not_a_cell")

        # No fused form: said by the registry, refused by the fused layer with the cell's name.
        assert not names.fused_cell("relu_rnn") and names.fused_cell("gru")
        with pytest.raises(ValueError, match="cell 'relu_rnn' has no fused form"):
            FusedRecurrentLayer(2, "relu_rnn", 8, 8, True, False)

        # A real trial trains it, and its gradient-reach probe covers its layers.
        spec, row, tables = trial(tmp_path, cell="relu_rnn")
        assert spec.model.cell == "relu_rnn" and row["status"] == "complete" and row["cell"] == "relu_rnn"
        assert {"rnn.l0", "rnn.l1"} <= set(tables["grad_time"]["layer"])

    # Unregistered: the name is gone from everything that followed from it.
    assert names.CELLS == ("rnn", "lstm", "gru") and names.cell_entry("relu_rnn") is None
    assert "relu_rnn" not in CELL_FACTORIES and "relu_rnn" not in figures.CELL_COLORS
    assert outcomes.cell_name("relu_rnn") == "relu_rnn"
    with pytest.raises(ConfigError, match="'model.cell': 'relu_rnn' is not allowed"):
        config_from_dict(raw)


def test_registration_refuses_a_taken_or_incomplete_entry():
    with pytest.raises(ValueError, match="already registered"):
        names.register_cell("lstm", **RELU)
    with pytest.raises(ValueError, match="needs its gate count"):
        names.register_cell("relu_rnn", **RELU, fused=True)
    with pytest.raises(ValueError, match="'module:attr'"):
        names.register_cell("relu_rnn", **{**RELU, "factory": "relu_rnn"})
    with pytest.raises(ValueError, match="reads must be one of"):
        names.register_readout("last_two", function=f"{__name__}:readout_last_two", reads="first")
    assert names.CELLS == ("rnn", "lstm", "gru") and names.READOUTS == ("last", "last_valid", "mean", "max")


def test_a_readout_is_its_function_plus_one_registration(tmp_path):
    with names.registered_readout("last_two", function=f"{__name__}:readout_last_two", reads="last_position"):
        assert names.READOUTS[-1] == "last_two" and READOUTS["last_two"] is readout_last_two
        raw = tiny_raw(grid={"seed": [0]})
        raw["model"]["readout"] = "last_two"
        cfg = config_from_dict(raw)
        model = build_model(cfg.model, 50, 3, 0)
        assert model.readout is readout_last_two
        assert model(torch.randint(1, 50, (4, 7)), torch.tensor([7, 5, 3, 1])).shape == (4, 3)
        # The probe reads where the entry says: the last position, as for `last`.
        assert read_positions("last_two", np.array([2, 5]), 8).tolist() == [7, 7]
        assert not names.fused_readout("last_two") and names.fused_readout("last_valid")
        spec, row, tables = trial(tmp_path, readout="last_two", cell="gru")
        assert row["status"] == "complete" and row["readout"] == "last_two"
    assert names.readout_entry("last_two") is None and "last_two" not in READOUTS
    with pytest.raises(ConfigError, match="'model.readout': 'last_two' is not allowed"):
        config_from_dict(raw)
    # A fusable one says so.
    with names.registered_readout("last_two", function=f"{__name__}:readout_last_two", fused=True):
        assert names.fused_readout("last_two")
        assert read_positions("last_two", np.array([2, 5]), 8).tolist() == [1, 4]


@pytest.mark.parametrize("fuse", [2, "auto"])
def test_a_cell_without_a_fused_form_is_refused_by_run_fuse_k_before_any_work(tmp_path, fuse):
    """run.fuse K asks for fused groups: a cell without a fused form is a config error naming both keys,
    before the results folder exists; `auto` (off on a CPU, fusing only what can fuse on CUDA) runs it."""
    from harness import runner
    from harness.train_fused import check_fusable, fusable

    with names.registered_cell("relu_rnn", **RELU):
        raw = tiny_raw("relu", {"cell": ["relu_rnn", "rnn"], "pad_size": [12]})
        raw["run"] = {"fuse": fuse}
        cfg = config_from_dict(raw)
        specs = expand_grid(cfg, "data-x")
        assert [fusable(s) is None for s in specs] == [False, True]
        assert "model.cell 'relu_rnn' has no fused form" in fusable(specs[0])
        out = tmp_path / "out"
        if fuse == "auto":
            check_fusable(cfg)
            return
        with pytest.raises(ConfigError, match="'run.fuse'.*model.cell 'relu_rnn' has no fused form"):
            runner.run(cfg, out, device="cpu", threads=1, progress=False)
        assert not out.exists()
