"""Files inside a results folder are not trusted: a DIR/config.yaml or DIR/run.yaml that is not UTF-8,
not YAML or not of the shape the harness writes gives `status`, `status --json`, `report`, `export`
and a resuming `run` (and its dry run) one line naming the file and how to recover, exit 2, no
traceback, nothing written.

A Hypothesis property writes any bytes into either file of one finished tiny results folder (made
once for the module) and runs `harness status` and `harness report` in-process: exit 0, or exit 2
with one line. HARNESS_HYPOTHESIS_EXAMPLES=2000 runs it longer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import tiny_raw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_input import EXAMPLES, invoke, tree

from harness.config import config_from_dict

GRID = {"cell": ["rnn"], "pad_size": [12], "seed": [0]}
FILES = ("config.yaml", "run.yaml")
PROPERTY = settings(max_examples=max(10, EXAMPLES // 2), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished one-trial results folder, and the experiment's YAML beside it (cfg.yaml)."""
    from harness import runner

    work = tmp_path_factory.mktemp("status")
    raw = tiny_raw("status", GRID)
    (work / "cfg.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    counts = runner.run(config_from_dict(raw), work / "res", workers=1, device="cpu", threads=1, progress=False)
    assert counts["complete"] == 1
    return work / "res"


@contextlib.contextmanager
def damaged(results: Path, name: str, data: bytes):
    """`results/name` holding `data` for the block, then restored (with anything the block wrote
    into the folder removed, so that every example starts from the same folder)."""
    good = {f: (results / f).read_bytes() for f in FILES}
    before = set(os.listdir(results))
    (results / name).write_bytes(data)
    try:
        yield
    finally:
        for f, b in good.items():
            (results / f).write_bytes(b)
        for extra in set(os.listdir(results)) - before:
            shutil.rmtree(results / extra, ignore_errors=True)


def assert_clean(rc: int, err: str) -> None:
    """Exit 0, or exit 2 with one line on stderr; never a traceback."""
    assert "Traceback" not in err, err
    assert rc in (0, 2), f"exit {rc}: {err!r}"
    if rc == 2:
        lines = [ln for ln in err.splitlines() if ln.startswith("harness: error: ")]
        assert len(lines) == 1, err


def _mutated_config(draw: st.DrawFn) -> bytes:
    """The finished folder's own config.yaml with one part replaced by some other YAML value."""
    raw = yaml.safe_load(yaml.safe_dump(config_from_dict(tiny_raw("status", GRID)).to_dict()))
    section = draw(st.sampled_from(["name", "data", "model", "train", "run", "grid", "study", "adaptive",
                                    "headline", "data.synth", "grid.cell", "train.epochs", "run.storage"]))
    value = draw(st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.text(max_size=8),
                           st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=4),
                                                                                   st.integers(), max_size=2)))
    node, *rest = section.split(".")
    if rest and isinstance(raw.get(node), dict):
        raw[node][rest[0]] = value
    else:
        raw[node] = value
    return yaml.safe_dump(raw, allow_unicode=True).encode()


def _mutated_run_yaml(draw: st.DrawFn) -> bytes:
    key = draw(st.sampled_from(["storage", "artifacts", "folder_id", "other"]))
    value = draw(st.one_of(st.none(), st.integers(), st.booleans(), st.lists(st.integers(), max_size=2),
                           st.text(alphabet="abc", max_size=4)))
    return yaml.safe_dump({"storage": None, "artifacts": None, "folder_id": "f" * 32, key: value}).encode()


FIXED = [b"", b"\xff\xfe", b"- 1\n- 2\n", b"a: [1,\n", b"42\n", b"{a: *b}\n", b"\x00", b"a: 1\na: 2\n",
         b"name: status\ndata: 5\n", b"!!python/object:os.system {}\n"]


@st.composite
def file_bytes(draw: st.DrawFn) -> tuple[str, bytes]:
    """(which file, its new bytes): any bytes, any text, known damage, or the sound file with one part
    of the wrong shape."""
    name = draw(st.sampled_from(FILES))
    how = draw(st.sampled_from(["bytes", "text", "known", "shape"]))
    if how == "bytes":
        return name, draw(st.binary(max_size=200))
    if how == "text":
        return name, draw(st.text(max_size=80)).encode("utf-8", "surrogatepass")
    if how == "known":
        return name, draw(st.sampled_from(FIXED))
    return name, _mutated_config(draw) if name == "config.yaml" else _mutated_run_yaml(draw)


