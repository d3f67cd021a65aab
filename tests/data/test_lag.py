"""`data.lag` (grid axis `lag`): every text ends exactly D steps before the read-out position.

The exact layout on synthetic and THUCNews-format data, the same text tokens at every D, the
span-aware read-outs on a hand-made tensor, tiny trials of every cell, the vanishing ratio across
exactly D steps, and the bookkeeping (trial ids, cache, runs column, resuming old results)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_raw

from harness import data as data_mod
from harness import records
from harness.cli import main
from harness.config import ConfigError, config_from_dict, expand_grid, load_config, stable_hash
from harness.data import Dataset, lag_layout
from harness.models import READOUTS, read_positions
from harness.plan import check_compatible, make_plan, prepare_data, write_config
from harness.records import TrialRecorder
from harness.train import run_trial

TRAIN = "aab\t0\nbc\t1\nabcd\t0\n"
DEV = "ab\t1\nc\t0\n"
TEST = "zz\t0\n"
# the vocabulary built from TRAIN (char): a b c d, then <UNK> 4, <PAD> 5
PAD = 5


def _thucnews(tmp_path: Path) -> Path:
    d = tmp_path / "news"
    d.mkdir()
    for name, text in {"train": TRAIN, "dev": DEV, "test": TEST, "class": "alpha\nbeta\n"}.items():
        (d / f"{name}.txt").write_text(text, encoding="utf-8")
    return d


def _config_file(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def check_layout(ds: Dataset, seed: Dataset) -> None:
    """Every row of every split: T = pad_size + D, the last D positions PAD, position pad_size-1 a
    text token, PAD before the text, and the text tokens those of the seed's layout (`seed`)."""
    pad, lag = ds.pad_size, ds.lag
    for name in ("train", "dev", "test"):
        s, s0 = getattr(ds, name), getattr(seed, name)
        n, T = s.tokens.shape
        assert T == pad + lag == ds.seq_len
        assert (s.tokens[:, pad:] == ds.pad_index).all()                # the last D positions: padding
        assert (s.tokens[:, pad - 1] != ds.pad_index).all()             # the one before: a text token
        assert (s.starts + s.lengths == pad).all()                      # every text ends at pad_size-1
        assert (s.lengths == s0.lengths).all() and (s.labels == s0.labels).all()
        for i in range(n):
            a, b = s.starts[i], s.lengths[i]
            assert (s.tokens[i, :a] == ds.pad_index).all()
            assert s.tokens[i, a:a + b].tolist() == s0.tokens[i, :b].tolist()  # cut as the seed cuts


# ------------------------------------------------------------------------------------------- layout

def test_lag_layout_by_hand():
    tokens = np.array([[1, 2, 3], [4, 9, 9], [7, 8, 9]])  # pad_size 3, PAD 9 (the seed's layout)
    out, starts = lag_layout(tokens, np.array([3, 1, 2]), 2, 9)
    assert out.tolist() == [[1, 2, 3, 9, 9], [9, 9, 4, 9, 9], [9, 7, 8, 9, 9]]
    assert starts.tolist() == [0, 2, 1]
    out0, _ = lag_layout(tokens, np.array([3, 1, 2]), 0, 9)
    assert out0.tolist() == [[1, 2, 3], [9, 9, 4], [9, 7, 8]]


def test_grid_lag_on_synthetic_data_gives_the_exact_layout(tmp_path):
    raw = tiny_raw(grid={"cell": ["rnn"], "pad_size": [12]})  # synthetic titles: 4–32 chars, many cut
    cfg = load_config(_config_file(tmp_path, raw), ["grid.lag=[0,16]"])
    assert cfg.grid["data.lag"] == [0, 16]
    plan = make_plan(cfg, tmp_path / "out")
    assert sorted(s.factors["lag"] for s in plan.specs) == [0, 16]
    datasets = {(d.pad_size, d.lag): d for d in prepare_data(plan).values()}  # one per data.encoding_key
    assert sorted(datasets) == [(12, 0), (12, 16)]
    seed = data_mod.load(dataclasses.replace(cfg.data, pad_size=12, lag=None), tmp_path / "out" / "cache")
    assert (seed.train.lengths == 12).any() and (seed.train.lengths < 12).any()  # some cut, some padded
    for key in [(12, 0), (12, 16)]:
        check_layout(datasets[key], seed)
    a, b = datasets[12, 0].train, datasets[12, 16].train
    assert (a.tokens == b.tokens[:, :12]).all()  # no text is cut or placed differently across D


