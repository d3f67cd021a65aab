"""train.cuda_graph (harness.fused_step): the static-buffer step trains exactly as the plain fused step
(on a CPU, where it runs eagerly), the key keeps old trial ids and forces drop_last, `harness run`
refuses it without CUDA, and on a GPU the replayed graph matches the eager step."""

import pandas as pd
import pytest
import torch
from conftest import tiny_raw, tiny_specs

from harness import runner
from harness.config import ConfigError, config_from_dict
from harness.fused_step import WARMUP, FusedStep
from harness.records import TABLES, TrialRecorder
from harness.train_fused import _FusedRun, fusable_key, run_fused

CPU = torch.device("cpu")
TIMING = ["wall_s", "train_s", "eval_s", "probe_s", "samples_per_s", "seconds_to_target", "elapsed_s"]


def specs(tmp_path, grid, **train):
    return tiny_specs(tmp_path, {"pad_size": [12], **grid}, **train)


def tables(ss, ds, device=CPU):
    recs = [TrialRecorder(s.trial_id) for s in ss]
    run_fused(ss, ds, device, recs)
    return [{name: r.tables()[name].drop(columns=["trial_id", "started_at", *TIMING], errors="ignore")
             for name in TABLES} for r in recs]


# A grid that exercises the step: LSTM with dropout, two seeds x a normal and a diverging learning
# rate (with one trial stopping early, the active mask changes in place mid-run), a clip limit, 256
# examples in batches of 48 (a partial last batch that drop_last drops), three epochs.
GRID = {"cell": ["lstm"], "seed": [0, 1], "lr": [1e-3, 1e37]}
TRAIN = {"batch_size": 48, "epochs": 3, "grad_clip": 1.0}


def test_the_static_step_trains_exactly_as_the_plain_step_with_drop_last(tmp_path):
    graph, ds = specs(tmp_path, GRID, cuda_graph=True, **TRAIN)
    plain, _ = specs(tmp_path, GRID, drop_last=True, **TRAIN)
    assert all(s.train.drop_last and s.train.cuda_graph for s in graph)  # forced by the key
    graph[2].train.require_improvement = plain[2].train.require_improvement = 2  # stops early: its mask
    run = _FusedRun(graph, ds, CPU, [TrialRecorder(s.trial_id) for s in graph])
    assert run.step_fn.static and not run.step_fn.capture
    a, b = tables(graph, ds), tables(plain, ds)
    runs = a[0]["runs"]
    assert runs["steps"].tolist() == [15] and runs["status"].tolist() == ["complete"]  # 3 x (256 // 48)
    assert [t["runs"]["stop_reason"].item() for t in a] == ["budget", "diverged", "early_stop", "diverged"]
    for ta, tb in zip(a, b):
        for name in TABLES:
            pd.testing.assert_frame_equal(ta[name], tb[name], check_exact=True, obj=name)


def test_cuda_graph_forces_drop_last_and_keeps_the_ids_of_trials_without_it(tmp_path):
    base, _ = specs(tmp_path, {"cell": ["rnn"]})
    off, _ = specs(tmp_path, {"cell": ["rnn"]}, cuda_graph=False)
    axis, _ = specs(tmp_path, {"cell": ["rnn"], "train.cuda_graph": [False, True]})
    assert not base[0].train.drop_last and not base[0].train.cuda_graph
    assert off[0].trial_id == base[0].trial_id == axis[0].trial_id
    assert axis[1].trial_id != base[0].trial_id
    assert axis[1].train.drop_last and not axis[0].train.drop_last
    assert fusable_key(axis[0]) != fusable_key(axis[1])  # graph and eager trials never share a group


