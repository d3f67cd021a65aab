"""`harness export`: what each tracker's own reader gets back equals the results tables."""

import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_raw

from harness import records
from harness.cli import main
from harness.config import ConfigError, config_from_dict
from harness.export import export, load_experiment
from harness.export.trials import group_keys
from harness.extras import install_hint

# model.readout: a grid axis by dotted name, the same setting as the runs column `readout`.
GRID = {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0, 1], "model.readout": ["last"]}
# Runs columns that are system facts or timings: never a tracker's hyperparameters.
NOT_SETTINGS = {"eval_s", "probe_s", "wall_s", "train_s", "samples_per_s", "cpu_model", "cpu_capability",
                "onednn_version", "device", "torch_version", "git_commit", "git_dirty", "harness_version", "worker",
                "trial_id", "status",
                "started_at", "schema_version", "data_id", "stop_reason", "name", "model.readout"}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A finished tiny grid: 2 cells × 2 seeds."""
    from harness import runner

    out = tmp_path_factory.mktemp("export-results")
    counts = runner.run(config_from_dict(tiny_raw("export", grid=GRID)), out, workers=1, device="cpu",
                        threads=1, progress=False)
    assert counts["complete"] == 4
    return out


@pytest.fixture(scope="module")
def tables(results) -> dict[str, pd.DataFrame]:
    return records.load(results)


def _curve(tables, trial_id: str, column: str) -> pd.Series:
    c = tables["curves"]
    c = c[c["trial_id"] == trial_id].sort_values("step")
    return pd.Series(c[column].to_numpy(dtype=float), index=c["step"].astype(int).to_numpy())


def _norm(tables, trial_id: str, group: str, column: str) -> pd.Series:
    g = tables["grad_norms"]
    g = g[(g["trial_id"] == trial_id) & (g["group"] == group)].sort_values("step")
    return pd.Series(g[column].to_numpy(dtype=float), index=g["step"].astype(int).to_numpy())


def _run(tables, trial_id: str) -> dict:
    runs = tables["runs"]
    return runs[runs["trial_id"] == trial_id].iloc[0].to_dict()


def _times(run: dict) -> tuple[float, float]:
    """The trial's start and end (unix seconds) from its runs row: started_at, + wall_s."""
    start = pd.Timestamp(run["started_at"]).timestamp()
    return start, start + run["wall_s"]


# ----------------------------------------------------------------------------- the neutral view

def test_views_group_by_configuration_without_seed(results, tables):
    exp = load_experiment(results)
    assert exp.name == "export"
    assert exp.group_keys == ["cell"]  # the only varying setting besides the seed
    assert len(exp.trials) == 4
    for view in exp.trials:
        run = _run(tables, view.trial_id)
        assert view.group == f"cell={run['cell']}"
        assert view.name == f"cell={run['cell']},seed={run['seed']}"
        assert view.params["cell"] == run["cell"] and view.params["seed"] == run["seed"]
        assert view.summary["test_acc"] == pytest.approx(run["test_acc"])
        assert view.tags["status"] == "complete" and view.parent == "grid"
        assert not NOT_SETTINGS & set(view.params) and view.params["readout"] == "last"
        assert type(view.params["seed"]) is int and type(view.params["bidirectional"]) is bool
        assert view.summary["steps_to_target"] == run["steps_to_target"] and view.summary["reached"] == 1
        assert view.timings["eval_s"] == run["eval_s"] and view.system["cpu_model"] == run["cpu_model"]
        assert view.finished_at == pytest.approx(_times(run)[1])
        steps = [s for s, _, values in view.by_step()]
        assert steps == sorted(set(steps)) == list(_curve(tables, view.trial_id, "dev_acc").index)


