"""`grid.arm`: named bundles of settings as one grid axis — config checks, expansion and ids,
overrides, resume, the runs table's `arm` column, `harness status` and the report."""

from pathlib import Path

import pytest
import yaml
from conftest import tiny_raw

from harness.config import ConfigError, config_from_dict, expand_grid, load_config

ARMS = {"rnn": {"cell": "rnn"}, "lstm-fb0": {"cell": "lstm", "model.forget_bias": 0},
        "lstm": {"cell": "lstm", "model.forget_bias": 1}}


def arm_cfg(grid: dict | None = None, **over):
    return config_from_dict({"name": "t", "grid": grid or {"arm": ARMS, "lag": [0, 16], "seed": [0]}, **over})


# ----------------------------------------------------------------------------- expansion and ids

def test_an_arm_is_one_axis_in_its_place_and_sets_its_settings():
    specs = expand_grid(arm_cfg(), "data-x")
    assert len(specs) == 3 * 2 and len({s.trial_id for s in specs}) == 6
    assert [s.factors for s in specs[:3]] == [
        {"arm": "rnn", "cell": "rnn", "lag": 0, "seed": 0},
        {"arm": "rnn", "cell": "rnn", "lag": 16, "seed": 0},
        {"arm": "lstm-fb0", "cell": "lstm", "model.forget_bias": 0.0, "lag": 0, "seed": 0}]
    resolved = {(s.factors["arm"], s.data.lag): (s.model.cell, s.model.forget_bias) for s in specs}
    assert resolved[("rnn", 16)] == ("rnn", 0.0)  # the fixed forget_bias: the rnn arm does not set it
    assert resolved[("lstm", 0)] == ("lstm", 1.0) and resolved[("lstm-fb0", 16)] == ("lstm", 0.0)
    # In the middle of the grid, the arm varies between the axes before and after it.
    mid = expand_grid(arm_cfg({"lag": [0, 16], "arm": ARMS, "seed": [0]}), "data-x")
    assert [(s.data.lag, s.factors["arm"]) for s in mid[:3]] == [(0, "rnn"), (0, "lstm-fb0"), (0, "lstm")]


def test_the_arm_name_joins_a_trial_id_only_when_there_are_arms():
    plain = {s.factors["cell"]: s.trial_id for s in expand_grid(config_from_dict(
        {"name": "t", "grid": {"cell": ["rnn", "lstm"], "seed": [0]}}), "data-x")}
    armed = {s.factors["arm"]: s.trial_id for s in expand_grid(arm_cfg(
        {"arm": {"rnn": {"cell": "rnn"}, "lstm": {"cell": "lstm"}}, "seed": [0]}), "data-x")}
    assert not set(plain.values()) & set(armed.values())  # same settings, but named by an arm
    renamed = {s.factors["arm"]: s.trial_id for s in expand_grid(arm_cfg(
        {"arm": {"rnn": {"cell": "rnn"}, "lstm1": {"cell": "lstm"}}, "seed": [0]}), "data-x")}
    assert renamed["rnn"] == armed["rnn"] and renamed["lstm1"] != armed["lstm"]
    # The same config gives the same ids, and the resolved config (config.yaml) round-trips.
    cfg = arm_cfg()
    again = config_from_dict(cfg.to_dict())
    assert again.arms == cfg.arms and again.grid == cfg.grid
    assert [s.trial_id for s in expand_grid(again, "data-x")] == [s.trial_id for s in expand_grid(cfg, "data-x")]
    assert cfg.to_dict()["grid"]["arm"]["lstm"] == {"cell": "lstm", "model.forget_bias": 1.0}


def test_arms_give_the_values_of_a_setting_for_data_encoding():
    cfg = arm_cfg({"arm": {"short": {"pad_size": 8}, "long": {"pad_size": 16, "cell": "gru"}, "base": {}}})
    assert cfg.setting_values("data.pad_size") == [8, 16, 32]   # base: the fixed pad_size
    assert cfg.setting_values("model.cell") == ["lstm", "gru"]
    assert cfg.setting_values("data.lag") == [None]


# ----------------------------------------------------------------------------- config errors

