"""Bad input gets one clear answer: exit 2, one line naming the config key or the file and line, no
traceback, nothing written, within a time bound.

A Hypothesis suite generates configs, `--set` values and data folders, valid and broken, and runs
`harness.cli.main` in-process on each; then one explicit test per class of bad input. The suite is
small in `make test`; HARNESS_HYPOTHESIS_EXAMPLES=2000 runs it longer.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import harness.plan
from harness.cli import main
from harness.config import PRUNER_OPTIONS, PRUNERS, SAMPLER_OPTIONS, SAMPLERS, SECTIONS, ConfigError, load_config
from harness.config.fields import base_type, field_info, lookup_field
from harness.config.yamlload import MAX_ALIAS_NODES

EXAMPLES = int(os.environ.get("HARNESS_HYPOTHESIS_EXAMPLES", "40"))
TIME_BOUND_S = float(os.environ.get("HARNESS_INPUT_TIME_BOUND", "10"))  # per command, generous for a busy CI
FAST_S = 2.0  # what a hostile YAML (alias bomb) may cost
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# A message names a quoted key or value, a dotted key, a line, an option (--set, --device), or a file.
NAMES_SOMETHING = re.compile(r"'[^']+'|\b[a-z_]+\.[a-z_]+\b|\bline \d+|--[a-z-]+|config file|\.txt|\.npz")


# ----------------------------------------------------------------------------- running the command

def invoke(argv: list[str], cwd: Path | None = None) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, seconds) of `harness ARGV`, run in-process."""
    out, err = io.StringIO(), io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.chdir(cwd or os.getcwd()):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse's own usage errors
            rc = e.code if isinstance(e.code, int) else 2
    return rc, out.getvalue(), err.getvalue(), time.monotonic() - t0


def assert_refused(rc: int, err: str, seconds: float, bound: float = TIME_BOUND_S) -> str:
    """The contract for bad input; returns the message."""
    assert rc == 2, f"exit {rc}, stderr: {err!r}"
    assert "Traceback" not in err, err
    assert err.startswith("harness: error: ") and err.count("\n") == 1, err
    assert NAMES_SOMETHING.search(err), err
    assert seconds < bound, f"took {seconds:.1f} s: {err}"
    return err


def tree(root: Path) -> dict[str, int]:
    """Relative path -> size of everything under root (to see that nothing was written)."""
    return {str(p.relative_to(root)): p.stat().st_size if p.is_file() else -1 for p in root.rglob("*")}


def base_raw(name: str = "prop") -> dict[str, Any]:
    return {
        "name": name,
        "data": {"kind": "synthetic", "synth": {"n_train": 64, "n_dev": 16, "n_test": 16, "seed": 1}},
        "model": {"embed_dim": 8, "hidden_size": 8, "num_layers": 1, "dropout": 0.0},
        "train": {"epochs": 1, "eval_every": 2, "probe_size": 8, "probe_points": 1},
        "grid": {"cell": ["rnn", "lstm"], "seed": [0]},
    }


def write_cfg(d: Path, raw: Any | str, name: str = "cfg.yaml") -> Path:
    path = d / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def dry_run_contract(work: Path, argv_tail: list[str]) -> tuple[int, str]:
    """Run `run cfg.yaml --dry-run` in `work` (default results folder) and check the contract: exit 0,
    or a refusal; either way nothing written. A refused config is refused by the real run too."""
    before = tree(work)
    rc, _, err, s = invoke(["run", "cfg.yaml", "--dry-run", *argv_tail], cwd=work)
    assert tree(work) == before, "the dry run wrote something"
    if rc == 0:
        assert s < TIME_BOUND_S
        return rc, err
    assert_refused(rc, err, s)
    rc2, _, err2, s2 = invoke(["run", "cfg.yaml", "--quiet", *argv_tail], cwd=work)
    assert_refused(rc2, err2, s2)
    assert tree(work) == before, "a refused run wrote something"
    return rc, err


# ----------------------------------------------------------------------------- strategies

def _leaf_keys() -> list[str]:
    keys = []
    for section, cls in SECTIONS.items():
        for f, (tp, _) in field_info(cls).items():
            if f == "synth":
                keys += [f"data.synth.{g}" for g in field_info(tp)]
            else:
                keys.append(f"{section}.{f}")
    return keys


