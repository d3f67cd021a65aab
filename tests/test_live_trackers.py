"""Live trackers (run.trackers, harness run --tracker): every trial's scalars streamed from its worker
at each evaluation, named as `harness export` names them, readable with the trackers' own readers."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_raw

from harness import data as data_mod
from harness.config import ConfigError, config_from_dict, expand_grid
from harness.export import export, live, load_experiment
from harness.export import tensorboard as tb_export
from harness.records import TrialRecorder, load
from harness.train import run_trial, settings_columns

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

TRACKERS = ["tensorboard", "mlflow"]


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def _client(results: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{live.live_out(results, 'mlflow').resolve() / 'mlflow.db'}")


def _mlflow_runs(results: Path) -> dict[str, object]:
    client = _client(results)
    exps = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in exps])
    return {r.data.tags["harness.trial_id"]: r for r in runs}


def _history(results: Path, run_id: str, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in _client(results).get_metric_history(run_id, name))


@pytest.fixture(scope="module")
def live_run(tmp_path_factory) -> Path:
    from harness import runner

    raw = tiny_raw("live", {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0]})
    raw["run"] = {"trackers": TRACKERS}
    out = tmp_path_factory.mktemp("live") / "res"
    counts = runner.run(config_from_dict(raw), out, workers=1, device="cpu", threads=1, progress=False)
    assert counts["missing"] == 0
    return out


def test_run_streams_what_export_writes(live_run):
    tables = load(live_run)
    exp = load_experiment(live_run)
    assert len(exp.trials) == 2
    tb_root, mlflow_runs = live.live_out(live_run, "tensorboard"), _mlflow_runs(live_run)
    assert set(mlflow_runs) == {v.trial_id for v in exp.trials}
    for view in exp.trials:
        curves = tables.curves[tables.curves.trial_id == view.trial_id].sort_values("step")
        assert len(curves) >= 2  # at least two evaluations
        expected = list(zip(curves.step.tolist(), curves.dev_acc.tolist()))
        # TensorBoard: the run folder the export would use, below DIR/tensorboard-live
        got = _scalars(tb_export.run_dir(tb_root, view))
        exported_names = {name for _, _, name, _ in view.scalars}
        assert set(got) == exported_names  # dev/acc, train/loss, grad_norm/<group>, update_ratio/<group>, ...
        assert [s for s, _ in got["dev/acc"]] == [s for s, _ in expected]
        np.testing.assert_allclose([v for _, v in got["dev/acc"]], [v for _, v in expected], rtol=1e-6)
        # MLflow: one run per trial, named and grouped as the export names its child run
        run = mlflow_runs[view.trial_id]
        assert run.info.run_name == view.name and run.data.tags["harness.group"] == view.group
        assert run.info.status == "FINISHED" and run.data.tags["harness.status"] == view.status
        hist = _history(live_run, run.info.run_id, "dev/acc")
        assert [s for s, _ in hist] == [s for s, _ in expected]
        np.testing.assert_allclose([v for _, v in hist], [v for _, v in expected], rtol=1e-6)
        assert set(exported_names) <= set(run.data.metrics)
        assert run.data.metrics["best_dev_acc"] == pytest.approx(view.summary["best_dev_acc"])
        assert run.data.params["cell"] == str(view.params["cell"])


def test_export_afterwards_writes_every_trial(live_run):
    for to in TRACKERS:
        res = export(live_run, to)
        assert (res.written, res.skipped) == (2, 0), to
    assert live.live_out(live_run, "tensorboard") != live_run / "tensorboard"


def test_resume_with_other_trackers_is_the_same_run(live_run):
    from harness import runner

    raw = tiny_raw("live", {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0]})
    counts = runner.run(config_from_dict(raw), live_run, workers=1, device="cpu", threads=1, progress=False)
    assert counts["missing"] == 0 and counts["complete"] == 2


def test_trackers_change_no_trial_id_and_are_no_axis(tmp_path):
    raw = tiny_raw()
    with_trackers = {**raw, "run": {"trackers": TRACKERS}}
    ids = [s.trial_id for s in expand_grid(config_from_dict(raw), "d")]
    assert [s.trial_id for s in expand_grid(config_from_dict(with_trackers), "d")] == ids
    assert config_from_dict(with_trackers).run.trackers == TRACKERS
    comma = config_from_dict({**raw, "run": {"trackers": "mlflow,tensorboard"}})
    assert comma.run.trackers == ["mlflow", "tensorboard"]
    assert config_from_dict(raw).run.trackers == []
    with pytest.raises(ConfigError, match="run.trackers"):
        config_from_dict({**raw, "run": {"trackers": ["nope"]}})
    with pytest.raises(ConfigError):
        config_from_dict({**raw, "grid": {**raw["grid"], "run.trackers": [["mlflow"], []]}})


def _one_trial(tmp_path):
    raw = tiny_raw(grid={"cell": ["lstm"], "pad_size": [12]})
    raw["train"]["eval_every"] = 1  # four evaluations
    cfg = config_from_dict(raw)
    cache = tmp_path / "cache"
    _, data_id = data_mod.prepare(cfg.data, cache)
    spec = expand_grid(cfg, data_id)[0]
    return spec, data_mod.load(spec.data, cache)


def _tracked(tmp_path, spec, recorder, trackers=TRACKERS):
    row = settings_columns(spec)
    naming = live.Naming(tmp_path, [{**row, "trial_id": spec.trial_id}])
    hook = live.LiveTracker(tmp_path, trackers, naming, row, recorder, recorder.on_eval)
    recorder.on_eval = hook
    return hook


def test_dev_accuracy_readable_while_the_trial_runs(tmp_path):
    """A trial trains in a thread; its hook blocks at the first evaluation, and there the trackers
    already hold that evaluation's dev accuracy while the trial has not finished."""
    spec, ds = _one_trial(tmp_path)
    at_eval, go = threading.Event(), threading.Event()

    def block(step: int, dev_acc: float) -> bool:
        if not at_eval.is_set():
            at_eval.set()
            assert go.wait(60)
        return False

    recorder = TrialRecorder(spec.trial_id, on_eval=block)
    hook = _tracked(tmp_path, spec, recorder)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(row=run_trial(spec, ds, torch.device("cpu"), recorder)))
    worker.start()
    try:
        assert at_eval.wait(120)
        assert worker.is_alive() and not recorder.rows["runs"]  # not finished
        first = recorder.rows["curves"][0]
        got = _scalars(tb_export.run_dir(live.live_out(tmp_path, "tensorboard"), hook.view))
        assert got["dev/acc"] == [(first["step"], pytest.approx(first["dev_acc"]))]
        run = _mlflow_runs(tmp_path)[spec.trial_id]
        assert run.info.status == "RUNNING"
        assert _history(tmp_path, run.info.run_id, "dev/acc") == [(first["step"], pytest.approx(first["dev_acc"]))]
    finally:
        go.set()
        worker.join(120)
    hook.close()
    assert result["row"]["status"] == "complete"
    steps = [r["step"] for r in recorder.rows["curves"]]
    run = _mlflow_runs(tmp_path)[spec.trial_id]
    assert run.info.status == "FINISHED"
    assert [s for s, _ in _history(tmp_path, run.info.run_id, "dev/acc")] == steps
    got = _scalars(tb_export.run_dir(live.live_out(tmp_path, "tensorboard"), hook.view))
    assert [s for s, _ in got["dev/acc"]] == steps