def test_settings_outcomes_and_system_facts_are_apart():
    from harness.export.trials import outcomes, settings, system_facts

    row = {"trial_id": "t", "status": "complete", "cell": "rnn", "seed": np.int64(3), "readout": "last",
           "model.readout": "last", "train.epochs": 2, "bidirectional": np.bool_(True), "arm": None, "study": None,
           "lag": None, "eval_s": 0.5, "wall_s": 10.0, "cpu_model": "EPYC", "worker": "h:1",
           "started_at": pd.Timestamp("2024-01-02 03:04:05", tz="UTC"), "steps_to_target": pd.NA, "test_acc": 0.5}
    assert settings(row) == {"cell": "rnn", "seed": 3, "readout": "last", "bidirectional": True, "lag": None,
                             "train.epochs": 2}  # one read-out; arm and study only where they apply
    assert type(settings(row)["seed"]) is int
    assert outcomes(row) == {"reached": 0, "test_acc": 0.5}  # never reached: no steps_to_target, reached 0
    assert outcomes({**row, "steps_to_target": 40})["reached"] == 1
    assert "reached" not in outcomes({**row, "status": "failed"})
    facts = system_facts(row)
    assert facts["cpu_model"] == "EPYC" and facts["worker"] == "h:1" and "eval_s" not in facts
    assert facts["started_at"] == "2024-01-02T03:04:05+00:00" and facts["finished_at"] == "2024-01-02T03:04:15+00:00"


def test_every_setting_the_trainer_records_is_a_setting(tmp_path):
    from harness.config import expand_grid
    from harness.export.trials import SETTINGS
    from harness.train import settings_columns

    raw = tiny_raw("cols", {"cell": ["rnn"], "seed": [0], "model.forget_bias": [1.0]})
    (spec,) = expand_grid(config_from_dict(raw), "data-id")
    recorded = set(settings_columns(spec)) - {"name"}  # name: the experiment, a tag
    assert recorded - set(SETTINGS) == {"model.forget_bias"}  # dotted axes are settings by their name


def test_group_keys_follow_the_report_and_studies():
    runs = pd.DataFrame({"cell": ["rnn", "rnn", "lstm"], "layernorm": ["none"] * 3, "lr": [1e-3, 1e-3, 1e-3],
                         "seed": [0, 1, 0], "model.forget_bias": [0.0, 1.0, 0.0], "phase": ["grid"] * 3})
    raw = {"grid": {"cell": ["rnn", "lstm"], "seed": [0, 1], "model.forget_bias": [0, 1]}}
    assert group_keys(runs, raw) == ["cell", "model.forget_bias"]
    runs["phase"] = ["search", "rerun", "rerun"]
    runs["study"] = ["s1", "s1", "s2"]
    assert group_keys(runs, raw) == ["cell", "model.forget_bias", "study", "phase"]


# ----------------------------------------------------------------------------- TensorBoard

