"""The trainer on tiny trials: determinism, divergence, failure, convergence bookkeeping."""

import functools
import math
import os
import subprocess
import sys
import time

import pytest
import torch
from conftest import tiny_raw

import harness.train as train_mod
from harness import data as data_mod
from harness.config import config_from_dict, expand_grid
from harness.models import build_model
from harness.records import TrialRecorder
from harness.runner import execute
from harness.train import ParamGroups, PhaseClock, Seeds, run_trial, train_step


def one(tmp_path, **over):
    raw = tiny_raw(grid={"cell": ["lstm"], "pad_size": [12]})
    for section, values in over.items():
        raw.setdefault(section, {}).update(values)
    cfg = config_from_dict(raw)
    cache = tmp_path / "cache"
    _, data_id = data_mod.prepare(cfg.data, cache)
    spec = expand_grid(cfg, data_id)[0]
    return spec, data_mod.load(spec.data, cache)


def test_same_trial_twice_gives_identical_numbers(tmp_path):
    spec, ds = one(tmp_path)
    a, b = TrialRecorder("a"), TrialRecorder("b")
    ra = run_trial(spec, ds, torch.device("cpu"), a)
    rb = run_trial(spec, ds, torch.device("cpu"), b)
    for key in ("test_acc", "test_loss", "best_dev_acc", "grad_norm_init", "grad_norm_final",
                "vanishing_ratio_init", "vanishing_ratio_final", "steps"):
        assert ra[key] == rb[key], key
    ca, cb = a.tables()["curves"], b.tables()["curves"]
    assert ca["train_loss"].tolist() == cb["train_loss"].tolist()
    assert a.tables()["grad_time"]["grad_norm"].tolist() == b.tables()["grad_time"]["grad_norm"].tolist()


def test_records_every_table_consistently(tmp_path):
    spec, ds = one(tmp_path, train={"epochs": 2})
    rec = TrialRecorder(spec.trial_id)
    row = run_trial(spec, ds, torch.device("cpu"), rec)
    t = rec.tables()
    steps_per_epoch = math.ceil(256 / 64)
    assert row["status"] == "complete" and row["steps"] == 2 * steps_per_epoch
    assert t["curves"]["step"].tolist() == [2, 4, 6, 8]
    assert t["curves"]["samples_seen"].tolist() == [128, 256, 384, 512]
    # target 0 is reached at the first evaluation.
    assert row["steps_to_target"] == 2 and row["samples_to_target"] == 128
    groups = ["embedding", "rnn.l0", "rnn.l1", "fc"]
    assert t["grad_norms"]["group"].tolist() == groups * 4
    assert (t["grad_norms"]["update_ratio"] > 0).all()
    # grad_time: step 0, one log-spaced step, the end; layers input, rnn.l0, rnn.l1; 12 positions.
    gt = t["grad_time"]
    assert sorted(gt["step"].unique()) == [0, 3, 8]
    assert len(gt) == 3 * 3 * 12
    assert gt["pad_fraction"].between(0, 1).all()
    assert t["confusion"]["count"].sum() == 64
    assert row["test_acc"] == pytest.approx(
        t["confusion"].query("true_label == pred_label")["count"].sum() / 64)
    assert math.isfinite(row["vanishing_ratio_init"]) and row["grad_norm_init"] > 0


def test_nan_trial_is_diverged_and_recorded(tmp_path):
    spec, ds = one(tmp_path, train={"lr": 1.0e37, "epochs": 3})
    row = execute(spec, ds, torch.device("cpu"), tmp_path / "out", {})
    assert row["status"] == "diverged"
    assert row["error"] == "non-finite training loss at step 2"
    assert row["test_acc"] is None


def test_exception_is_recorded_as_failed(tmp_path):
    spec, ds = one(tmp_path, train={"batch_size": 1000, "drop_last": True})
    row = execute(spec, ds, torch.device("cpu"), tmp_path / "out", {})
    assert row["status"] == "failed"
    assert "batch_size" in row["error"]


def test_early_stop_and_max_steps(tmp_path):
    spec, ds = one(tmp_path, train={"epochs": 5, "max_steps": 6})
    row = run_trial(spec, ds, torch.device("cpu"), TrialRecorder("x"))
    assert row["steps"] == 6 and row["stop_reason"] == "budget"
    spec, ds = one(tmp_path, train={"epochs": 50, "require_improvement": 2, "lr": 1e-9})
    row = run_trial(spec, ds, torch.device("cpu"), TrialRecorder("x"))
    assert row["stop_reason"] == "early_stop" and row["steps"] < 50 * 4