LEAF_KEYS = _leaf_keys()
OPTION_NAMES = sorted({o for t in (*SAMPLER_OPTIONS.values(), *PRUNER_OPTIONS.values()) for o in t})
SPECIAL_TEXT = ["nan", ".nan", "inf", "-.inf", "1e400", "１", "..", ".", "a/b", "x\x00y", "l\nm", "é" * 130,
                "auto", "cuda", "cuda:0", "thucnews", "random", "gru", "recurrent", "[1,", "{a: *b}", ""]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(-3, 300),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(SPECIAL_TEXT))
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.text(max_size=6), scalars, max_size=3))
any_key = st.one_of(st.sampled_from(LEAF_KEYS), st.sampled_from(["name", "grid", "study", "bogus", "model.hiden_size"]),
                    st.builds(lambda a: f"grid.{a}", st.sampled_from(["cell", "lr", "seed", "model.forget_bias",
                                                                      "layrnorm", "data.dir", "model"])))


def _set(raw: dict, key: str, value: Any) -> None:
    parts = ["grid", key[5:]] if key.startswith("grid.") else key.split(".")
    node = raw
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


@st.composite
def study_sections(draw: st.DrawFn) -> dict[str, Any]:
    sampler = draw(st.sampled_from([*SAMPLERS, "tpee"]))
    pruner = draw(st.sampled_from([*PRUNERS, "medain"]))
    opts = st.dictionaries(st.sampled_from(OPTION_NAMES), scalars, max_size=2)
    param = st.fixed_dictionaries({"type": st.sampled_from(["float", "int", "categorical", "bad"])},
                                  optional={"low": scalars, "high": scalars, "step": scalars, "log": st.booleans(),
                                            "choices": st.lists(scalars, max_size=3)})
    return {"sampler": sampler, "pruner": pruner, "sampler_options": draw(opts), "pruner_options": draw(opts),
            "n_trials": draw(st.one_of(st.integers(1, 3), st.integers(-1, 2**40))),
            "params": draw(st.dictionaries(st.sampled_from(["lr", "model.dropout", "model.hidden_size", "grad_clip"]),
                                           param, min_size=1, max_size=2)),
            "per": draw(st.sampled_from([[], ["cell"]]))}


@st.composite
def plausible(draw: st.DrawFn) -> tuple[str, Any]:
    """A key with a value of its own type, mostly in its allowed set or range."""
    key = draw(st.sampled_from([k for k in LEAF_KEYS if not k.startswith(("data.kind", "data.dir", "run."))]))
    tp, meta = lookup_field(key)
    tp = base_type(tp)
    lo = meta.get("min") if meta.get("min") is not None else 0
    if meta.get("choices"):
        value = draw(st.sampled_from(meta["choices"]))
    elif tp is bool:
        value = draw(st.booleans())
    elif tp is int:
        value = draw(st.integers(int(lo), int(lo) + 4))
    elif tp is float:
        value = draw(st.floats(float(lo), float(meta.get("max") if meta.get("max") is not None else lo + 2)))
    else:
        value = draw(st.sampled_from(["random", "x"]))
    if draw(st.booleans()) and key.split(".")[0] in ("model", "train") and key not in ("train.max_steps",):
        return f"grid.{key}", [value]
    return key, value


VALID_STUDY = st.fixed_dictionaries({
    "sampler": st.sampled_from(["tpe", "random", "qmc"]), "pruner": st.sampled_from(["none", "median"]),
    "n_trials": st.integers(1, 3), "params": st.just({"lr": {"type": "float", "low": 1e-4, "high": 1e-2}}),
    "per": st.just(["cell"])})


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """The base config with a few keys set to plausible or arbitrary values (and maybe a study)."""
    raw = base_raw()
    pairs = st.one_of(plausible(), plausible(), st.tuples(any_key, values))
    for key, value in draw(st.lists(pairs, max_size=3)):
        _set(raw, key, value)
    study = draw(st.sampled_from(["none", "none", "valid", "random"]))
    if study != "none":
        raw["study"] = draw(VALID_STUDY if study == "valid" else study_sections())
    return raw


def _bomb(levels: int, width: int = 9) -> str:
    lines = [f"b0: &b0 [{', '.join(['x'] * width)}]"]
    lines += [f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines)


HOSTILE_YAML = st.one_of(
    st.builds(lambda n: "name: x\n" + _bomb(n), st.integers(2, 9)),
    st.just("name: x\nmodel:\n  cell: gru\n  cell: rnn\n"),
    st.just("name: x\na: &a [*a]\n"),
    st.just("name: [x\n"),
    st.just("name: x\n" + "[" * 500 + "]" * 500 + "\n"),
    st.text(max_size=60),
)