def hparams_dashboard(logdir: Path) -> tuple:
    """What TensorBoard's HParams dashboard gets for a log folder: the experiment (setting and metric
    columns) and the session groups (one per trial), from the hparams plugin's own handlers."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

    mux = pem.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    tb = backend_context.Context(base_plugin.TBContext(
        logdir=str(logdir), multiplexer=mux, data_provider=data_provider.MultiplexerDataProvider(mux, str(logdir))))
    ctx = context.RequestContext()
    experiment = get_experiment.Handler(ctx, tb, "", api_pb2.GetExperimentRequest()).run()
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=1000, aggregation_type=api_pb2.AGGREGATION_AVG,
                                               allowed_statuses=[api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE,
                                                                 api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_RUNNING])
    return experiment, list_session_groups.Handler(ctx, tb, "", request).run().session_groups


def test_tensorboard_scalars_and_hparams_read_back(results, tables, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2

    out = tmp_path / "tb"
    res = export(results, "tensorboard", out)
    assert (res.written, res.skipped) == (4, 0)
    folders = sorted(p.parent for p in out.glob("*/*/events.out.tfevents.*"))
    assert len(set(folders)) == 4
    for folder in set(folders):
        trial_id = folder.name.rsplit("-", 1)[1]
        run = _run(tables, trial_id)
        assert folder.parent.name == f"cell={run['cell']}" and folder.name.startswith(f"seed={run['seed']}-")
        ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
        ea.Reload()
        for tag, expected in (("dev/acc", _curve(tables, trial_id, "dev_acc")),
                              ("train/loss", _curve(tables, trial_id, "train_loss")),
                              ("grad_norm/rnn.l0", _norm(tables, trial_id, "rnn.l0", "grad_norm")),
                              ("update_ratio/fc", _norm(tables, trial_id, "fc", "update_ratio"))):
            events = ea.Scalars(tag)
            assert [e.step for e in events] == list(expected.index), tag
            np.testing.assert_allclose([e.value for e in events], expected.to_numpy(), rtol=1e-6)
        # wall time = the trial's start + its elapsed training time at that point
        start, end = _times(run)
        elapsed = _curve(tables, trial_id, "elapsed_s")
        np.testing.assert_allclose([e.wall_time for e in ea.Scalars("dev/acc")], start + elapsed.to_numpy(), atol=1e-3)
        assert ea.Scalars("summary/test_acc")[0].value == pytest.approx(run["test_acc"], rel=1e-6)
        assert ea.Scalars("summary/steps_to_target")[0].value == run["steps_to_target"]
        assert ea.Scalars("summary/reached")[0].value == 1.0
        assert ea.Scalars("time/eval_s")[0].value == pytest.approx(run["eval_s"], rel=1e-6)
        assert ea.Scalars("summary/test_acc")[0].wall_time == pytest.approx(end, abs=1e-3)
        system = ea.Tensors("system/text_summary")[0].tensor_proto.string_val[0].decode()
        assert f"| cpu_model | {run['cpu_model']} |" in system and f"| worker | {run['worker']} |" in system
        # the trial's HParams session (its values: read below, as the dashboard reads them); the experiment is in OUT
        assert set(ea.PluginTagToContent("hparams")) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}
    # The HParams dashboard: settings only (one read-out, integers' exact values, booleans as booleans)
    # and every headline metric as a column, steps_to_target first.
    experiment, groups = hparams_dashboard(out)
    infos = {h.name: h for h in experiment.hparam_infos}
    assert not NOT_SETTINGS & set(infos) and "readout" in infos and "status" not in infos
    assert [v.number_value for v in infos["seed"].domain_discrete.values] == [0, 1]
    assert infos["bidirectional"].type == api_pb2.DATA_TYPE_BOOL
    assert sorted(v.string_value for v in infos["cell"].domain_discrete.values) == ["lstm", "rnn"]
    assert infos["pad_size"].description == "tokens per text"
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert metrics[:4] == ["summary/steps_to_target", "summary/reached", "summary/test_acc", "summary/best_dev_acc"]
    assert "time/wall_s" in metrics and not any("eval_s" in m and not m.startswith("time/") for m in metrics)
    assert len(groups) == 4
    for group in groups:
        (session,) = group.sessions
        run = _run(tables, session.name.rsplit("-", 1)[1])
        assert group.hparams["cell"].string_value == run["cell"] and group.hparams["seed"].number_value == run["seed"]
        assert group.hparams["bidirectional"].bool_value is True
        assert (session.start_time_secs, session.end_time_secs) == pytest.approx(_times(run), abs=1e-3)
        assert session.status == api_pb2.STATUS_SUCCESS
        values = {m.name.tag: m.value for m in group.metric_values}
        assert values["summary/steps_to_target"] == run["steps_to_target"] and values["summary/reached"] == 1
        assert values["summary/best_dev_acc"] == pytest.approx(run["best_dev_acc"], rel=1e-6)
    again = export(results, "tensorboard", out)
    assert (again.written, again.skipped) == (0, 4)
    assert len(list(out.glob("*/*/events.out.tfevents.*"))) == len(folders)
    assert len(list(out.glob("events.out.tfevents.*"))) == 1  # the experiment, rewritten


# ----------------------------------------------------------------------------- MLflow

def test_mlflow_parent_and_child_runs_read_back(results, tables, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    out = tmp_path / "mlflow"
    res = export(results, "mlflow", out)
    assert (res.written, res.skipped) == (4, 0)
    assert res.out == f"sqlite:///{(out / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(res.out)
    df = mlflow.search_runs(experiment_names=["export"])
    parent_col = "tags.mlflow.parentRunId"
    parents = df[df[parent_col].isna()]
    children = df[df[parent_col].notna()]
    assert len(parents) == 1 and len(children) == 4
    parent_id = parents["run_id"].iloc[0]
    assert (children[parent_col] == parent_id).all()
    assert parents["tags.harness.parent"].iloc[0] == "grid"
    client = MlflowClient(tracking_uri=res.out)
    assert [a.path for a in client.list_artifacts(parent_id)] == ["config.yaml"]
    # The parent holds the experiment's config as params, and spans its trials' times.
    parent = client.get_run(parent_id)
    assert parent.data.params["model.hidden_size"] == "8" and parent.data.params["train.eval_every"] == "2"
    assert parent.data.params["grid.cell"] == '["rnn", "lstm"]' and parent.data.params["name"] == "export"
    spans = [_times(_run(tables, t)) for t in tables["runs"]["trial_id"]]
    assert parent.info.start_time == round(min(s for s, _ in spans) * 1000)
    assert parent.info.end_time == round(max(e for _, e in spans) * 1000)
    for child in children.to_dict("records"):
        trial_id = child["tags.harness.trial_id"]
        run = _run(tables, trial_id)
        assert child["params.cell"] == run["cell"] and child["params.seed"] == str(run["seed"])
        info = client.get_run(child["run_id"])
        assert not NOT_SETTINGS & set(info.data.params) and info.data.params["bidirectional"] == "True"
        start, end = _times(run)
        assert (info.info.start_time, info.info.end_time) == (round(start * 1000), round(end * 1000))
        tags = info.data.tags
        assert tags["harness.cpu_model"] == run["cpu_model"] and tags["harness.worker"] == run["worker"]
        assert tags["harness.torch_version"] == run["torch_version"] and "harness.eval_s" not in tags
        assert info.data.metrics["steps_to_target"] == run["steps_to_target"] and info.data.metrics["reached"] == 1
        assert info.data.metrics["best_dev_acc"] == pytest.approx(run["best_dev_acc"])
        assert info.data.metrics["time/eval_s"] == pytest.approx(run["eval_s"])
        assert child["tags.mlflow.runName"] == f"cell={run['cell']},seed={run['seed']}"
        assert child["tags.harness.group"] == f"cell={run['cell']}"
        assert child["status"] == "FINISHED"
        assert child["metrics.test_acc"] == pytest.approx(run["test_acc"])
        assert client.list_artifacts(child["run_id"]) == []  # no weights kept (train.save_model: none)
        history = sorted(client.get_metric_history(child["run_id"], "dev/acc"), key=lambda m: m.step)
        expected = _curve(tables, trial_id, "dev_acc")
        assert [m.step for m in history] == list(expected.index)
        np.testing.assert_allclose([m.value for m in history], expected.to_numpy())
        norms = sorted(client.get_metric_history(child["run_id"], "update_ratio/rnn.l1"), key=lambda m: m.step)
        np.testing.assert_allclose([m.value for m in norms], _norm(tables, trial_id, "rnn.l1", "update_ratio"))
    again = export(results, "mlflow", out)
    assert (again.written, again.skipped) == (0, 4)
    assert len(mlflow.search_runs(experiment_names=["export"])) == 5


def test_mlflow_view_hint_fits_the_store():
    from harness.export import _view_command

    assert _view_command("mlflow", "sqlite:////r/mlflow.db", "bench") == "mlflow ui --backend-store-uri sqlite:////r/mlflow.db"
    server = _view_command("mlflow", "http://mlflow.example:5000", "bench")
    assert server.startswith("open http://mlflow.example:5000 in a browser") and "'bench'" in server
    assert "--backend-store-uri" not in server


# ----------------------------------------------------------------------------- W&B

def wandb_records(path: Path) -> list:
    """The records of a W&B transaction log (run-<id>.wandb): a 7-byte header ':W&B' + magic +
    version, then LevelDB log blocks of 32 KiB, each chunk with a 7-byte header (crc32, length,
    type: 1 full, 2 first, 3 middle, 4 last), holding serialized `wandb_internal_pb2.Record`s."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, block, pending, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # too little room for a chunk header: the block's tail is padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if kind == 0:  # zero padding
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (2, 3):
            pending = (b"" if kind == 2 else pending) + chunk
            continue
        rec = pb.Record()
        rec.ParseFromString(pending + chunk if kind == 4 else chunk)
        pending = b""
        out.append(rec)
    return out