def test_grid_lag_on_thucnews_data_gives_the_exact_layout(tmp_path):
    raw = {"name": "t", "data": {"kind": "thucnews", "dir": str(_thucnews(tmp_path)), "pad_size": 3}}
    cfg = load_config(_config_file(tmp_path, raw), ["grid.lag=[0,16]"])
    datasets = {(d.pad_size, d.lag): d for d in prepare_data(make_plan(cfg, tmp_path / "out")).values()}
    seed = data_mod.load(dataclasses.replace(cfg.data, pad_size=3, lag=None), tmp_path / "out" / "cache")
    assert seed.train.tokens.tolist() == [[0, 0, 1], [1, 2, PAD], [0, 1, 2]]
    d16 = datasets[3, 16]
    assert d16.train.tokens.tolist() == [[0, 0, 1] + [PAD] * 16, [PAD, 1, 2] + [PAD] * 16, [0, 1, 2] + [PAD] * 16]
    assert d16.train.starts.tolist() == [0, 1, 0] and d16.train.lengths.tolist() == [3, 2, 3]
    assert d16.dev.tokens.tolist() == [[PAD, 0, 1] + [PAD] * 16, [PAD, PAD, 2] + [PAD] * 16]
    assert d16.test.tokens.tolist() == [[PAD, 4, 4] + [PAD] * 16]  # 'z' unseen: <UNK>, a text token
    for key in [(3, 0), (3, 16)]:
        check_layout(datasets[key], seed)


def test_without_lag_the_cache_file_and_layout_are_as_before(tmp_path):
    cfg = config_from_dict({"name": "t", "data": {"kind": "thucnews", "dir": str(_thucnews(tmp_path)),
                                                  "pad_size": 3}}).data
    ds = data_mod.load(cfg, tmp_path / "cache")
    _, data_id = data_mod.prepare(cfg, tmp_path / "cache")
    key = stable_hash({"data_id": data_id, "tokenizer": "char", "vocab_size": 10000, "min_freq": 1,
                       "pad_size": 3})
    assert [p.name for p in (tmp_path / "cache").glob("encoded-*")] == [f"encoded-{data_id}-pad3-{key}.npz"]
    with np.load(tmp_path / "cache" / f"encoded-{data_id}-pad3-{key}.npz") as npz:
        assert not any("starts" in k for k in npz.files)
    assert ds.lag is None and ds.seq_len == 3 and ds.train.starts.tolist() == [0, 0, 0]
    lagged = data_mod.load(dataclasses.replace(cfg, pad_size=3, lag=2), tmp_path / "cache")
    assert lagged.seq_len == 5 and len(list((tmp_path / "cache").glob("encoded-*-pad3-lag2-*.npz"))) == 1


# ------------------------------------------------------------------------------------------- read-outs

def _hand_made() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """out (2, T=5, 2 directions × 1): forward value = 10·t (+100 for example 1), reverse = -(same)."""
    t = torch.arange(5, dtype=torch.float32)
    fwd = torch.stack([10 * t, 100 + 10 * t])  # (2, 5)
    out = torch.stack([fwd, -fwd], dim=2)      # (2, 5, 2)
    return out, torch.tensor([3, 1]), torch.tensor([0, 2])  # spans [0, 3) and [2, 3); T-1 = 4 is lag