@pytest.mark.parametrize("arm, key, words", [
    ([{"cell": "rnn"}], "grid.arm", ["mapping of arm name", "[{'cell': 'rnn'}]"]),
    ({}, "grid.arm", ["is empty"]),
    ({"a b": {"cell": "rnn"}}, "grid.arm", ["'a b'", "letters, digits, '-', '_' and '.'"]),
    ({"": {"cell": "rnn"}}, "grid.arm", ["''", "non-empty"]),
    ({"rnn": "rnn"}, "grid.arm.rnn", ["mapping of settings", "'rnn'"]),
    ({"rnn": {"cell": "tcn"}}, "grid.arm.rnn.cell", ["'tcn'", "rnn, lstm, gru"]),
    ({"rnn": {"cell": ["rnn"]}}, "grid.arm.rnn.cell", ["expected a string", "['rnn']"]),
    ({"x": {"lr": 0}}, "grid.arm.x.lr", ["0", "> 0.0"]),
    ({"x": {"model.dropout": 2}}, "grid.arm.x.model.dropout", ["2", "<= 1.0"]),
    ({"x": {"model.colour": 1}}, "grid.arm.x.model.colour", ["unknown", "dotted data/model/train key"]),
    ({"x": {"data.kind": "synthetic"}}, "grid.arm.x.data.kind", ["cannot vary"]),
    ({"x": {"seed": 1}}, "grid.arm.x.seed", ["cannot set the seed"]),
    ({"x": {"cell": "rnn", "model.cell": "gru"}}, "grid.arm.x.model.cell", ["twice", "'cell'", "'model.cell'"]),
])
def test_arm_errors_name_the_key_the_value_and_what_is_allowed(arm, key, words):
    with pytest.raises(ConfigError) as e:
        arm_cfg({"arm": arm})
    msg = str(e.value)
    assert f"'{key}'" in msg, msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("grid, axis", [
    ({"arm": {"lstm": {"cell": "lstm"}}, "cell": ["rnn"]}, "grid.cell"),
    ({"model.cell": ["rnn"], "arm": {"lstm": {"cell": "lstm"}}}, "grid.model.cell"),  # short vs dotted name
    ({"arm": {"lstm": {"model.forget_bias": 1}}, "model.forget_bias": [0]}, "grid.model.forget_bias"),
])
def test_a_key_cannot_be_both_in_an_arm_and_an_axis(grid, axis):
    with pytest.raises(ConfigError, match=f"grid.arm.lstm sets '[a-z_.]+', which is also the grid axis {axis}"):
        arm_cfg(grid)


def test_two_arms_that_resolve_to_the_same_settings_are_refused():
    with pytest.raises(ConfigError, match="arms 'a' and 'b' resolve to the same settings"):
        arm_cfg({"arm": {"a": {"cell": "lstm"}, "b": {"model.cell": "lstm"}}})
    # An arm that leaves a key at its fixed value resolves like one that sets the fixed value.
    with pytest.raises(ConfigError, match="arms 'fb0' and 'plain' resolve"):
        arm_cfg({"arm": {"fb0": {"cell": "lstm", "model.forget_bias": 0.0}, "plain": {"cell": "lstm"}}})
    arm_cfg({"arm": {"fb0": {"cell": "lstm", "model.forget_bias": 0.0}, "plain": {"cell": "lstm"}}},
            model={"forget_bias": 1.0})  # now they differ


def test_a_searched_setting_cannot_be_set_by_an_arm():
    study = {"per": ["arm"], "params": {"cell": {"type": "categorical", "choices": ["rnn", "gru"]}}}
    with pytest.raises(ConfigError, match=r"'study\.params\.cell'.*also set by grid\.arm"):
        arm_cfg({"arm": ARMS, "seed": [0]}, study=study)


def test_overrides_reach_into_the_arms(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"name": "t", "grid": {"arm": ARMS, "lag": [0]}}, sort_keys=False))
    assert load_config(p, ["grid.arm.lstm.model.forget_bias=3"]).arms["lstm"]["model.forget_bias"] == 3.0
    assert load_config(p, ["grid.arm.rnn.model.cell=gru"]).arms["rnn"] == {"model.cell": "gru"}  # the same key
    assert list(load_config(p, ["grid.arm.gru={cell: gru}"]).arms) == ["rnn", "lstm-fb0", "lstm", "gru"]
    assert list(load_config(p, ["~grid.arm.rnn"]).arms) == ["lstm-fb0", "lstm"]
    with pytest.raises(ConfigError, match=r"'grid\.arm\.lstm\.model\.forget_bias': expected a number.*--set"):
        load_config(p, ["grid.arm.lstm.model.forget_bias=high"])
    with pytest.raises(ConfigError, match="which is also the grid axis grid.cell"):
        load_config(p, ["grid.cell=[rnn, lstm]"])