def finished_records(run_dir: Path, timeout_s: float = 60.0) -> list:
    """The records of an offline run folder's transaction log once it ends with the run's exit record:
    wandb's service may still be writing the log when `run.finish()` has returned (under load the file
    then holds its 7-byte header alone)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        (log,) = run_dir.glob("run-*.wandb")
        try:
            recs = wandb_records(log) if log.stat().st_size > 7 else []
        except Exception:  # a record still being written
            if time.monotonic() > deadline:
                raise
            recs = []
        if (recs and recs[-1].WhichOneof("record_type") == "exit") or time.monotonic() > deadline:
            return recs
        time.sleep(0.2)


def read_wandb_run(run_dir: Path) -> dict:
    """The run record, history (step -> {key: value}) and summary of an offline run folder."""
    import json

    info: dict = {"history": {}, "summary": {}, "config": {}}
    for rec in finished_records(run_dir):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            info["run"] = rec.run
            info["config"].update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "config":
            info["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
            info["history"][int(items.get("_step", rec.history.step.num))] = items
        elif kind == "summary":
            info["summary"].update({i.key: json.loads(i.value_json) for i in rec.summary.update if i.key})
    return info


def test_wandb_offline_runs_read_back(results, tables, tmp_path):
    out = tmp_path / "wandb"
    res = export(results, "wandb", out)
    assert (res.written, res.skipped) == (4, 0)
    run_dirs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 4
    for run_dir in run_dirs:
        info = read_wandb_run(run_dir)
        trial_id = info["run"].run_id
        assert run_dir.name.endswith(trial_id)
        run = _run(tables, trial_id)
        assert info["run"].project == "export"
        assert info["run"].run_group == f"cell={run['cell']}"  # the configuration without the seed
        assert info["run"].display_name == f"cell={run['cell']},seed={run['seed']}"
        assert info["config"]["cell"] == run["cell"] and info["config"]["seed"] == run["seed"]
        expected = _curve(tables, trial_id, "dev_acc")
        assert sorted(info["history"]) == list(expected.index)
        np.testing.assert_allclose([info["history"][s]["dev/acc"] for s in expected.index], expected.to_numpy())
        norms = _norm(tables, trial_id, "embedding", "grad_norm")
        np.testing.assert_allclose([info["history"][s]["grad_norm/embedding"] for s in norms.index], norms.to_numpy())
        assert info["summary"]["test_acc"] == pytest.approx(run["test_acc"])
        assert info["summary"]["status"] == "complete"
        assert wandb_artifacts(run_dir) == []  # no weights kept (train.save_model: none)
        # settings in the config, system facts under config.system, outcomes and timings in the summary
        assert not NOT_SETTINGS & set(info["config"]) and info["config"]["bidirectional"] is True
        system = info["config"]["system"]
        assert system["cpu_model"] == run["cpu_model"] and system["worker"] == run["worker"]
        assert system["torch_version"] == run["torch_version"] and system["git_commit"] == run["git_commit"]
        assert info["summary"]["steps_to_target"] == run["steps_to_target"] and info["summary"]["reached"] == 1
        assert info["summary"]["best_dev_acc"] == pytest.approx(run["best_dev_acc"])
        assert info["summary"]["time/wall_s"] == pytest.approx(run["wall_s"])
        # the run starts when the trial did; each row's _timestamp is the trial's start + its training seconds
        start, _ = _times(run)
        assert info["run"].start_time.ToMicroseconds() / 1e6 == pytest.approx(start, abs=1e-3)
        elapsed = _curve(tables, trial_id, "elapsed_s")
        np.testing.assert_allclose([info["history"][s]["_timestamp"] for s in elapsed.index],
                                   start + elapsed.to_numpy(), atol=1e-3)
    assert (export(results, "wandb", out).written, len(list((out / "wandb").glob("offline-run-*")))) == (0, 4)


# ----------------------------------------------------------------------------- errors and CLI

@pytest.mark.parametrize("target,module", [("tensorboard", "tensorboard"), ("mlflow", "mlflow"),
                                           ("wandb", "wandb")])
def test_missing_library_names_the_extra(results, tmp_path, monkeypatch, target, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import <module>` raise ImportError
    with pytest.raises(ConfigError, match=re.escape(install_hint(target))):
        export(results, target, tmp_path / target)


def test_cli_export(results, tmp_path, capsys):
    out = tmp_path / "tb"
    assert main(["export", str(results), "--to", "tensorboard", str(out)]) == 0
    text = capsys.readouterr().out
    assert "wrote 4 trial(s)" in text and f"tensorboard --logdir {out}" in text
    assert main(["export", str(results), "--to", "trackerx"]) == 2
    assert "choose one of tensorboard, mlflow, wandb" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), "--to", "wandb"]) == 2


def test_mlflow_one_parent_per_study(tmp_path):
    import mlflow

    from harness import runner

    raw = tiny_raw("exst", {"cell": ["rnn", "lstm"], "seed": [0]})
    raw["study"] = {"per": ["cell"], "n_trials": 2, "sampler": "random", "rerun_best": False,
                    "params": {"lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}}}
    results = tmp_path / "results"
    assert runner.run(config_from_dict(raw), results, workers=1, device="cpu", threads=1,
                      progress=False)["complete"] == 4
    exp = load_experiment(results)
    assert exp.group_keys == ["cell", "lr", "study"]  # each sampled setting is its own configuration
    res = export(results, "mlflow", tmp_path / "mlflow")
    mlflow.set_tracking_uri(res.out)
    df = mlflow.search_runs(experiment_names=["exst"])
    parents = df[df["tags.mlflow.parentRunId"].isna()].set_index("run_id")
    assert sorted(parents["tags.harness.parent"]) == ["exst/cell=lstm", "exst/cell=rnn"]
    assert sorted(parents["tags.mlflow.runName"]) == ["exst/cell=lstm", "exst/cell=rnn"]
    children = df[df["tags.mlflow.parentRunId"].notna()]
    for parent_id, kids in children.groupby("tags.mlflow.parentRunId"):
        study = parents.loc[parent_id, "tags.harness.parent"]
        assert len(kids) == 2 and set(kids["params.study"]) == {study}
        assert set(kids["params.cell"]) == {study.split("=")[1]} and set(kids["tags.harness.phase"]) == {"search"}


def test_export_refuses_an_out_inside_the_results_folder(tmp_path, monkeypatch, capsys):
    import yaml

    from harness.export import check_out

    results = tmp_path / "res"
    (results / "trials").mkdir(parents=True)
    (results / "config.yaml").write_text(yaml.safe_dump(config_from_dict(tiny_raw("inside")).to_dict()))
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)
    for to, out in [("tensorboard", str(results / "trials" / "tb")), ("tensorboard", str(results)),
                    ("tensorboard", "res/trials/../trials/x"), ("wandb", str(results / "tensorboard")),
                    ("mlflow", f"sqlite:///{results}/x.db"), ("mlflow", "sqlite:///res/quarantine/m.db")]:
        assert main(["export", "res", "--to", to, out]) == 2, out
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "inside the results folder res" in err and f"res/{to}" in err, err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, nothing taken for a damaged trial
    for to, out in [("tensorboard", results / "tensorboard" / "run2"), ("mlflow", results / "mlflow"),
                    ("wandb", tmp_path / "elsewhere"), ("mlflow", "http://tracking:5000")]:
        check_out(results, to, out)  # the default folder (or below it), outside, or a server: fine


# ----------------------------------------------------------------------------- kept weights (train.save_model)

def wandb_artifacts(run_dir: Path) -> list:
    """The artifact records (wandb_internal_pb2.ArtifactRecord) an offline run logged."""
    return [rec.artifact for rec in finished_records(run_dir) if rec.WhichOneof("record_type") == "artifact"]


def assert_wandb_model_artifact(run_dir: Path, trial_id: str, weights: Path) -> None:
    """The offline run logged `weights` as its artifact model-<trial_id> of type "model": the manifest's
    file is model.pt with the file's size and MD5, and the copy W&B staged for upload holds its bytes."""
    import base64
    import hashlib

    (art,) = wandb_artifacts(run_dir)
    assert (art.type, art.name, art.run_id) == ("model", f"model-{trial_id}", trial_id)
    (entry,) = art.manifest.contents
    data = weights.read_bytes()
    assert (entry.path, entry.size) == ("model.pt", len(data))
    assert entry.digest == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert Path(entry.local_path).read_bytes() == data


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """One finished trial that kept its best weights (train.save_model: best)."""
    from harness import runner

    raw = tiny_raw("saved", grid={"cell": ["lstm"], "pad_size": [12], "seed": [0]})
    raw["train"]["save_model"] = "best"
    out = tmp_path_factory.mktemp("export-saved")
    assert runner.run(config_from_dict(raw), out, workers=1, device="cpu", threads=1, progress=False)["complete"] == 1
    return out


