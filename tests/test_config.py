"""Config validation (every error names its key) and grid expansion."""

from pathlib import Path

import pytest

from harness import names
from harness.config import ConfigError, ModelConfig, config_from_dict, expand_grid, load_config, make_spec

BASE = {"name": "t", "grid": {"cell": ["rnn", "lstm"], "pad_size": [8, 16], "seed": [0, 1]}}


def cfg(**over):
    raw = {**BASE, **over}
    return config_from_dict(raw)


def test_defaults_follow_the_seed():
    c = cfg()
    assert (c.model.embed_dim, c.model.hidden_size, c.model.num_layers) == (300, 128, 2)
    assert c.model.dropout == 0.3 and c.model.readout == "last" and c.model.init == "xavier"
    assert (c.train.batch_size, c.data.pad_size, c.train.lr, c.train.epochs) == (64, 32, 1e-3, 7)


@pytest.mark.parametrize("raw, key, words", [
    ({"model": {"hiden_size": 3}}, "model.hiden_size", ["unknown", "hidden_size"]),
    ({"model": {"hidden_size": "big"}}, "model.hidden_size", ["integer", "'big'"]),
    ({"model": {"readout": "first"}}, "model.readout", ["last, last_valid, mean, max", "'first'"]),
    ({"model": {"dropout": 1.5}}, "model.dropout", ["<= 1.0", "1.5"]),
    ({"train": {"lr": 0}}, "train.lr", ["> 0.0"]),
    ({"train": {"shuffle": "yes"}}, "train.shuffle", ["true or false"]),
    ({"grid": {"cell": []}}, "grid.cell", ["empty"]),
    ({"grid": {"cell": ["lstm", "transformer"]}}, "grid.cell", ["rnn, lstm, gru", "'transformer'"]),
    ({"grid": {"model.readout": "mean"}}, "grid.model.readout", ["list"]),
    ({"grid": {"model.colour": [1]}}, "grid.model.colour", ["unknown grid axis"]),
    ({"grid": {"data.kind": ["synthetic"]}}, "grid.data.kind", ["cannot vary"]),
    # One synthetic data set per experiment: its settings are the data identity, not in trial ids.
    ({"grid": {"data.synth.signal": [0.1, 0.2]}}, "grid.data.synth.signal", ["cannot vary"]),
    ({"grid": {"lr": [1e-3, 1e-3]}}, "grid.lr", ["repeats"]),
    ({"data": {"kind": "thucnews"}}, "data.dir", ["required"]),
    ({"run": {"device": "tpu"}}, "run.device", ["cuda:K"]),
    ({"colour": 1}, "colour", ["unknown", "allowed top-level"]),
])
def test_errors_name_the_key_and_value(raw, key, words):
    with pytest.raises(ConfigError) as e:
        cfg(**raw)
    msg = str(e.value)
    assert f"'{key}'" in msg
    for w in words:
        assert w in msg


