"""Embedded synthetic data set: news-title-like character strings in 10 THUCNews-like classes.

Each title is a string of CJK characters. Every character is drawn either from the title's class's
indicative set or from a Zipf-distributed background shared by all classes (exponent
``background_zipf``). The indicative sets are disjoint, drawn from the less common part of the
background vocabulary, and Zipf-weighted themselves. Title lengths follow a beta-binomial between
``min_len`` and ``max_len`` whose mean is exactly ``mean_len`` (spread: ``length_concentration``).

Where the evidence sits: with ``word_len`` 1 and ``signal_concentration`` null (the defaults) every
character is indicative with probability ``signal``, independently. With ``word_len`` w the title is
cut into blocks of w consecutive characters (at a random offset) and each block is an indicative word
with the title's probability, so evidence comes in words, as in Chinese titles; with
``signal_concentration`` c each title draws that probability from a Beta with mean ``signal`` and
a + b = c, so titles differ in how much evidence they carry. Either way a character is indicative
with probability ``signal`` on average.

Everything derives from one ``numpy.random.Generator(PCG64(seed))``: the same `SynthConfig` gives
byte-identical files. Bump `GENERATOR_VERSION` whenever the output for the same settings changes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.config import SynthConfig
from harness.names import SPLITS

CLASS_NAMES: list[str] = [
    "finance", "realty", "stocks", "education", "science",
    "society", "politics", "sports", "game", "entertainment",
]
GENERATOR_VERSION: int = 1  # unchanged by the keys added later: at their defaults the output is version 1's

KEYWORD_ZIPF = 1.0      # exponent of the weights inside each class's indicative set
COMMON_FRACTION = 0.1   # the most frequent tenth of the vocabulary is never class-indicative
# CJK Unified Ideographs, then Extension A, then Extension B: code point ranges [start, end).
_CJK_RANGES = ((0x4E00, 0xA000), (0x3400, 0x4DC0), (0x20000, 0x2A6E0))


def class_names(n_classes: int) -> list[str]:
    """The first `n_classes` of `CLASS_NAMES`, then ``class_10``, ``class_11``, ..."""
    return [CLASS_NAMES[k] if k < len(CLASS_NAMES) else f"class_{k}" for k in range(n_classes)]


def _code_points(n: int) -> np.ndarray:
    """The first `n` CJK ideograph code points (U+4E00 upwards)."""
    pts = np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in _CJK_RANGES])
    if n > len(pts):
        raise ValueError(f"vocab_size {n} exceeds the {len(pts)} CJK ideographs the generator uses")
    return pts[:n]


def _zipf(n: int, s: float) -> np.ndarray:
    w = np.arange(1, n + 1, dtype=np.float64) ** -s
    return w / w.sum()


def _check(cfg: SynthConfig) -> None:
    if cfg.n_classes < 1 or cfg.keywords_per_class < 1:
        raise ValueError("n_classes and keywords_per_class must be at least 1")
    if cfg.keywords_per_class * cfg.n_classes > cfg.vocab_size:
        raise ValueError(f"keywords_per_class × n_classes = {cfg.keywords_per_class * cfg.n_classes} "
                         f"exceeds vocab_size {cfg.vocab_size}")
    if not 1 <= cfg.min_len <= cfg.mean_len <= cfg.max_len:
        raise ValueError(f"need 1 <= min_len ({cfg.min_len}) <= mean_len ({cfg.mean_len}) "
                         f"<= max_len ({cfg.max_len})")
    if not 0.0 <= cfg.signal <= 1.0:
        raise ValueError(f"signal {cfg.signal} must lie in [0, 1]")


def _lengths(rng: np.random.Generator, n: int, cfg: SynthConfig) -> np.ndarray:
    """Beta-binomial title lengths in [min_len, max_len] with mean exactly mean_len."""
    span = cfg.max_len - cfg.min_len
    p = (cfg.mean_len - cfg.min_len) / span if span > 0 else 0.0
    if span == 0 or p <= 0.0 or p >= 1.0:
        return np.full(n, int(round(cfg.mean_len)), dtype=np.int64)
    c = cfg.length_concentration
    probs = rng.beta(p * c, (1.0 - p) * c, size=n)
    return cfg.min_len + rng.binomial(span, probs).astype(np.int64)


def _indicative(rng: np.random.Generator, lengths: np.ndarray, cfg: SynthConfig) -> np.ndarray:
    """(sum(lengths),) bool: which characters come from the class's indicative set."""
    total = int(lengths.sum())
    if cfg.word_len == 1 and cfg.signal_concentration is None:
        return rng.random(total) < cfg.signal  # version 1's draw, kept byte for byte
    n, w = len(lengths), cfg.word_len
    if cfg.signal_concentration is None or cfg.signal in (0.0, 1.0):
        share = np.full(n, cfg.signal)
    else:
        c = cfg.signal_concentration
        share = rng.beta(cfg.signal * c, (1.0 - cfg.signal) * c, size=n)
    offset = rng.integers(0, w, size=n)                      # where the title's first block starts
    title = np.repeat(np.arange(n), lengths)                 # title of each character
    pos = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    block = (pos + np.repeat(offset, lengths)) // w          # block of each character within its title
    n_blocks = (lengths + offset + w - 1) // w
    first = np.cumsum(n_blocks) - n_blocks
    is_word = rng.random(int(n_blocks.sum())) < np.repeat(share, n_blocks)
    return is_word[first[title] + block]


