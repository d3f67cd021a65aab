"""Adaptive seeds (harness.adaptive, the `adaptive:` config section, and the runner's rounds): the
decisions on hand-made runs tables with the real Wilson and Holm arithmetic, then end-to-end runs
where some configurations stop early and others grow, exactly once with two workers, and a run
interrupted in the middle of adding seeds that the same command finishes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from conftest import ROOT, sigint_default, tiny_raw

from harness import adaptive, records, runner
from harness.cli import main
from harness.config import ConfigError, config_from_dict, expand_grid
from harness.plan import make_plan
from harness.results_dir import _fixed_settings
from harness.stats.rates import wilson_interval
from harness.status import format_status, status
from harness.storage import open_storage

DATA_ID = "d" * 12


def cfg_of(grid: dict, min_seeds: int = 3, max_seeds: int = 8, **extra) -> object:
    raw = tiny_raw("ad", grid)
    raw["adaptive"] = {"min_seeds": min_seeds, "max_seeds": max_seeds, **extra}
    return config_from_dict(raw)


def runs_table(cfg, outcomes: dict[tuple, list], dev: dict[tuple, list] | None = None) -> pd.DataFrame:
    """A finished-runs table: for each configuration (its grid values, in grid order) a list of
    outcomes per seed: True reached, False not reached, 'failed', 'diverged'. `dev` gives the
    best dev accuracies (default 0.5)."""
    specs = {(tuple(v for k, v in s.factors.items() if k != "seed"), s.factors["seed"]): s
             for s in adaptive.pool(cfg, DATA_ID)}
    rows = []
    for key, seq in outcomes.items():
        for seed, o in enumerate(seq):
            acc = (dev or {}).get(key, [0.5] * len(seq))[seed]
            status = o if isinstance(o, str) else "complete"
            rows.append({"trial_id": specs[(key, seed)].trial_id, "status": status,
                         "steps_to_target": 100 if o is True else None,
                         "best_dev_acc": None if status == "failed" else acc})
    return pd.DataFrame(rows, columns=list(adaptive.RUNS_COLUMNS))


def by_config(decision) -> dict[tuple, adaptive.ConfigDecision]:
    return {tuple(c.factors.values()): c for c in decision.configs}


def decide(cfg, outcomes, dev=None):
    return adaptive.decide(cfg, adaptive.pool(cfg, DATA_ID), runs_table(cfg, outcomes, dev))


# ----------------------------------------------------------------------------- config

def test_config_section_is_validated_and_round_trips():
    cfg = cfg_of({"cell": ["rnn", "lstm"]}, 2, 5, confidence=0.9, effects=[["cell", "rnn", "lstm"]])
    assert (cfg.adaptive.min_seeds, cfg.adaptive.max_seeds, cfg.adaptive.confidence) == (2, 5, 0.9)
    assert cfg.adaptive.effects == [("model.cell", "rnn", "lstm")]
    again = config_from_dict(cfg.to_dict())
    assert again.adaptive == cfg.adaptive and again.to_dict() == cfg.to_dict()
    assert cfg_of({"cell": ["rnn"]}).adaptive.confidence == 0.95  # the default


@pytest.mark.parametrize("adapt, grid, match", [
    ({"min_seeds": 3}, {}, r"'adaptive\.max_seeds' is required"),
    ({"min_seeds": 4, "max_seeds": 3}, {}, r"adaptive\.min_seeds' \(4\) and 'adaptive\.max_seeds' \(3\)"),
    ({"min_seeds": 0, "max_seeds": 3}, {}, r"adaptive\.min_seeds': 0 is out of range"),
    ({"min_seeds": 2.5, "max_seeds": 3}, {}, r"adaptive\.min_seeds': expected an integer"),
    ({"min_seeds": 1, "max_seeds": 3, "confidence": 1.0}, {}, r"adaptive\.confidence': 1\.0 is out of range"),
    ({"min_seeds": 1, "max_seeds": 3, "rounds": 2}, {}, r"unknown config key 'adaptive\.rounds'"),
    ({"min_seeds": 1, "max_seeds": 3}, {"seed": [0, 1]}, r"'adaptive' and 'grid\.seed' cannot both be given"),
    ({"min_seeds": 1, "max_seeds": 3, "effects": [["layernorm", "none", "output"]]}, {},
     r"adaptive\.effects\[0\]': 'layernorm' is not a grid axis; grid axes: cell"),
    ({"min_seeds": 1, "max_seeds": 3, "effects": [["cell", "rnn", "gru"]]}, {},
     r"adaptive\.effects\[0\]': 'gru' is not a value of grid axis 'cell'"),
    ({"min_seeds": 1, "max_seeds": 3, "effects": [["cell", "rnn", "rnn"]]}, {}, r"both 'rnn'"),
    ({"min_seeds": 1, "max_seeds": 3, "effects": [["cell", "rnn"]]}, {}, r"expected \[axis, baseline, level\]"),
])
def test_bad_adaptive_sections_name_the_key(adapt, grid, match):
    raw = tiny_raw("bad", {"cell": ["rnn", "lstm"], **grid})
    raw["adaptive"] = adapt
    with pytest.raises(ConfigError, match=match):
        config_from_dict(raw)


def test_adaptive_and_study_are_refused_together():
    raw = tiny_raw("bad", {"seed": [0]})
    raw["adaptive"] = {"min_seeds": 1, "max_seeds": 2}
    raw["study"] = {"n_trials": 2, "params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2}}}
    with pytest.raises(ConfigError, match="'adaptive' and 'study' cannot both be given"):
        config_from_dict(raw)


def test_the_seeds_are_grid_points_with_the_ids_a_seed_list_gives():
    cfg = cfg_of({"cell": ["rnn", "lstm"], "pad_size": [12]}, 2, 4)
    fixed = config_from_dict(tiny_raw("ad", {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0, 1, 2, 3]}))
    assert sorted(s.trial_id for s in adaptive.pool(cfg, DATA_ID)) == \
        sorted(s.trial_id for s in expand_grid(fixed, DATA_ID))
    assert adaptive.trial_bounds(cfg) == (4, 8)
    # A directory run with seeds 0, 1 may go on with adaptive seeds: the seed is an axis either way.
    assert "train.seed" not in _fixed_settings(cfg.to_dict())


# ----------------------------------------------------------------------------- the success-rate rule

def test_nothing_finished_asks_for_min_seeds_everywhere():
    cfg = cfg_of({"cell": ["rnn", "lstm"], "pad_size": [12, 16]}, 3, 8)
    d = decide(cfg, {})
    assert len(d.needed) == 4 * 3 and d.max_trials == 4 * 8
    assert {s.factors["seed"] for s in d.needed} == {0, 1, 2}
    assert all(c.state == "running" and c.reason == "running: 0/3 seeds finished" for c in d.configs)


def test_unanimous_configurations_stop_at_four_seeds_not_three():
    # Wilson at 95%: 0/3 gives [0, 0.56] (contains 0.5: undecided), 0/4 gives [0, 0.49] (decided).
    assert wilson_interval(0, 3)[1] > 0.5 > wilson_interval(0, 4)[1]
    cfg = cfg_of({"cell": ["rnn", "lstm"]}, 3, 8)
    d = by_config(decide(cfg, {("rnn",): [False] * 3, ("lstm",): [True] * 3}))
    assert d[("rnn",)].seeds == 4 and d[("rnn",)].state == "running"
    assert d[("lstm",)].seeds == 4 and d[("lstm",)].reason == "running: 3/4 seeds finished"
    d = by_config(decide(cfg, {("rnn",): [False] * 4, ("lstm",): [True] * 4}))
    assert (d[("rnn",)].seeds, d[("rnn",)].state, d[("rnn",)].reason) == (4, "decided", "decided: failed in 4/4")
    assert (d[("lstm",)].seeds, d[("lstm",)].reason) == (4, "decided: reached in 4/4")


def test_failed_and_diverged_runs_count_as_not_reached():
    cfg = cfg_of({"cell": ["rnn"]}, 4, 8)
    d = by_config(decide(cfg, {("rnn",): ["failed", "diverged", False, "failed"]}))
    assert (d[("rnn",)].reached, d[("rnn",)].reason) == (0, "decided: failed in 4/4")


def test_one_dissent_needs_eight_seeds_and_a_split_stops_at_max_seeds():
    # 1 of 4 .. 1 of 7 stay undecided (1/7: [0.026, 0.513]); 1 of 8 is decided ([0.022, 0.471]).
    assert wilson_interval(1, 7)[1] > 0.5 > wilson_interval(1, 8)[1]
    cfg = cfg_of({"cell": ["rnn", "lstm"]}, 3, 8)
    grow = by_config(decide(cfg, {("rnn",): [True, False, False, False, False], ("lstm",): [True, False, True]}))
    assert grow[("rnn",)].seeds == 6 and grow[("lstm",)].seeds == 4  # one more seed per round
    end = by_config(decide(cfg, {("rnn",): [True] + [False] * 7, ("lstm",): [True, False] * 4}))
    assert (end[("rnn",)].seeds, end[("rnn",)].reason) == (8, "decided: failed in 7/8")
    lstm = end[("lstm",)]
    assert (lstm.seeds, lstm.state, lstm.reason) == (8, "max_seeds", "max_seeds reached: failed in 4/8, rate undecided")


def test_the_decision_is_a_function_of_the_finished_runs_only():
    cfg = cfg_of({"cell": ["rnn", "lstm"], "pad_size": [12, 16]}, 2, 6)
    outcomes = {("rnn", 12): [False, True, False], ("rnn", 16): [False, False, False, False],
                ("lstm", 12): [True, True, True, True], ("lstm", 16): [True, False]}
    pool = adaptive.pool(cfg, DATA_ID)
    runs = runs_table(cfg, outcomes)
    a = adaptive.decide(cfg, pool, runs)
    b = adaptive.decide(cfg, list(reversed(pool)), runs.sample(frac=1.0, random_state=1))
    stray = pd.DataFrame([{"trial_id": "0123456789ab", "status": "complete", "steps_to_target": 5,
                           "best_dev_acc": 0.9}])
    c = adaptive.decide(cfg, pool, pd.concat([runs, stray], ignore_index=True))  # not ours: ignored
    ids = sorted(s.trial_id for s in a.needed)
    assert ids == sorted(s.trial_id for s in b.needed) == sorted(s.trial_id for s in c.needed)
    assert by_config(a) == by_config(b) == by_config(c)
    # More finished runs never take back a seed already asked for.
    fewer = adaptive.decide(cfg, pool, runs.iloc[: len(runs) // 2])
    assert {s.trial_id for s in fewer.needed} <= set(ids)


# ----------------------------------------------------------------------------- paired effects

def effect_cfg(**extra):
    return cfg_of({"cell": ["rnn", "lstm"], "pad_size": [12]}, 4, 7, effects=[["cell", "rnn", "lstm"]], **extra)


def test_a_clear_effect_is_decided_once_it_has_the_pairs_it_needs():
    cfg = effect_cfg()
    rng = np.random.default_rng(0)
    base = list(rng.uniform(0.4, 0.5, 7))
    dev = {("rnn", 12): base, ("lstm", 12): [b + 0.2 + 0.01 * i for i, b in enumerate(base)]}
    # Both rates are decided at 4/4, and the effect's interval excludes zero, but a difference is
    # never claimed on fewer than 5 pairs (paired.MIN_PAIRS): one seed more.
    four = decide(cfg, {("rnn", 12): [True] * 4, ("lstm", 12): [True] * 4}, dev)
    assert [c.seeds for c in four.configs] == [5, 5] and four.effects[0].state == "undecided"
    assert four.effects[0].low > 0 and four.effects[0].pairs == 4
    five = decide(cfg, {("rnn", 12): [True] * 5, ("lstm", 12): [True] * 5}, dev)
    e = five.effects[0]
    assert (e.state, e.seeds, e.pairs) == ("decided", 5, 5) and e.low > 0.15
    assert [c.reason for c in five.configs] == ["decided: reached in 5/5; its effects decided"] * 2


def test_an_effect_that_stays_at_zero_grows_its_configurations_to_max_seeds():
    cfg = effect_cfg()
    same = [0.5] * 7
    d = decide(cfg, {("rnn", 12): [True] * 7, ("lstm", 12): [True] * 7}, {("rnn", 12): same, ("lstm", 12): same})
    assert [c.seeds for c in d.configs] == [7, 7]
    # Every difference is 0: no spread, so no (zero-width) interval; the sign test never decides it.
    assert d.effects[0].state == "max_seeds" and np.isnan(d.effects[0].low) and np.isnan(d.effects[0].high)
    assert d.configs[0].reason == "max_seeds reached: reached in 7/7, effect undecided"
    waiting = by_config(decide(cfg, {("rnn", 12): [True] * 5, ("lstm", 12): [True] * 4},
                               {("rnn", 12): same, ("lstm", 12): same}))
    assert waiting[("lstm", 12)].reason == "running: 4/5 seeds finished"
    assert waiting[("rnn", 12)].reason == "running: reached in 5/5; waiting for the effect round at 5 seeds"


def test_a_decided_effect_leaves_its_configurations_behind_and_the_other_effect_goes_on():
    cfg = cfg_of({"cell": ["rnn", "lstm", "gru"]}, 4, 7, effects=[["cell", "rnn", "lstm"], ["cell", "rnn", "gru"]])
    base = list(np.random.default_rng(1).uniform(0.4, 0.5, 7))
    dev = {("rnn",): base, ("lstm",): [b + 0.2 + 0.01 * i for i, b in enumerate(base)], ("gru",): base}
    d = decide(cfg, {("rnn",): [True] * 7, ("lstm",): [True] * 5, ("gru",): [True] * 7}, dev)
    assert [e.state for e in d.effects] == ["decided", "max_seeds"] and d.effects[0].seeds == 5
    assert {k: (c.seeds, c.state) for k, c in by_config(d).items()} == \
        {("rnn",): (7, "max_seeds"), ("lstm",): (5, "decided"), ("gru",): (7, "max_seeds")}


def test_requested_effects_are_corrected_together_with_holm():
    cfg = cfg_of({"cell": ["rnn", "lstm"], "layernorm": ["none", "output"]}, 4, 6,
                 effects=[["cell", "rnn", "lstm"], ["layernorm", "none", "output"]])
    out = {k: [True] * 4 for k in [("rnn", "none"), ("rnn", "output"), ("lstm", "none"), ("lstm", "output")]}
    d = decide(cfg, out)  # every dev accuracy 0.5: both p-values 1, nothing rejected
    # Each of the 3 planned looks (4, 5, 6 seeds) spends 0.05 / 3; Holm over the 2 effects within it.
    assert adaptive.effect_alpha(cfg.adaptive) == pytest.approx(0.05 / 3)
    assert [round(e.confidence, 4) for e in d.effects] == [round(1 - 0.05 / 3 / 2, 4)] * 2


def test_repeated_looks_at_a_zero_effect_rarely_decide_it():
    # A zero effect looked at from 4 to 7 seeds: with the full 5% at every look it would be decided far
    # more often than 5%; with alpha split over the looks (Bonferroni) at most 5% of the time.
    cfg = effect_cfg()
    rng = np.random.default_rng(7)
    decided = 0
    sims = 150
    for _ in range(sims):
        base = list(rng.normal(0.5, 0.05, 7))
        dev = {("rnn", 12): base, ("lstm", 12): list(np.array(base) + rng.normal(0.0, 0.05, 7))}
        d = decide(cfg, {("rnn", 12): [True] * 7, ("lstm", 12): [True] * 7}, dev)
        decided += d.effects[0].state == "decided"
    assert decided / sims <= 0.05 + 3 * (0.05 * 0.95 / sims) ** 0.5


@pytest.mark.parametrize("batch", [1, 3])
def test_the_interval_the_success_rule_stops_with_covers_0_5_less_often_than_95_percent(batch):
    # What adaptive seeding's Wilson intervals cover at a true rate of 0.5 (5 to 16 seeds): simulated
    # through `decide` (each configuration's 16 outcomes drawn in advance; the rule only reads seeds
    # below where it stands, so this is the sequential rule), against the exact number the module
    # states (83.7% one seed at a time), within 3 binomial standard errors of the simulation. With
    # batch 3 a configuration is looked at only at 5, 8, 11, 14 and 16 seeds.
    exact = adaptive.stopping_coverage(0.5, 5, 16, batch=batch)
    if batch == 1:
        assert exact == pytest.approx(0.8368, abs=1e-4)
    assert adaptive.stopping_coverage(0.5, 16, 16) == pytest.approx(0.9232, abs=1e-4)  # fixed n, for contrast
    k = 1500
    raw = tiny_raw("cov", {"lr": [1e-3 * (1 + i / k) for i in range(k)]})
    raw["adaptive"] = {"min_seeds": 5, "max_seeds": 16, "batch": batch}
    cfg = config_from_dict(raw)
    pool = adaptive.pool(cfg, DATA_ID)
    rng = np.random.default_rng(0)
    runs = pd.DataFrame({"trial_id": [s.trial_id for s in pool], "status": "complete",
                         "steps_to_target": np.where(rng.random(len(pool)) < 0.5, 100.0, np.nan),
                         "best_dev_acc": 0.5})
    configs = adaptive.decide(cfg, pool, runs).configs
    assert {c.seeds for c in configs} <= set(cfg.adaptive.looks()) and any(c.seeds == 16 for c in configs)
    covered = np.mean([wilson_interval(c.reached, c.seeds)[0] <= 0.5 <= wilson_interval(c.reached, c.seeds)[1]
                       for c in configs])
    se = (exact * (1 - exact) / k) ** 0.5
    assert abs(covered - exact) <= 3 * se
    assert covered < 0.95 - 3 * se          # clearly below the nominal 95%: the intervals are exploratory


def test_summary_is_plain_json_with_a_status_line():
    d = decide(effect_cfg(), {("rnn", 12): [True] * 4, ("lstm", 12): [False] * 2})
    info = json.loads(json.dumps(adaptive.summary(effect_cfg(), d)))
    assert info["trials"] == {"needed": 8, "max": 14, "finished": 6}
    assert info["configurations"] == {"decided": 0, "max_seeds": 0, "running": 2}
    assert info["effects"][0]["state"] == "running" and info["effects"][0]["low"] is None
    assert adaptive.summary_line(info) == ("adaptive seeds (4..7): 0 configurations decided, 0 at max_seeds, "
                                           "2 running; 8 trials needed so far (up to 14)")


# ----------------------------------------------------------------------------- runs

# target 0.0: every run reaches it; 0.999 and 1.0: none does (64 dev titles, one tiny epoch). The
# effect 0.0 -> 1.0 compares runs that train identically (the target only marks a step), so its
# differences are all zero and it never decides: those two configurations grow to max_seeds, the
# 0.999 one stops at 4 seeds (0/4), from 2.
GRID = {"cell": ["rnn"], "pad_size": [12], "train.target_dev_acc": [0.0, 0.999, 1.0]}
ADAPT = {"min_seeds": 2, "max_seeds": 5, "effects": [["train.target_dev_acc", 0.0, 1.0]]}
EXPECTED_SEEDS = {0.0: 5, 0.999: 4, 1.0: 5}


def racing_raw(name: str) -> dict:
    raw = tiny_raw(name, GRID)
    raw["adaptive"] = ADAPT
    return raw


def expected_ids(cfg, out: Path) -> set[str]:
    return {s.trial_id for s in adaptive.pool(cfg, make_plan(cfg, out).data_id)
            if s.factors["seed"] < EXPECTED_SEEDS[s.factors["train.target_dev_acc"]]}


def check_finished(out: Path, cfg, name: str, interrupted: bool = False) -> None:
    """Every expected trial ran exactly once (one shard, one COMPLETE Optuna trial per id), and
    adaptive.json says why each configuration stopped where it did. After an interrupt, the trial
    whose worker was stopped between writing its shard and telling Optuna keeps the shard and its
    Optuna trial is failed as stale: it is not trained again, so at most one id lacks its COMPLETE."""
    runs = records.combine(out)["runs"]
    assert set(runs["trial_id"]) == expected_ids(cfg, out) and runs["trial_id"].is_unique
    study = optuna.load_study(study_name=name, storage=open_storage(out, None))
    done = [t.user_attrs["trial_id"] for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    if interrupted:
        assert len(set(done)) == len(done) and set(done) <= set(runs["trial_id"]) and len(done) >= len(runs) - 1
    else:
        assert sorted(done) == sorted(runs["trial_id"])
    info = json.loads((out / "adaptive.json").read_text())
    got = {c["factors"]["train.target_dev_acc"]: (c["seeds"], c["state"], c["reason"])
           for c in info["per_configuration"]}
    assert got == {0.0: (5, "max_seeds", "max_seeds reached: reached in 5/5, effect undecided"),
                   0.999: (4, "decided", "decided: failed in 4/4"),
                   1.0: (5, "max_seeds", "max_seeds reached: failed in 5/5, effect undecided")}
    assert info["trials"] == {"needed": 14, "max": 15, "finished": 14}
    assert info["effects"][0]["pairs"] == 5 and info["effects"][0]["mean"] == 0.0


def test_some_configurations_stop_early_others_grow_each_trial_once_with_two_workers(tmp_path, capsys):
    cfg = config_from_dict(racing_raw("race"))
    path = tmp_path / "race.yaml"
    path.write_text(yaml.safe_dump(racing_raw("race")))
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "adaptive seeds: between 6 and 15 trials in all (2 to 5 seeds per configuration); listed: the 6" \
        in capsys.readouterr().out
    counts = runner.run(cfg, tmp_path / "o", workers=2, device="cpu", threads=1, progress=False)
    assert counts["total"] == 14 and counts["complete"] == 14 and counts["missing"] == 0
    check_finished(tmp_path / "o", cfg, "race")
    assert records.load(tmp_path / "o")["runs"]["worker"].nunique() == 2  # both workers took seeds
    text = format_status(status(tmp_path / "o"))
    assert "14/14 finished" in text
    assert "adaptive seeds (2..5): 1 configurations decided, 2 at max_seeds, 0 running; 14 trials needed " \
           "so far (up to 15)" in text
    again = runner.run(cfg, tmp_path / "o", workers=2, device="cpu", threads=1, progress=False)
    assert again["complete"] == 14  # nothing more to do: the same command adds nothing
    check_finished(tmp_path / "o", cfg, "race")


def test_an_idle_worker_waits_while_trials_that_may_add_seeds_still_run(tmp_path, monkeypatch):
    # A worker with nothing to claim and nothing to top up does not exit while a trial runs elsewhere
    # (its outcome may add seeds); it tops up again after each wait, and exits once none runs.
    cfg = config_from_dict(racing_raw("wait"))
    runner.run(cfg, tmp_path / "o", workers=1, device="cpu", threads=1, progress=False)
    running = iter([True, True, False])
    calls = []
    monkeypatch.setattr(runner, "claim", lambda q, stamp: None)
    monkeypatch.setattr(runner, "_top_up", lambda plan, q: calls.append("top up") and False)
    monkeypatch.setattr(runner, "running_elsewhere", lambda studies: calls.append("running?") or next(running))
    monkeypatch.setattr(runner, "TOP_UP_WAIT_S", 0.0)
    assert runner.worker_loop(tmp_path / "o", None, "cpu", 1) == 0
    assert calls == ["top up", "running?"] * 3


def test_a_batch_of_seeds_per_look_with_one_worker_or_two_runs_the_same_trials(tmp_path):
    # adaptive.batch 2: configurations are looked at at 2 and 4 seeds (and at max_seeds, 5); the trials
    # are the same whatever the number of workers (a function of the config and the outcomes only).
    raw = racing_raw("batch")
    raw["adaptive"] = {**ADAPT, "batch": 2}
    cfg = config_from_dict(raw)
    assert cfg.adaptive.looks() == [2, 4, 5]
    ids = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        runner.run(cfg, out, workers=workers, device="cpu", threads=1, progress=False)
        info = json.loads((out / "adaptive.json").read_text())
        assert info["batch"] == 2 and {c["seeds"] for c in info["per_configuration"]} <= {2, 4, 5}
        ids.append(set(records.load(out)["runs"]["trial_id"]))
    assert ids[0] == ids[1] and len(ids[0]) > 3 * 2


@pytest.mark.slow
def test_interrupted_while_adding_seeds_the_same_command_finishes_the_same_set(tmp_path):
    raw = racing_raw("resume")
    raw["data"]["synth"]["n_train"] = 1500  # ~0.5 s per trial, so the interrupt lands between rounds' trials
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "harness", "run", str(path), "--out", str(out), "--workers", "1", "--device",
           "cpu", "--quiet", "--set", "run.threads=1"]
    main_proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                                 preexec_fn=sigint_default)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "trials").glob("[0-9a-f]*"))) < 7:
        time.sleep(0.05)  # 6 trials of the first round, then the first added seed
    main_proc.send_signal(signal.SIGINT)
    _, err = main_proc.communicate(timeout=60)
    assert main_proc.returncode == 130, err.decode()
    cfg = config_from_dict(raw)
    before = set(records.load(out)["runs"]["trial_id"])
    assert 7 <= len(before) < 14 and before < expected_ids(cfg, out)
    subprocess.run(cmd, check=True, capture_output=True, timeout=300, cwd=ROOT)
    check_finished(out, cfg, "resume", interrupted=True)


def test_adaptive_saving_builds_the_max_seeds_config_from_an_adaptive_bench_config():
    # benchmarks/adaptive_saving.py tops a folder up to seeds 0 .. max-1 everywhere: that config must
    # drop the bench's own `adaptive` section (a grid seed list and adaptive seeds exclude each other).
    import importlib.util

    spec = importlib.util.spec_from_file_location("adaptive_saving", ROOT / "benchmarks" / "adaptive_saving.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    raw, full = mod.configs(yaml.safe_load((ROOT / "configs" / "bench.yaml").read_text()), [], 5, 12)
    assert raw["adaptive"] == {"min_seeds": 5, "max_seeds": 12} and "seed" not in raw["grid"]
    assert "adaptive" not in full and full["grid"]["seed"] == list(range(12))
    config_from_dict(raw), config_from_dict(full)  # both valid
