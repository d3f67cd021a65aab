"""The budget check (harness.budget_check, `headline.budget_check`): which configurations are trained
again at factor × the budget, as a function of the config and the finished runs (hand-made runs
tables), the config's validation, and an end-to-end run in process: the grid, then the check trials the
plan adds once the originals are finished, whose first N steps are the originals'."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
import yaml
from conftest import tiny_raw

from harness import budget_check as bc
from harness.config import ConfigError, config_from_dict, expand_grid, load_config

DATA_ID = "d" * 12
ARMS = {"a": {"cell": "rnn"}, "b": {"cell": "lstm"}}


def cfg_of(lags=(0, 4, 8), seeds=(0, 1, 2, 3), check=None, headline=None, grid=None):
    raw = tiny_raw("bc", {"lag": list(lags), "arm": ARMS, "seed": list(seeds), **(grid or {})})
    raw["headline"] = {"seeds": len(seeds), "budget_check": check or {"factor": 3, "seeds": 2}, **(headline or {})}
    return config_from_dict(raw)


def runs_for(cfg, outcomes: dict[tuple, list]) -> pd.DataFrame:
    """A finished-runs table: for (arm, lag) a list of outcomes per seed in grid order: True reached,
    False not reached, 'failed' (an error: no outcome)."""
    specs = expand_grid(cfg, DATA_ID)
    seeds = list(cfg.grid["train.seed"])
    rows = []
    for s in specs:
        key = (s.factors["arm"], s.factors["lag"])
        i = seeds.index(s.factors["seed"])
        if key in outcomes and i < len(outcomes[key]):  # a shorter list: the later seeds still running
            o = outcomes[key][i]
            rows.append({"trial_id": s.trial_id, "status": "failed" if o == "failed" else "complete",
                         "steps_to_target": 100 if o is True else None})
    return pd.DataFrame(rows, columns=list(bc.RUNS_COLUMNS))


def decide(cfg, outcomes):
    return bc.decide(cfg, expand_grid(cfg, DATA_ID), runs_for(cfg, outcomes))


ALL = [True] * 4
NONE = [False] * 4


def test_first_failing_is_the_smallest_distance_with_fewer_than_half_reached():
    assert bc.first_failing({0: (4, 4), 16: (0, 4), 8: (1, 4)}) == 8
    assert bc.first_failing({0: (4, 4), 8: (2, 4)}) is None      # exactly half is not fewer than half
    assert bc.first_failing({0: (0, 0), 8: (1, 3)}) == 8          # no outcome at all never fails
    assert bc.first_failing({}) is None


def test_nothing_is_checked_before_a_frontier_s_runs_are_all_finished():
    cfg = cfg_of()
    d = decide(cfg, {("a", 0): ALL, ("a", 4): NONE, ("b", 0): ALL, ("b", 4): ALL, ("b", 8): ALL[:3]})
    assert d.checked == [] and d.trials == []
    assert (d.lines, d.waiting, d.max_trials) == (2, 2, 4)   # 2 arms x 2 check seeds at most


def test_the_first_failing_distance_of_each_finished_frontier_is_checked_on_the_first_seeds():
    cfg = cfg_of()
    d = decide(cfg, {("a", 0): ALL, ("a", 4): [True, True, False, False], ("a", 8): NONE,
                     ("b", 0): ALL, ("b", 4): ALL, ("b", 8): ALL})
    assert d.waiting == 0 and len(d.checked) == 1          # arm b: no distance fails, nothing to check
    c = d.checked[0]
    assert (c.group, c.distance, c.reached, c.runs) == ("a", 8, 0, 4)   # 2/4 at lag 4 is not "fewer than half"
    assert [t.train.seed for t in c.trials] == [0, 1]
    # every other check trial it could still ask for is known (2 arms x 3 lags x 2 seeds, less the 2 chosen)
    assert len(d.reserve) == 10 and not {t.trial_id for t in d.reserve} & {t.trial_id for t in c.trials}
    originals = {(s.factors["arm"], s.factors["lag"], s.factors["seed"]): s for s in expand_grid(cfg, DATA_ID)}
    for t in c.trials:
        o = originals[("a", 8, t.train.seed)]
        assert t.factors == o.factors and t.data == o.data and t.model == o.model
        assert (t.train.epochs, t.train.stop_at_target, t.train.lr) == (3 * o.train.epochs, True, o.train.lr)
        assert t.tag == {"phase": "budget_check", "budget_check": 3}
        assert t.trial_id != o.trial_id and t.trial_id not in {s.trial_id for s in originals.values()}
    again = decide(cfg, {("a", 0): ALL, ("a", 4): [True, True, False, False], ("a", 8): NONE,
                         ("b", 0): ALL, ("b", 4): ALL, ("b", 8): ALL})
    assert [t.trial_id for t in again.trials] == [t.trial_id for t in d.trials]   # stable ids


def test_a_failed_run_has_no_outcome_and_each_frontier_is_decided_on_its_own():
    cfg = cfg_of()
    # arm a at lag 4: 1 reached of 3 with an outcome (one failed) -> fails; arm b still running.
    d = decide(cfg, {("a", 0): ALL, ("a", 4): [True, "failed", False, False], ("a", 8): NONE,
                     ("b", 0): ALL, ("b", 4): ALL})
    assert [(c.group, c.distance, c.reached, c.runs) for c in d.checked] == [("a", 4, 1, 3)]
    assert d.waiting == 1


def test_nothing_is_checked_where_no_distance_fails_or_without_the_key():
    cfg = cfg_of()
    every = {(a, lag): ALL for a in ARMS for lag in (0, 4, 8)}
    assert decide(cfg, every).checked == []
    raw = tiny_raw("plain", {"lag": [0, 4], "arm": ARMS, "seed": [0, 1]})
    plain = config_from_dict(raw)
    assert bc.decide(plain, expand_grid(plain, DATA_ID), runs_for(plain, {})).max_trials == 0


def test_headline_seeds_where_and_groups_choose_the_runs():
    # Confirmatory seeds 10, 11 of a grid with 0, 10, 11; only model.readout last; only arm a (headline.d50).
    cfg = cfg_of(seeds=(0, 10, 11), check={"factor": 2, "seeds": 1},
                 headline={"seeds": [11, 10], "where": {"model.readout": "last"}, "d50": ["a"]},
                 grid={"model.readout": ["last", "mean"]})
    specs = expand_grid(cfg, DATA_ID)
    wanted = {s.trial_id: s for s in specs if s.factors["seed"] in (10, 11) and s.factors["arm"] == "a"
              and s.factors["model.readout"] == "last"}
    assert {s.trial_id for members in bc.lines(cfg, specs).values() for s in members} == set(wanted)
    runs = pd.DataFrame([{"trial_id": t, "status": "complete", "steps_to_target": None if s.factors["lag"] else 5}
                         for t, s in wanted.items()])
    d = bc.decide(cfg, specs, runs)
    assert [(c.group, c.distance, c.factors["model.readout"]) for c in d.checked] == [("a", 4, "last")]
    assert [t.train.seed for t in d.trials] == [11]           # the first of the headline's seeds, as listed
    assert d.trials[0].train.epochs == 2 * cfg.train.epochs


def test_max_steps_is_multiplied_too():
    cfg = cfg_of(check={"factor": 4})
    spec = expand_grid(cfg, DATA_ID)[0]
    capped = dataclasses.replace(spec, train=dataclasses.replace(spec.train, max_steps=7))
    assert bc.check_spec(cfg, capped, 4).train.max_steps == 28


@pytest.mark.parametrize("change, match", [
    ({"grid": {"lag": [4], "arm": ARMS, "seed": [0, 1]}}, r"headline.budget_check': the grid varies no distance"),
    ({"headline": {"seeds": 2, "budget_check": {"factor": 3, "seeds": 3}}},
     r"headline.budget_check.seeds': 3 seeds, but the headline has 2"),
    ({"adaptive": {"min_seeds": 2, "max_seeds": 4}, "headline": {"budget_check": {"factor": 2}}},
     r"headline.budget_check': needs a grid run at fixed seeds, not with `adaptive:`"),
    ({"headline": {"seeds": 2, "budget_check": {"factor": 1}}}, r"headline.budget_check': expected \{factor"),
])
def test_a_budget_check_the_grid_cannot_run_is_refused_naming_the_key(change, match, tmp_path):
    raw = tiny_raw("bad", {"lag": [0, 4], "arm": ARMS, "seed": [0, 1]})
    raw["headline"] = {"seeds": 2, "budget_check": {"factor": 3}}
    raw.update(change)
    if "adaptive" in change:
        raw["grid"] = {"lag": [0, 4], "arm": ARMS}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_the_error_names_the_file_and_line(tmp_path):
    raw = tiny_raw("bad", {"lag": [4], "arm": ARMS, "seed": [0, 1]})
    raw["headline"] = {"seeds": 2, "budget_check": {"factor": 3}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError, match=r"bad.yaml, line \d+\)"):
        load_config(path)


# ----------------------------------------------------------------------------- end to end, in process

def test_the_plan_adds_the_check_trials_once_the_originals_finish_and_they_continue_them(tmp_path, capsys):
    """A tiny grid (2 arms x lags 0, 2 x 2 seeds) whose target no run reaches: the first failing lag of
    both arms is 0, so once the 8 originals are finished the plan adds 4 check trials at 2x the budget.
    Each check run's dev accuracies up to the original budget are its original's, bit for bit."""
    from harness import records
    from harness.cli import main
    from harness.data import encoding_key
    from harness.plan import make_plan, prepare_data, write_config
    from harness.report import compute
    from harness.report.budget import budget_bound, budget_markdown
    from harness.runner import execute

    cpu = torch.device("cpu")

    raw = tiny_raw("e2e", {"lag": [0, 2], "arm": ARMS, "seed": [0, 1]})
    raw["train"].update({"target_dev_acc": 1.0, "eval_every": 2})
    raw["headline"] = {"seeds": 2, "budget_check": {"factor": 2}}
    cfg = config_from_dict(raw)
    out = tmp_path / "o"
    path = tmp_path / "e2e.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["run", str(path), "--out", str(out), "--dry-run"]) == 0
    assert "budget check (headline.budget_check): may add up to 4 trials" in capsys.readouterr().out

    plan = make_plan(cfg, out)
    assert len(plan.specs) == 8 and plan.budget_check.waiting == 2
    write_config(plan)
    datasets = prepare_data(plan)
    for spec in plan.specs:
        execute(spec, datasets[encoding_key(spec.data)], cpu, out, {})
    plan = make_plan(cfg, out)
    checks = plan.specs[8:]
    assert len(plan.specs) == 12 and {(t.factors["lag"], t.tag["budget_check"]) for t in checks} == {(0, 2)}
    for spec in checks:
        execute(spec, datasets[encoding_key(spec.data)], cpu, out, {})
    assert [s.trial_id for s in make_plan(cfg, out).specs] == [s.trial_id for s in plan.specs]  # nothing more

    tables = records.load(out)
    runs, curves = tables["runs"], tables["curves"]
    assert runs["budget_check"].notna().sum() == 4 and set(runs.loc[runs["budget_check"].notna(), "phase"]) == {
        "budget_check"}
    originals = {(s.factors["arm"], s.factors["seed"]): s.trial_id for s in plan.specs[:8] if s.factors["lag"] == 0}
    for spec in checks:
        o = curves[curves["trial_id"] == originals[(spec.factors["arm"], spec.factors["seed"])]]
        c = curves[curves["trial_id"] == spec.trial_id]
        n = int(o["step"].max())
        assert int(c["step"].max()) == 2 * n
        assert c[c["step"] <= n]["dev_acc"].tolist() == o["dev_acc"].tolist()

    data = compute(out)
    assert len(data.runs) == 8 and data.runs["budget_check"].isna().all()     # the grid's counts only
    assert len(data.budget_checks) == 4 and set(data.tables["curves"]["trial_id"]) <= set(data.runs["trial_id"])
    md = budget_markdown(data)
    n = int(data.runs["steps"].max())
    assert "No outcome changed with 2× the budget (4 runs compared)" in md
    assert "| a | 0 | 0/2 | 0/2 | 0 runs |" in md and f"reached within {n:,} steps" in md
    assert budget_bound(data) == {"a": False, "b": False}


@pytest.mark.slow
def test_harness_run_runs_the_check_in_a_second_round_and_the_report_carries_it(tmp_path):
    """Through the runner (spawned workers): the grid, then a round of check trials, each once; the
    report's tables count the grid's runs only and its Budget check section counts the check's."""
    from harness import runner
    from harness.report import compute, render

    raw = tiny_raw("rounds", {"lag": [0, 2], "arm": ARMS, "seed": [0, 1]})
    raw["train"]["target_dev_acc"] = 1.0
    raw["headline"] = {"seeds": 2, "budget_check": {"factor": 2, "seeds": 1}}
    cfg = config_from_dict(raw)
    counts = runner.run(cfg, tmp_path / "o", workers=1, device="cpu", threads=1, progress=False)
    assert counts["complete"] == 10 and counts["missing"] == 0   # 8 + one seed of each arm's lag 0
    runs = records_runs(tmp_path / "o")
    assert runs["trial_id"].is_unique and runs["budget_check"].notna().sum() == 2
    md = render(compute(tmp_path / "o"))
    assert "## Budget check" in md and "No outcome changed with 2× the budget (2 runs compared)" in md
    assert runner.run(cfg, tmp_path / "o", workers=1, device="cpu", threads=1, progress=False)["complete"] == 10


def records_runs(out):
    from harness import records

    return records.load(out)["runs"]


def test_a_check_budget_beyond_the_step_bound_is_refused_before_anything_runs():
    from harness.plan import check_bounds

    raw = tiny_raw("long", {"lag": [0, 4], "arm": ARMS, "seed": [0, 1]})
    raw["train"]["epochs"] = 200_000_000   # 4 steps per epoch: 8e8 steps, 3x of which passes 1e9
    raw["headline"] = {"seeds": 2, "budget_check": {"factor": 3}}
    with pytest.raises(ConfigError, match=r"headline.budget_check.factor': 3 × the longest trial's 800000000 steps"):
        check_bounds(config_from_dict(raw), memory=None)
    raw["headline"]["budget_check"]["factor"] = 2   # 1.6e9: still too many
    with pytest.raises(ConfigError, match="headline.budget_check.factor"):
        check_bounds(config_from_dict(raw), memory=None)
    del raw["headline"]["budget_check"]
    check_bounds(config_from_dict(raw), memory=None)   # without the check the grid itself is fine