def test_stop_at_target_ends_the_trial_at_the_first_evaluation_that_reaches_it(tmp_path):
    # target 0.0: the first evaluation (step 2) reaches it.
    spec, ds = one(tmp_path, train={"epochs": 3, "stop_at_target": True})
    rec = TrialRecorder("x")
    row = run_trial(spec, ds, torch.device("cpu"), rec)
    assert row["stop_reason"] == "target" and row["steps"] == 2 and row["steps_to_target"] == 2
    assert row["status"] == "complete" and row["test_acc"] is not None
    assert rec.tables()["curves"]["step"].tolist() == [2]
    # unreachable target: the flag changes nothing, the trial runs its budget.
    spec, ds = one(tmp_path, train={"epochs": 1, "stop_at_target": True, "target_dev_acc": 1.0})
    row = run_trial(spec, ds, torch.device("cpu"), TrialRecorder("y"))
    assert row["stop_reason"] == "budget" and row["steps_to_target"] is None


def test_stop_at_target_off_keeps_the_trial_ids(tmp_path):
    off, _ = one(tmp_path)
    explicit_off, _ = one(tmp_path, train={"stop_at_target": False})
    on, _ = one(tmp_path, train={"stop_at_target": True})
    assert off.trial_id == explicit_off.trial_id != on.trial_id


def test_seeds_split_by_purpose():
    s = Seeds.from_base(0)
    assert len({s.data_order, s.init, s.dropout}) == 3
    assert Seeds.from_base(0) == s and Seeds.from_base(1) != s


def test_instrument_off_keeps_curves_only(tmp_path):
    spec, ds = one(tmp_path, train={"instrument": False})
    on_spec, _ = one(tmp_path)
    rec, rec_on = TrialRecorder("x"), TrialRecorder("y")
    row = run_trial(spec, ds, torch.device("cpu"), rec)
    row_on = run_trial(on_spec, ds, torch.device("cpu"), rec_on)
    t = rec.tables()
    assert len(t["grad_norms"]) == 0 and len(t["grad_time"]) == 0 and len(t["curves"]) == 2
    assert t["curves"]["grad_norm"].isna().all()
    assert row["vanishing_ratio_init"] is None and row["grad_norm_init"] is None
    # Recording observes and never changes the training: the same losses either way.
    assert t["curves"]["train_loss"].tolist() == rec_on.tables()["curves"]["train_loss"].tolist()
    assert row["test_acc"] == row_on["test_acc"]


def test_time_is_split_by_phase(tmp_path):
    """train_s, eval_s and probe_s are disjoint parts of wall_s; instrumented, each is > 0."""
    spec, ds = one(tmp_path, train={"epochs": 2})
    rec = TrialRecorder("x")
    row = run_trial(spec, ds, torch.device("cpu"), rec)
    assert row["train_s"] > 0 and row["eval_s"] > 0 and row["probe_s"] > 0
    assert row["train_s"] + row["eval_s"] + row["probe_s"] <= row["wall_s"]
    assert row["samples_per_s"] == pytest.approx(row["steps"] * 64 / row["train_s"])
    elapsed = rec.tables()["curves"]["elapsed_s"]
    assert elapsed.is_monotonic_increasing and elapsed.iloc[-1] <= row["train_s"]
    assert row["seconds_to_target"] == elapsed.iloc[0]  # target 0: hit at the first evaluation point
    spec, ds = one(tmp_path, train={"instrument": False})
    row = run_trial(spec, ds, torch.device("cpu"), TrialRecorder("y"))
    assert row["probe_s"] == 0.0 and row["train_s"] > 0 and row["eval_s"] > 0


