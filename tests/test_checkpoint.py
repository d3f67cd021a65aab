"""Checkpoints inside a trial (`train.checkpoint_every`): a trial interrupted after a checkpoint and
started again with the same checkpoint path ends bit-identical to an uninterrupted run (timings aside);
the setting is an execution detail, left out of trial ids and of the settings a resumed results
directory must keep."""

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import tiny_raw, tiny_specs

from harness import records, runner
from harness.config import ConfigError, config_from_dict, expand_grid
from harness.records import TrialRecorder
from harness.train import checkpoint_path, run_trial

# 256 training titles, batches of 32: 8 steps an epoch, 24 in all; dev evaluations every 3 steps;
# checkpoints every 5 (mid-interval, mid-epoch: the running sums and the data order must be restored).
TRAIN = {"epochs": 3, "batch_size": 32, "eval_every": 3, "probe_points": 3}
TIMING = {"runs": ["wall_s", "train_s", "eval_s", "probe_s", "samples_per_s", "started_at", "seconds_to_target"],
          "curves": ["elapsed_s"]}


class Interrupted(Exception):
    """Stands for Ctrl-C / kill -9 / a requeue in the middle of a trial."""


def interrupt_at(at: int):
    """A recorder hook that interrupts the trial at its evaluation point `at`."""
    def on_eval(step: int, dev_acc: float) -> bool:
        if step == at:
            raise Interrupted(f"step {at}")
        return False
    return on_eval


def tables(recorder: TrialRecorder) -> dict[str, pd.DataFrame]:
    """The recorder's tables without the timings and resumed_from_step (what a resume may change)."""
    skip = {t: [*TIMING.get(t, []), *(["resumed_from_step"] if t == "runs" else [])] for t in recorder.rows}
    return {t: df.drop(columns=[c for c in skip[t] if c in df.columns]) for t, df in recorder.tables().items()}


def assert_same_tables(a: TrialRecorder, b: TrialRecorder) -> None:
    ta, tb = tables(a), tables(b)
    assert set(ta) == set(tb)
    for t in ta:
        assert len(ta[t]) > 0, t
        pd.testing.assert_frame_equal(ta[t], tb[t], check_exact=True, obj=t)


@pytest.mark.parametrize("cell,interrupt,ckpt_every", [("rnn", 12, 5), ("lstm", 12, 5), ("lstm", 18, 8)])
def test_a_trial_resumed_from_its_checkpoint_ends_bit_identical(tmp_path, cell, interrupt, ckpt_every, capsys):
    specs, ds = tiny_specs(tmp_path, {"cell": [cell], "pad_size": [12]}, **TRAIN, checkpoint_every=ckpt_every)
    spec = specs[0]
    assert spec.model.dropout > 0 and spec.train.instrument  # dropout masks and every table matter
    device = torch.device("cpu")

    plain = TrialRecorder(spec.trial_id)
    run_trial(spec, ds, device, plain)  # no checkpoint path: no checkpoints

    ckpt = tmp_path / "trials" / f".ckpt-{spec.trial_id}.pt"
    with pytest.raises(Interrupted):
        run_trial(spec, ds, device, TrialRecorder(spec.trial_id, on_eval=interrupt_at(interrupt)), checkpoint=ckpt)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["step"] == interrupt // ckpt_every * ckpt_every  # the last checkpoint before the interruption
    assert not list(ckpt.parent.glob("*.tmp-*"))  # written atomically: no temporary file left

    resumed = TrialRecorder(spec.trial_id)
    capsys.readouterr()
    row = run_trial(spec, ds, device, resumed, checkpoint=ckpt)
    assert row["status"] == "complete" and row["steps"] == 24
    at = interrupt // ckpt_every * ckpt_every  # said and recorded; null for a trial run from step 0
    assert f"trial {spec.trial_id} resumed from its checkpoint at step {at} of 24" in capsys.readouterr().err
    assert resumed.tables()["runs"]["resumed_from_step"].tolist() == [at]
    assert plain.tables()["runs"]["resumed_from_step"].isna().all()
    assert not ckpt.exists()  # a finished trial's checkpoint is deleted
    assert_same_tables(plain, resumed)