def test_the_static_step_refuses_a_batch_of_another_shape(tmp_path):
    ss, ds = specs(tmp_path, {"cell": ["gru"]}, cuda_graph=True)
    step = _FusedRun(ss, ds, CPU, [TrialRecorder(ss[0].trial_id)]).step_fn
    x, n, y = (torch.from_numpy(a[:8]).unsqueeze(0) for a in (ds.train.tokens, ds.train.lengths, ds.train.labels))
    assert torch.isfinite(step(x, n, y).losses).all()
    with pytest.raises(ValueError, match="train.cuda_graph.*drop_last"):
        step(x[:, :4], n[:, :4], y[:, :4])
    with pytest.raises(ValueError, match="CUDA device"):
        FusedStep(step.model, step.optimizer, step.active, step.norms_and_clip, step.autocast, static=True,
                  capture=True)


@pytest.mark.parametrize("where", ["train", "grid"])
def test_harness_run_refuses_cuda_graph_without_cuda_before_any_work(tmp_path, where):
    raw = tiny_raw()
    if where == "train":
        raw["train"]["cuda_graph"] = True
    else:
        raw["grid"]["train.cuda_graph"] = [False, True]
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="train.cuda_graph.*CUDA device.*cpu"):
        runner.run(config_from_dict(raw), out, device="cpu", threads=1, progress=False)
    assert not out.exists()


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="torch sees no CUDA device: CUDA graphs are captured only on a GPU machine")


@needs_cuda
@pytest.mark.parametrize("cell,layernorm", [("lstm", "none"), ("gru", "recurrent")])
def test_graph_replay_matches_the_eager_step_on_cuda(tmp_path, cell, layernorm):
    """Two identical fused runs (dropout 0.1 from per-trial generators, clipping): one steps eagerly,
    the other through the captured graph; after the warm-up, 5 replayed steps give the same losses and
    parameters (the graph replays the eager kernels; dropout streams advance as eagerly)."""
    cuda = torch.device("cuda")
    ss, ds = specs(tmp_path, {"cell": [cell], "layernorm": [layernorm], "seed": [0, 1]}, cuda_graph=True,
                   grad_clip=0.5)
    graphed = _FusedRun(ss, ds, cuda, [TrialRecorder(s.trial_id) for s in ss])
    eager = _FusedRun(ss, ds, cuda, [TrialRecorder(s.trial_id) for s in ss])
    eager.step_fn.capture = False  # the same static step, never captured
    g = torch.Generator().manual_seed(0)
    for i in range(WARMUP + 5):
        idx = torch.randint(0, ds.train.tokens.shape[0], (2, 16), generator=g).to(cuda)
        batch = graphed.train.tokens[idx], graphed.train.lengths[idx], graphed.train.labels[idx]
        a, b = graphed.step_fn(*batch), eager.step_fn(*batch)
        torch.testing.assert_close(a.losses, b.losses, rtol=1e-5, atol=1e-6, msg=f"step {i + 1}")
        torch.testing.assert_close(a.total_norm, b.total_norm, rtol=1e-4, atol=1e-6, msg=f"step {i + 1}")
    assert graphed.step_fn.graph is not None and eager.step_fn.graph is None
    for p, q in zip(graphed.params, eager.params):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@needs_cuda
def test_a_graphed_fused_run_records_what_an_eager_one_records(tmp_path):
    """run_fused with train.cuda_graph on CUDA (evaluations and probes between replays) against the
    same trials eagerly with drop_last: the same curves to float tolerance."""
    cuda = torch.device("cuda")
    graph, ds = specs(tmp_path, GRID, cuda_graph=True, **TRAIN)
    plain, _ = specs(tmp_path, GRID, drop_last=True, **TRAIN)
    a, b = tables(graph, ds, cuda), tables(plain, ds, cuda)
    for ta, tb in zip(a, b):
        assert ta["runs"]["status"].tolist() == tb["runs"]["status"].tolist()
        ca, cb = ta["curves"], tb["curves"]
        assert ca["step"].tolist() == cb["step"].tolist()
        for col in ("train_loss", "dev_loss", "dev_acc"):
            assert ca[col].tolist() == pytest.approx(cb[col].tolist(), rel=1e-4, abs=1e-5, nan_ok=True), col