# ----------------------------------------------------------------------------- the properties

@PROPERTY
@given(raw=st.one_of(configs(), HOSTILE_YAML))
def test_any_config_is_run_or_refused_cleanly(raw: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    work = tmp_path_factory.mktemp("cfg")
    write_cfg(work, raw)
    dry_run_contract(work, [])


set_texts = st.one_of(
    st.builds(lambda kv: f"{kv[0]}={json.dumps(kv[1])}", plausible()),
    st.builds(lambda kv: f"{kv[0]}={json.dumps(kv[1])}", plausible()),
    st.builds(lambda k, v: f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}",
              any_key, values),
    st.builds(lambda k, t: f"{k}={t}", any_key, st.one_of(st.text(max_size=20), st.sampled_from(SPECIAL_TEXT))),
    st.builds(lambda k: f"~{k}", any_key),
    st.builds(lambda n: "grid.seed=" + _bomb(n).replace("\n", ", ").join("{}"), st.integers(2, 9)),
    st.text(max_size=20),
)


@PROPERTY
@given(sets=st.lists(set_texts, min_size=1, max_size=3))
def test_any_set_override_is_applied_or_refused_cleanly(sets: list[str],
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    work = tmp_path_factory.mktemp("set")
    write_cfg(work, base_raw())
    dry_run_contract(work, [f"--set={s}" for s in sets])  # = : a value may start with a dash


GOOD_LINE = st.builds(lambda t, y: f"{t}\t{y}", st.text(st.characters(blacklist_characters="\t\n\r"), min_size=1,
                                                           max_size=8).filter(str.strip), st.integers(0, 1))
BAD_LINE = st.one_of(
    st.sampled_from(["text\t１", "text\t1\t", "text\t+1", "text\t1_0", "text", "a\tb\t1", "text\t-1", "text\t7",
                     "text\t٣", "text\t 1"]),
    st.text(max_size=10),
)
split_files = st.lists(st.one_of(GOOD_LINE, GOOD_LINE, BAD_LINE), min_size=0, max_size=5).map("\n".join)
class_files = st.one_of(st.just("alpha\nbeta\n"), st.just("only\n"), st.just("a\na\n"), st.text(max_size=12))


@PROPERTY
@given(files=st.fixed_dictionaries({"train.txt": split_files, "dev.txt": split_files, "test.txt": split_files,
                                    "class.txt": class_files}))
def test_any_data_folder_is_accepted_or_refused_with_file_and_line(
        files: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> None:
    work = tmp_path_factory.mktemp("data")
    data = work / "data"
    data.mkdir()
    for name, text in files.items():
        (data / name).write_text(text, encoding="utf-8", errors="surrogatepass")
    before = tree(work)
    rc, _, err, s = invoke(["data", "check", str(data)])
    if rc != 0:
        msg = assert_refused(rc, err, s)
        assert re.search(r"\.txt(, line \d+)?:", msg), msg
    raw = base_raw() | {"data": {"kind": "thucnews", "dir": str(data), "pad_size": 4}}
    write_cfg(work, raw)
    before = tree(work)
    rc_dry, _ = dry_run_contract(work, [])
    assert rc_dry == rc, "the dry run and `data check` disagree"
    assert tree(work) == before


# ----------------------------------------------------------------------------- YAML

def test_billion_laughs_in_the_config_is_refused_fast(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, "name: x\n" + _bomb(9))  # 9^9 ≈ 4e8 nodes if expanded
    msg = refused(["run", str(path), "--dry-run"], bound=FAST_S)
    assert "aliases expand" in msg and str(MAX_ALIAS_NODES) in msg and "cfg.yaml" in msg


def test_billion_laughs_in_set_is_refused_fast(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, base_raw())
    bomb = "{" + _bomb(9).replace("\n", ", ") + "}"
    msg = refused(["run", str(path), "--dry-run", "--set", f"grid.seed={bomb}"], bound=FAST_S)
    assert "--set" in msg and "aliases expand" in msg


def test_recursive_alias_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    msg = refused(["run", str(write_cfg(tmp_path, "name: x\na: &a [1, *a]\n")), "--dry-run"])
    assert "recursive alias" in msg or "not valid YAML" in msg
    deep = "name: x\nmodel: " + "[" * 400 + "]" * 400 + "\n"
    assert "nested" in refused(["run", str(write_cfg(tmp_path, deep)), "--dry-run"], bound=FAST_S)


def test_ordinary_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    text = ("name: anchors\nmodel: &m {embed_dim: 8, hidden_size: 8}\ntrain:\n  <<: {epochs: 1, lr: 0.01}\n"
            "  eval_every: 2\ngrid:\n  cell: &cells [rnn, lstm]\n  seed: [0]\n")
    cfg = load_config(write_cfg(tmp_path, text))
    assert cfg.model.hidden_size == 8 and cfg.train.lr == 0.01 and cfg.grid["model.cell"] == ["rnn", "lstm"]


@pytest.mark.parametrize("text, key, lines", [
    ("name: a\nname: b\n", "name", (1, 2)),
    ("name: a\nmodel:\n  dropout: 0.1\n  cell: gru\n  dropout: 0.2\n", "model.dropout", (3, 5)),
    ("name: a\ngrid:\n  seed: [0]\n  cell: [rnn]\n  seed: [1]\n", "grid.seed", (3, 5)),
])
def test_duplicate_keys_are_refused_with_both_lines(tmp_path: Path, text: str, key: str,
                                                    lines: tuple[int, int]) -> None:
    msg = refused(["run", str(write_cfg(tmp_path, text)), "--dry-run"])
    assert f"'{key}' is given twice (lines {lines[0]} and {lines[1]})" in msg


@pytest.mark.parametrize("override", ["model.hidden_size=[1,", "grid.cell={a: *nope}", "model.cell=\"open",
                                      "grid.seed=[0, 0", "model=a: b: c"])
def test_malformed_yaml_in_set_names_the_override(tmp_path: Path, override: str) -> None:
    msg = refused(["run", str(write_cfg(tmp_path, base_raw())), "--dry-run", "--set", override])
    assert f"--set {override!r}" in msg and "not valid YAML" in msg


# ----------------------------------------------------------------------------- values

@pytest.mark.parametrize("key", ["train.lr", "model.dropout", "model.forget_bias", "train.target_dev_acc",
                                 "train.grad_clip", "data.synth.signal", "data.synth.mean_len"])
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "nan", "1e400", "-inf"])
def test_nan_and_inf_are_refused_by_every_float_check(tmp_path: Path, key: str, value: str) -> None:
    msg = refused(["run", str(write_cfg(tmp_path, base_raw())), "--dry-run", "--set", f"{key}={value}"])
    assert f"config key '{key}': expected a finite number" in msg


