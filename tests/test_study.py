"""Optuna studies: config validation, pruning, several objectives, per-factor tuning, and workers
on two results folders sharing one PostgreSQL database."""

import os
import subprocess
import sys
import uuid

import optuna
import pytest
import yaml
from conftest import ROOT, tiny_raw
from optuna.trial import TrialState

from harness import records, runner
from harness import study as study_mod
from harness.config import ConfigError, config_from_dict
from harness.report import write_report
from harness.storage import open_storage

LR = {"lr": {"type": "float", "low": 1.0e-5, "high": 0.1, "log": True}}


def study_raw(name="st", grid=None, **study):
    raw = tiny_raw(name, grid or {"seed": [0]})
    raw["train"].update({"epochs": 2, "target_dev_acc": 0.15})
    raw["study"] = {"n_trials": 4, "sampler": "random", "params": LR, **study}
    return raw


@pytest.mark.parametrize("study, key, words", [
    ({"sampler": "annealing"}, "study.sampler", ["tpe, random, qmc, gp, nsga2, grid, bruteforce"]),
    ({"pruner": "median", "objectives": ["best_dev_acc", "train_s"]}, "study.pruner", ["2 objectives"]),
    ({"params": {"model.dropout": {"type": "float", "low": 0, "high": 0.5, "log": True}}},
     "study.params.model.dropout.low", ["log distribution needs low > 0"]),
    ({"params": {"lr": {"type": "float", "low": 0.1, "high": 0.01}}}, "study.params.lr", ["above high"]),
    ({"params": {"lr": {"type": "gaussian"}}}, "study.params.lr.type", ["float, int, categorical"]),
    ({"params": {"lr": {"type": "float", "low": 1, "high": 2, "scale": 3}}}, "study.params.lr.scale", ["unknown"]),
    ({"params": {"model.colour": {"type": "int", "low": 1, "high": 2}}}, "study.params.model.colour", ["unknown"]),
    ({"params": {"cell": {"type": "categorical", "choices": []}}}, "study.params.cell.choices", ["non-empty"]),
    ({"params": {"cell": {"type": "categorical", "choices": ["rnn", "tcn"]}}}, "study.params.cell.choices",
     ["'tcn'", "rnn, lstm, gru"]),
    ({"params": {"lr": {"type": "int", "low": 1, "high": 3}}}, "study.params.lr.type", ["integer"]),
    ({"params": {"hidden_size": {"type": "float", "low": 1, "high": 3}}}, "study.params.hidden_size", ["unknown"]),
    ({"params": {"model.hidden_size": {"type": "float", "low": 1, "high": 3}}}, "study.params.model.hidden_size.type",
     ["not a float"]),
    ({"params": {"seed": {"type": "int", "low": 0, "high": 3}}}, "study.params.seed", ["grid.seed"]),
    ({"sampler": "grid"}, "study.params.lr", ["grid sampler"]),
    ({"sampler_options": {"n_startup_trials": 3}}, "study.sampler_options.n_startup_trials", ["random sampler"]),
    ({"pruner": "median", "pruner_options": {"patience": 3}}, "study.pruner_options.patience", ["n_warmup_steps"]),
    ({"objectives": [{"metric": "speed"}]}, "study.objectives[0].metric", ["best_dev_acc"]),
    ({"objectives": [{"metric": "test_acc", "direction": "up"}]}, "study.objectives[0].direction", ["maximize"]),
    ({"objectives": ["test_acc"]}, "study.objectives[0].metric", ["test set", "allow_test_objectives: true"]),
    ({"objectives": ["best_dev_acc", "test_loss"]}, "study.objectives[1].metric", ["'test_loss'", "best_dev_acc"]),
    ({"allow_test_objectives": "yes"}, "study.allow_test_objectives", ["true or false"]),
    ({"n_trials": 0}, "study.n_trials", [">= 1"]),
    ({"per": ["cell"]}, "study.per", ["grid axis"]),
    ({"colour": 1}, "study.colour", ["unknown"]),
])
def test_study_errors_name_the_key(study, key, words):
    with pytest.raises(ConfigError) as e:
        config_from_dict(study_raw(**study))
    msg = str(e.value)
    assert f"'{key}'" in msg, msg
    for w in words:
        assert w in msg, msg


