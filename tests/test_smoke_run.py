"""The smoke grid end to end: `harness run` writes all five tables with the documented columns (harness.schema)."""

import pandas as pd
import pytest
import yaml
from conftest import ROOT

from harness import records
from harness.cli import main

SMOKE = ROOT / "configs" / "smoke.yaml"


def test_smoke_run_writes_the_five_tables(smoke_run):
    tables = records.load(smoke_run)
    runs = tables["runs"]
    assert len(runs) == 4 and (runs["status"] == "complete").all()
    assert sorted(runs["cell"] + "/" + runs["layernorm"]) == ["lstm/none", "lstm/output", "rnn/none",
                                                             "rnn/output"]
    for name, cols in records.COLUMNS.items():
        assert set(cols) <= set(tables[name].columns), name
        assert len(tables[name]) > 0, name
        on_disk = pd.read_parquet(smoke_run / f"{name}.parquet")
        assert len(on_disk) == len(tables[name])
    assert runs["test_acc"].between(0, 1).all()
    assert (runs["device"] == "cpu").all() and runs["git_commit"].notna().all()
    from harness import __version__
    from harness.runner import git_dirty

    assert (runs["harness_version"] == __version__).all()  # and the checkout's state at run time:
    assert runs["git_dirty"].notna().all() and set(runs["git_dirty"]) <= {True, False}
    assert git_dirty() in (True, False)
    cfg = yaml.safe_load((smoke_run / "config.yaml").read_text())
    assert cfg["name"] == "smoke" and cfg["grid"]["cell"] == ["rnn", "lstm"]
    assert (smoke_run / "optuna.journal").is_file()


def test_study_carries_params_and_summaries(smoke_run):
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(smoke_run / "optuna.journal")))
    study = optuna.load_study(study_name="smoke", storage=storage)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 4
    runs = records.load(smoke_run)["runs"].set_index("trial_id")
    for t in trials:
        assert t.params["cell"] in ("rnn", "lstm") and t.params["pad_size"] == 16
        assert t.user_attrs["test_acc"] == runs.loc[t.user_attrs["trial_id"], "test_acc"]


def test_rerun_is_a_no_op(smoke_run, capsys):
    before = records.load(smoke_run)["runs"].sort_values("trial_id")
    assert main(["run", str(SMOKE), "--out", str(smoke_run), "--quiet", "--set", "run.threads=1"]) == 0
    after = records.load(smoke_run)["runs"].sort_values("trial_id")
    assert before["started_at"].tolist() == after["started_at"].tolist()
    assert "missing 0" in capsys.readouterr().out


def test_run_says_what_it_does_before_loading_torch(smoke_run, capsys):
    # The first line comes before the seconds of importing torch and preparing the data.
    assert main(["run", str(SMOKE), "--out", str(smoke_run), "--set", "run.threads=1"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"harness: smoke: loading torch, checking the config and preparing the data for {smoke_run}"
    assert lines[1].startswith("harness: 4 trials planned, data ready in ")


def test_bad_config_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngrid:\n  cell: [rnn, transformer]\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "grid.cell" in err and "transformer" in err and "line 3" in err


def test_dry_run_lists_trials_and_what_is_done(smoke_run, tmp_path, capsys):
    assert main(["run", str(SMOKE), "--out", str(smoke_run), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("done    cell=") == 4
    # 2 epochs of 800 titles at batch 64 = 26 steps per trial, 4 trials.
    assert out.strip().endswith("4 trials, 4 already done in " + str(smoke_run) +
                                "; at most 0 training steps to run with 1 worker(s) on auto")
    assert main(["run", str(SMOKE), "--out", str(tmp_path / "new"), "--dry-run"]) == 0
    fresh = capsys.readouterr().out
    assert "4 trials, 0 already done" in fresh and "at most 104 training steps" in fresh


def test_load_carries_the_run_config_and_status_speaks_json(smoke_run, capsys):
    import json

    res = records.load(smoke_run)
    assert res.config.name == "smoke" and res.config.grid["model.cell"] == ["rnn", "lstm"]
    assert main(["status", str(smoke_run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "smoke" and info["total"] == 4 and info["missing"] == 0
    assert info["finished"] == {"complete": 4, "diverged": 0, "failed": 0, "pruned": 0}
    assert len(info["slowest"]) == 4 and all(isinstance(r["wall_s"], float) for r in info["slowest"])
    assert info["failures"] == [] and info["running"] == [] and info["waiting"] == 0


def test_status_json_turns_missing_values_into_null():
    import numpy as np

    from harness.status import status_json

    text = status_json({"a": [{"x": np.float64("nan"), "y": pd.NA, "z": np.int64(3), "t": pd.Timestamp(0, tz="UTC")}]})
    assert text.replace(" ", "").replace("\n", "") == '{"a":[{"x":null,"y":null,"z":3,"t":"1970-01-0100:00:00+00:00"}]}'


@pytest.mark.slow
def test_the_first_config_shows_a_cell_learning_and_a_cell_failing(tmp_path):
    """configs/first.yaml, the README's first run: the LSTM reaches the target at pad_size 16 in
    every seed, the RNN in none, and at pad_size 64 every run is at chance."""
    assert main(["run", str(ROOT / "configs" / "first.yaml"), "--out", str(tmp_path), "--quiet",
                 "--set", "run.threads=1"]) == 0
    runs = records.load(tmp_path).runs
    assert len(runs) == 8 and (runs["status"] == "complete").all()
    reached = runs.assign(hit=runs["steps_to_target"].notna()).groupby(["cell", "pad_size"])["hit"].mean()
    assert reached[("lstm", 16)] == 1 and reached[("rnn", 16)] == 0
    far = runs[runs["pad_size"] == 64]
    assert (far["test_acc"] < 0.15).all() and (runs.loc[runs["cell"] == "lstm"].query("pad_size == 16")["test_acc"]
                                               > 0.7).all()
