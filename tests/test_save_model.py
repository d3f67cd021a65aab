"""train.save_model (none | best | last): a trial's weights kept beside its shards as
DIR/trials/<trial_id>/model.pt, named by the runs column model_file, staged and published with the
shards; an execution setting (no trial id changes, no grid axis)."""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path

import pytest
import torch
import yaml
from conftest import PARITY_RTOL, tiny_raw, tiny_specs

from harness import records, runner
from harness.config import ConfigError, config_from_dict, expand_grid
from harness.ledger import Split
from harness.models import build_model
from harness.records import MODEL_FILE, TrialRecorder
from harness.train import evaluate, run_trial

CPU = torch.device("cpu")
# 256 training titles in batches of 32: 24 steps, an evaluation every 3. At lr 0.01 the RNN's lowest dev
# loss comes before its last step (step 12 of 24 on the machines measured), so best and last differ.
TRAIN = {"epochs": 3, "batch_size": 32, "eval_every": 3, "lr": 0.01}
GRID = {"cell": ["rnn"], "pad_size": [12]}


def _no_autocast() -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def fresh_model(spec, ds, path: Path) -> torch.nn.Module:
    """A model built anew from the spec (unseeded: its own weights are overwritten), loaded from `path`."""
    model = build_model(spec.model, ds.vocab_size, len(ds.class_names), ds.pad_index, ds.embeddings)
    model.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    return model


def scores(model, ds, split: str, spec) -> tuple[float, float]:
    """(loss, accuracy) of `model` on a split, as the trainer evaluates."""
    loss, acc, _ = evaluate(model, Split(getattr(ds, split), CPU), spec.train.eval_batch_size, _no_autocast)
    return loss, acc


def trained(tmp_path: Path, save_model: str, grid=GRID, **train):
    """One trial trained with train.save_model and written (staged, then published) into tmp_path/res."""
    specs, ds = tiny_specs(tmp_path, grid, **{**TRAIN, **train}, save_model=save_model)
    spec = specs[0]
    recorder = TrialRecorder(spec.trial_id)
    row = run_trial(spec, ds, CPU, recorder)
    out = tmp_path / "res"
    records.write_trial(out, spec.trial_id, recorder.tables(), recorder.weights)
    return spec, ds, row, recorder, out


def test_best_keeps_the_weights_the_test_accuracy_was_measured_with(tmp_path):
    spec, ds, row, recorder, out = trained(tmp_path, "best")
    assert row["status"] == "complete" and row["best_step"] < row["steps"]  # best and last differ here
    assert row["model_file"] == f"trials/{spec.trial_id}/{MODEL_FILE}"
    path = out / row["model_file"]
    assert path.is_file()
    model = fresh_model(spec, ds, path)
    test_loss, test_acc = scores(model, ds, "test", spec)
    assert test_acc == row["test_acc"] and test_loss == pytest.approx(row["test_loss"], rel=1e-12)
    # ... and they are the lowest-dev-loss weights: their dev loss is the lowest of the curve, at best_step.
    curves = recorder.rows["curves"]
    lowest = min(curves, key=lambda c: c["dev_loss"])
    assert lowest["step"] == row["best_step"]
    dev_loss, dev_acc = scores(model, ds, "dev", spec)
    assert dev_loss == pytest.approx(lowest["dev_loss"], rel=1e-12) and dev_acc == lowest["dev_acc"]
    assert records.load(out).runs["model_file"].tolist() == [row["model_file"]]


def test_last_keeps_the_weights_after_the_last_step(tmp_path, monkeypatch):
    from harness import train as train_mod

    seen = {}
    test = train_mod._test

    def spy(model, state, *a, **kw):  # the model as training left it, before the test loads the best weights
        seen["last"] = copy.deepcopy(model.state_dict())
        return test(model, state, *a, **kw)

    monkeypatch.setattr(train_mod, "_test", spy)
    spec, ds, row, recorder, out = trained(tmp_path, "last")
    assert row["best_step"] < row["steps"]
    saved = torch.load(out / row["model_file"], weights_only=True)["state_dict"]
    assert list(saved) == list(seen["last"])
    for name, t in seen["last"].items():
        assert torch.equal(saved[name], t), name
    # The last evaluation is at the last step: the saved weights score what the curve's last row says.
    last = recorder.rows["curves"][-1]
    assert last["step"] == row["steps"]
    dev_loss, dev_acc = scores(fresh_model(spec, ds, out / row["model_file"]), ds, "dev", spec)
    assert dev_loss == pytest.approx(last["dev_loss"], rel=1e-12) and dev_acc == last["dev_acc"]
    # ... and they are not the best ones (the test accuracy's).
    best = scores(fresh_model(spec, ds, out / row["model_file"]), ds, "test", spec)
    assert best != (row["test_loss"], row["test_acc"])