def test_test_objectives_need_the_opt_in_which_the_resolved_config_keeps(tmp_path):
    cfg = config_from_dict(study_raw(objectives=["test_acc"], allow_test_objectives=True))
    assert cfg.study.allow_test_objectives and cfg.study.objectives[0].metric == "test_acc"
    assert cfg.to_dict()["study"]["allow_test_objectives"] is True
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))  # as config.yaml reads back
    assert again.study.allow_test_objectives and again.study == cfg.study
    assert config_from_dict(study_raw()).study.allow_test_objectives is False


def test_search_seed_is_outside_the_grid_seeds():
    cfg = config_from_dict(study_raw(grid={"seed": [0, 1_000_000, 1_000_001]}))
    assert study_mod.search_seed(cfg) == 1_000_002
    assert study_mod.rerun_seeds(cfg) == [0, 1_000_000, 1_000_001]
    assert study_mod.search_seed(config_from_dict(study_raw(grid={"seed": [3, 4]}))) == 1_000_003


def test_grid_axes_must_be_per_axes_and_params_not_grid_axes():
    with pytest.raises(ConfigError, match="not listed: cell"):
        config_from_dict(study_raw(grid={"cell": ["rnn", "lstm"], "seed": [0]}))
    with pytest.raises(ConfigError, match="also a grid axis"):
        config_from_dict(study_raw(grid={"lr": [1e-3], "seed": [0]}))


def test_tpe_with_median_pruner_prunes_and_completes(tmp_path):
    raw = study_raw("prune", n_trials=8, sampler="tpe", sampler_options={"n_startup_trials": 3},
                    pruner="median", pruner_options={"n_startup_trials": 2, "n_warmup_steps": 0}, rerun_best=False)
    raw["train"]["epochs"] = 3
    cfg = config_from_dict(raw)
    counts = runner.run(cfg, tmp_path, workers=1, device="cpu", threads=1, progress=False)
    assert counts["total"] == 8 and counts["missing"] == 0 and counts["pruned"] >= 1
    runs = records.load(tmp_path)["runs"]
    assert len(runs) == 8 and (runs["phase"] == "search").all()
    pruned = runs[runs["status"] == "pruned"]
    full = runs.loc[runs["status"] == "complete", "steps"].max()
    assert (pruned["steps"] < full).all() and (pruned["stop_reason"] == "pruned").all()
    curves = records.load(tmp_path)["curves"]
    assert set(pruned["trial_id"]) <= set(curves["trial_id"])  # a pruned trial keeps its curves
    study = optuna.load_study(study_name="prune/all", storage=open_storage(tmp_path, None))
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.PRUNED) == len(pruned) and states.count(TrialState.COMPLETE) == 8 - len(pruned)
    # Re-running the same command adds nothing: the study already has its 8 trials.
    assert runner.run(cfg, tmp_path, workers=1, device="cpu", threads=1, progress=False)["missing"] == 0
    assert len(study.get_trials()) == 8


def test_two_objectives_give_a_pareto_front(tmp_path):
    raw = study_raw("pareto", n_trials=5, sampler="nsga2", rerun_best=False,
                    objectives=[{"metric": "best_dev_acc"}, {"metric": "train_s"}])
    cfg = config_from_dict(raw)
    runner.run(cfg, tmp_path, workers=1, device="cpu", threads=1, progress=False)
    study = optuna.load_study(study_name="pareto/all", storage=open_storage(tmp_path, None))
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    front = study.best_trials
    assert 1 <= len(front) <= 5 and all(len(t.values) == 2 for t in front)
    text = write_report(tmp_path).read_text()
    assert "figures/study_pareto_all.png" in text and (tmp_path / "figures" / "study_pareto_all.png").is_file()