def test_mlflow_attaches_the_kept_weights(saved, tmp_path, capsys):
    import shutil

    import torch
    from mlflow.tracking import MlflowClient

    (row,) = records.load(saved).runs.to_dict("records")
    weights = saved / row["model_file"]
    res = export(saved, "mlflow", tmp_path / "mlflow")
    client = MlflowClient(tracking_uri=res.out)
    (child,) = [r for r in client.search_runs([client.get_experiment_by_name("saved").experiment_id])
                if "harness.trial_id" in r.data.tags]
    assert child.data.tags["harness.model_file"] == row["model_file"]
    assert [a.path for a in client.list_artifacts(child.info.run_id, "model")] == ["model/model.pt"]
    got = Path(client.download_artifacts(child.info.run_id, "model/model.pt", str(tmp_path)))
    assert got.read_bytes() == weights.read_bytes()
    state = torch.load(got, weights_only=True)["state_dict"]
    assert "fc.weight" in state
    # A weights file gone missing (a copied folder without it): a warning, and the run without it.
    bare = tmp_path / "bare"
    shutil.copytree(saved, bare, ignore=shutil.ignore_patterns("mlflow", "wandb"))
    (bare / row["model_file"]).unlink()
    res = export(bare, "mlflow", tmp_path / "mlflow-bare")
    assert res.written == 1 and "weights" in capsys.readouterr().err
    client = MlflowClient(tracking_uri=res.out)
    (child,) = [r for r in client.search_runs([client.get_experiment_by_name("saved").experiment_id])
                if "harness.trial_id" in r.data.tags]
    assert client.list_artifacts(child.info.run_id) == []