@PROPERTY
@given(case=file_bytes())
def test_any_bytes_in_config_or_run_yaml_give_exit_0_or_one_line(finished: Path, case: tuple[str, bytes],
                                                                tmp_path_factory) -> None:
    name, data = case
    cwd = tmp_path_factory.mktemp("cwd")  # a run.yaml naming a relative storage path writes there, not here
    with damaged(finished, name, data):
        for argv in (["status", str(finished)], ["status", str(finished), "--json"], ["report", str(finished)]):
            rc, _, err, _ = invoke(argv, cwd=cwd)
            assert_clean(rc, err)
            if rc == 2:
                assert name in err, err


VARIANTS = {"not UTF-8": b"name: \xff\xfe\n", "not YAML": b"name: [status,\n", "a list": b"- 1\n- 2\n",
            "empty": b"", "wrong shape": b"name: status\ndata: 5\nrun: [1]\n"}
RECOVERY = {"config.yaml": "restore it", "run.yaml": "delete it"}


def _commands(results: Path, name: str, variant: str) -> list[list[str]]:
    """The commands that read `name` and must refuse it (a report and an export read config.yaml's
    shape leniently: they work from the tables when it is a mapping they cannot validate)."""
    cfg = str(results.parent / "cfg.yaml")
    out = [["status", str(results)], ["status", str(results), "--json"],
           ["run", cfg, "--out", str(results), "--quiet"], ["run", cfg, "--out", str(results), "--dry-run"]]
    if variant != "wrong shape" or name == "run.yaml":
        out.append(["report", str(results)])
    if name == "config.yaml" and variant != "wrong shape":
        out.append(["export", str(results), "--to", "tensorboard", str(results.parent / "tb")])
    return out


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", FILES)
def test_a_damaged_results_file_is_one_line_naming_it_and_how_to_recover(finished: Path, name: str,
                                                                         variant: str) -> None:
    data = VARIANTS[variant]
    if name == "run.yaml" and variant == "wrong shape":
        data = b"storage: [postgresql://h/db]\nfolder_id: 7\n"
    with damaged(finished, name, data):
        before = tree(finished.parent)
        for argv in _commands(finished, name, variant):
            rc, _, err, _ = invoke(argv)
            assert rc == 2 and "Traceback" not in err and err.count("\n") == 1, (argv, err)
            assert err.startswith(f"harness: error: {finished / name}") or f"{finished / name}" in err, (argv, err)
            assert RECOVERY[name] in err and f"delete {finished} to start over" in err, (argv, err)
            assert tree(finished.parent) == before, f"{argv} wrote something"


def test_status_and_report_read_a_sound_folder(finished: Path) -> None:
    rc, out, err, _ = invoke(["status", str(finished)])
    assert rc == 0 and "1/1 finished" in out, err
    rc, _, err, _ = invoke(["report", str(finished)])
    assert rc == 0, err


def test_status_shows_a_running_trials_step_and_dev_accuracy(tmp_path):
    """A running trial's progress, as of its last evaluation (what it reported to its Optuna trial)."""
    from harness import queue
    from harness.config import config_from_dict
    from harness.plan import make_plan, write_config
    from harness.status import format_status, status, status_json
    from harness.storage import open_storage

    cfg = config_from_dict(tiny_raw("prog", {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0]}))
    plan = make_plan(cfg, tmp_path)
    write_config(plan)
    study = queue.open_queue(plan, open_storage(tmp_path, None))
    queue.enqueue_missing(plan, study)
    (busy, key), (_, other) = queue.claim(study), queue.claim(study)
    busy.report(0.25, 2)
    busy.report(0.625, 3)
    info = status(tmp_path)
    running = {r["trial_id"]: r for r in info["running"]}
    assert running[key]["step"] == 3 and running[key]["dev_acc"] == 0.625
    assert running[other]["step"] is None
    # Its step budget: 256 training texts, batch 64, one epoch.
    assert running[key]["max_steps"] == running[other]["max_steps"] == 4
    text = format_status(info)
    assert f"{key}  worker" in text and "step 3/4 dev_acc 0.625" in text and "no evaluation yet" in text
    assert "max_steps=" not in text
    assert json.loads(status_json(info))["running"][0]["max_steps"] == 4