def test_a_trial_interrupted_twice_still_ends_bit_identical(tmp_path):
    specs, ds = tiny_specs(tmp_path, {"cell": ["lstm"], "pad_size": [12]}, **TRAIN, checkpoint_every=5)
    spec, device = specs[0], torch.device("cpu")
    plain = TrialRecorder(spec.trial_id)
    run_trial(spec, ds, device, plain)
    ckpt = tmp_path / f".ckpt-{spec.trial_id}.pt"
    for at, saved_at in ((12, 10), (21, 20)):  # the second run resumes from step 10, saves 15 and 20
        with pytest.raises(KeyboardInterrupt if at == 21 else Interrupted):
            hook = interrupt_at(at) if at == 12 else _ctrl_c_at(at)
            run_trial(spec, ds, device, TrialRecorder(spec.trial_id, on_eval=hook), checkpoint=ckpt)
        assert torch.load(ckpt, weights_only=False)["step"] == saved_at
    resumed = TrialRecorder(spec.trial_id)
    run_trial(spec, ds, device, resumed, checkpoint=ckpt)
    assert_same_tables(plain, resumed)


def _ctrl_c_at(at: int):
    def on_eval(step: int, dev_acc: float) -> bool:
        if step == at:
            raise KeyboardInterrupt
        return False
    return on_eval


@pytest.mark.parametrize("interrupt,ckpt_every", [(12, 5), (18, 8)])
def test_a_fused_group_resumed_from_its_checkpoint_ends_bit_identical(tmp_path, interrupt, ckpt_every):
    from harness.train_fused import run_fused

    specs, ds = tiny_specs(tmp_path, {"cell": ["lstm"], "pad_size": [12], "seed": [0, 1]}, **TRAIN,
                           checkpoint_every=ckpt_every)
    device = torch.device("cpu")
    plain = [TrialRecorder(s.trial_id) for s in specs]
    run_fused(specs, ds, device, plain)

    ckpt = tmp_path / "trials" / f".ckpt-{specs[0].trial_id}.pt"
    hooked = [TrialRecorder(specs[0].trial_id), TrialRecorder(specs[1].trial_id, on_eval=interrupt_at(interrupt))]
    with pytest.raises(Interrupted):
        run_fused(specs, ds, device, hooked, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=False)["step"] == interrupt // ckpt_every * ckpt_every

    resumed = [TrialRecorder(s.trial_id) for s in specs]
    rows = run_fused(specs, ds, device, resumed, checkpoint=ckpt)
    assert [r["status"] for r in rows] == ["complete", "complete"] and not ckpt.exists()
    at = interrupt // ckpt_every * ckpt_every
    assert [r.tables()["runs"]["resumed_from_step"].item() for r in resumed] == [at, at]
    for a, b in zip(plain, resumed):
        assert_same_tables(a, b)


def test_writing_checkpoints_changes_nothing_and_a_foreign_one_is_not_resumed(tmp_path, capsys):
    specs, ds = tiny_specs(tmp_path, {"cell": ["lstm"], "pad_size": [12], "seed": [0, 1]}, **TRAIN,
                           checkpoint_every=4)
    device = torch.device("cpu")
    plain = TrialRecorder(specs[0].trial_id)
    run_trial(specs[0], ds, device, plain)
    ckpt = tmp_path / f".ckpt-{specs[0].trial_id}.pt"
    with pytest.raises(Interrupted):  # leaves a checkpoint of trial 1 where trial 0's would be
        run_trial(specs[1], ds, device, TrialRecorder(specs[1].trial_id, on_eval=interrupt_at(9)), checkpoint=ckpt)
    assert ckpt.is_file()
    capsys.readouterr()
    again = TrialRecorder(specs[0].trial_id)
    run_trial(specs[0], ds, device, again, checkpoint=ckpt)
    warned = capsys.readouterr().err.splitlines()
    assert len(warned) == 1 and warned[0].startswith(f"harness: warning: checkpoint {ckpt} not resumed (it is trial")
    assert warned[0].endswith(f"trial {specs[0].trial_id} starts from step 0")
    assert_same_tables(plain, again)
    assert not ckpt.exists()

    ckpt.write_bytes(b"torn")  # a damaged file: started over as well
    again = TrialRecorder(specs[0].trial_id)
    run_trial(specs[0], ds, device, again, checkpoint=ckpt)
    warned = capsys.readouterr().err.splitlines()
    assert len(warned) == 1 and "not resumed" in warned[0] and "starts from step 0" in warned[0]
    assert_same_tables(plain, again)


def test_a_checkpoint_that_cannot_be_written_is_a_warning_not_a_failure(tmp_path, capsys):
    specs, ds = tiny_specs(tmp_path, {"cell": ["rnn"], "pad_size": [12]}, **TRAIN, checkpoint_every=5)
    plain = TrialRecorder(specs[0].trial_id)
    run_trial(specs[0], ds, torch.device("cpu"), plain)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    again = TrialRecorder(specs[0].trial_id)
    capsys.readouterr()
    row = run_trial(specs[0], ds, torch.device("cpu"), again, checkpoint=blocked / "trials" / ".ckpt-x.pt")
    warned = capsys.readouterr().err.splitlines()
    assert warned and all(" not written (" in w and w.endswith("goes on") for w in warned), warned
    assert row["status"] == "complete"
    assert_same_tables(plain, again)


