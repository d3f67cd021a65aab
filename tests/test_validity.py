"""benchmarks/validity.py: the rule it reads each data set at, how it compares D50s, its bad arguments,
and — where the real titles are on this machine — that the bench's synthetic task has their statistics."""

from __future__ import annotations

import collections
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "thucnews-titles"


def _validity():
    spec = importlib.util.spec_from_file_location("validity", ROOT / "benchmarks" / "validity.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["validity"] = mod   # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


V = _validity()


def test_the_target_is_halfway_from_chance_to_the_best_configurations_median():
    best = pd.DataFrame({"arm": ["a"] * 3 + ["b"] * 3, "lag": [0] * 6, "best": [0.5, 0.7, 0.9, 0.2, 0.3, 0.4]})
    target, ceiling = V.target_for(best, chance=0.1)
    assert ceiling == pytest.approx(0.7) and target == pytest.approx(0.4)   # 0.1 + (0.7 - 0.1) / 2


def test_d50s_agree_within_the_margin_or_by_the_same_words():
    assert V.same_d50(("a", 2.0), ("b", 3.0))                 # (1 + 2) / (1 + 3) = 0.75 >= 1 / 1.5
    assert not V.same_d50(("a", 2.0), ("b", 5.0))             # 3 / 6 = 0.5 < 1 / 1.5
    assert V.same_d50(("beyond 32", None), ("beyond 32", None))
    assert not V.same_d50(("beyond 32", None), ("a", 20.0))


def test_the_protocol_changes_only_the_data_and_the_seeds():
    raw = V.bench_raw()
    real = V.protocol(raw, Path("/somewhere"), [0, 1], workers=1)
    syn = V.protocol(raw, None, [0, 1], workers=1)
    assert real["data"]["kind"] == "thucnews" and real["data"]["dir"] == "/somewhere" and "synth" not in real["data"]
    assert syn["data"] == raw["data"] and "headline" not in syn and syn["grid"]["seed"] == [0, 1]
    for key in ("model", "train"):
        assert real[key] == syn[key] == raw[key]
    assert set(syn["grid"]["seed"]).isdisjoint(raw["headline"]["seeds"])   # exploration seeds, never confirmatory


def test_bad_arguments_are_one_line(tmp_path, monkeypatch, capsys):
    assert V.main(["--real", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "holds no real titles" in capsys.readouterr().err
    assert V.main(["--seeds", "a,b"]) == 2
    assert "--seeds 'a,b'" in capsys.readouterr().err
    assert V.main(["--report-only", str(tmp_path)]) == 2
    assert "not a results folder" in capsys.readouterr().err


def _load(folder: Path, split: str) -> list[tuple[str, int]]:
    rows = []
    for line in (folder / f"{split}.txt").read_text(encoding="utf-8").splitlines():
        text, label = line.rsplit("\t", 1)
        rows.append((text, int(label)))
    return rows


def _naive_bayes(train: list[tuple[str, int]], test: list[tuple[str, int]], last: int | None = None) -> float:
    counts: dict[str, np.ndarray] = collections.defaultdict(lambda: np.zeros(10))
    for text, y in train:
        for ch in text:
            counts[ch][y] += 1
    total = sum(counts.values())
    prior = np.log(np.bincount([y for _, y in train], minlength=10) / len(train))
    right = 0
    for text, y in test:
        score = prior.copy()
        for ch in text[-last:] if last else text:
            score += np.log(counts.get(ch, np.zeros(10)) + 0.5) - np.log(total + 0.5 * len(counts))
        right += int(np.argmax(score) == y)
    return right / len(test)


@pytest.mark.skipif(not (REAL / "train.txt").is_file(),
                    reason=f"the real titles ({REAL}) are not on this machine: a user's checkout has no shared/")
def test_the_bench_task_has_the_real_titles_statistics(tmp_path):
    """The figures configs/bench.yaml quotes: a naive-Bayes classifier's test accuracy from whole titles
    and from their last 3 characters, and the length spread, within a few points of the real titles'.
    Binomial standard error of an accuracy on 1,000 test titles: at most 1.6 points; the margins allow
    about 2 of them plus the match's own distance (measured: 81.1 vs 80.8, 40.2 vs 39.4)."""
    from harness.config import SynthConfig
    from harness.data.synth import write_synthetic

    synth = yaml.safe_load((ROOT / "configs" / "bench.yaml").read_text(encoding="utf-8"))["data"]["synth"]
    write_synthetic(tmp_path, SynthConfig(**synth))
    real_train, real_test = _load(REAL, "train"), _load(REAL, "test")
    syn_train, syn_test = _load(tmp_path, "train"), _load(tmp_path, "test")
    assert abs(_naive_bayes(real_train, real_test) - _naive_bayes(syn_train, syn_test)) < 0.04
    assert abs(_naive_bayes(real_train, real_test, 3) - _naive_bayes(syn_train, syn_test, 3)) < 0.04
    sd = [float(np.std([len(t) for t, _ in rows])) for rows in (real_train, syn_train)]
    assert math.isclose(sd[0], sd[1], abs_tol=0.5), sd
