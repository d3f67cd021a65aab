"""`run.fuse`: the config key, and the runner training waiting trials of one shape as one fused group
(harness.train_fused.run_fused) with each trial's claim, rows and Optuna bookkeeping as if alone."""

import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from conftest import ROOT, tiny_raw

from harness import queue, records, runner
from harness.config import ConfigError, config_from_dict, expand_grid, load_config
from harness.plan import Plan
from harness.storage import open_storage
from harness.train_fused import AUTO_FUSE_CUDA, fuse_size

# Four trials of one shape: they differ in seed and learning rate only.
ONE_SHAPE = {"cell": ["lstm"], "pad_size": [12], "seed": [0, 1], "lr": [1.0e-3, 3.0e-3]}


def run(raw: dict, out: Path, fuse, workers: int = 1) -> dict[str, int]:
    raw = {**raw, "run": {"fuse": fuse}}
    return runner.run(config_from_dict(raw), out, workers=workers, device="cpu", threads=1, progress=False)


def trials(out: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(out, None)).get_trials()


# ----------------------------------------------------------------------------- the config key

@pytest.mark.parametrize("value, expected", [(4, 4), ("4", 4), (1, 1), ("auto", "auto"), ("off", "off"),
                                             (False, "off")])
def test_fuse_accepts_off_auto_and_a_group_size(value, expected):
    raw = tiny_raw()
    raw["run"] = {"fuse": value}
    assert config_from_dict(raw).run.fuse == expected


@pytest.mark.parametrize("value", ["abc", 0, -2, 4.5, True, "on", [4]])
def test_a_bad_fuse_is_a_config_error_naming_the_key(value):
    raw = tiny_raw()
    raw["run"] = {"fuse": value}
    with pytest.raises(ConfigError, match=r"run\.fuse.*allowed: off, auto, or an integer >= 1"):
        config_from_dict(raw)


def test_fuse_from_the_command_line_and_the_file(tmp_path):
    assert load_config(ROOT / "configs" / "smoke.yaml", ["run.fuse=4"]).run.fuse == 4
    assert load_config(ROOT / "configs" / "smoke.yaml").run.fuse == "off"
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nrun:\n  fuse: abc\n")
    with pytest.raises(ConfigError, match=r"'run\.fuse'.*c\.yaml, line 3"):
        load_config(path)


def test_fuse_is_not_part_of_a_trial_id():
    plain, fused = tiny_raw(grid=ONE_SHAPE), {**tiny_raw(grid=ONE_SHAPE), "run": {"fuse": 4}}
    ids = [[s.trial_id for s in expand_grid(config_from_dict(r), "d")] for r in (plain, fused)]
    assert ids[0] == ids[1]


def test_fuse_size_resolves_auto_per_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert fuse_size("off", cpu) == fuse_size("off", cuda) == 1
    assert fuse_size("auto", cpu) == 1 and fuse_size("auto", cuda) == AUTO_FUSE_CUDA
    assert fuse_size(4, cpu) == 4
    with pytest.raises(ValueError, match="run.fuse"):
        fuse_size(0, cpu)


# ----------------------------------------------------------------------------- the queue

def test_claim_matching_takes_only_wanted_waiting_trials_up_to_the_limit(tmp_path, monkeypatch):
    cfg = config_from_dict(tiny_raw("cm", {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0, 1, 2]}))
    plan = Plan(cfg, tmp_path, expand_grid(cfg, "d"), "d")
    study = queue.open_queue(plan, open_storage(tmp_path, None))
    queue.enqueue_missing(plan, study)
    lstm = {s.trial_id for s in plan.specs if s.model.cell == "lstm"}
    first, key = queue.claim(study)
    taken = queue.claim_matching(study, lambda k: k in lstm and k != key, limit=2)
    assert len(taken) == 2 and {k for _, k in taken} <= lstm - {key}
    again = queue.claim_matching(study, lambda k: k in lstm, limit=5)  # what is left of the lstm trials
    assert {k for _, k in taken + again} | {key} >= lstm and not ({k for _, k in again} & {k for _, k in taken})
    assert queue.claim_matching(study, lambda k: True, limit=0) == []
    states = {t.user_attrs["trial_id"]: t for t in study.get_trials()}
    for _, k in taken + again:  # each claimed and stamped as claim() stamps
        assert states[k].state == optuna.trial.TrialState.RUNNING and "heartbeat" in states[k].system_attrs
    # One heartbeat thread for a group: every trial's heartbeat moves.
    monkeypatch.setattr(queue, "HEARTBEAT_S", 0.05)
    group = [first, *(t for t, _ in taken)]
    before = {t.number: study.get_trials()[t.number].system_attrs["heartbeat"] for t in group}
    with queue.GroupHeartbeat(group):
        time.sleep(0.3)
    after = {t.number: study.get_trials()[t.number].system_attrs["heartbeat"] for t in group}
    assert all(after[n] > before[n] for n in before)


# ----------------------------------------------------------------------------- the runner