def test_per_factor_tuning_runs_one_study_each_then_reruns_the_best(tmp_path):
    raw = study_raw("per", grid={"cell": ["rnn", "lstm"], "seed": [0, 1]}, n_trials=3, per=["cell"])
    cfg = config_from_dict(raw)
    counts = runner.run(cfg, tmp_path, workers=1, device="cpu", threads=1, progress=False)
    assert counts["total"] == 2 * 3 + 2 * 2 and counts["missing"] == 0
    runs = records.load(tmp_path)["runs"]
    search, rerun = runs[runs["phase"] == "search"], runs[runs["phase"] == "rerun"]
    assert sorted(search.groupby("cell").size().tolist()) == [3, 3]
    assert sorted(zip(rerun["cell"], rerun["seed"])) == [("lstm", 0), ("lstm", 1), ("rnn", 0), ("rnn", 1)]
    # The search trained on a seed of its own: no re-run is a copy of the trial it re-runs.
    assert set(search["seed"]) == {1_000_000} and set(rerun["trial_id"]).isdisjoint(search["trial_id"])
    storage = open_storage(tmp_path, None)
    for cell in ("rnn", "lstm"):
        study = optuna.load_study(study_name=f"per/cell={cell}", storage=storage)
        best_lr = study.best_trial.params["lr"]
        assert (rerun.loc[rerun["cell"] == cell, "lr"] == best_lr).all()
    text = write_report(tmp_path).read_text()
    assert "## Study: best setting per configuration" in text and "cell=lstm" in text
    assert (tmp_path / "figures" / "study_history_0.png").is_file()


