"""Fused trials (harness.train_fused.run_fused) write what separate run_trial calls write: same
tables, same columns, the same numbers to float tolerance (timings aside), per-trial stopping."""

import math

import pandas as pd
import pytest
import torch
from conftest import PARITY_RTOL, tiny_specs

from harness.records import TABLES, TrialRecorder
from harness.train import run_trial
from harness.train_fused import fusable, fusable_key, group_specs, run_fused

CPU = torch.device("cpu")
# The CPU parity tests run in float64 (conftest.float64: why, and where PARITY_RTOL comes from).
in_float64 = pytest.mark.usefixtures("float64")
TIMING = {"wall_s", "train_s", "eval_s", "probe_s", "samples_per_s", "seconds_to_target", "started_at",
          "elapsed_s"}


def specs(tmp_path, grid, **train):
    return tiny_specs(tmp_path, {"pad_size": [12], **grid}, **train)


def close(a, b, key, rtol=PARITY_RTOL, atol=1e-12):
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return
        assert a == pytest.approx(b, rel=rtol, abs=atol), key
    else:
        assert a == b, key


def assert_same_tables(fused: TrialRecorder, plain: TrialRecorder, rtol=PARITY_RTOL, atol=1e-12):
    """Same tables, columns, rows and values (timings aside; floats to PARITY_RTOL: the trials run in
    float64)."""
    tf, tp = fused.tables(), plain.tables()
    for name in TABLES:
        a, b = tf[name], tp[name]
        assert list(a.columns) == list(b.columns), name
        assert len(a) == len(b), name
        for col in a.columns:
            if col == "trial_id":
                continue
            if col in TIMING:  # the group's seconds: filled where a separate run fills them
                assert a[col].isna().tolist() == b[col].isna().tolist(), (name, col)
                continue
            for i, (x, y) in enumerate(zip(a[col].tolist(), b[col].tolist())):
                if pd.isna(x) or pd.isna(y):
                    assert pd.isna(x) and pd.isna(y), (name, col, i, x, y)
                else:
                    close(x, y, (name, col, i), rtol, atol)


def run_both(ss, ds, hooks=None):
    hooks = hooks or [None] * len(ss)
    fused = [TrialRecorder(s.trial_id, on_eval=h) for s, h in zip(ss, hooks)]
    rows = run_fused(ss, ds, CPU, fused)
    plain = []
    for s, h in zip(ss, hooks):
        rec = TrialRecorder(s.trial_id, on_eval=h)
        run_trial(s, ds, CPU, rec)
        plain.append(rec)
    return rows, fused, plain


@in_float64
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layernorm", ["none", "output", "recurrent"])
def test_fused_trials_record_what_separate_runs_record(tmp_path, cell, layernorm):
    """Four trials (two seeds x two learning rates, dropout 0.1 between the two bidirectional layers)
    trained fused write the same rows as four run_trial calls."""
    ss, ds = specs(tmp_path, {"cell": [cell], "layernorm": [layernorm], "seed": [0, 1], "lr": [1e-3, 3e-3]})
    assert len(ss) == 4 and len(group_specs(ss, 8)) == 1
    rows, fused, plain = run_both(ss, ds)
    assert [r["trial_id"] for r in rows] == [s.trial_id for s in ss]
    for f, p in zip(fused, plain):
        assert_same_tables(f, p)


@in_float64
@pytest.mark.parametrize("lag", [None, 3])
@pytest.mark.parametrize("readout", ["last", "last_valid", "mean", "max"])
def test_every_read_out_with_and_without_a_lag_fuses_as_separate_runs(tmp_path, readout, lag):
    """Each built-in read-out, on texts at position 0 and on texts shifted by a lag (the read-outs and
    the probe then read each text's own span): fused trials write what separate runs write."""
    grid = {"cell": ["gru"], "model.readout": [readout], "seed": [0, 1], **({"lag": [lag]} if lag else {})}
    ss, ds = specs(tmp_path, grid, grad_clip=1.0)
    assert ds.lag == lag and all(s.data.lag == lag and fusable(s) is None for s in ss)
    if lag:  # the texts do not all start at 0: a read-out that ignored the starts would read padding
        assert (ds.train.starts > 0).any()
    rows, fused, plain = run_both(ss, ds)
    assert [r["status"] for r in rows] == ["complete", "complete"]
    for f, p in zip(fused, plain):
        assert_same_tables(f, p)


@in_float64
def test_per_trial_dropout_init_forget_bias_and_clip(tmp_path):
    ss, ds = specs(tmp_path, {"cell": ["lstm"], "model.dropout": [0.0, 0.5], "model.init": ["xavier", "default"],
                              "model.forget_bias": [0.0, 1.0]}, grad_clip=0.5)
    ss = ss[::3] + ss[1:3]  # 4 of the 8, mixing all three
    rows, fused, plain = run_both(ss, ds)
    for f, p in zip(fused, plain):
        assert_same_tables(f, p)