def test_wandb_attaches_the_kept_weights(saved, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # W&B stages the copy it uploads there
    (row,) = records.load(saved).runs.to_dict("records")
    out = tmp_path / "wandb"
    assert export(saved, "wandb", out).written == 1
    (run_dir,) = (out / "wandb").glob(f"offline-run-*-{row['trial_id']}")
    assert_wandb_model_artifact(run_dir, row["trial_id"], saved / row["model_file"])
    (art,) = wandb_artifacts(run_dir)
    assert Path(art.manifest.contents[0].local_path).is_relative_to(tmp_path / "wandb-data")


def test_tensorboard_export_of_kept_weights_is_the_same(saved, tmp_path):
    # TensorBoard keeps no artifacts: the export writes the trial as it would without weights.
    assert export(saved, "tensorboard", tmp_path / "tb").written == 1
    assert not list((tmp_path / "tb").rglob("*.pt"))


# ----------------------------------------------------------------------------- bad stores and weights (issue 29)

def test_mlflow_an_unreachable_server_is_one_line_within_30_s(results, monkeypatch, capsys):
    """Nothing listens on port 9: one line naming the URL, exit 1, well within 30 s (MLflow's own
    retries would take minutes)."""
    import time

    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    start = time.monotonic()
    assert main(["export", str(results), "--to", "mlflow", "http://127.0.0.1:9/"]) == 1
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("harness: error: cannot reach the MLflow tracking store "
                                               "http://127.0.0.1:9/"), err


def test_mlflow_a_read_only_store_is_one_line_naming_the_file(results, tmp_path, capsys):
    """A store on a read-only file system (as root: a tmpfs remounted read-only; else permissions):
    one line naming the file, exit 1, within 30 s (MLflow itself retries for about 100 s)."""
    import sqlite3
    import subprocess
    import time

    folder = tmp_path / "ro"
    folder.mkdir()
    store = folder / "mlflow.db"
    root = os.geteuid() == 0
    if root and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)]).returncode != 0:
        pytest.skip("running as root and cannot mount a tmpfs to make read-only")
    try:
        sqlite3.connect(store).close()
        if root:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        else:
            store.chmod(0o444)
            folder.chmod(0o555)
        start = time.monotonic()
        assert main(["export", str(results), "--to", "mlflow", f"sqlite:///{store}"]) == 1
        assert time.monotonic() - start < 30
    finally:
        if root:
            subprocess.run(["umount", "-l", str(folder)], check=True)
        else:
            folder.chmod(0o755)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"harness: error: cannot write the MLflow store {store} ("), err


