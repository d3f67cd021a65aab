"""optuna-dashboard's live curves: every trial reports its dev accuracy at each evaluation to its
Optuna trial (grid trials and unpruned search trials too), equal to the curves table."""

import optuna
import pandas as pd
from conftest import tiny_raw
from optuna.trial import TrialState

from harness import records, runner
from harness.config import config_from_dict


def dev_acc_by_step(curves: pd.DataFrame, trial_id: str) -> dict[int, float]:
    c = curves[curves["trial_id"] == trial_id]
    return {int(s): float(a) for s, a in zip(c["step"], c["dev_acc"])}


def test_grid_trials_report_dev_accuracy_at_each_evaluation(tmp_path):
    cfg = config_from_dict(tiny_raw("live", {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0]}))
    assert runner.run(cfg, tmp_path, workers=1, device="cpu", threads=1, progress=False)["complete"] == 2
    curves = records.load(tmp_path)["curves"]
    study = optuna.load_study(study_name="live", storage=runner.open_storage(tmp_path, None))
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2
    for t in trials:
        expected = dev_acc_by_step(curves, t.user_attrs["trial_id"])
        assert len(expected) >= 2
        assert t.intermediate_values == expected


def test_search_trials_without_a_pruner_report_too(tmp_path):
    raw = tiny_raw("live-search", {"seed": [0]})
    raw["study"] = {"n_trials": 2, "sampler": "random", "pruner": "none", "rerun_best": False,
                    "params": {"lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}}}
    cfg = config_from_dict(raw)
    assert runner.run(cfg, tmp_path, workers=1, device="cpu", threads=1, progress=False)["complete"] == 2
    runs, curves = (records.load(tmp_path)[t] for t in ("runs", "curves"))
    storage = runner.open_storage(tmp_path, None)
    searched = [s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name != "live-search"]
    trials = [t for name in searched for t in optuna.load_study(study_name=name, storage=storage).get_trials()
              if t.state == TrialState.COMPLETE]
    assert len(trials) == 2
    for t in trials:
        assert t.intermediate_values == dev_acc_by_step(curves, t.user_attrs["shard"])
    assert set(runs["phase"]) == {"search"}
