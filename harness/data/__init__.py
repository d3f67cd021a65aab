"""Data: locate (or synthesise) a data set, encode it once per (data, vocabulary, pad_size), cache it.

`prepare(cfg, cache_dir)` returns where the text files are and the data identity; `load(...)` returns
the encoded `Dataset` (integer arrays; the trainer moves them to its device once).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.config import DataConfig, stable_hash
from harness.data.synth import GENERATOR_VERSION, write_synthetic
from harness.data.thucnews import (
    PAD,
    TOKENIZERS,
    UNK,
    DataError,
    build_vocab,
    content_hash,
    load_embeddings,
    load_vocab_pickle,
    read_classes,
    read_split,
)
from harness.files import atomic_path, staged_dir
from harness.names import SPLITS

__all__ = ["DataError", "Dataset", "EncodedSplit", "check", "identify", "prepare", "load", "describe", "encode_texts"]


@dataclass
class EncodedSplit:
    tokens: np.ndarray   # (N, pad_size) int64, right-padded with the PAD index
    lengths: np.ndarray  # (N,) int64, true length after cutting to pad_size (>= 1)
    labels: np.ndarray   # (N,) int64


@dataclass
class Dataset:
    train: EncodedSplit
    dev: EncodedSplit
    test: EncodedSplit
    vocab_size: int            # rows of the embedding table (PAD included)
    pad_index: int
    class_names: list[str]
    embeddings: np.ndarray | None  # (vocab_size, D) float32 or None
    data_id: str
    name: str                  # a short label for the runs table ("synthetic" or the directory name)


def identify(cfg: DataConfig) -> str:
    """The data identity, writing nothing: a hash of the synthetic settings, or of a folder's files."""
    if cfg.kind == "synthetic":
        return "synth-" + stable_hash({"synth": dataclasses.asdict(cfg.synth), "version": GENERATOR_VERSION})
    data_dir = Path(cfg.dir).expanduser()
    if not data_dir.is_dir():
        raise DataError(f"data.dir: no such directory: {data_dir}")
    return "dir-" + content_hash(data_dir, cfg.embedding)


def prepare(cfg: DataConfig, cache_dir: str | Path) -> tuple[Path, str]:
    """(directory of the text files, data identity). Writes the synthetic set on first use."""
    data_id = identify(cfg)
    if cfg.kind == "synthetic":
        data_dir = Path(cache_dir) / data_id
        if not (data_dir / "class.txt").is_file():
            with staged_dir(data_dir) as tmp:  # another worker may win the race; its copy is identical
                write_synthetic(tmp, cfg.synth)
        return data_dir, data_id
    return Path(cfg.dir).expanduser(), data_id


def check(cfg: DataConfig) -> int | None:
    """Read and check a data folder as `load` does, writing nothing (for a dry run). Returns the
    pretrained embeddings' width (None for random embeddings or synthetic data)."""
    if cfg.kind == "synthetic":
        return None
    data_dir = Path(cfg.dir).expanduser()
    n_classes = len(read_classes(data_dir))
    splits = {s: read_split(data_dir / f"{s}.txt", n_classes) for s in SPLITS}
    if cfg.embedding == "random":
        if (data_dir / "vocab.pkl").is_file():
            load_vocab_pickle(data_dir / "vocab.pkl")
        return None
    vocab = _vocab(cfg, data_dir, [t for t, _ in splits["train"]])
    return int(load_embeddings(data_dir / cfg.embedding, len(vocab)).shape[1])