def test_none_writes_nothing(tmp_path):
    spec, ds, row, recorder, out = trained(tmp_path, "none")
    assert recorder.weights is None and row["model_file"] is None
    assert sorted(p.name for p in (out / "trials" / spec.trial_id).iterdir()) == sorted(
        f"{t}.parquet" for t in records.TABLES)
    assert records.load(out).runs["model_file"].isna().all()


def test_model_file_names_a_file_only_where_there_is_one(tmp_path):
    # A row that says model_file without weights to write (a trial recorded failed after its end) gets null.
    spec, ds, row, recorder, out = trained(tmp_path, "best")
    records.write_trial(out, spec.trial_id, recorder.tables(), None)
    assert records.load(out).runs["model_file"].isna().all()
    assert not (out / "trials" / spec.trial_id / MODEL_FILE).exists()


def test_weights_are_staged_and_published_with_the_shards(tmp_path):
    from harness.storage import pid_alive

    spec, ds, row, recorder, out = trained(tmp_path, "last")
    tid = spec.trial_id
    # Staged: in the hidden staged folder, nothing published yet; the loaders do not see it.
    other = "0" * 12  # a second trial, staged by this process
    tables = {t: df.assign(trial_id=other) for t, df in recorder.tables().items()}
    staged = records.stage_trial(out, other, tables, recorder.weights)
    assert staged == records.staged_path(out, other) and (staged / MODEL_FILE).is_file()
    assert records.find_model(out, other) == staged / MODEL_FILE
    assert not records.trial_dir(out, other).exists()
    # Published: the folder renamed whole, weights and all.
    records.publish_trial(staged, out, other)
    assert (records.trial_dir(out, other) / MODEL_FILE).is_file() and not staged.exists()
    assert records.find_model(out, other) == records.trial_dir(out, other) / MODEL_FILE
    # A killed worker's staged folder is removed with its weights.
    dead = next(p for p in range(2**22, 2**22 + 1000) if not pid_alive(p))
    staged = records.stage_trial(out, tid, recorder.tables(), recorder.weights)
    orphan = staged.with_name(staged.name.replace(f"@{os.getpid()}@", f"@{dead}@"))
    os.rename(staged, orphan)
    assert records.remove_orphan_stages(out) == 1 and not orphan.exists()
    # The weights file is no damage: status and quarantine leave the folder; load and combine ignore it.
    assert records.verify_trial(out, tid) is None
    assert records.quarantine_damaged(out) == [] and (records.trial_dir(out, tid) / MODEL_FILE).is_file()
    assert len(records.load(out).runs) == 2 and len(records.combine(out)["runs"]) == 2