def test_probe_time_is_not_training_time(tmp_path, monkeypatch):
    """A slow probe (at step 0, one step inside the loop, the end) is charged to probe_s only."""
    original = train_mod._probe

    def slow_probe(*args, **kwargs):
        time.sleep(0.2)
        return original(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_probe", slow_probe)
    spec, ds = one(tmp_path, train={"epochs": 2})
    rec = TrialRecorder("x")
    row = run_trial(spec, ds, torch.device("cpu"), rec)
    assert sorted(rec.tables()["grad_time"]["step"].unique()) == [0, 3, 8]
    assert row["probe_s"] >= 3 * 0.2
    assert row["train_s"] + row["eval_s"] + row["probe_s"] <= row["wall_s"]
    assert row["train_s"] + row["eval_s"] < row["wall_s"] - 3 * 0.2


def test_train_step_norms_and_clipping():
    """The step's per-group squared norms are those of the gradients before clipping, their sum the
    squared total norm; clipping scales the gradients to grad_clip; nothing is read to the host."""
    cfg = config_from_dict(tiny_raw()).model
    torch.manual_seed(0)
    model = build_model(cfg, 20, 3, 19).train()
    groups = ParamGroups.of(model, torch.device("cpu"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = torch.randint(0, 19, (5, 7)), torch.tensor([7, 3, 1, 5, 7]), torch.tensor([0, 1, 2, 1, 0])
    autocast = functools.partial(torch.autocast, "cpu", enabled=False)
    out = train_step(model, opt, batch, autocast, grad_clip=1e-3, groups=groups)
    assert out.loss.shape == () and out.correct.dtype == torch.int64 and 0 <= int(out.correct) <= 5
    assert out.group_sq.shape == (len(groups.names),)
    assert float(out.total_norm) == pytest.approx(float(out.group_sq.sum().sqrt()))
    # After the step the .grad are the clipped gradients: their norm is grad_clip, each group scaled alike.
    grads = [p.grad for p in model.parameters()]
    clipped = groups.squared_norms(grads)
    assert float(clipped.sum().sqrt()) == pytest.approx(1e-3, rel=1e-4)
    scale = (1e-3 / float(out.total_norm)) ** 2
    assert clipped.tolist() == pytest.approx((out.group_sq * scale).tolist(), rel=1e-4)
    by_hand = [0.0] * len(groups.names)
    for g, p in zip(groups.index.tolist(), model.parameters()):
        by_hand[g] += float(p.grad.norm()) ** 2
    assert clipped.tolist() == pytest.approx(by_hand, rel=1e-4)
    plain = train_step(model, opt, batch, autocast)
    assert plain.group_sq is None and plain.total_norm is None


def test_phase_clock_charges_each_phase():
    clock = PhaseClock(torch.device("cpu"))
    clock.switch("train")
    time.sleep(0.02)
    with clock.phase("eval"):
        time.sleep(0.03)
        with clock.phase("probe"):
            time.sleep(0.01)
        assert clock.current == "eval"
    assert clock.current == "train"
    with pytest.raises(RuntimeError), clock.phase("eval"):
        raise RuntimeError
    assert clock.current == "eval"  # an exception leaves the clock in the phase it interrupted
    clock.switch("other")
    s = clock.seconds
    assert s["train"] >= 0.02 and s["eval"] >= 0.03 and s["probe"] >= 0.01
    cols = clock.columns(samples=100)
    assert sum(s.values()) <= cols["wall_s"]
    assert cols["samples_per_s"] == pytest.approx(100 / s["train"])


def test_runs_row_records_the_machine_kind(tmp_path):
    spec, ds = one(tmp_path, train={"epochs": 1})
    row = run_trial(spec, ds, torch.device("cpu"), TrialRecorder(spec.trial_id))
    assert row["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(row["cpu_model"], str) and row["cpu_model"]
    assert row["onednn_version"] is None or row["onednn_version"][0].isdigit()
    if torch.backends.mkldnn.is_available():
        assert f"v{row['onednn_version']}" in torch.__config__.show()
    assert row["cudnn_version"] is None and row["gpu_name"] is None  # a CPU run


def test_onednn_version_is_read_from_the_build_text():
    old = "  - Intel(R) MKL-DNN v3.12.0 (Git Hash 80afa71049cd69a3df32adcccb623b12cd7baa22)\n"
    new = "  - Intel(R) oneDNN v3.7.1 (Git Hash 8d263e693366ef8db40acc569cc7d8edf644556d)\n"
    if torch.backends.mkldnn.is_available():
        assert train_mod.onednn_version(old) == "3.12.0" and train_mod.onednn_version(new) == "3.7.1"
    assert train_mod.onednn_version("  - OpenMP 201511\n") is None


@pytest.mark.slow
def test_cpu_capability_follows_the_environment():
    code = ("import torch; from harness.train import provenance; "
            "print(provenance(torch.device('cpu'))['cpu_capability'])")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "DEFAULT"


def test_a_cpu_evaluates_in_batches_of_at_most_256_rows_and_the_answer_does_not_change(tmp_path, monkeypatch):
    spec, ds = one(tmp_path)
    tc = spec.train
    assert tc.eval_batch_size == 1024
    assert train_mod.eval_batch(tc, torch.device("cpu")) == 256
    assert train_mod.eval_batch(tc, torch.device("cuda")) == 1024  # (only the device type is read)
    used = []
    real = train_mod.evaluate
    monkeypatch.setattr(train_mod, "evaluate", lambda m, s, b, a: used.append(b) or real(m, s, b, a))
    train_mod.run_trial(spec, ds, torch.device("cpu"), TrialRecorder("a"))
    assert used and set(used) == {256}
    # The same model and rows evaluated at 16 and at 1,024 rows per batch: the same prediction wherever
    # the two best logits are not within float32 rounding of each other, the same mean loss up to
    # float32 rounding (a sum of n losses of about ln 10 each).
    model = build_model(spec.model, ds.vocab_size, len(ds.class_names), ds.pad_index).eval()
    split = train_mod.Split(ds.dev, torch.device("cpu"))
    a, b = (real(model, split, n, train_mod.contextlib.nullcontext) for n in (16, 1024))
    x, lengths, *_ = split.batch(slice(0, split.n))
    with torch.no_grad():
        top2 = model(x, lengths).topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4
    assert split.n > 16 and clear.sum() > split.n // 2
    assert torch.equal(a[2][clear], b[2][clear])
    assert a[0] == pytest.approx(b[0], rel=split.n * torch.finfo(torch.float32).eps)