def encode_texts(texts: list[str], vocab: dict[str, int], tokenizer_name: str, pad_size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Tokens (N, pad_size) padded with PAD at the end or cut, and true lengths (N,)."""
    tokenize = TOKENIZERS[tokenizer_name]
    unk, pad = vocab[UNK], vocab[PAD]
    tokens = np.full((len(texts), pad_size), pad, dtype=np.int64)
    lengths = np.zeros(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        ids = [vocab.get(t, unk) for t in tokenize(text)[:pad_size]]
        tokens[i, : len(ids)] = ids
        lengths[i] = max(len(ids), 1)
    return tokens, lengths


def load(cfg: DataConfig, cache_dir: str | Path, pad_size: int | None = None) -> Dataset:
    """The encoded data set for `pad_size` (default cfg.pad_size), from the cache when present."""
    pad_size = pad_size or cfg.pad_size
    data_dir, data_id = prepare(cfg, cache_dir)
    class_names = read_classes(data_dir)
    key = stable_hash({"data_id": data_id, "tokenizer": cfg.tokenizer, "vocab_size": cfg.vocab_size,
                       "min_freq": cfg.min_freq, "pad_size": pad_size})
    cache = Path(cache_dir) / f"encoded-{data_id}-pad{pad_size}-{key}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
            vocab_size, pad_index = int(arrays.pop("vocab_size")), int(arrays.pop("pad_index"))
    else:
        splits = {s: read_split(data_dir / f"{s}.txt", len(class_names)) for s in SPLITS}
        vocab = _vocab(cfg, data_dir, [t for t, _ in splits["train"]])
        arrays = {}
        for s, rows in splits.items():
            tokens, lengths = encode_texts([t for t, _ in rows], vocab, cfg.tokenizer, pad_size)
            arrays.update({f"{s}_tokens": tokens, f"{s}_lengths": lengths,
                           f"{s}_labels": np.array([y for _, y in rows], dtype=np.int64)})
        vocab_size, pad_index = len(vocab), vocab[PAD]
        _atomic_savez(cache, vocab_size=np.int64(vocab_size), pad_index=np.int64(pad_index), **arrays)
    embeddings = None
    if cfg.embedding != "random":
        embeddings = load_embeddings(data_dir / cfg.embedding, vocab_size)
    split = {s: EncodedSplit(arrays[f"{s}_tokens"], arrays[f"{s}_lengths"], arrays[f"{s}_labels"])
             for s in SPLITS}
    name = "synthetic" if cfg.kind == "synthetic" else data_dir.name
    return Dataset(**split, vocab_size=vocab_size, pad_index=pad_index, class_names=class_names,
                   embeddings=embeddings, data_id=data_id, name=name)


def _vocab(cfg: DataConfig, data_dir: Path, train_texts: list[str]) -> dict[str, int]:
    path = data_dir / "vocab.pkl"
    if path.is_file():
        return load_vocab_pickle(path)
    return build_vocab(train_texts, TOKENIZERS[cfg.tokenizer], cfg.vocab_size, cfg.min_freq)


def describe(data_dir: str | Path, tokenizer: str = "char") -> dict:
    """Statistics of a data directory (validating it): sizes, class balance, length percentiles."""
    data_dir = Path(data_dir)
    class_names = read_classes(data_dir)
    tokenize = TOKENIZERS[tokenizer]
    out: dict = {"dir": str(data_dir), "classes": class_names, "splits": {}}
    for s in SPLITS:
        rows = read_split(data_dir / f"{s}.txt", len(class_names))
        lengths = np.array([len(tokenize(t)) for t, _ in rows])
        counts = np.bincount([y for _, y in rows], minlength=len(class_names))
        out["splits"][s] = {
            "size": len(rows),
            "class_counts": {class_names[i]: int(c) for i, c in enumerate(counts)},
            "length": {"mean": float(lengths.mean()), "min": int(lengths.min()),
                       **{f"p{q}": float(np.percentile(lengths, q)) for q in (5, 25, 50, 75, 95, 99)},
                       "max": int(lengths.max())},
        }
    vocab_path = data_dir / "vocab.pkl"
    out["vocab"] = (f"vocab.pkl, {len(load_vocab_pickle(vocab_path))} tokens" if vocab_path.is_file()
                    else "built from train.txt")
    return out


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz under a temporary name and rename it: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
