"""Tests for the embedded synthetic news-title generator."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from harness.config import SynthConfig
from harness.data.synth import CLASS_NAMES, GENERATOR_VERSION, generate, write_synthetic

SMALL = SynthConfig(n_train=3000, n_dev=500, n_test=500)
V1_DIGEST = "8ab9a1dc40083bfb"  # sha256 of version 1's files for SMALL, before the later keys existed


@pytest.fixture(scope="module")
def small() -> dict[str, list[tuple[str, int]]]:
    return generate(SMALL)


def test_api_constants() -> None:
    assert len(CLASS_NAMES) == 10 and len(set(CLASS_NAMES)) == 10
    assert CLASS_NAMES[0] == "finance" and CLASS_NAMES[-1] == "entertainment"
    assert isinstance(GENERATOR_VERSION, int)


def test_deterministic_per_seed(small) -> None:
    assert generate(SMALL) == small
    other = generate(dataclasses.replace(SMALL, seed=1))
    assert other["train"] != small["train"] and other["test"] != small["test"]


def test_sizes_labels_balanced(small) -> None:
    for split, n in (("train", SMALL.n_train), ("dev", SMALL.n_dev), ("test", SMALL.n_test)):
        rows = small[split]
        assert len(rows) == n
        counts = Counter(label for _, label in rows)
        assert set(counts) == set(range(SMALL.n_classes))
        assert max(counts.values()) - min(counts.values()) <= 1
        assert all(isinstance(t, str) and isinstance(y, int) for t, y in rows)
    # Not simply round-robin in file order.
    labels = [y for _, y in small["train"][:50]]
    assert labels != [i % SMALL.n_classes for i in range(50)]


def test_lengths_and_characters(small) -> None:
    texts = [t for split in small.values() for t, _ in split]
    lengths = np.array([len(t) for t in texts])
    assert lengths.min() >= SMALL.min_len and lengths.max() <= SMALL.max_len
    assert abs(lengths.mean() - SMALL.mean_len) <= 1.5
    assert lengths.std() > 2.0  # spread like real titles, not a constant
    chars = set("".join(texts))
    assert not chars & {"\t", "\n", "\r", " ", "\u3000"}
    assert all(0x3400 <= ord(c) for c in chars)  # CJK ideographs
    assert len(chars) <= SMALL.vocab_size


@pytest.mark.parametrize("min_len,max_len,mean_len", [(4, 32, 10.0), (2, 8, 6.0), (5, 5, 5.0)])
def test_length_settings(min_len: int, max_len: int, mean_len: float) -> None:
    cfg = dataclasses.replace(SMALL, min_len=min_len, max_len=max_len, mean_len=mean_len, n_dev=1, n_test=1)
    lengths = np.array([len(t) for t, _ in generate(cfg)["train"]])
    assert lengths.min() >= min_len and lengths.max() <= max_len
    assert abs(lengths.mean() - mean_len) <= 1.5


def test_write_and_parse_back(tmp_path: Path, small) -> None:
    out = write_synthetic(tmp_path / "a", SMALL)
    assert out == tmp_path / "a"
    for split in ("train", "dev", "test"):
        lines = (out / f"{split}.txt").read_bytes().decode("utf-8").split("\n")
        assert lines[-1] == ""
        rows = []
        for line in lines[:-1]:
            text, label = line.split("\t")
            rows.append((text, int(label)))
        assert rows == small[split]
    assert (out / "class.txt").read_text(encoding="utf-8").splitlines() == CLASS_NAMES[:SMALL.n_classes]
    # Byte-identical on a second write; different with another seed.
    again = write_synthetic(tmp_path / "b", SMALL)
    other = write_synthetic(tmp_path / "c", dataclasses.replace(SMALL, seed=7))
    for name in ("train.txt", "dev.txt", "test.txt", "class.txt"):
        assert (out / name).read_bytes() == (again / name).read_bytes()
    assert (out / "train.txt").read_bytes() != (other / "train.txt").read_bytes()


def test_class_txt_beyond_ten(tmp_path: Path) -> None:
    cfg = dataclasses.replace(SMALL, n_classes=12, n_train=120, n_dev=12, n_test=12)
    names = (write_synthetic(tmp_path, cfg) / "class.txt").read_text(encoding="utf-8").splitlines()
    assert names == [*CLASS_NAMES, "class_10", "class_11"]
    cfg3 = dataclasses.replace(cfg, n_classes=3)
    out3 = write_synthetic(tmp_path / "three", cfg3)
    assert (out3 / "class.txt").read_text(encoding="utf-8").splitlines() == CLASS_NAMES[:3]


def _class_counts(rows: list[tuple[str, int]], n_classes: int) -> dict[str, np.ndarray]:
    counts: dict[str, np.ndarray] = {}
    for text, label in rows:
        for ch in text:
            counts.setdefault(ch, np.zeros(n_classes))[label] += 1
    return counts


def _indicative_chars(rows: list[tuple[str, int]], n_classes: int, min_count: int = 20) -> list[list[str]]:
    """Per class, the frequent chars ranked by the share of their occurrences in that class."""
    counts = _class_counts(rows, n_classes)
    out = []
    for c in range(n_classes):
        cands = [(v[c] / v.sum(), ch) for ch, v in counts.items() if v[c] >= min_count]
        out.append([ch for _, ch in sorted(cands, reverse=True)])
    return out


def _naive_bayes_accuracy(train: list[tuple[str, int]], test: list[tuple[str, int]], n_classes: int) -> float:
    counts = _class_counts(train, n_classes)
    chars = sorted(counts)
    index = {ch: i for i, ch in enumerate(chars)}
    table = np.stack([counts[ch] for ch in chars]) + 1.0  # add-one smoothing
    logp = np.log(table / table.sum(0, keepdims=True))
    correct = 0
    for text, label in test:
        idx = [index[ch] for ch in text if ch in index]
        correct += int(np.argmax(logp[idx].sum(0)) == label)
    return correct / len(test)


def test_characters_are_class_indicative(small) -> None:
    C = SMALL.n_classes
    top = _indicative_chars(small["train"], C)
    # Each class's most class-specific frequent char is mostly used by that class, and they differ.
    counts = _class_counts(small["train"], C)
    for c in range(C):
        v = counts[top[c][0]]
        assert v[c] / v.sum() > 0.6, (c, v)
    assert len({t[0] for t in top}) == C
    # A naive-Bayes classifier learns the classes; on shuffled labels it is at chance.
    acc = _naive_bayes_accuracy(small["train"], small["test"], C)
    assert acc > 0.6
    rng = np.random.default_rng(0)
    labels = rng.permutation([y for _, y in small["train"]])
    shuffled = [(t, int(y)) for (t, _), y in zip(small["train"], labels)]
    assert _naive_bayes_accuracy(shuffled, small["test"], C) < 0.3


def test_signal_controls_difficulty() -> None:
    accs = []
    for signal in (0.0, 0.3):
        data = generate(dataclasses.replace(SMALL, signal=signal, n_train=2000, n_test=500))
        accs.append(_naive_bayes_accuracy(data["train"], data["test"], SMALL.n_classes))
    assert accs[0] < 0.25 < 0.9 < accs[1]


def test_indicative_chars_spread_over_positions(small) -> None:
    """Indicative chars are placed uniformly, not concentrated at the start or the end."""
    C = SMALL.n_classes
    top = [set(t[:10]) for t in _indicative_chars(small["train"], C)]
    halves = np.zeros(2)
    for text, label in small["train"]:
        n = len(text)
        for i, ch in enumerate(text):
            if ch in top[label] and 2 * i + 1 != n:  # skip the middle char of odd lengths
                halves[int(2 * i >= n)] += 1
    ratio = halves[1] / halves[0]
    assert 0.8 < ratio < 1.2, halves


def test_defaults_are_version_1_byte_for_byte() -> None:
    """The keys added after version 1 change nothing at their defaults: a digest of version 1's
    output for SMALL (computed from the generator before the keys existed)."""
    import hashlib

    text = "".join(f"{t}\t{y}\n" for split in ("train", "dev", "test") for t, y in generate(SMALL)[split])
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == V1_DIGEST


def _odd_runs(data: list[tuple[str, int]], kw: set[str]) -> tuple[float, float]:
    """(share of the maximal runs of indicative characters inside a title that have odd length, share
    of characters that are indicative)."""
    odd = runs = n_kw = total = 0
    for text, _ in data:
        flags = [ch in kw for ch in text]
        n_kw, total = n_kw + sum(flags), total + len(flags)
        i = 0
        while i < len(flags):
            j = i
            while j < len(flags) and flags[j] == flags[i]:
                j += 1
            if flags[i] and i > 0 and j < len(flags):
                runs += 1
                odd += (j - i) % 2
            i = j
    return odd / runs, n_kw / total


def test_words_put_evidence_in_runs() -> None:
    """word_len 2: indicative characters come in runs of even length (odd only where a background
    draw hits an indicative character: about 8% of background draws at the defaults); with word_len 1 most are single
    characters. The share of indicative characters stays about `signal` either way."""
    cfg = dataclasses.replace(SMALL, signal=0.25, word_len=2, n_train=2000)
    kw = set(_kw_set(cfg))
    odd_words, share_words = _odd_runs(generate(cfg)["train"], kw)
    odd_chars, share_chars = _odd_runs(generate(dataclasses.replace(cfg, word_len=1))["train"], kw)
    assert odd_words < 0.35 < 0.65 < odd_chars, (odd_words, odd_chars)
    # ~19,000 blocks: the binomial sd of the share is about 0.003; background draws that hit an
    # indicative character add about 0.03 (measured 0.279 and 0.281 at signal 0.25).
    assert 0.26 < share_words < 0.30 and 0.26 < share_chars < 0.30, (share_words, share_chars)


def test_signal_concentration_spreads_titles() -> None:
    """signal_concentration c: the per-title share of indicative characters varies more than a
    binomial's (Beta(s c, (1 - s) c) has variance s (1 - s) / (c + 1) on top of it)."""
    base = dataclasses.replace(SMALL, signal=0.3, n_train=3000)
    kw = set(_kw_set(base))

    def shares(cfg: SynthConfig) -> np.ndarray:
        return np.array([sum(ch in kw for ch in t) / len(t) for t, _ in generate(cfg)["train"]])

    flat, spread = shares(base), shares(dataclasses.replace(base, signal_concentration=2.0))
    assert abs(flat.mean() - spread.mean()) < 0.02   # same mean share (0.33: signal plus background hits)
    # Beta(0.6, 1.4) alone has sd 0.26; the binomial part at length ~19 about 0.1.
    assert spread.std() > 2 * flat.std()


def _kw_set(cfg: SynthConfig) -> np.ndarray:
    """The indicative characters the generator draws for `cfg` (the same rng calls, in order)."""
    from harness.data.synth import COMMON_FRACTION, _code_points

    rng = np.random.default_rng(cfg.seed)
    V, C, K = cfg.vocab_size, cfg.n_classes, cfg.keywords_per_class
    chars_by_rank = rng.permutation(_code_points(V))
    n_common = min(int(V * COMMON_FRACTION), V - C * K)
    kw_ranks = n_common + rng.choice(V - n_common, size=C * K, replace=False)
    return np.array([chr(int(c)) for c in chars_by_rank[kw_ranks]])