def test_error_gives_file_and_line(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("name: t\nmodel:\n  hidden_size: 8\n  readout: first\n")
    with pytest.raises(ConfigError, match=r"c\.yaml, line 4"):
        load_config(p)


def test_overrides_are_checked_like_the_file(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("name: t\nmodel: {hidden_size: 8}\n")
    assert load_config(p, ["model.hidden_size=64"]).model.hidden_size == 64
    assert load_config(p, ["grid.lr=[1e-3, 1e-2]"]).grid["train.lr"] == [1e-3, 1e-2]
    with pytest.raises(ConfigError, match="'model.hidden_size'.*integer"):
        load_config(p, ["model.hidden_size=big"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(p, ["model.hidden_size"])


def test_grid_expansion_counts_and_factors():
    c = cfg(grid={**BASE["grid"], "model.readout": ["last", "mean"]})
    specs = expand_grid(c, "data-x")
    assert len(specs) == 2 * 2 * 2 * 2
    assert len({s.trial_id for s in specs}) == len(specs)
    s = specs[-1]
    assert s.factors == {"cell": "lstm", "pad_size": 16, "seed": 1, "model.readout": "mean"}
    assert (s.model.cell, s.data.pad_size, s.train.seed, s.model.readout) == ("lstm", 16, 1, "mean")


def test_trial_ids_are_stable_and_depend_on_settings_and_data():
    a = {s.factors["cell"] + str(s.factors["pad_size"]) + str(s.factors["seed"]): s.trial_id
         for s in expand_grid(cfg(), "data-x")}
    # Growing an axis adds trials without changing the ids of the existing ones.
    grown = cfg(grid={**BASE["grid"], "pad_size": [8, 16, 32]})
    b = {s.factors["cell"] + str(s.factors["pad_size"]) + str(s.factors["seed"]): s.trial_id
         for s in expand_grid(grown, "data-x")}
    assert all(b[k] == v for k, v in a.items()) and len(b) == 12
    # A fixed setting or the data identity changes every id.
    other = expand_grid(cfg(model={"hidden_size": 64}), "data-x")
    assert not {s.trial_id for s in other} & set(a.values())
    assert not {s.trial_id for s in expand_grid(cfg(), "data-y")} & set(a.values())
    # The same config gives the same ids.
    assert [s.trial_id for s in expand_grid(cfg(), "data-x")] == list(a.values())


def test_trial_ids_match_the_known_values():
    # Golden ids: a change here re-runs every trial of every existing results directory on resume.
    ids = [s.trial_id for s in expand_grid(cfg(), "data-x")]
    assert ids == ["e7f783d2137f", "30f57cb9220d", "13174cc607d1", "9aa483bacb4a", "48cc63ba8e2d",
                   "d47956de882d", "f349891f9096", "89fb15e8378f"]
    tagged = make_spec(cfg(), "data-x", {"train.lr": 0.01}, tag={"phase": "search", "study": "s", "study_trial": 3})
    assert tagged.trial_id == "37dc551ba289"


def test_config_choices_come_from_the_shared_names():
    assert ModelConfig.__dataclass_fields__["cell"].metadata["choices"] == names.CELLS
    assert ModelConfig.__dataclass_fields__["layernorm"].metadata["choices"] == names.LAYERNORMS
    assert ModelConfig.__dataclass_fields__["readout"].metadata["choices"] == names.READOUTS


def test_study_errors_name_the_key():
    study = {"params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}
    for bad, key, words in [
        ({"sampler": "annealing"}, "study.sampler", ["tpe"]),
        ({"sampler_options": {"colour": 1}}, "study.sampler_options.colour", ["n_startup_trials"]),
        ({"objectives": ["test_acc", "test_acc"]}, "study.objectives", ["repeated"]),
        ({"objectives": ["test_acc", "wall_s"], "pruner": "median"}, "study.pruner", ["objectives"]),
        ({"params": {"model.dropout": {"type": "float", "low": 0, "high": 0.5, "log": True}}},
         "study.params.model.dropout.low", ["low > 0"]),
        ({"params": {"model.hidden_size": {"type": "int", "low": 8, "high": 9.5}}}, "study.params.model.hidden_size",
         ["integer"]),
        ({"params": {"model.cell": {"type": "categorical", "choices": ["rnn", "tcn"]}}},
         "study.params.model.cell.choices", ["'tcn'"]),
        ({"params": {"seed": {"type": "int", "low": 0, "high": 3}}}, "study.params.seed", ["not searched"]),
        ({"per": ["lr"]}, "study.per", ["grid axis"]),
    ]:
        raw = {"name": "t", "grid": {"seed": [0]}, "study": {**study, **bad}}
        with pytest.raises(ConfigError) as e:
            config_from_dict(raw)
        assert f"'{key}'" in str(e.value) and all(w in str(e.value) for w in words), (bad, str(e.value))


def test_shipped_configs_validate():
    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("smoke", "bench", "full", "layernorm", "batch_size"):
        c = load_config(root / f"{name}.yaml")
        assert c.name == name and c.grid
    bench = load_config(root / "bench.yaml")   # the frontier experiment: arm × distance, pre-registered seeds
    # every run trains its whole budget (the report reads each run's best dev accuracy at every target), and the
    # model reads forwards only so that the lag changes the distance and nothing else
    assert bench.adaptive is None and not bench.train.stop_at_target and not bench.model.bidirectional
    assert set(bench.grid) == {"data.lag", "arm", "train.seed"}
    assert bench.arms == {"rnn": {"model.cell": "rnn"}, "lstm-fb0": {"model.cell": "lstm", "model.forget_bias": 0.0},
                          "lstm": {"model.cell": "lstm", "model.forget_bias": 1.0}}
    assert bench.headline.seeds == tuple(bench.grid["train.seed"]) == tuple(range(1000, 1012))
    assert not set(bench.headline.exploration_seeds) & set(bench.headline.seeds)   # confirmatory: never explored
    assert bench.headline.d50 == list(bench.arms) and bench.headline.budget_check.factor == 3
    full = load_config(root / "full.yaml")
    assert (full.model.embed_dim, full.model.hidden_size, full.model.num_layers) == (300, 128, 2)
    assert full.model.bidirectional and full.model.dropout == 0.3
