"""The GPU path, as far as a CPU allows: bf16 autocast trials (autocast works on CPU too), the
device checks, and the CUDA trials themselves (skipped, with the reason, where torch sees no GPU)."""

import math

import pytest
import torch
from conftest import ROOT, tiny_specs

import harness.train as train_mod
from harness.cli import main
from harness.config import ConfigError
from harness.records import TABLES, TrialRecorder
from harness.train import resolve_device, run_trial

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="torch sees no CUDA device: the CUDA trial runs only on a GPU machine")


def specs(tmp_path, grid, **train):
    return tiny_specs(tmp_path, grid, **train)


def finite(x) -> bool:
    return x is not None and math.isfinite(x)


def trial(spec, ds, device) -> tuple[dict, dict]:
    rec = TrialRecorder(spec.trial_id)
    row = run_trial(spec, ds, torch.device(device), rec)
    return row, rec.tables()


@pytest.mark.parametrize("cell,layernorm", [("lstm", "none"), ("rnn", "output"), ("gru", "recurrent")])
def test_bf16_trial_on_cpu_gives_finite_numbers(tmp_path, cell, layernorm):
    (spec,), ds = specs(tmp_path, {"cell": [cell], "layernorm": [layernorm], "pad_size": [12]}, precision="bf16")
    row, t = trial(spec, ds, "cpu")
    assert row["status"] == "complete", row["error"]
    assert row["precision"] == "bf16"
    for key in ("test_loss", "test_acc", "best_dev_acc", "grad_norm_init", "grad_norm_final",
                "vanishing_ratio_init", "vanishing_ratio_final"):
        assert finite(row[key]), key
    assert 0.0 <= row["test_acc"] <= 1.0
    for table, column in (("curves", "train_loss"), ("curves", "dev_loss"), ("grad_norms", "grad_norm"),
                          ("grad_time", "grad_norm")):
        assert t[table][column].map(math.isfinite).all(), (table, column)


def test_bf16_takes_effect(tmp_path):
    """The same trial in fp32 and bf16: same bookkeeping, different numbers (autocast is on)."""
    grid = {"cell": ["lstm"], "pad_size": [12]}
    (a,), ds = specs(tmp_path, grid, precision="fp32")
    (b,), _ = specs(tmp_path, grid, precision="bf16")
    ra, ta = trial(a, ds, "cpu")
    rb, tb = trial(b, ds, "cpu")
    assert ra["steps"] == rb["steps"]
    assert ta["curves"]["step"].tolist() == tb["curves"]["step"].tolist()
    assert ta["curves"]["train_loss"].tolist() != tb["curves"]["train_loss"].tolist()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_one_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda")
    assert main(["run", str(ROOT / "configs" / "smoke.yaml"), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    assert not (tmp_path / "o").exists()  # refused before any work
    assert resolve_device("auto").type == "cpu"


def _capture_splits(monkeypatch) -> list:
    made = []
    original = train_mod.Split.__init__

    def init(self, split, device, *rest):
        original(self, split, device, *rest)
        made.append(self)

    monkeypatch.setattr(train_mod.Split, "__init__", init)
    return made


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_trial_matches_cpu_structure(tmp_path, monkeypatch, precision):
    (spec,), ds = specs(tmp_path, {"cell": ["lstm"], "pad_size": [12]}, precision=precision)
    row_cpu, t_cpu = trial(spec, ds, "cpu")
    splits = _capture_splits(monkeypatch)
    row_gpu, t_gpu = trial(spec, ds, "cuda")
    # The encoded data live on the GPU (train, dev, test), sliced there by index.
    assert len(splits) == 3
    assert all(s.tokens.device.type == s.lengths.device.type == s.labels.device.type == "cuda" for s in splits)
    assert row_gpu["status"] == "complete", row_gpu["error"]
    assert row_gpu["device"].startswith("cuda")
    assert set(row_gpu) == set(row_cpu)
    assert row_gpu["steps"] == row_cpu["steps"]
    for name in TABLES:
        assert list(t_gpu[name].columns) == list(t_cpu[name].columns), name
        assert len(t_gpu[name]) == len(t_cpu[name]), name
    for key in ("test_loss", "grad_norm_init", "vanishing_ratio_final"):
        assert finite(row_gpu[key]), key


@needs_cuda
def test_cuda_rnn_and_recurrent_layernorm(tmp_path):
    ss, ds = specs(tmp_path, {"cell": ["rnn", "gru"], "layernorm": ["none", "recurrent"], "pad_size": [12]},
                   precision="bf16")
    for spec in ss:
        row, _ = trial(spec, ds, "cuda")
        assert row["status"] == "complete", (spec.factors, row["error"])
        assert finite(row["test_loss"]), spec.factors