class _Broken:
    def __init__(self, *a):
        pass

    def write(self, scalars):
        raise OSError("disk says no")

    def close(self, row):
        pass


def _refuse(*a):
    raise ImportError("No module named 'nothing'")


def test_failing_tracker_is_one_warning_and_the_trial_completes(tmp_path, monkeypatch, capsys):
    spec, ds = _one_trial(tmp_path)
    monkeypatch.setitem(live.SINKS, "tensorboard", _Broken)
    monkeypatch.setitem(live.SINKS, "mlflow", _refuse)
    monkeypatch.setattr(live, "_warned", set())
    recorder = TrialRecorder(spec.trial_id)
    hook = _tracked(tmp_path, spec, recorder)
    row = run_trial(spec, ds, torch.device("cpu"), recorder)
    hook.close()
    assert row["status"] == "complete" and len(recorder.rows["curves"]) >= 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "live tracker" in line]
    assert len(lines) == 2, lines
    assert any("tensorboard" in line and "disk says no" in line for line in lines)
    assert any("mlflow" in line and "ImportError" in line for line in lines)


def test_failing_tracker_in_a_run_loses_no_trial(tmp_path, capfd):
    """DIR/mlflow-live is a file, so MLflow cannot write there: one warning per trial, every trial finishes."""
    from harness import runner

    raw = tiny_raw("live", {"cell": ["rnn"], "pad_size": [12], "seed": [0]})
    out = tmp_path / "res"
    cfg = config_from_dict({**raw, "run": {"trackers": ["mlflow"]}})
    out.mkdir()
    (out / "mlflow-live").write_text("in the way")
    counts = runner.run(cfg, out, workers=1, device="cpu", threads=1, progress=False)
    assert counts["missing"] == 0 and counts.get("complete") == 1
    lines = [line for line in capfd.readouterr().err.splitlines() if "live tracker mlflow" in line]
    assert len(lines) == 1, lines


def test_cli_tracker_flag_adds_to_run_trackers(tmp_path, capsys):
    import yaml

    from harness.cli import build_parser, main
    from harness.results_dir import load_results_config

    raw = tiny_raw("clilive", {"cell": ["rnn"], "pad_size": [12], "seed": [0]})
    raw["run"] = {"trackers": ["tensorboard"]}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "res"
    assert main(["run", str(config), "--out", str(out), "--device", "cpu", "--quiet",
                 "--tracker", "mlflow", "--tracker", "tensorboard"]) == 0
    assert load_results_config(out).run.trackers == ["tensorboard", "mlflow"]
    assert list(live.live_out(out, "tensorboard").glob("*/*/events.out.tfevents.*"))
    assert len(_mlflow_runs(out)) == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", str(config), "--tracker", "nope"])