def _background(rng: np.random.Generator, owner: np.ndarray, bg_p: np.ndarray, cfg: SynthConfig) -> np.ndarray:
    """(len(owner),) background ranks: Zipf, tilted per class by `background_tilt` (0: one
    distribution for all classes, version 1's draw)."""
    if cfg.background_tilt == 0.0:
        return rng.choice(len(bg_p), size=len(owner), p=bg_p)
    z = rng.standard_normal((cfg.n_classes, len(bg_p)))
    w = bg_p[None, :] * np.exp(cfg.background_tilt * z)          # (C, V)
    cdf = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(len(owner))
    return _draw_by_class(cdf, owner, u)


def _draw_by_class(cdf: np.ndarray, owner: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws: out[i] = first index with cdf[owner[i]] >= u[i]."""
    out = np.empty(len(owner), dtype=np.int64)
    for c in range(cdf.shape[0]):
        at = owner == c
        out[at] = np.searchsorted(cdf[c], u[at], side="right")
    return np.minimum(out, cdf.shape[1] - 1)


def generate(cfg: SynthConfig) -> dict[str, list[tuple[str, int]]]:
    """Generate ``{"train": [(text, label), ...], "dev": ..., "test": ...}`` from `cfg`."""
    _check(cfg)
    rng = np.random.default_rng(cfg.seed)
    V, C, K = cfg.vocab_size, cfg.n_classes, cfg.keywords_per_class

    # Vocabulary: background rank r -> a code point (a seeded shuffle, so frequent chars are spread).
    chars_by_rank = rng.permutation(_code_points(V))
    bg_p = _zipf(V, cfg.background_zipf)
    # Indicative sets: disjoint, drawn from the ranks below the most common tenth.
    n_common = min(int(V * COMMON_FRACTION), V - C * K)
    kw_ranks = n_common + rng.choice(V - n_common, size=C * K, replace=False)
    kw_chars = chars_by_rank[kw_ranks].reshape(C, K)  # row c = class c's set, in weight order
    kw_p = _zipf(K, KEYWORD_ZIPF)

    sizes = [cfg.n_train, cfg.n_dev, cfg.n_test]
    # Balanced labels per split: equal counts (round-robin), then a seeded shuffle.
    labels = np.concatenate([rng.permutation(np.arange(n) % C) for n in sizes])
    n_total = len(labels)
    lengths = _lengths(rng, n_total, cfg)
    total = int(lengths.sum())
    owner = np.repeat(labels, lengths)  # class of each character's title

    is_kw = _indicative(rng, lengths, cfg)
    bg = chars_by_rank[_background(rng, owner, bg_p, cfg)]
    kw = kw_chars[owner, rng.choice(K, size=total, p=kw_p)]
    codes = np.where(is_kw, kw, bg)

    # Decode all characters at once (UTF-32) and cut the big string into titles.
    text_all = codes.astype("<u4").tobytes().decode("utf-32-le")
    ends = np.cumsum(lengths)
    starts = ends - lengths
    titles = [text_all[a:b] for a, b in zip(starts.tolist(), ends.tolist())]
    label_list = labels.tolist()

    out: dict[str, list[tuple[str, int]]] = {}
    lo = 0
    for name, n in zip(SPLITS, sizes):
        out[name] = list(zip(titles[lo:lo + n], label_list[lo:lo + n]))
        lo += n
    return out


def write_synthetic(out_dir: str | Path, cfg: SynthConfig) -> Path:
    """Write train.txt, dev.txt, test.txt (``text\\tlabel`` lines) and class.txt under `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = generate(cfg)
    for name in SPLITS:
        body = "".join(f"{text}\t{label}\n" for text, label in data[name])
        (out / f"{name}.txt").write_text(body, encoding="utf-8", newline="\n")
    names = "".join(f"{c}\n" for c in class_names(cfg.n_classes))
    (out / "class.txt").write_text(names, encoding="utf-8", newline="\n")
    return out