def test_nan_in_a_grid_axis_and_in_study_bounds_is_refused(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, base_raw())
    msg = refused(["run", str(path), "--dry-run", "--set", "grid.lr=[0.01, .nan]"])
    assert "'grid.lr': expected a finite number" in msg
    for bound in ("low", "high"):
        raw = base_raw() | {"grid": {"seed": [0]}, "study": {"params": {"lr": {"type": "float", "low": 1e-4,
                                                                                "high": 1e-2}}}}
        raw["study"]["params"]["lr"][bound] = float("nan")
        msg = refused(["run", str(write_cfg(tmp_path, raw)), "--dry-run"])
        assert f"'study.params.lr.{bound}': expected a finite number" in msg
    raw["study"]["params"] = {"model.hidden_size": {"type": "int", "low": 4, "high": float("inf")}}
    assert "finite" in refused(["run", str(write_cfg(tmp_path, raw)), "--dry-run"])


def _study(tmp_path: Path, **study: Any) -> list[str]:
    """The dry-run command of the base config with a study section."""
    raw = base_raw() | {"grid": {"seed": [0]}}
    raw["study"] = {"n_trials": 2, "params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2}}, **study}
    return ["run", str(write_cfg(tmp_path, raw)), "--dry-run"]


def test_study_step_larger_than_the_range_is_refused(tmp_path: Path) -> None:
    msg = refused(_study(tmp_path, params={"model.hidden_size": {"type": "int", "low": 4, "high": 8, "step": 16}}))
    assert "'study.params.model.hidden_size.step': 16 is larger than the range 4..8" in msg
    msg = refused(_study(tmp_path, params={"model.dropout": {"type": "float", "low": 0.1, "high": 0.2,
                                                               "step": 0.5}}))
    assert "study.params.model.dropout.step" in msg


@pytest.mark.parametrize("study, key", [
    ({"pruner": "median", "pruner_options": {"n_warmup_steps": -1}}, "study.pruner_options.n_warmup_steps"),
    ({"sampler_options": {"n_startup_trials": "abc"}}, "study.sampler_options.n_startup_trials"),
    ({"pruner": "median", "pruner_options": {"n_startup_trials": "abc"}}, "study.pruner_options.n_startup_trials"),
    ({"sampler": "nsga2", "sampler_options": {"mutation_prob": 2.0}}, "study.sampler_options.mutation_prob"),
    ({"sampler": "qmc", "sampler_options": {"qmc_type": "bad"}}, "study.sampler_options.qmc_type"),
    ({"pruner": "wilcoxon", "pruner_options": {"p_threshold": float("nan")}}, "study.pruner_options.p_threshold"),
    ({"pruner": "hyperband", "pruner_options": {"min_resource": 9, "max_resource": 3}},
     "study.pruner_options.min_resource"),
])
def test_study_options_of_the_wrong_type_or_range_are_config_errors(tmp_path: Path, study: dict, key: str) -> None:
    assert f"'{key}'" in refused(_study(tmp_path, **study))


def test_an_option_optuna_refuses_is_a_config_error_naming_the_key(tmp_path: Path, monkeypatch) -> None:
    import harness.study

    def refuse(st: Any, worker: int = 0) -> None:
        raise ValueError("no such thing")

    monkeypatch.setattr(harness.study, "make_sampler", refuse)
    msg = refused(_study(tmp_path))
    assert "'study.sampler_options'" in msg and "no such thing" in msg


# ----------------------------------------------------------------------------- names

BAD_NAMES = ["..", ".", "a/b", "../up", "a\\b", "nul\x00byte", "new\nline", "tab\tbed", "x" * 256, "é" * 128,
             " padded ", "", "line\u2028sep"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_is_one_safe_path_component(tmp_path: Path, name: str) -> None:
    work = tmp_path / "w"
    work.mkdir()
    write_cfg(work, base_raw(name))
    before = tree(tmp_path)
    msg = refused(["run", "cfg.yaml", "--dry-run"], cwd=work)
    assert "config key 'name'" in msg
    refused(["run", "cfg.yaml", "--quiet"], cwd=work)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("name", ["..", ".", "a/b", "x" * 300])
def test_a_bad_name_via_set_is_refused(tmp_path: Path, name: str) -> None:
    write_cfg(tmp_path, base_raw())
    msg = refused(["run", "cfg.yaml", "--dry-run", "--set", f"name={name}"], cwd=tmp_path)
    assert "config key 'name'" in msg and "--set" in msg
    assert not (tmp_path / "results").exists()


def test_names_that_are_fine() -> None:
    from harness.config.errors import Where
    from harness.config.fields import check_name

    for name in ("bench", "体育-lstm_2", "a.b", "x" * 255, "é" * 127):
        assert check_name(name, Where(None)) == name


def test_embedding_name_stays_inside_the_data_folder(tmp_path: Path) -> None:
    for emb in ("/etc/passwd", "../x.npz", "~/x.npz"):
        raw = base_raw() | {"data": {"kind": "thucnews", "dir": str(tmp_path), "embedding": emb}}
        assert "'data.embedding'" in refused(["run", str(write_cfg(tmp_path, raw)), "--dry-run"])


# ----------------------------------------------------------------------------- grid size

def _huge(tmp_path: Path) -> Path:
    raw = base_raw()
    raw["grid"] = {"seed": list(range(100)), "lr": [0.1 * (i + 1) for i in range(100)],
                   "model.forget_bias": list(range(100))}  # 10^6 trials
    return write_cfg(tmp_path, raw)


def test_a_million_point_grid_is_counted_not_expanded_and_refused(tmp_path: Path) -> None:
    path = _huge(tmp_path)
    msg = refused(["run", str(path), "--dry-run"], bound=FAST_S + 1)
    assert "1000000 trials" in msg and "100000" in msg and "--yes" in msg
    out = tmp_path / "out"
    refused(["run", str(path), "--out", str(out), "--quiet"], bound=FAST_S + 1)
    assert not out.exists()


def test_yes_lifts_the_trial_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(harness.plan, "MAX_TRIALS", 3)
    raw = base_raw()
    raw["grid"] = {"cell": ["rnn", "lstm"], "seed": [0, 1]}
    path = write_cfg(tmp_path, raw)
    assert "4 trials" in refused(["run", str(path), "--dry-run"])
    rc, out, err, _ = _cli(["run", str(path), "--dry-run", "--yes", "--json"])
    assert rc == 0, err
    assert json.loads(out)["totals"]["trials"] == 4


def test_a_huge_study_is_refused_too(tmp_path: Path) -> None:
    msg = refused(_study(tmp_path, n_trials=10**9))
    assert "'study.n_trials'" in msg


# ----------------------------------------------------------------------------- sizes and step counts

@pytest.mark.parametrize("sets, key", [(["data.lag=1000000000"], "data.lag"),
                                       (["data.pad_size=1000000000"], "data.pad_size"),
                                       (["grid.lag=[0,8,1000000000]"], "data.lag"),
                                       (["data.synth.n_train=100000000", "data.pad_size=10000"], "data.pad_size")])
def test_data_that_would_not_fit_in_memory_is_refused_before_anything_is_written(
        tmp_path: Path, monkeypatch, sets: list[str], key: str) -> None:
    monkeypatch.setattr(harness.plan, "machine_memory", lambda: 64 * 2**30)  # the same answer on any machine
    path = write_cfg(tmp_path, base_raw())
    before = tree(tmp_path)
    argv = ["run", str(path), "--out", str(tmp_path / "o")] + [a for s in sets for a in ("--set", s)]
    for tail in (["--dry-run"], ["--quiet"]):
        msg = refused(argv + tail, bound=FAST_S + 1)
        assert f"config key '{key}'" in msg and "of memory" in msg and "64.00 GiB" in msg, msg
    assert tree(tmp_path) == before


def test_the_memory_bound_is_rows_times_positions_times_8_bytes() -> None:
    from harness.config import config_from_dict
    from harness.plan import check_bounds, encoded_bytes

    raw = base_raw()
    raw["data"]["lag"] = 100
    cfg = config_from_dict(raw)  # 64 + 16 + 16 texts, pad_size 32 + lag 100
    need = encoded_bytes(96, 32, 100)
    assert need == 96 * (32 + 100 + 3) * 8  # tokens, and lengths, labels, starts
    check_bounds(cfg, memory=2 * need)  # half the memory: fits
    with pytest.raises(ConfigError, match="config key 'data.lag'"):
        check_bounds(cfg, memory=2 * need - 1)
    check_bounds(cfg, memory=None)  # not checked (a Slurm node checks its own)


@pytest.mark.parametrize("sets, key", [(["train.epochs=1000000000000000000000000000000"], "train.epochs"),
                                       (["train.max_steps=1000000001"], "train.max_steps"),
                                       (["train.epochs=1000000000", "train.batch_size=1"], "train.epochs"),
                                       (["grid.train.epochs=[1,100000000]", "grid.batch_size=[1,64]"], "train.epochs")])
def test_step_counts_beyond_reason_are_config_errors(tmp_path: Path, sets: list[str], key: str) -> None:
    path = write_cfg(tmp_path, base_raw())
    before = tree(tmp_path)
    argv = ["run", str(path), "--out", str(tmp_path / "o")] + [a for s in sets for a in ("--set", s)]
    for tail in (["--dry-run"], ["--quiet"]):
        msg = refused(argv + tail, bound=FAST_S + 1)
        assert f"config key '{key}'" in msg and "1000000000" in msg, msg
    assert tree(tmp_path) == before


def test_max_steps_bounds_a_long_trial(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, base_raw())
    rc, out, err, _ = _cli(["run", str(path), "--dry-run", "--json", "--out", str(tmp_path / "o"), "--set",
                            "train.epochs=1000000000", "--set", "train.batch_size=1", "--set", "train.max_steps=50"])
    assert rc == 0, err
    assert json.loads(out)["totals"]["max_steps"] == 2 * 50


# ----------------------------------------------------------------------------- dry run

def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, base_raw())
    before = tree(tmp_path)
    rc, out, err, _ = _cli(["run", str(path), "--dry-run", "--out", str(tmp_path / "results")])
    assert rc == 0, err
    assert "2 trials, 0 already done" in out
    assert tree(tmp_path) == before


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA device")
def test_dry_run_refuses_a_missing_cuda_device(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, base_raw())
    assert "--device cuda" in refused(["run", str(path), "--dry-run", "--device", "cuda",
                                                    "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("sets", [["train.cuda_graph=true"], ["grid.train.cuda_graph=[false,true]"]])
def test_dry_run_refuses_cuda_graph_on_a_cpu_as_the_run_does(tmp_path: Path, sets: list[str]) -> None:
    path = write_cfg(tmp_path, base_raw())
    argv = ["run", str(path), "--device", "cpu", "--out", str(tmp_path / "o")] + [a for s in sets for a in ("--set", s)]
    for tail in (["--dry-run"], ["--quiet"]):
        assert "config key 'train.cuda_graph'" in refused(argv + tail)
    assert not (tmp_path / "o").exists()


def test_dry_run_refuses_a_changed_fixed_setting(tmp_path: Path) -> None:
    from harness.plan import make_plan, write_config

    path = write_cfg(tmp_path, base_raw())
    out = tmp_path / "out"
    out.mkdir()
    write_config(make_plan(load_config(path), out, write=False))
    before = tree(tmp_path)
    msg = refused(["run", str(path), "--out", str(out), "--dry-run", "--set", "model.hidden_size=9"])
    assert "model.hidden_size: 8 -> 9" in msg
    assert tree(tmp_path) == before


def test_dry_run_json_lists_trials_budget_and_totals(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, base_raw())
    rc, out, err, _ = _cli(["run", str(path), "--dry-run", "--json", "--out", str(tmp_path / "o"),
                            "--set", "grid.model.forget_bias=[0,3]"])
    assert rc == 0, err
    doc = json.loads(out)
    assert len(doc["trials"]) == 4 and doc["totals"]["trials"] == 4 and doc["totals"]["done"] == 0
    t = doc["trials"][0]
    assert set(t) == {"trial_id", "factors", "done", "budget"} and len(t["trial_id"]) == 12
    assert {tr["factors"]["model.forget_bias"] for tr in doc["trials"]} == {0.0, 3.0}
    assert t["budget"]["max_steps"] == 1  # 64 titles, batch 64, 1 epoch
    assert doc["totals"]["max_steps"] == 4 and doc["totals"]["to_run"] == 4


def test_json_without_dry_run_is_refused(tmp_path: Path) -> None:
    assert "--json" in refused(["run", str(write_cfg(tmp_path, base_raw())), "--json"])


# ----------------------------------------------------------------------------- data files

def _data(tmp_path: Path, **files: str | bytes) -> Path:
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    base = {"train.txt": "ab\t0\ncd\t1\n", "dev.txt": "ab\t1\n", "test.txt": "cd\t0\n", "class.txt": "alpha\nbeta\n"}
    for name, text in (base | {k.replace("_", "."): v for k, v in files.items()}).items():
        (d / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return d


@pytest.mark.parametrize("files, where, what", [
    ({"class_txt": "only\n"}, "class.txt, line 1", "only one class"),
    ({"train_txt": "ab\t0\ncd\t１\n"}, "train.txt, line 2", "ASCII digits"),
    ({"dev_txt": "ab\t1\t\n"}, "dev.txt, line 1", "a tab after the label"),
    ({"test_txt": "cd\t+0\n"}, "test.txt, line 1", "not an integer"),
    ({"class_txt": "a\nb\na\n"}, "class.txt, line 3", "repeated (first on line 1)"),
])
def test_bad_data_lines_name_file_and_line(tmp_path: Path, files: dict, where: str, what: str) -> None:
    msg = refused(["data", "check", str(_data(tmp_path, **files))])
    assert where in msg and what in msg


def test_complex_embeddings_are_refused(tmp_path: Path) -> None:
    d = _data(tmp_path)
    np.savez(d / "emb.npz", embeddings=np.ones((6, 4), dtype=np.complex64))
    raw = base_raw() | {"data": {"kind": "thucnews", "dir": str(d), "embedding": "emb.npz"}}
    msg = refused(["run", str(write_cfg(tmp_path, raw)), "--dry-run", "--out", str(tmp_path / "o")])
    assert "emb.npz" in msg and "complex64" in msg and "real" in msg


def test_a_failed_data_check_leaves_no_results_folder(tmp_path: Path) -> None:
    d = _data(tmp_path, train_txt="ab\t0\ncd\t9\n")
    raw = base_raw() | {"data": {"kind": "thucnews", "dir": str(d), "pad_size": 4}}
    path = write_cfg(tmp_path, raw)
    out = tmp_path / "results" / "x"
    msg = refused(["run", str(path), "--out", str(out), "--quiet", "--set", "run.threads=1"])
    assert "train.txt, line 2" in msg
    assert not (tmp_path / "results").exists()  # nor the parent folder the call created
    (tmp_path / "results" / "other").mkdir(parents=True)
    refused(["run", str(path), "--out", str(out), "--quiet", "--set", "run.threads=1"])
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["other"]


# ----------------------------------------------------------------------------- issue 13 habits

@pytest.mark.parametrize("override, suggestion", [
    ("model.hiden_size=3", "did you mean 'hidden_size'?"),
    ("trian.lr=0.1", "did you mean 'train'?"),
    ("grid.layrnorm=[none]", "did you mean 'layernorm'?"),
    ("grid.model.forgetbias=[0]", "did you mean 'model.forget_bias'?"),
])
def test_a_misspelt_key_gets_a_suggestion(tmp_path: Path, override: str, suggestion: str) -> None:
    raw = base_raw()
    raw["grid"]["layernorm"] = ["none", "output"]
    path = write_cfg(tmp_path, raw)
    if override.startswith("grid.layrnorm"):
        override = "grid.layrnorm=[none]"
    assert suggestion in refused(["run", str(path), "--dry-run", "--set", override])


def test_a_misspelt_study_option_gets_a_suggestion(tmp_path: Path) -> None:
    assert "did you mean 'n_startup_trials'?" in refused(
        _study(tmp_path, sampler_options={"n_startup_trial": 3}))


def test_set_tilde_removes_a_key_or_a_grid_axis(tmp_path: Path) -> None:
    raw = base_raw()
    raw["grid"]["layernorm"] = ["none", "output"]
    path = write_cfg(tmp_path, raw)
    rc, out, err, _ = _cli(["run", str(path), "--dry-run", "--json", "--set", "~grid.layernorm",
                            "--set", "~model.dropout"])
    assert rc == 0, err
    doc = json.loads(out)
    assert len(doc["trials"]) == 2 and all("layernorm" not in t["factors"] for t in doc["trials"])
    assert load_config(path, ["~model.dropout"]).model.dropout == 0.3  # the default again
    assert load_config(path, ["~grid.model.layernorm"]).grid.keys() == {"model.cell", "train.seed"}
    msg = refused(["run", str(path), "--dry-run", "--set", "~model.hiden_size"])
    assert "no key 'model.hiden_size' to remove" in msg and "hidden_size" in msg


def test_a_dotted_grid_axis_can_be_set_and_replaces_its_alias(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, base_raw())
    cfg = load_config(path, ["grid.model.forget_bias=[0,3]", "grid.model.cell=[gru]"])
    assert cfg.grid == {"model.cell": ["gru"], "train.seed": [0], "model.forget_bias": [0.0, 3.0]}
    raw = base_raw() | {"grid": {"seed": [0]}, "study": {"params": {"lr": {"type": "float", "low": 1e-4,
                                                                            "high": 1e-2}}}}
    cfg = load_config(write_cfg(tmp_path, raw), ["study.params.train.lr.high=0.5"])
    assert cfg.study.params["train.lr"].high == 0.5


def test_an_error_from_set_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config key 'model.dropout'.*\(--set 'model.dropout=2'\)"):
        load_config(write_cfg(tmp_path, base_raw()), ["model.dropout=2"])


def _cli(argv: list[str], cwd: Path | None = None) -> tuple[int, str, str, float]:
    return invoke(argv, cwd)


def refused(argv: list[str], cwd: Path | None = None, bound: float = TIME_BOUND_S) -> str:
    """Run `harness ARGV` and check the bad-input contract; returns the message."""
    rc, _, err, seconds = invoke(argv, cwd)
    return assert_refused(rc, err, seconds, bound)


def test_a_run_refused_for_its_embedding_file_removes_what_it_wrote(tmp_path: Path) -> None:
    """The data set is encoded (DIR/cache/encoded-*.npz) before the embedding file is read; when that
    file is refused, the encoded cache goes too, and an existing folder keeps exactly what it had."""
    d = _data(tmp_path)
    np.savez(d / "emb.npz", embeddings=np.ones((6, 4), dtype=np.complex64))
    raw = base_raw() | {"data": {"kind": "thucnews", "dir": str(d), "embedding": "emb.npz"}}
    path = write_cfg(tmp_path, raw)
    out = tmp_path / "o"
    refused(["run", str(path), "--out", str(out), "--quiet", "--set", "run.threads=1"])
    assert not out.exists()
    (out / "keep").mkdir(parents=True)
    (out / "keep" / "note.txt").write_text("mine")
    (out / "empty").mkdir()   # an empty folder that was there before stays too
    refused(["run", str(path), "--out", str(out), "--quiet", "--set", "run.threads=1"])
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["empty", "keep", "keep/note.txt"]
