"""Shards are written atomically, with the tables' schemas, and the five tables come back with the
documented columns and the same dtypes whatever the rows hold."""


import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness import records, schema


def test_write_then_load_and_combine(tmp_path):
    rec = records.TrialRecorder("abc")
    rec.add("curves", step=1, dev_acc=0.5)
    rec.set_run(status="complete", test_acc=0.75)
    records.write_trial(tmp_path, "abc", rec.tables())
    assert records.is_done(tmp_path, "abc")
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "trials").iterdir())
    tables = records.combine(tmp_path)
    assert set(tables) == set(records.TABLES)
    for name, cols in records.COLUMNS.items():
        assert list(tables[name].columns[: len(cols)]) == cols
        assert (tmp_path / f"{name}.parquet").is_file()
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    assert runs["test_acc"].tolist() == [0.75] and runs["schema_version"].tolist() == [schema.SCHEMA_VERSION]


def test_half_written_trial_is_not_done(tmp_path):
    (tmp_path / "trials" / ".tmp-abc-123").mkdir(parents=True)
    (tmp_path / "trials" / "abc").mkdir()  # a folder without its runs shard
    assert not records.is_done(tmp_path, "abc")
    assert len(records.load(tmp_path)["runs"]) == 0


def test_rewrite_replaces_a_failed_attempt(tmp_path):
    for status in ("failed", "complete"):
        rec = records.TrialRecorder("t1")
        rec.set_run(status=status)
        records.write_trial(tmp_path, "t1", rec.tables())
    assert records.load(tmp_path)["runs"]["status"].tolist() == ["complete"]


def _runs_dtypes(results_dir) -> dict[str, str]:
    return records.load(results_dir)["runs"].dtypes.astype(str).to_dict()


def test_shards_have_the_schema_types_even_for_empty_columns(tmp_path):
    rec = records.TrialRecorder("t1")
    rec.set_run(status="diverged", error="nan loss", steps=5, steps_to_target=None,
                started_at="2026-01-01T10:00:00+00:00", **{"model.forget_bias": 1.0})
    records.write_trial(tmp_path, "t1", rec.tables())
    written = pq.read_schema(records.trial_dir(tmp_path, "t1") / "runs.parquet")
    for field in schema.RUNS:
        assert written.field(field.name).type == field.type, field.name
    assert written.field("model.forget_bias").type == pa.float64()  # an extra column, type inferred
    assert pq.read_schema(records.trial_dir(tmp_path, "t1") / "curves.parquet").field("dev_acc").type == pa.float64()
    runs = records.load(tmp_path)["runs"]
    assert runs["started_at"].iloc[0] == pd.Timestamp("2026-01-01T10:00:00", tz="UTC")
    assert runs["steps"].iloc[0] == 5 and pd.isna(runs["steps_to_target"].iloc[0])


def test_load_dtypes_do_not_depend_on_which_values_are_null(tmp_path):
    empty = _runs_dtypes(tmp_path)
    rec = records.TrialRecorder("a")
    rec.set_run(status="complete", test_acc=0.5, steps=10, steps_to_target=None, bidirectional=True)
    records.write_trial(tmp_path, "a", rec.tables())
    one = _runs_dtypes(tmp_path)
    rec = records.TrialRecorder("b")
    rec.set_run(status="complete", test_acc=None, steps=10, steps_to_target=7, error="x")
    records.write_trial(tmp_path, "b", rec.tables())
    both = _runs_dtypes(tmp_path)
    assert empty == one == both
    assert (both["steps_to_target"], both["test_acc"], both["error"], both["bidirectional"]) == (
        "Int64", "float64", "str", "boolean")
    assert both["started_at"] == "datetime64[us, UTC]"
    curves = records.load(tmp_path)["curves"]
    assert curves["step"].dtype == "int64" and curves["dev_acc"].dtype == "float64"


def test_extra_columns_null_in_one_shard_and_set_in_another_load_together(tmp_path):
    for tid, value in (("a", None), ("b", 0.5)):
        rec = records.TrialRecorder(tid)
        rec.set_run(status="complete", **{"train.grad_clip": value})
        records.write_trial(tmp_path, tid, rec.tables())
    runs = records.load(tmp_path)["runs"]
    assert runs["train.grad_clip"].dtype == "float64"
    assert runs.set_index("trial_id")["train.grad_clip"].to_dict()["b"] == 0.5
    assert list(runs.columns[: len(schema.RUNS)]) == schema.RUNS.names


def test_a_version_1_shard_loads_with_the_current_types(tmp_path):
    d = tmp_path / "trials" / "old"
    d.mkdir(parents=True)
    old = pa.table({"trial_id": ["old"], "status": ["complete"], "error": pa.nulls(1), "steps_to_target": pa.nulls(1),
                    "steps": [12], "started_at": ["2025-05-01T00:00:00+00:00"], "schema_version": [1]})
    pq.write_table(old, d / "runs.parquet")
    runs = records.load(tmp_path)["runs"]
    assert _runs_dtypes(tmp_path) == _runs_dtypes(tmp_path / "nothing")
    assert runs["started_at"].iloc[0] == pd.Timestamp("2025-05-01", tz="UTC") and runs["steps"].iloc[0] == 12


def test_a_value_of_the_wrong_type_names_its_column(tmp_path):
    rec = records.TrialRecorder("t1")
    rec.set_run(status="complete", steps="many")
    with pytest.raises(ValueError, match="column 'steps'"):
        rec.tables()


def test_load_returns_typed_results_that_still_read_like_a_dict(tmp_path):
    rec = records.TrialRecorder("abc")
    rec.add("curves", step=1, dev_acc=0.5)
    rec.set_run(status="complete", test_acc=0.75)
    records.write_trial(tmp_path, "abc", rec.tables())
    res = records.load(tmp_path)
    assert isinstance(res, records.Results) and res.dir == tmp_path
    assert res.runs["test_acc"].tolist() == [0.75] and res["runs"] is res.runs
    assert list(res) == list(records.TABLES) == list(res.keys()) and len(res) == 5
    assert {name: len(df) for name, df in res.items()} == {
        "runs": 1, "curves": 1, "grad_norms": 0, "grad_time": 0, "confusion": 0}
    assert set(dict(res)) == set(res.tables) and "curves" in res and "weights" not in res
    with pytest.raises(KeyError, match="the tables are runs, curves"):
        res["weights"]
    assert res.schema("runs") is schema.RUNS and res.schema("runs").field("test_acc").type == pa.float64()
    assert "best-dev-loss" in res.columns_doc("runs")["test_acc"]
    assert res.config is None and res.config_error is None  # no config.yaml here


def test_load_reads_the_resolved_config_or_says_why_not(tmp_path):
    (tmp_path / "config.yaml").write_text("name: mine\ngrid: {cell: [rnn, gru], seed: [0, 1]}\n")
    res = records.load(tmp_path)
    assert res.config.name == "mine" and res.config.grid["model.cell"] == ["rnn", "gru"]
    assert res.config_error is None and len(res.runs) == 0
    (tmp_path / "config.yaml").write_text("name: mine\nmodel: {colour: red}\n")
    res = records.load(tmp_path)
    assert res.config is None and "model.colour" in res.config_error


def test_results_repr_is_one_line(smoke_run):
    text = repr(records.load(smoke_run))
    assert "\n" not in text and len(text) < 300
    assert text.startswith(f"Results({str(smoke_run)!r}: runs 4 rows") and "config 'smoke'" in text
