"""Shards are written atomically and the five tables come back with the documented columns."""

import pandas as pd

from harness import records


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
    assert runs["test_acc"].tolist() == [0.75] and runs["schema_version"].tolist() == [1]


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