@pytest.fixture
def postgres_url():
    """A fresh database on a local PostgreSQL server (HARNESS_TEST_POSTGRES, or started by
    .ci/postgres.sh); skipped with the reason when no server can be started."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver) is not installed")
    url = os.environ.get("HARNESS_TEST_POSTGRES")
    if not url:
        out = subprocess.run([str(ROOT / ".ci" / "postgres.sh")], capture_output=True, text=True)
        if out.returncode != 0:
            pytest.skip(f"no PostgreSQL server could be started: {out.stderr.strip()}")
        url = out.stdout.strip()
    name = f"harness_{uuid.uuid4().hex[:10]}"
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL at {url} is not reachable: {e}")
    conn.execute(f"CREATE DATABASE {name}")
    yield url.rsplit("/", 1)[0] + "/" + name
    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    conn.close()


@pytest.mark.slow
def test_two_machines_share_a_study_through_postgres(tmp_path, postgres_url, monkeypatch):
    raw = study_raw("pg", grid={"cell": ["rnn", "lstm"], "seed": [0]}, n_trials=3, per=["cell"])
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    art = tmp_path / "artifacts"
    outs = [tmp_path / "machine_a", tmp_path / "machine_b"]
    cmd = [sys.executable, "-m", "harness", "run", str(cfg_path), "--storage", postgres_url, "--artifacts", str(art),
           "--device", "cpu", "--quiet", "--set", "run.threads=1"]
    procs = [subprocess.Popen(cmd + ["--out", str(o)], stdout=subprocess.PIPE, stderr=subprocess.PIPE) for o in outs]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    storage = optuna.storages.RDBStorage(postgres_url)
    slots = []
    for cell in ("rnn", "lstm"):
        trials = optuna.load_study(study_name=f"pg/cell={cell}", storage=storage).get_trials()
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(done) == 3
        slots += [(cell, t.user_attrs["slot"]) for t in done]
    assert len(set(slots)) == len(slots) == 6  # no search slot lost or run twice
    queue = optuna.load_study(study_name="pg", storage=storage).get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.user_attrs["trial_id"] for t in queue) == sorted({t.user_attrs["trial_id"] for t in queue})
    assert len(queue) == 2  # the best setting of each cell, re-run with the one seed
    shards = {t.user_attrs["shard"] for name in ("pg/cell=rnn", "pg/cell=lstm", "pg")
              for t in optuna.load_study(study_name=name, storage=storage).get_trials()
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    assert len(shards) == 8
    # DIR/run.yaml keeps the URL without its password: report takes it from PGPASSWORD, as libpq does.
    from sqlalchemy.engine import make_url

    monkeypatch.setenv("PGPASSWORD", make_url(postgres_url).password or "")
    # Each side's report sees every trial, also those the other machine ran (from the artifact store).
    for out in outs:
        write_report(out)
        runs = records.load(out)["runs"]
        assert len(runs) == 8 and runs["trial_id"].is_unique and set(runs["trial_id"]) == shards


# ----------------------------------------------------------------------------- grid params as Optuna sees them

def _grid_study(cfg, outcome, storage=None) -> optuna.Study:
    """An Optuna study holding every grid trial of `cfg` as a finished trial, with the params and
    distributions the queue enqueues it with (study.trial_params) and the value `outcome(factors)`."""
    from harness.config import expand_grid
    from harness.queue import open_queue

    class _Plan:  # what open_queue reads of a plan
        pass

    plan = _Plan()
    plan.cfg = cfg
    study = open_queue(plan, storage or optuna.storages.InMemoryStorage())
    for spec in expand_grid(cfg, "synth-x"):
        params, dists = study_mod.trial_params(cfg, spec)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=outcome(spec.factors)))
    return study


@pytest.mark.parametrize("decides", ["pad_size", "cell", "lr"])
def test_the_factor_that_decides_the_outcome_ranks_first(decides):
    # 3 factors, 2 levels each, 2 seeds; only `decides` moves the outcome (0.8 vs 0.2), the seed by 0.01.
    grid = {"cell": ["rnn", "lstm"], "pad_size": [16, 64], "lr": [0.001, 0.01], "seed": [0, 1]}
    cfg = config_from_dict(tiny_raw("imp", grid))
    high = {"pad_size": 16, "cell": "lstm", "lr": 0.01}[decides]
    study = _grid_study(cfg, lambda f: (0.8 if f[decides] == high else 0.2) + 0.01 * f["seed"])
    importance = optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(
        seed=0))
    assert next(iter(importance)) == decides and importance[decides] > 0.9, importance
    # every trial carries the same distribution per axis: the whole axis
    dists = {repr(t.distributions) for t in study.trials}
    assert len(dists) == 1
    d = study.trials[0].distributions
    assert d["pad_size"] == optuna.distributions.IntDistribution(16, 64)
    assert d["lr"] == optuna.distributions.FloatDistribution(0.001, 0.01)
    assert d["seed"] == optuna.distributions.IntDistribution(0, 1)
    assert set(d["cell"].choices) >= {"rnn", "lstm"}
    assert study.metric_names == ["best_dev_acc"]  # the objective's name, not "Objective 0"


def test_on_first_yaml_the_factor_that_decides_ranks_first():
    """configs/first.yaml's factors, outcomes as measured there (issue 31: mean best dev accuracy 0.72 at
    pad_size 16 vs 0.11 at 64; 0.51 vs 0.32 across cell): pad_size first, then cell."""
    from harness.config import load_config

    cfg = load_config(ROOT / "configs" / "first.yaml")
    table = {(16, "lstm"): 0.81, (16, "rnn"): 0.63, (64, "lstm"): 0.21, (64, "rnn"): 0.01}
    study = _grid_study(cfg, lambda f: table[f["pad_size"], f["cell"]] + 0.01 * f["seed"])
    importance = optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(
        seed=0))
    assert list(importance)[:2] == ["pad_size", "cell"], importance


def test_resuming_a_study_written_with_one_point_distributions(tmp_path):
    """A database study from before (a number recorded as IntDistribution(v, v)) takes the new trials:
    Optuna's database refuses another kind of distribution for a param (Int -> Categorical), not
    another range of the same kind."""
    cfg = config_from_dict(tiny_raw("old", {"cell": ["rnn"], "pad_size": [16, 64], "seed": [0]}))
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'old.db'}")
    old = optuna.create_study(study_name="old", storage=storage, direction="maximize")
    from harness.config import expand_grid

    _, cell = study_mod.trial_params(cfg, expand_grid(cfg, "synth-x")[0])  # text settings: as before
    D = optuna.distributions
    one_point = {"cell": cell["cell"], "pad_size": D.IntDistribution(16, 16), "seed": D.IntDistribution(0, 0)}
    old.add_trial(optuna.trial.create_trial(params={"cell": "rnn", "pad_size": 16, "seed": 0}, value=0.5,
                                            distributions=one_point))
    study = _grid_study(cfg, lambda f: 0.5, storage)  # no error: the same kinds, wider ranges
    assert len(study.trials) == 3 and study.metric_names == ["best_dev_acc"]
    assert study.trials[-1].distributions["pad_size"] == optuna.distributions.IntDistribution(16, 64)
    with pytest.raises(ValueError):  # what the kinds being kept avoids
        study.add_trial(optuna.trial.create_trial(params={"pad_size": 16}, value=0.5, distributions={
            "pad_size": optuna.distributions.CategoricalDistribution([16, 64])}))