@in_float64
def test_stopping_one_trial_leaves_the_others_as_separate_runs(tmp_path):
    """Trial 1 is pruned at its first evaluation, trial 2 diverges, trial 3 stops early: each row and
    table is what its own run_trial writes, and trial 0 runs to its budget."""
    # lr 1e308: in float64 (in_float64) a step of 1e37 leaves the loss finite; 1e308 overflows it.
    ss, ds = specs(tmp_path, {"cell": ["gru"], "seed": [0, 1], "lr": [1e-3, 1e308]}, epochs=3)
    # seeds x lr: [s0 1e-3, s0 1e308, s1 1e-3, s1 1e308]; make the 4th a normal trial with early stopping.
    ss[3].train.lr, ss[3].train.require_improvement = 0.1, 2  # dev loss rises at step 6
    ss = [ss[0], ss[2], ss[1], ss[3]]
    hooks = [None, lambda step, acc: True, None, None]
    rows, fused, plain = run_both(ss, ds, hooks)
    assert [r["stop_reason"] for r in rows] == ["budget", "pruned", "diverged", "early_stop"]
    assert [r["status"] for r in rows] == ["complete", "pruned", "diverged", "complete"]
    assert rows[2]["error"] == "non-finite training loss at step 2"
    assert [r["steps"] for r in rows] == [12, 2, 2, 6]
    for f, p in zip(fused, plain):
        assert_same_tables(f, p)


@in_float64
def test_stop_at_target_stops_only_the_trial_that_reached_it(tmp_path):
    ss, ds = specs(tmp_path, {"cell": ["lstm"], "seed": [0, 1]}, epochs=3)
    ss[0].train.stop_at_target, ss[0].train.target_dev_acc = True, 0.0      # reached at the first evaluation
    rows, fused, plain = run_both(ss, ds)
    assert [r["stop_reason"] for r in rows] == ["target", "budget"]
    assert [r["steps"] for r in rows] == [2, 12]
    for f, p in zip(fused, plain):
        assert_same_tables(f, p)


@in_float64
def test_a_group_of_one_is_a_plain_trial(tmp_path):
    ss, ds = specs(tmp_path, {"cell": ["rnn"], "layernorm": ["output"]})
    _, fused, plain = run_both(ss, ds)
    assert_same_tables(fused[0], plain[0])


def test_bf16_fused_trials_run_and_record_finite_numbers(tmp_path):
    ss, ds = specs(tmp_path, {"cell": ["lstm"], "seed": [0, 1]}, precision="bf16")
    recs = [TrialRecorder(s.trial_id) for s in ss]
    rows = run_fused(ss, ds, CPU, recs)
    for r in rows:
        assert r["status"] == "complete" and math.isfinite(r["test_loss"]) and r["precision"] == "bf16"


def test_fusable_key_and_groups(tmp_path):
    ss, _ = specs(tmp_path, {"cell": ["rnn", "lstm"], "seed": [0, 1, 2], "lr": [1e-3, 2e-3]})
    by_cell = {c: [s for s in ss if s.model.cell == c] for c in ("rnn", "lstm")}
    assert len({fusable_key(s) for s in by_cell["rnn"]}) == 1
    assert fusable_key(by_cell["rnn"][0]) != fusable_key(by_cell["lstm"][0])
    groups = group_specs(ss, 4)
    assert [len(g) for g in groups] == [4, 2, 4, 2]
    assert all(len({s.model.cell for s in g}) == 1 for g in groups)
    assert [s for g in groups for s in g] == ss  # the grid lists rnn's 6 trials, then lstm's
    assert [len(g) for g in group_specs(ss, 1)] == [1] * 12
    with pytest.raises(ValueError, match="at least 1"):
        group_specs(ss, 0)


def test_run_fused_refuses_trials_of_different_shapes(tmp_path):
    ss, ds = specs(tmp_path, {"cell": ["rnn", "lstm"]})
    with pytest.raises(ValueError, match="model.cell"):
        run_fused(ss, ds, CPU, [TrialRecorder(s.trial_id) for s in ss])


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="torch sees no CUDA device: fused trials on CUDA run only on a GPU machine")


@needs_cuda
@pytest.mark.parametrize("cell,layernorm", [("lstm", "none"), ("gru", "recurrent")])
def test_fused_trials_on_cuda_match_separate_runs(tmp_path, cell, layernorm):
    """On CUDA with dropout 0 (CUDA dropout masks cannot match an unfused run's), fused trials
    record what separate CUDA runs record (cuDNN vs the batched loop: a looser tolerance)."""
    ss, ds = specs(tmp_path, {"cell": [cell], "layernorm": [layernorm], "seed": [0, 1], "model.dropout": [0.0]})
    cuda = torch.device("cuda")
    fused = [TrialRecorder(s.trial_id) for s in ss]
    rows = run_fused(ss, ds, cuda, fused)
    assert all(r["status"] == "complete" and r["device"].startswith("cuda") for r in rows)
    for s, f in zip(ss, fused):
        rec = TrialRecorder(s.trial_id)
        run_trial(s, ds, cuda, rec)
        a, b = f.tables()["curves"], rec.tables()["curves"]
        assert list(a.columns) == list(b.columns) and a["step"].tolist() == b["step"].tolist()
        for col in ("train_loss", "dev_loss"):
            assert a[col].tolist() == pytest.approx(b[col].tolist(), rel=5e-3, abs=1e-3), col