def assert_same_tables(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    """Same tables, columns, and rows per trial."""
    assert set(a) == set(b)
    for name in a:
        assert list(a[name].columns) == list(b[name].columns), name
        assert a[name].groupby("trial_id").size().to_dict() == b[name].groupby("trial_id").size().to_dict(), name


def test_smoke_with_fuse_writes_the_tables_it_writes_without(smoke_run, tmp_path):
    """configs/smoke.yaml has no two trials of one shape: with run.fuse=4 nothing fuses, and the
    single-trial path gives the very numbers of the run without."""
    cfg = load_config(ROOT / "configs" / "smoke.yaml", ["run.fuse=4"])
    counts = runner.run(cfg, tmp_path, workers=1, device="cpu", threads=1, progress=False)
    assert counts["missing"] == 0
    fused, plain = records.combine(tmp_path), records.combine(smoke_run)
    assert_same_tables(fused, plain)
    a, b = (t["runs"].set_index("trial_id").sort_index() for t in (fused, plain))
    assert list(a.index) == list(b.index) and len(a) == 4
    assert a["fused_group"].isna().all() and b["fused_group"].isna().all()
    assert a["test_acc"].tolist() == b["test_acc"].tolist()  # bit-identical


def test_four_trials_of_one_shape_train_as_one_fused_group(tmp_path):
    raw = tiny_raw("fuse4", ONE_SHAPE)
    assert run(raw, tmp_path / "fused", 4)["complete"] == 4
    assert run(raw, tmp_path / "plain", "off")["complete"] == 4
    fused, plain = records.combine(tmp_path / "fused"), records.combine(tmp_path / "plain")
    assert_same_tables(fused, plain)
    a, b = (t["runs"].set_index("trial_id").sort_index() for t in (fused, plain))
    assert list(a.index) == list(b.index) and len(a) == 4
    assert a["fused_group"].nunique() == 1 and a["fused_group"].iloc[0] in a.index  # one group of four
    assert b["fused_group"].isna().all()
    # Dropout 0.1 on a CPU: fused trials match separate runs to float tolerance (tests/test_train_fused.py).
    assert a["test_acc"].tolist() == pytest.approx(b["test_acc"].tolist(), abs=1e-4)
    assert a["best_dev_acc"].tolist() == pytest.approx(b["best_dev_acc"].tolist(), abs=1e-4)
    assert a["steps"].tolist() == b["steps"].tolist()
    for t in trials(tmp_path / "fused", "fuse4"):  # each trial told and reported on its own
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.value == pytest.approx(a.loc[t.user_attrs["trial_id"], "best_dev_acc"])
        assert t.intermediate_values and t.params["seed"] in (0, 1)
        assert t.user_attrs["shard"] == t.user_attrs["trial_id"]
    # run.fuse is not a fixed setting: the unfused command resumes the fused run (nothing to do).
    before = a["started_at"]
    run(raw, tmp_path / "fused", "off")
    after = records.combine(tmp_path / "fused")["runs"].set_index("trial_id").sort_index()
    assert after["started_at"].tolist() == before.tolist()


def test_trials_with_a_lag_and_a_span_read_out_train_as_one_fused_group(tmp_path):
    """Data with a lag used to be kept out of fused groups by the runner; the fused trainer reads each
    text's span now, so such trials fuse and record what they record unfused."""
    raw = tiny_raw("fuselag", {**ONE_SHAPE, "lag": [3], "model.readout": ["last_valid"]})
    assert run(raw, tmp_path / "fused", 4)["complete"] == 4
    assert run(raw, tmp_path / "plain", "off")["complete"] == 4
    fused, plain = records.combine(tmp_path / "fused"), records.combine(tmp_path / "plain")
    assert_same_tables(fused, plain)
    a, b = (t["runs"].set_index("trial_id").sort_index() for t in (fused, plain))
    assert (a["lag"] == 3).all() and a["fused_group"].nunique() == 1 and b["fused_group"].isna().all()
    assert a["steps"].tolist() == b["steps"].tolist()
    assert a["test_acc"].tolist() == pytest.approx(b["test_acc"].tolist(), abs=1e-4)


def test_two_workers_with_fuse_run_every_trial_exactly_once(tmp_path):
    raw = tiny_raw("fuse2w", {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0, 1, 2, 3]})
    counts = run(raw, tmp_path, 4, workers=2)
    assert counts["complete"] == 8 and counts["missing"] == 0
    runs = records.combine(tmp_path)["runs"]
    assert len(runs) == 8 and runs["trial_id"].is_unique
    done = [t.user_attrs["trial_id"] for t in trials(tmp_path, "fuse2w")
            if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(done) == sorted(runs["trial_id"])  # each trained once
    fused = runs.dropna(subset=["fused_group"])
    assert len(fused) >= 2  # at least one group formed
    for _, group in fused.groupby("fused_group"):  # a group: one shape, one worker, at most 4 trials
        assert 2 <= len(group) <= 4
        assert group["cell"].nunique() == 1 and group["worker"].nunique() == 1


def test_a_failing_group_records_each_trial_failed_as_a_single_trial_would(tmp_path):
    """batch 1000 > 256 training examples with drop_last raises in the trainer: both trials of that
    group are failed rows with the error the single-trial path writes; the other group completes."""
    raw = tiny_raw("fusefail", {"cell": ["lstm"], "pad_size": [12], "train.drop_last": [True, False],
                                "seed": [0, 1]})
    raw["train"]["batch_size"] = 1000
    run(raw, tmp_path / "fused", 4)
    run(raw, tmp_path / "plain", "off")
    a, b = (records.combine(tmp_path / d)["runs"].set_index("trial_id").sort_index() for d in ("fused", "plain"))
    assert (a["status"] == b["status"]).all() and sorted(a["status"]) == ["complete"] * 2 + ["failed"] * 2
    failed = a[a["status"] == "failed"]
    assert failed["fused_group"].nunique() == 1 and failed["fused_group"].notna().all()
    assert failed["error"].tolist() == b.loc[failed.index, "error"].tolist()
    assert "batch_size" in failed["error"].iloc[0] and failed["traceback"].notna().all()
    filled = [c for c in b.columns if c not in ("traceback", "fused_group", "started_at", "worker")
              and b.loc[failed.index, c].notna().any()]
    assert failed[filled].astype(str).equals(b.loc[failed.index, filled].astype(str))