def test_readouts_use_the_valid_span():
    out, lengths, starts = _hand_made()
    assert READOUTS["last"](out, lengths, 2, starts).tolist() == [[40, -40], [140, -140]]
    # forward at the text's last token (2, 2), reverse at its first (0, 2)
    assert READOUTS["last_valid"](out, lengths, 2, starts).tolist() == [[20, -0.0], [120, -120]]
    assert READOUTS["last_valid"](out, lengths, 1, starts).tolist() == [[20, -20], [120, -120]]
    assert READOUTS["mean"](out, lengths, 2, starts).tolist() == [[10, -10], [120, -120]]
    assert READOUTS["max"](out, lengths, 2, starts).tolist() == [[20, 0], [120, -120]]
    for name, fn in READOUTS.items():  # starts all zero = no starts, exactly
        assert torch.equal(fn(out, lengths, 2, torch.zeros(2, dtype=torch.long)), fn(out, lengths, 2)), name
    assert read_positions("last", np.array([3, 1]), 5, np.array([0, 2])).tolist() == [4, 4]
    assert read_positions("last_valid", np.array([3, 1]), 5, np.array([0, 2])).tolist() == [2, 2]


# ------------------------------------------------------------------------------------------- trials

def _lag_data(tmp_path: Path, lag: int, **model: object) -> tuple[list, Dataset]:
    raw = tiny_raw(grid={"cell": ["rnn", "lstm", "gru"], "pad_size": [10], "lag": [lag]})
    raw["model"].update(model)
    cfg = config_from_dict(raw)
    _, data_id = data_mod.prepare(cfg.data, tmp_path)
    return expand_grid(cfg, data_id), data_mod.load(dataclasses.replace(cfg.data, pad_size=10, lag=lag), tmp_path)


def test_tiny_trials_with_a_lag_for_every_cell(tmp_path):
    specs, ds = _lag_data(tmp_path, 6)
    assert [s.model.cell for s in specs] == ["rnn", "lstm", "gru"]
    for spec in specs:
        rec = TrialRecorder(spec.trial_id)
        row = run_trial(spec, ds, torch.device("cpu"), rec)
        assert row["status"] == "complete" and row["lag"] == 6 and row["pad_size"] == 10, spec.model.cell
        gt = rec.tables()["grad_time"]
        g0 = gt[(gt["step"] == 0) & (gt["layer"] == "input")].set_index("position")
        assert g0.index.tolist() == list(range(16))  # every absolute position 0 … T-1
        assert (g0.loc[10:, "pad_fraction"] == 1.0).all() and g0.loc[9, "pad_fraction"] == 0.0
        # the vanishing ratio spans exactly the D = 6 steps from the texts' last token (9) to T-1 (15)
        expected = math.log10(g0.loc[9, "grad_norm"] / g0.loc[15, "grad_norm"])
        assert row["vanishing_ratio_init"] == pytest.approx(expected, rel=1e-5)
        assert row["vanishing_ratio_init"] != pytest.approx(
            math.log10(g0.loc[0, "grad_norm"] / g0.loc[15, "grad_norm"]), rel=1e-3)


@pytest.mark.parametrize("readout", ["last", "last_valid"])
def test_at_lag_zero_or_reading_the_text_the_distance_is_zero(tmp_path, readout):
    lag = 0 if readout == "last" else 6
    specs, ds = _lag_data(tmp_path, lag, readout=readout)
    row = run_trial(specs[0], ds, torch.device("cpu"), TrialRecorder("x"))
    assert row["vanishing_ratio_init"] == 0.0  # the read position is the texts' last token itself