def test_wandb_offline_run_streams_what_export_writes(tmp_path):
    pytest.importorskip("wandb")
    from test_export import read_wandb_run

    from harness import runner

    raw = tiny_raw("livewandb", {"cell": ["rnn"], "pad_size": [12], "seed": [0]})
    out = tmp_path / "res"
    counts = runner.run(config_from_dict({**raw, "run": {"trackers": ["wandb"]}}), out, workers=1, device="cpu",
                        threads=1, progress=False)
    assert counts["missing"] == 0
    (view,) = load_experiment(out).trials
    (run_dir,) = (live.live_out(out, "wandb") / "wandb").glob(f"offline-run-*-{view.trial_id}")
    info = read_wandb_run(run_dir)
    run = info["run"]
    assert (run.project, run.run_group, run.display_name) == ("livewandb", view.group, view.name)
    expected = {s: v for s, _, name, v in view.scalars if name == "dev/acc"}
    assert len(expected) >= 2 and sorted(info["history"]) == sorted(expected)
    np.testing.assert_allclose([info["history"][s]["dev/acc"] for s in sorted(expected)],
                               [expected[s] for s in sorted(expected)], rtol=1e-6)
    assert info["summary"]["status"] == "complete"
    assert info["summary"]["best_dev_acc"] == pytest.approx(view.summary["best_dev_acc"])
    assert export(out, "wandb").written == 1


def test_fused_trials_are_tracked_each(tmp_path):
    from harness import runner

    raw = tiny_raw("livefused", {"cell": ["lstm"], "pad_size": [12], "seed": [0, 1]})
    out = tmp_path / "res"
    cfg = config_from_dict({**raw, "run": {"trackers": ["tensorboard"], "fuse": 2}})
    assert runner.run(cfg, out, workers=1, device="cpu", threads=1, progress=False)["missing"] == 0
    tables = load(out)
    assert tables.runs.fused_group.notna().all()
    for view in load_experiment(out).trials:
        got = _scalars(tb_export.run_dir(live.live_out(out, "tensorboard"), view))
        expected = [(s, v) for s, _, name, v in view.scalars if name == "dev/acc"]
        assert len(expected) >= 2 and [s for s, _ in got["dev/acc"]] == [s for s, _ in expected]
        np.testing.assert_allclose([v for _, v in got["dev/acc"]], [v for _, v in expected], rtol=1e-6)


def test_kept_weights_are_attached_at_the_trial_end(tmp_path, monkeypatch):
    """train.save_model: the trial's weights file is an artifact of its live MLflow run (model/model.pt)
    and of its live W&B run (type "model"), byte for byte the file in the trial's folder."""
    pytest.importorskip("wandb")
    from test_export import assert_wandb_model_artifact

    from harness import runner

    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # W&B stages the copy it uploads there
    raw = tiny_raw("livesaved", {"cell": ["rnn"], "pad_size": [12], "seed": [0]})
    raw["train"]["save_model"] = "last"
    out = tmp_path / "res"
    cfg = config_from_dict({**raw, "run": {"trackers": ["mlflow", "wandb"]}})
    assert runner.run(cfg, out, workers=1, device="cpu", threads=1, progress=False)["complete"] == 1
    (row,) = load(out).runs.to_dict("records")
    weights = out / row["model_file"]
    client, run = _client(out), _mlflow_runs(out)[row["trial_id"]]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == ["model/model.pt"]
    got = Path(client.download_artifacts(run.info.run_id, "model/model.pt", str(tmp_path)))
    assert got.read_bytes() == weights.read_bytes()
    (run_dir,) = (live.live_out(out, "wandb") / "wandb").glob(f"offline-run-*-{row['trial_id']}")
    assert_wandb_model_artifact(run_dir, row["trial_id"], weights)


def test_kept_weights_are_attached_when_the_trial_is_already_published(tmp_path):
    """A fused group's trackers close after the runner published its trials: the file is found there."""
    import dataclasses

    from harness import records

    spec, ds = _one_trial(tmp_path)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, save_model="best"))
    recorder = TrialRecorder(spec.trial_id)
    hook = _tracked(tmp_path, spec, recorder, ["mlflow"])
    row = run_trial(spec, ds, torch.device("cpu"), recorder)
    records.write_trial(tmp_path, spec.trial_id, recorder.tables(), recorder.weights)
    hook.close()
    run = _mlflow_runs(tmp_path)[spec.trial_id]
    got = Path(_client(tmp_path).download_artifacts(run.info.run_id, "model/model.pt", str(tmp_path / "dl")))
    assert got.read_bytes() == (tmp_path / row["model_file"]).read_bytes()