def test_adaptive_effects_may_compare_two_arms():
    cfg = arm_cfg({"arm": ARMS, "lag": [0]}, adaptive={"min_seeds": 2, "max_seeds": 3,
                                                         "effects": [["arm", "lstm-fb0", "lstm"]]})
    assert cfg.adaptive.effects == [("arm", "lstm-fb0", "lstm")]
    with pytest.raises(ConfigError, match="'gru' is not a value of grid axis 'arm'"):
        arm_cfg({"arm": ARMS}, adaptive={"min_seeds": 2, "max_seeds": 3, "effects": [["arm", "rnn", "gru"]]})


def test_adaptive_seeds_pair_two_arms_in_an_effect():
    import pandas as pd

    from harness import adaptive

    raw = tiny_raw("ad", {"arm": {"rnn": {"cell": "rnn"}, "lstm": {"cell": "lstm", "model.forget_bias": 1}},
                          "pad_size": [12]})
    raw["adaptive"] = {"min_seeds": 3, "max_seeds": 8, "effects": [["arm", "rnn", "lstm"]]}
    cfg = config_from_dict(raw)
    pool = adaptive.pool(cfg, "d" * 12)
    assert len(pool) == 2 * 8
    def dev(arm: str, seed: int) -> float:  # every run reached the target; lstm's dev accuracy is higher
        return 0.45 + 0.01 * seed ** 2 + (0.25 + 0.02 * seed if arm == "lstm" else 0.0)

    runs = pd.DataFrame([{"trial_id": s.trial_id, "status": "complete", "steps_to_target": 100,
                          "best_dev_acc": dev(s.factors["arm"], s.factors["seed"])}
                         for s in pool if s.factors["seed"] < 5])
    decision = adaptive.decide(cfg, pool, runs)
    effect = decision.effects[0]
    assert (effect.factor, effect.pairs) == ("arm", 5)  # the arms pair although their settings differ
    assert effect.state == "decided" and effect.low > 0.2


def test_the_shipped_thucnews_config_runs_each_rnn_trial_once():
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "thucnews.yaml",
                      ["data.dir=/nowhere"])
    assert list(cfg.arms)[:3] == ["rnn", "lstm-fb0", "lstm"]
    assert cfg.arms["lstm-fb0"] == {"model.cell": "lstm", "model.forget_bias": 0.0}
    assert cfg.arms["lstm"] == {"model.cell": "lstm", "model.forget_bias": 1.0}
    specs = expand_grid(cfg, "data-x")
    settings = [(s.model.cell, s.model.forget_bias, s.model.readout, s.data.lag, s.train.seed) for s in specs]
    assert len(set(settings)) == len(settings)  # no trial repeats another's settings


# ----------------------------------------------------------------------------- a run with arms

TINY_ARMS = {"rnn": {"cell": "rnn"}, "gru-wide": {"cell": "gru", "model.hidden_size": 12}}


@pytest.fixture(scope="module")
def arm_run(tmp_path_factory) -> Path:
    from harness import runner

    out = tmp_path_factory.mktemp("arms")
    cfg = config_from_dict(tiny_raw("arms", {"arm": TINY_ARMS, "pad_size": [8, 12], "seed": [0]}))
    counts = runner.run(cfg, out, workers=1, device="cpu", threads=1, progress=False)
    assert counts["complete"] == 4 and counts["missing"] == 0
    return out


def test_the_runs_table_has_an_arm_column(arm_run):
    from harness import records

    runs = records.load(arm_run)["runs"].sort_values(["arm", "pad_size"])
    assert runs["arm"].tolist() == ["gru-wide", "gru-wide", "rnn", "rnn"]
    assert runs["cell"].tolist() == ["gru", "gru", "rnn", "rnn"]
    assert runs["hidden_size"].tolist() == [12, 12, 8, 8]
    assert runs["model.hidden_size"].tolist()[:2] == [12, 12]  # a dotted arm setting is a column too
    assert str(runs["arm"].dtype) in ("object", "str", "string")