def test_mlflow_check_store_refuses_a_file_that_is_not_a_database(tmp_path):
    from harness.export.mlflow import check_store
    from harness.storage import TrackerUnreachable

    bad = tmp_path / "mlflow.db"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(TrackerUnreachable, match=f"^cannot write the MLflow store {re.escape(str(bad))} "):
        check_store(f"sqlite:///{bad}")
    check_store(f"sqlite:///{tmp_path / 'new.db'}")  # a new store: fine


def test_mlflow_skips_weights_that_do_not_load_in_one_line(saved, tmp_path, capsys):
    import shutil

    from mlflow.tracking import MlflowClient

    (row,) = records.load(saved).runs.to_dict("records")
    bad = tmp_path / "bad"
    shutil.copytree(saved, bad, ignore=shutil.ignore_patterns("mlflow", "wandb"))
    (bad / row["model_file"]).write_bytes(os.urandom(100))
    capsys.readouterr()
    res = export(bad, "mlflow", tmp_path / "mlflow-bad")
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("harness: warning:")]
    assert err == [f"harness: warning: trial {row['trial_id']}'s weights {bad / row['model_file']} are not a torch "
                   f"file (not the zip archive torch.save writes); exported without them"]
    client = MlflowClient(tracking_uri=res.out)
    (child,) = [r for r in client.search_runs([client.get_experiment_by_name("saved").experiment_id])
                if "harness.trial_id" in r.data.tags]
    assert res.written == 1 and client.list_artifacts(child.info.run_id) == []