def test_checkpoint_every_is_not_part_of_trial_ids_nor_a_grid_axis(tmp_path):
    base, _ = tiny_specs(tmp_path, {"cell": ["rnn", "lstm"], "pad_size": [12]})
    on, _ = tiny_specs(tmp_path, {"cell": ["rnn", "lstm"], "pad_size": [12]}, checkpoint_every=50)
    assert [s.trial_id for s in base] == [s.trial_id for s in on]
    assert base[0].train.checkpoint_every == 0 and on[0].train.checkpoint_every == 50
    # The ids of the version before the key existed (golden: computed with it), with the key off and on.
    for every in (0, 50):
        raw = tiny_raw(grid={"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0, 1]})
        raw["train"]["checkpoint_every"] = every
        assert [s.trial_id for s in expand_grid(config_from_dict(raw), "d0")] == [
            "ed76e17c9312", "9a2dd16e43c9", "15209e5eaa6f", "84e04aada8a7"]
    with pytest.raises(ConfigError, match="train.checkpoint_every' cannot vary"):
        config_from_dict(tiny_raw(grid={"cell": ["rnn"], "train.checkpoint_every": [0, 10]}))
    raw = tiny_raw()
    raw["train"]["checkpoint_every"] = -1
    with pytest.raises(ConfigError, match="checkpoint_every.*>= 0"):
        config_from_dict(raw)


def test_results_from_before_checkpoint_every_existed_resume(tmp_path):
    # A results folder written before train.checkpoint_every existed resumes, and so does one run with
    # another checkpoint_every: how often a trial saves its state is not a fixed setting of the results.
    from harness.plan import check_compatible, make_plan, write_config

    raw = tiny_raw("ck", {"cell": ["lstm"], "pad_size": [12]})
    plan = make_plan(config_from_dict(raw), tmp_path)
    write_config(plan)
    old = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert old["train"].pop("checkpoint_every") == 0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    check_compatible(plan)  # no complaint
    raw["train"] = {**raw["train"], "checkpoint_every": 7}
    check_compatible(make_plan(config_from_dict(raw), tmp_path))  # no complaint either


def test_the_runner_resumes_a_trial_from_its_checkpoint_in_the_results_folder(tmp_path):
    raw = tiny_raw("ckr", {"cell": ["lstm"], "pad_size": [12]})
    raw["train"].update(TRAIN, checkpoint_every=5)
    ref = tmp_path / "ref"
    runner.run(config_from_dict(raw), ref, workers=1, device="cpu", threads=1, progress=False)

    out = tmp_path / "out"
    specs, ds = tiny_specs(tmp_path, {"cell": ["lstm"], "pad_size": [12]}, **TRAIN, checkpoint_every=5)
    spec = specs[0]
    ckpt = checkpoint_path(out, spec.trial_id)
    assert ckpt == out / "trials" / f".ckpt-{spec.trial_id}.pt"
    with pytest.raises(Interrupted):  # a worker that died at step 12 left its checkpoint of step 10
        run_trial(spec, ds, torch.device("cpu"), TrialRecorder(spec.trial_id, on_eval=interrupt_at(12)),
                  checkpoint=ckpt)
    assert ckpt.is_file()
    mark(ckpt)
    counts = runner.run(config_from_dict(raw), out, workers=1, device="cpu", threads=1, progress=False)
    assert counts["complete"] == 1 and counts["missing"] == 0
    assert not ckpt.exists()
    a, b = records.load(ref), records.load(out)
    assert b["curves"]["resumed_from"].iloc[0] == 10  # the worker resumed from the checkpoint of step 10
    assert_same_results(a, b)


def assert_same_results(want, got) -> None:
    """Two results folders' tables (records.load) are equal, exactly, apart from timings."""
    for t in ("curves", "grad_norms", "grad_time", "confusion"):
        cols = [c for c in want[t].columns if c not in TIMING.get(t, [])]
        assert len(want[t]) > 0
        pd.testing.assert_frame_equal(want[t][cols], got[t][cols], check_exact=True, obj=t)
    keep = ["trial_id", "status", "test_acc", "test_macro_f1", "test_loss", "best_dev_acc", "best_step", "steps",
            "epochs", "grad_norm_init", "grad_norm_final", "vanishing_ratio_init", "vanishing_ratio_final"]
    pd.testing.assert_frame_equal(want["runs"][keep], got["runs"][keep], check_exact=True)


def test_the_runner_resumes_a_fused_group_from_its_checkpoint(tmp_path):
    from harness.train_fused import run_fused

    grid = {"cell": ["lstm"], "pad_size": [12], "seed": [0, 1]}
    raw = tiny_raw("ckf", grid)
    raw["train"].update(TRAIN, checkpoint_every=5)
    raw["run"] = {"fuse": 2}
    ref = tmp_path / "ref"
    runner.run(config_from_dict(raw), ref, workers=1, device="cpu", threads=1, progress=False)

    out = tmp_path / "out"
    specs, ds = tiny_specs(tmp_path, grid, **TRAIN, checkpoint_every=5)
    ckpt = checkpoint_path(out, specs[0].trial_id)
    hooked = [TrialRecorder(specs[0].trial_id, on_eval=interrupt_at(12)), TrialRecorder(specs[1].trial_id)]
    with pytest.raises(Interrupted):
        run_fused(specs, ds, torch.device("cpu"), hooked, checkpoint=ckpt)
    mark(ckpt)
    counts = runner.run(config_from_dict(raw), out, workers=1, device="cpu", threads=1, progress=False)
    assert counts["complete"] == 2 and counts["missing"] == 0
    assert not ckpt.exists()
    a, b = records.load(ref), records.load(out)
    assert (b["curves"].groupby("trial_id")["resumed_from"].first() == 10).all()  # both trials resumed
    assert a["runs"]["fused_group"].notna().all()
    for t in ("curves", "grad_norms", "grad_time", "confusion"):
        cols = [c for c in a[t].columns if c not in TIMING.get(t, [])]
        pd.testing.assert_frame_equal(a[t][cols].sort_values(cols[:3], ignore_index=True),
                                      b[t][cols].sort_values(cols[:3], ignore_index=True), check_exact=True, obj=t)


def mark(ckpt: Path) -> None:
    """Tag the checkpoint's first curves row (of each trial) with a column `resumed_from`: the results of
    a run that resumed from it show it (the workers are processes of their own, so a warning would not)."""
    saved = torch.load(ckpt, weights_only=True)
    for ledger in saved["ledgers"]:  # one per trial of the file (a fused group's: each of its trials)
        ledger["rows"]["curves"][0]["resumed_from"] = saved["step"]
    torch.save(saved, ckpt)


def test_checkpoint_path_is_hidden_from_loaders(tmp_path):
    p = checkpoint_path(tmp_path, "abc")
    assert p.parent == records.trial_dir(tmp_path, "abc").parent and p.name.startswith(".")
    assert isinstance(p, Path)


@pytest.mark.slow
@pytest.mark.parametrize("fuse", [1, 2])
def test_a_run_killed_with_kill_9_resumes_its_trials_from_their_checkpoints(tmp_path, fuse):
    """`harness run` (main process and worker) killed with SIGKILL mid-trial: the same command again
    resumes the trial (a fused group with run.fuse 2) from its checkpoint and the tables equal an
    uninterrupted run's, timings aside."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    raw = tiny_raw("k9", {"cell": ["lstm"], "pad_size": [12], "seed": [0, 1]})
    raw["train"].update(TRAIN, epochs=60, checkpoint_every=20)  # 480 steps per trial, a checkpoint every 20
    raw["run"] = {"fuse": fuse, "threads": 1}
    ref = tmp_path / "ref"
    runner.run(config_from_dict(raw), ref, workers=1, device="cpu", threads=1, progress=False)

    out = tmp_path / "out"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(tmp_path / "c.yaml"), "--out", str(out),
                             "--workers", "1", "--device", "cpu", "--quiet"], cwd=ROOT, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    ckpts: list[Path] = []
    while not ckpts and time.monotonic() < deadline and proc.poll() is None:
        ckpts = list((out / "trials").glob(".ckpt-*.pt")) if (out / "trials").is_dir() else []
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the main process and its worker, mid-trial
    proc.wait(timeout=30)
    assert len(ckpts) == 1, "no checkpoint appeared before the run ended"
    mark(ckpts[0])  # written atomically: the file the kill left is a whole checkpoint
    counts = runner.run(config_from_dict(raw), out, workers=1, device="cpu", threads=1, progress=False)
    assert counts["complete"] == 2 and counts["missing"] == 0
    got = records.load(out)
    resumed = got["curves"].dropna(subset=["resumed_from"])
    assert len(resumed) == (2 if fuse == 2 else 1) and (resumed["resumed_from"] > 0).all()
    assert not list((out / "trials").glob(".ckpt-*"))
    assert_same_results(records.load(ref), got)


# ----------------------------------------------------------------------------- hygiene (issue 29)

@pytest.mark.parametrize("damage", ["no state", "no step", "step beyond the budget", "wrong model", "wrong ledger"])
def test_a_checkpoint_of_this_trial_that_cannot_be_used_is_a_warning_and_a_start_from_step_0(tmp_path, capsys,
                                                                                             damage):
    """The right trial id and budget, but the state is missing or does not fit: one warning line, the
    trial runs from step 0 (the same tables as an uninterrupted run), never a failed trial."""
    from harness.train import CHECKPOINT_FORMAT

    specs, ds = tiny_specs(tmp_path, {"cell": ["rnn"], "pad_size": [12]}, **TRAIN, checkpoint_every=5)
    spec, device = specs[0], torch.device("cpu")
    plain = TrialRecorder(spec.trial_id)
    run_trial(spec, ds, device, plain)
    ckpt = tmp_path / f".ckpt-{spec.trial_id}.pt"
    with pytest.raises(Interrupted):
        run_trial(spec, ds, device, TrialRecorder(spec.trial_id, on_eval=interrupt_at(12)), checkpoint=ckpt)
    saved = torch.load(ckpt, weights_only=True)
    head = {k: saved[k] for k in ("format", "trial_id", "total_steps")}
    assert head["format"] == CHECKPOINT_FORMAT
    damaged = {"no state": head, "no step": {k: v for k, v in saved.items() if k != "step"},
               "step beyond the budget": {**saved, "step": saved["total_steps"] + 5},
               "wrong model": {**saved, "model": {"nope": torch.zeros(2)}},
               "wrong ledger": {**saved, "ledgers": [{"best": 3}]}}[damage]
    torch.save(damaged, ckpt)
    capsys.readouterr()
    again = TrialRecorder(spec.trial_id)
    row = run_trial(spec, ds, device, again, checkpoint=ckpt)
    warned = capsys.readouterr().err.splitlines()
    assert len(warned) == 1, warned
    assert warned[0].startswith(f"harness: warning: checkpoint {ckpt} not resumed (") and "Traceback" not in warned[0]
    assert warned[0].endswith(f"trial {spec.trial_id} starts from step 0")
    assert row["status"] == "complete"
    assert_same_tables(plain, again)
    assert not ckpt.exists()


def test_stale_temporary_checkpoint_files_are_removed_and_live_ones_kept(tmp_path):
    """Only the temporary files no live process is writing: of this host, a dead pid's; of another
    host, one untouched for an hour. The checkpoints themselves and other files are left alone."""
    import os
    import socket
    import subprocess
    import time

    from harness.train import remove_stale_checkpoint_tmps

    trials = tmp_path / "trials"
    trials.mkdir()
    host = socket.gethostname()
    dead = subprocess.Popen(["true"])
    dead.wait()
    names = {"dead": f".ckpt-a.pt.tmp-{host}-{dead.pid}", "live": f".ckpt-b.pt.tmp-{host}-{os.getpid()}",
             "old elsewhere": ".ckpt-c.pt.tmp-other-host-1", "new elsewhere": ".ckpt-d.pt.tmp-other-host-2",
             "checkpoint": ".ckpt-e.pt", "other": "notes.txt"}
    for name in names.values():
        (trials / name).write_bytes(b"x")
    hour_ago = time.time() - 3700
    os.utime(trials / names["old elsewhere"], (hour_ago, hour_ago))
    assert remove_stale_checkpoint_tmps(tmp_path) == 2
    assert sorted(p.name for p in trials.iterdir()) == sorted(
        names[k] for k in ("live", "new elsewhere", "checkpoint", "other"))
    assert remove_stale_checkpoint_tmps(tmp_path / "nothing-here") == 0


def test_a_checkpoint_holds_only_tensors_and_plain_values(tmp_path):
    """What makes weights_only=True possible: plain() turns numpy scalars into Python's and refuses
    anything that would need a class to load, naming where it is."""
    import numpy as np

    from harness.train import plain

    got = plain({"a": [np.float64(0.5), (np.int64(3), None)], "t": torch.ones(2), "s": "x"})
    assert got["a"] == [0.5, (3, None)] and type(got["a"][0]) is float and type(got["a"][1][0]) is int
    with pytest.raises(TypeError, match=r"checkpoint\['rows'\]\[0\] is of type object"):
        plain({"rows": [object()]})