def test_a_run_with_arms_resumes_with_nothing_run_again(arm_run):
    from harness import records, runner
    from harness.plan import dry_run

    before = records.load(arm_run)["runs"].set_index("trial_id")["started_at"]
    cfg = config_from_dict(tiny_raw("arms", {"arm": TINY_ARMS, "pad_size": [8, 12], "seed": [0]}))
    counts = runner.run(cfg, arm_run, workers=1, device="cpu", threads=1, progress=False)
    assert counts["complete"] == 4 and counts["missing"] == 0
    after = records.load(arm_run)["runs"].set_index("trial_id")["started_at"]
    assert after.sort_index().equals(before.sort_index())  # nothing trained again
    doc = dry_run(cfg, arm_run, device="cpu")
    assert all(t["done"] for t in doc["trials"])
    assert sorted({t["factors"]["arm"] for t in doc["trials"]}) == ["gru-wide", "rnn"]


def test_the_fused_trainer_fills_the_arm_column_too(tmp_path):
    from harness import records, runner

    raw = tiny_raw("fused-arms", {"arm": {"fb0": {"cell": "lstm", "model.forget_bias": 0},
                                          "fb1": {"cell": "lstm", "model.forget_bias": 1}},
                                  "pad_size": [12], "seed": [0, 1]})
    raw["run"] = {"fuse": 4}
    counts = runner.run(config_from_dict(raw), tmp_path, workers=1, device="cpu", threads=1, progress=False)
    assert counts["complete"] == 4
    runs = records.load(tmp_path)["runs"].sort_values(["arm", "seed"])
    assert runs["fused_group"].nunique() == 1  # trained as one fused group
    assert runs["arm"].tolist() == ["fb0", "fb0", "fb1", "fb1"]
    assert runs["forget_bias"].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_fixed_settings_of_arms(tmp_path):
    from harness.plan import check_compatible, make_plan, write_config

    raw = tiny_raw("fixed", {"arm": {"rnn": {"cell": "rnn"}, "lstm": {"cell": "lstm", "model.forget_bias": 1}},
                             "pad_size": [12]})
    write_config(make_plan(config_from_dict(raw), tmp_path, write=False))
    raw["grid"]["arm"]["lstm"]["model.forget_bias"] = 3  # an arm's setting may change (a new arm's trials)
    raw["grid"]["arm"]["rnn"]["cell"] = "gru"
    check_compatible(make_plan(config_from_dict(raw), tmp_path, write=False))
    # forget_bias is not set by the rnn arm: its fixed value is still the rnn trials' setting.
    raw["model"]["forget_bias"] = 0.5
    with pytest.raises(ConfigError, match=r"model\.forget_bias: 0\.0 -> 0\.5"):
        check_compatible(make_plan(config_from_dict(raw), tmp_path, write=False))


def test_status_names_trials_by_their_arm():
    from harness.status import _factors

    row = {"trial_id": "x", "arm": "lstm-fb0", "layernorm": "none", "pad_size": 32, "seed": 0, "lag": 16}
    assert _factors(row) == "lstm-fb0/none pad 32 seed 0 lag 16"
    assert _factors({"cell": "lstm", "layernorm": "none", "pad_size": 8}) == "lstm/none pad 8"


def test_the_report_names_the_arms(arm_run):
    from harness.report import compute, write_report

    data = compute(arm_run)
    assert data.group == "arm" and data.arms == ["rnn", "gru-wide"]
    assert data.keys[0] == "arm" and "cell" not in data.keys  # the arm stands for its cell
    assert "arm" in data.varying and "cell" not in data.varying
    text = write_report(arm_run).read_text()
    assert "): Arm rnn: " in text and "arm gru-wide" in text  # the frontier lead, each arm by its name
    assert "**arm gru-wide vs rnn**" in text  # the effect of switching arms
    assert "| arm |" in text  # the summary tables have an arm column


def test_each_arm_keeps_one_colour():
    from harness.report import figures

    with figures.arm_colors(["rnn", "lstm-fb0", "lstm", "lstm-fb3"]):
        colours = [figures.cell_color(a) for a in ("rnn", "lstm-fb0", "lstm", "lstm-fb3")]
        assert colours[0] == figures.CELL_COLORS["rnn"] and colours[2] == figures.CELL_COLORS["lstm"]
        assert len(set(colours)) == 4
    assert figures.cell_color("lstm-fb0") == "0.3"  # outside a report's figures: no arm colours


# ---------------------------------------------------------------------------- headline: (pre-registered)