def test_lag_trials_differ_from_the_seed_layout_and_each_other(tmp_path):
    specs0, ds0 = _lag_data(tmp_path, 0, readout="mean")
    raw = tiny_raw(grid={"cell": ["rnn"], "pad_size": [10]})
    raw["model"]["readout"] = "mean"
    seed_spec = expand_grid(config_from_dict(raw), specs0[0].data_id)[0]
    assert seed_spec.trial_id != specs0[0].trial_id
    # mean over the span: the same texts, but the rnn reads them after different left padding
    a = run_trial(specs0[0], ds0, torch.device("cpu"), TrialRecorder("a"))
    b = run_trial(seed_spec, data_mod.load(seed_spec.data, tmp_path), torch.device("cpu"),
                  TrialRecorder("b"))
    assert a["status"] == b["status"] == "complete" and b["lag"] is None


# ------------------------------------------------------------------------------------------- config

@pytest.mark.parametrize("value, words", [(-1, ">= 0"), ("x", "integer"), (1.5, "integer")])
def test_bad_lag_is_refused_naming_the_key(value, words):
    with pytest.raises(ConfigError) as e:
        config_from_dict({"name": "t", "data": {"lag": value}})
    assert "data.lag" in str(e.value) and words in str(e.value)
    with pytest.raises(ConfigError) as e:
        config_from_dict({"name": "t", "grid": {"lag": [0, value]}})
    assert "grid.lag" in str(e.value)


def test_results_from_before_lag_existed_resume(tmp_path):
    cfg = config_from_dict(tiny_raw())
    plan = make_plan(cfg, tmp_path)
    write_config(plan)
    old = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert old["data"].pop("lag") is None  # a config.yaml written before data.lag existed
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    check_compatible(plan)  # no complaint
    lagged = config_from_dict({**tiny_raw(), "data": {**tiny_raw()["data"], "lag": 4}})
    with pytest.raises(ConfigError, match="data.lag"):
        check_compatible(make_plan(lagged, tmp_path))


def test_cli_run_with_grid_lag_on_thucnews(tmp_path, capsys):
    news = _thucnews(tmp_path)
    raw = {"name": "news", "data": {"kind": "thucnews", "pad_size": 3},
           "model": {"embed_dim": 4, "hidden_size": 4, "num_layers": 1, "readout": "last_valid"},
           "train": {"epochs": 2, "eval_every": 1, "probe_size": 2, "probe_points": 0}, "grid": {"cell": ["rnn"]}}
    path = _config_file(tmp_path, raw)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--set", f"data.dir={news}",
                 "--set", "grid.lag=[0,16]", "--set", "run.threads=1"]) == 0
    runs = records.load(out)["runs"]
    assert sorted(runs["lag"].tolist()) == [0, 16] and (runs["status"] == "complete").all()
    gt = records.load(out)["grad_time"]
    assert sorted(gt.groupby("trial_id")["position"].max().tolist()) == [2, 18]
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(out), "--dry-run", "--set", f"data.dir={news}",
                 "--set", "grid.lag=[0,16]"]) == 0
    assert capsys.readouterr().out.count("done    cell=rnn") == 2


def test_thucnews_config_is_the_seed_model_and_needs_a_dir(tmp_path, capsys):
    path = Path(__file__).resolve().parents[2] / "configs" / "thucnews.yaml"
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    assert "data.dir" in capsys.readouterr().err
    cfg = load_config(path, [f"data.dir={_thucnews(tmp_path)}"])
    m, t = cfg.model, cfg.train
    assert (m.embed_dim, m.hidden_size, m.num_layers, m.bidirectional, m.dropout, m.init) == (300, 128, 2, True,
                                                                                            0.3, "xavier")
    assert (t.batch_size, t.lr, t.epochs, t.eval_every, t.require_improvement, cfg.data.pad_size) == (
        64, 1e-3, 7, 100, 10000, 32)
    assert cfg.grid["data.lag"] == [0, 8, 32, 64] and cfg.grid["arm"] == ["rnn", "lstm-fb0", "lstm", "lstm-fb3"]
    assert [cfg.arms[a].get("model.forget_bias") for a in cfg.grid["arm"]] == [None, 0.0, 1.0, 3.0]
    assert len(make_plan(cfg, tmp_path / "o").specs) == 96  # the count its comment gives