def test_a_run_with_a_tracker_whose_library_is_missing_stops_before_any_work(tmp_path, monkeypatch):
    """As docs/integrations.md says: exit 2 (a ConfigError) with the line that installs it, nothing written."""
    from harness import runner

    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` raise ImportError
    cfg = config_from_dict({**tiny_raw("lib"), "run": {"trackers": ["wandb"]}})
    with pytest.raises(ConfigError, match=r"^run.trackers: wandb needs the 'wandb' library.*" +
                       re.escape(install_hint("wandb"))):
        runner.run(cfg, tmp_path / "res", workers=1, device="cpu", threads=1, progress=False)
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("name", ["a" * 65, "..", "."])
def test_an_arm_name_a_file_name_or_a_tracker_would_refuse_is_refused_at_config_load(tmp_path, name):
    """Arm names go into TensorBoard's run folders and trackers' run names: 300 characters once made
    `--to tensorboard` fail half-way ("File name too long"). Refused with the file and line instead."""
    from harness.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(f"name: x\ndata: {{kind: synthetic}}\ngrid:\n  arm:\n    ok: {{cell: rnn}}\n"
                    f"    '{name}': {{cell: lstm}}\n")
    with pytest.raises(ConfigError, match=rf"^config key 'grid.arm': arm name .* is not allowed; allowed: a non-empty "
                       rf"name of at most 64 .*\({re.escape(str(path))}, line 4\)$"):
        load_config(path)
    ok = path.read_text().replace(f"'{name}'", "'" + "b" * 64 + "'")
    path.write_text(ok)
    assert load_config(path).grid["arm"] == ["ok", "b" * 64]