def headline_raw(**headline):
    raw = tiny_raw("hl", {"arm": {"rnn": {"cell": "rnn"}, "lstm": {"cell": "lstm"}}, "lag": [0, 4], "seed": [0, 1]})
    raw["headline"] = {"seeds": 2, "contrasts": [["lstm", "rnn"]], "d50": ["rnn", "lstm"], "d50_ratio_margin": 1.5,
                       **headline}
    return raw


def test_a_headline_is_read_checked_and_written_back():
    cfg = config_from_dict(headline_raw())
    h = cfg.headline
    assert (h.seeds, h.contrasts, h.d50, h.d50_ratios, h.d50_ratio_margin) == (
        (0, 1), [("lstm", "rnn")], ["rnn", "lstm"], [("lstm", "rnn")], 1.5)
    assert cfg.to_dict()["headline"] == {"seeds": [0, 1], "contrasts": [["lstm", "rnn"]], "d50": ["rnn", "lstm"],
                                         "d50_ratios": [["lstm", "rnn"]], "d50_ratio_margin": 1.5}
    assert config_from_dict(cfg.to_dict()).headline == h  # config.yaml round-trips
    d = config_from_dict(headline_raw(directions=[{"better": "lstm", "worse": "rnn", "fact": "real: 70 vs 40"}]))
    assert d.headline.directions == [("lstm", "rnn", "real: 70 vs 40")]
    assert config_from_dict(d.to_dict()).headline == d.headline


@pytest.mark.parametrize("bad,words", [
    ({"d50": ["gru"]}, ["'headline'", "gru is not a level of arm", "rnn, lstm"]),
    ({"contrasts": [["lstm", "tcn"]]}, ["tcn is not a level of arm"]),
    ({"seeds": 3}, ["'headline.seeds'", "seeds 0–2", "[0, 1]"]),
    ({"seeds": 0}, ["headline.seeds", "positive integer"]),
    ({"seeds": [0, 1], "exploration_seeds": [1, 5]}, ["headline.seeds", "1 also in headline.exploration_seeds"]),
    ({"d50_ratio_margin": float("nan")}, ["headline.d50_ratio_margin", "above 1"]),
    ({"d50_ratio_margin": float("inf")}, ["headline.d50_ratio_margin", "above 1"]),
    ({"contrasts": [["lstm", "lstm"]]}, ["headline.contrasts", "lstm is compared with itself"]),
    ({"directions": [{"better": "rnn", "worse": "rnn"}]}, ["headline.directions", "rnn is compared with itself"]),
    ({"group": "bogus"}, ["headline.group", "'bogus' is not arm, cell or a grid axis"]),
    ({"budget_check": {"factor": 1}}, ["headline.budget_check", "at least 2"]),
    ({"d50_ratio_margin": 1.0}, ["headline.d50_ratio_margin", "above 1"]),
    ({"bogus": 1}, ["unknown key(s) bogus"]),
    ({"directions": [{"better": "lstm", "worse": "gru"}]}, ["gru is not a level of arm"]),
    ({"directions": [{"better": "lstm"}]}, ["headline.directions", "better: A, worse: B"]),
])
def test_a_bad_headline_is_a_config_error_naming_the_key(bad, words):
    with pytest.raises(ConfigError) as e:
        config_from_dict(headline_raw(**bad))
    assert all(w in str(e.value) for w in words), str(e.value)


def test_headline_errors_name_the_file_and_line(tmp_path):
    """A malformed headline value is placed in the file like every other key."""
    import yaml

    from harness.config import load_config

    raw = headline_raw(d50_ratio_margin=0.5)
    path = tmp_path / "hl.yaml"
    text = yaml.safe_dump(raw, sort_keys=False)
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "d50_ratio_margin" in t)
    with pytest.raises(ConfigError, match=rf"'headline.d50_ratio_margin'.*hl\.yaml, line {line}"):
        load_config(path)


def test_a_headline_needs_a_distance_and_reachable_seeds():
    raw = headline_raw()
    raw["grid"]["lag"] = [0]
    with pytest.raises(ConfigError, match="varies no distance"):
        config_from_dict(raw)
    raw = headline_raw(seeds=[0, 5])
    raw["grid"].pop("seed")
    raw["adaptive"] = {"min_seeds": 2, "max_seeds": 3}
    with pytest.raises(ConfigError, match="adaptive seeding runs at most seeds 0–2"):
        config_from_dict(raw)