def test_save_model_is_not_part_of_trial_ids_nor_a_grid_axis(tmp_path):
    # The ids of the version before the key existed (golden, as tests/test_checkpoint.py has them).
    for value in ("none", "best", "last"):
        raw = tiny_raw(grid={"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0, 1]})
        raw["train"]["save_model"] = value
        assert [s.trial_id for s in expand_grid(config_from_dict(raw), "d0")] == [
            "ed76e17c9312", "9a2dd16e43c9", "15209e5eaa6f", "84e04aada8a7"]
    assert config_from_dict(tiny_raw()).train.save_model == "none"
    with pytest.raises(ConfigError, match="train.save_model' cannot vary"):
        config_from_dict(tiny_raw(grid={"cell": ["rnn"], "train.save_model": ["best", "last"]}))
    raw = tiny_raw()
    raw["train"]["save_model"] = "final"
    with pytest.raises(ConfigError, match=r"config key 'train.save_model': 'final' is not allowed; allowed: none, "
                                          r"best, last"):
        config_from_dict(raw)


def test_results_from_before_save_model_existed_resume(tmp_path):
    from harness.plan import check_compatible, make_plan, write_config

    raw = tiny_raw("sm", GRID)
    plan = make_plan(config_from_dict(raw), tmp_path)
    write_config(plan)
    old = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert old["train"].pop("save_model") == "none"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    check_compatible(plan)  # no complaint
    raw["train"] = {**raw["train"], "save_model": "best"}
    check_compatible(make_plan(config_from_dict(raw), tmp_path))  # no complaint either


@pytest.mark.usefixtures("float64")
@pytest.mark.parametrize("save_model", ["best", "last"])
def test_a_fused_group_writes_each_trial_what_it_writes_unfused(tmp_path, save_model):
    # Fused parity runs in float64 (conftest.float64); the weights agree to PARITY_RTOL as the tables do.
    specs, ds = tiny_specs(tmp_path, {"cell": ["lstm"], "pad_size": [12], "seed": [0, 1]}, **TRAIN,
                           save_model=save_model)
    assert len(specs) == 2
    fused_out, plain_out = tmp_path / "fused", tmp_path / "plain"
    recorders = [TrialRecorder(s.trial_id) for s in specs]
    rows = runner.execute_fused(specs, ds, CPU, fused_out, {}, recorders)
    assert [r["status"] for r in rows] == ["complete", "complete"]
    for spec, row in zip(specs, rows):
        plain = TrialRecorder(spec.trial_id)
        plain_row = run_trial(spec, ds, CPU, plain)
        records.write_trial(plain_out, spec.trial_id, plain.tables(), plain.weights)
        assert row["model_file"] == plain_row["model_file"] == f"trials/{spec.trial_id}/{MODEL_FILE}"
        a = torch.load(fused_out / row["model_file"], weights_only=True)["state_dict"]
        b = torch.load(plain_out / plain_row["model_file"], weights_only=True)["state_dict"]
        assert list(a) == list(b)
        for name in a:
            assert a[name].dtype == b[name].dtype == torch.float64, name
            torch.testing.assert_close(a[name], b[name], rtol=PARITY_RTOL, atol=1e-12, msg=name)
        if save_model == "best":  # the fused trial's test accuracy is that of its kept weights too
            model = fresh_model(spec, ds, fused_out / row["model_file"])
            assert scores(model, ds, "test", spec)[1] == row["test_acc"]
    assert records.load(fused_out).runs["model_file"].notna().all()


def test_a_run_keeps_the_weights_of_every_trial(tmp_path):
    raw = tiny_raw("smrun", {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0]})
    raw["train"]["save_model"] = "best"
    out = tmp_path / "res"
    counts = runner.run(config_from_dict(raw), out, workers=1, device="cpu", threads=1, progress=False)
    assert counts["complete"] == 2
    runs = records.load(out).runs
    assert runs["model_file"].tolist() == [f"trials/{t}/{MODEL_FILE}" for t in runs["trial_id"]]
    assert all((out / f).is_file() for f in runs["model_file"])
    assert not list((out / "trials").glob(f"{records.STAGED_PREFIX}*"))  # all published
    assert not list((out / "trials").glob(".ckpt-*"))  # checkpoints (none here) never outlive a trial
    # Run again with another save_model: the folder resumes (nothing to run), no trial is refused.
    raw["train"]["save_model"] = "last"
    again = runner.run(config_from_dict(raw), out, workers=1, device="cpu", threads=1, progress=False)
    assert again["complete"] == 2 and again["missing"] == 0
    # harness status names a kept weights file that cannot be used: missing, or not loadable (issue 29).
    from harness.status import format_status, status

    assert status(out)["models"] == []
    first, second = runs["model_file"]
    (out / first).write_bytes(os.urandom(100))
    (out / second).unlink()
    info = status(out)
    assert [(m["model_file"], m["problem"]) for m in info["models"]] == [
        (first, "not a torch file (not the zip archive torch.save writes)"), (second, "missing")]
    text = format_status(info)
    assert "kept weights that cannot be used (train.save_model):" in text and f"{second}: missing" in text


def test_kept_weights_travel_through_the_artifact_store(tmp_path):
    # A trial fetched from the artifact store (finished into another results folder) comes with its
    # weights file, byte for byte, as its shards do.
    import shutil

    from harness.storage import download_artifacts

    raw = tiny_raw("smart", {"cell": ["rnn"], "pad_size": [12], "seed": [0]})
    raw["train"]["save_model"] = "last"
    out = tmp_path / "res"
    runner.run(config_from_dict(raw), out, workers=1, device="cpu", threads=1, progress=False,
               artifacts=str(tmp_path / "store"))
    (tid,) = records.load(out).runs["trial_id"]
    kept = (out / "trials" / tid / MODEL_FILE).read_bytes()
    shutil.rmtree(out / "trials" / tid)  # as a folder that never had it
    assert download_artifacts(out) == 1
    assert (out / "trials" / tid / MODEL_FILE).read_bytes() == kept
    assert records.load(out).runs["model_file"].tolist() == [f"trials/{tid}/{MODEL_FILE}"]
