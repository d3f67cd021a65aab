"""`harness export`: what each tracker's own reader gets back equals the results tables."""

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

GRID = {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0, 1]}


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
        steps = [s for s, _, values in view.by_step()]
        assert steps == sorted(set(steps)) == list(_curve(tables, view.trial_id, "dev_acc").index)


def test_group_keys_follow_the_report_and_studies():
    runs = pd.DataFrame({"cell": ["rnn", "rnn", "lstm"], "layernorm": ["none"] * 3, "lr": [1e-3, 1e-3, 1e-3],
                         "seed": [0, 1, 0], "model.forget_bias": [0.0, 1.0, 0.0], "phase": ["grid"] * 3})
    raw = {"grid": {"cell": ["rnn", "lstm"], "seed": [0, 1], "model.forget_bias": [0, 1]}}
    assert group_keys(runs, raw) == ["cell", "model.forget_bias"]
    runs["phase"] = ["search", "rerun", "rerun"]
    runs["study"] = ["s1", "s1", "s2"]
    assert group_keys(runs, raw) == ["cell", "model.forget_bias", "study", "phase"]


# ----------------------------------------------------------------------------- TensorBoard

def test_tensorboard_scalars_and_hparams_read_back(results, tables, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = tmp_path / "tb"
    res = export(results, "tensorboard", out)
    assert (res.written, res.skipped) == (4, 0)
    folders = sorted(p.parent for p in out.glob("*/*/events.out.tfevents.*"))
    assert len(set(folders)) == 4
    for folder in set(folders):
        trial_id = folder.name.rsplit("-", 1)[1]
        run = _run(tables, trial_id)
        assert folder.parent.name == f"cell={run['cell']}" and folder.name.startswith(f"seed={run['seed']}-")
        ea = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        ea.Reload()
        for tag, expected in (("dev/acc", _curve(tables, trial_id, "dev_acc")),
                              ("train/loss", _curve(tables, trial_id, "train_loss")),
                              ("grad_norm/rnn.l0", _norm(tables, trial_id, "rnn.l0", "grad_norm")),
                              ("update_ratio/fc", _norm(tables, trial_id, "fc", "update_ratio"))):
            events = ea.Scalars(tag)
            assert [e.step for e in events] == list(expected.index), tag
            np.testing.assert_allclose([e.value for e in events], expected.to_numpy(), rtol=1e-6)
        # wall time = the trial's start + its elapsed training time at that point
        start = pd.Timestamp(run["started_at"]).timestamp()
        elapsed = _curve(tables, trial_id, "elapsed_s")
        np.testing.assert_allclose([e.wall_time for e in ea.Scalars("dev/acc")], start + elapsed.to_numpy(), atol=1e-3)
        assert ea.Scalars("summary/test_acc")[0].value == pytest.approx(run["test_acc"], rel=1e-6)
        content = ea.PluginTagToContent("hparams")
        hp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        values = hp.session_start_info.hparams
        assert values["cell"].string_value == run["cell"]
        assert values["seed"].number_value == run["seed"]
        assert values["status"].string_value == "complete"
        exp_info = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
        cell_info = next(h for h in exp_info.hparam_infos if h.name == "cell")
        assert sorted(v.string_value for v in cell_info.domain_discrete.values) == ["lstm", "rnn"]
    again = export(results, "tensorboard", out)
    assert (again.written, again.skipped) == (0, 4)
    assert len(list(out.glob("*/*/events.out.tfevents.*"))) == len(folders)


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
    for child in children.to_dict("records"):
        trial_id = child["tags.harness.trial_id"]
        run = _run(tables, trial_id)
        assert child["params.cell"] == run["cell"] and child["params.seed"] == str(run["seed"])
        assert child["tags.mlflow.runName"] == f"cell={run['cell']},seed={run['seed']}"
        assert child["tags.harness.group"] == f"cell={run['cell']}"
        assert child["status"] == "FINISHED"
        assert child["metrics.test_acc"] == pytest.approx(run["test_acc"])
        history = sorted(client.get_metric_history(child["run_id"], "dev/acc"), key=lambda m: m.step)
        expected = _curve(tables, trial_id, "dev_acc")
        assert [m.step for m in history] == list(expected.index)
        np.testing.assert_allclose([m.value for m in history], expected.to_numpy())
        norms = sorted(client.get_metric_history(child["run_id"], "update_ratio/rnn.l1"), key=lambda m: m.step)
        np.testing.assert_allclose([m.value for m in norms], _norm(tables, trial_id, "rnn.l1", "update_ratio"))
    again = export(results, "mlflow", out)
    assert (again.written, again.skipped) == (0, 4)
    assert len(mlflow.search_runs(experiment_names=["export"])) == 5


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


def read_wandb_run(run_dir: Path) -> dict:
    """The run record, history (step -> {key: value}) and summary of an offline run folder."""
    import json

    (log,) = run_dir.glob("run-*.wandb")
    info: dict = {"history": {}, "summary": {}, "config": {}}
    for rec in wandb_records(log):
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
