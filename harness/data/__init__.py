"""Data: locate (or synthesise) a data set, encode it once per (data, vocabulary, pad_size, lag), cache it.

`prepare(cfg, cache_dir)` returns where the text files are and the data identity; `load(...)` returns
the encoded `Dataset` (integer arrays; the trainer moves them to its device once).

Two layouts of a row (T positions, text tokens `t…`, PAD `_`), both cutting every text to its first
`pad_size` tokens:

- `lag` null, the seed's: the text from position 0, PAD after it; T = pad_size.
  ``t t t t _ _ _ _``  (pad_size 8)
- `lag` D: the text right-aligned in the first pad_size positions (PAD before it), then D PAD
  positions; T = pad_size + D, and every text's last token sits at position pad_size-1, exactly D
  steps before the last position. ``_ _ _ _ t t t t _ _`` (pad_size 8, D 2)
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import plugins
from harness.config import DataConfig, stable_hash
from harness.config.sections import SYNTH_ADDED_LATER
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

__all__ = ["DataError", "Dataset", "EncodedSplit", "check", "identify", "prepare", "prepare_synthetic",
           "prepare_thucnews", "load", "describe", "encode_texts", "lag_layout", "split_rows"]


@dataclass
class EncodedSplit:
    """One split, encoded. Row i's text occupies the positions [starts[i], starts[i] + lengths[i])
    (its valid span); every other position holds PAD. Without a lag starts are 0 (text first, PAD
    after); with lag D, starts + lengths == pad_size for every row and the last D positions are PAD."""

    tokens: np.ndarray   # (N, T) int64; T = pad_size, or pad_size + lag
    lengths: np.ndarray  # (N,) int64, tokens of the text after cutting to pad_size (>= 1; an empty
    #                      text counts 1: its one position holds PAD)
    labels: np.ndarray   # (N,) int64
    starts: np.ndarray | None = None  # (N,) int64, the text's first position; None -> zeros

    def __post_init__(self) -> None:
        if self.starts is None:
            self.starts = np.zeros(len(self.lengths), dtype=np.int64)


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
    pad_size: int = 0          # tokens a text is cut to (0: taken from the tokens' width)
    lag: int | None = None     # PAD positions after every text's end (None: the seed's layout)
    vocab: dict[str, int] | None = None  # token -> index (UNK and PAD included); what train.save_model keeps
    tokenizer: str = "char"    # the name of the tokenizer that made the tokens (data.tokenizer)

    def __post_init__(self) -> None:
        if not self.pad_size:
            self.pad_size = self.train.tokens.shape[1] - (self.lag or 0)

    @property
    def seq_len(self) -> int:
        """T, positions per row: pad_size + lag."""
        return self.pad_size + (self.lag or 0)


def synth_id(cfg: DataConfig) -> str:
    """'synth-<hash>' of the synthetic settings and the generator version."""
    synth = dataclasses.asdict(cfg.synth)
    for key, default in SYNTH_ADDED_LATER.items():
        if synth.get(key) == default:
            synth.pop(key)
    return "synth-" + stable_hash({"synth": synth, "version": GENERATOR_VERSION})


def prepare_synthetic(cfg: DataConfig, cache_dir: Path) -> Path:
    """The synthetic set's folder, cache_dir/synth-<hash of its settings>, written on first use
    (the built-in `harness.datasets` entry point `synthetic`)."""
    data_dir = Path(cache_dir) / synth_id(cfg)
    if not (data_dir / "class.txt").is_file():
        with staged_dir(data_dir) as tmp:  # another worker may win the race; its copy is identical
            write_synthetic(tmp, cfg.synth)
    return data_dir


def prepare_thucnews(cfg: DataConfig, cache_dir: Path) -> Path:
    """data.dir, checked to be a directory (the built-in `harness.datasets` entry point `thucnews`)."""
    data_dir = Path(cfg.dir).expanduser()
    if not data_dir.is_dir():
        raise DataError(f"data.dir: no such directory: {data_dir}")
    return data_dir


def _prepare_plugin(cfg: DataConfig, cache_dir: Path) -> Path:
    """The folder a `harness.datasets` plugin returns for this config (it writes it on first use)."""
    try:
        data_dir = plugins.load(plugins.DATASET_GROUP, cfg.kind)(cfg, cache_dir)
    except plugins.PluginError as e:
        raise DataError(f"data.kind: {e}") from None
    if not isinstance(data_dir, (str, Path)) or not Path(data_dir).is_dir():
        raise DataError(f"data.kind {cfg.kind!r}: the plugin returned {data_dir!r}, not the folder it wrote")
    return Path(data_dir)


def identify(cfg: DataConfig) -> str:
    """The data identity, writing nothing into a results folder: a hash of the synthetic settings, or
    of a folder's files (a plugin's data set is written to a temporary folder to be hashed)."""
    if cfg.kind == "synthetic":
        return synth_id(cfg)
    if cfg.kind == "thucnews":
        return "dir-" + content_hash(prepare_thucnews(cfg, Path()), cfg.embedding)
    with tempfile.TemporaryDirectory() as tmp:
        return f"{cfg.kind}-" + content_hash(_prepare_plugin(cfg, Path(tmp)), cfg.embedding)


def prepare(cfg: DataConfig, cache_dir: str | Path) -> tuple[Path, str]:
    """(directory of the text files, data identity). Writes the synthetic set (or a plugin's data
    set) on first use. The identity: a hash of the synthetic settings, or of the folder's files."""
    cache_dir = Path(cache_dir)
    if cfg.kind == "synthetic":
        data_dir = prepare_synthetic(cfg, cache_dir)
        return data_dir, data_dir.name
    if cfg.kind == "thucnews":
        data_dir = prepare_thucnews(cfg, cache_dir)
        return data_dir, "dir-" + content_hash(data_dir, cfg.embedding)
    data_dir = _prepare_plugin(cfg, cache_dir)
    return data_dir, f"{cfg.kind}-" + content_hash(data_dir, cfg.embedding)


def check(cfg: DataConfig) -> int | None:
    """Read and check a data folder as `load` does, writing nothing (for a dry run). Returns the
    pretrained embeddings' width (None for random embeddings or synthetic data)."""
    if cfg.kind != "thucnews":  # synthetic: generated; a plugin's: checked when it is written
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


def split_rows(cfg: DataConfig) -> dict[str, int] | None:
    """At most how many texts each split holds, known without writing anything: the synthetic
    sizes, or a data folder's line counts (an upper bound: blank lines count); None for a plugin's
    data set or a folder whose split files are not all there (`check` says what is wrong)."""
    if cfg.kind == "synthetic":
        return {"train": cfg.synth.n_train, "dev": cfg.synth.n_dev, "test": cfg.synth.n_test}
    if cfg.kind != "thucnews" or not cfg.dir:
        return None
    data_dir = Path(cfg.dir).expanduser()
    out = {}
    for s in SPLITS:
        try:
            with open(data_dir / f"{s}.txt", "rb") as f:
                out[s] = 1 + sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except OSError:
            return None
    return out


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


def lag_layout(tokens: np.ndarray, lengths: np.ndarray, lag: int, pad_index: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """The seed's layout (`encode_texts`' (N, pad_size) tokens, text from position 0) moved to lag D:
    each text right-aligned in the first pad_size positions, then `lag` PAD positions. Returns
    tokens (N, pad_size + lag) and starts (N,) = pad_size - lengths; the text tokens are the same."""
    n, pad_size = tokens.shape
    starts = (pad_size - lengths).astype(np.int64)
    out = np.full((n, pad_size + lag), pad_index, dtype=np.int64)
    cols = np.arange(pad_size)
    src = cols[None, :] - starts[:, None]  # (N, pad_size): which input column lands at each position
    inside = src >= 0
    out[:, :pad_size][inside] = tokens[np.nonzero(inside)[0], src[inside]]
    return out, starts


def encoding_key(cfg: DataConfig) -> str:
    """The one key of an encoded data set: a hash of every data setting (where the texts come from,
    the synthetic settings, embedding, tokenizer, vocabulary, pad_size, lag). Two trials share an
    encoding exactly when their keys are equal; the plan and the runner go by it."""
    return stable_hash(dataclasses.asdict(cfg))


def load(cfg: DataConfig, cache_dir: str | Path) -> Dataset:
    """The encoded data set of `cfg` (a trial's `spec.data`), from the cache when present. The cache
    of a data set without a lag is the same file as before lags existed."""
    pad_size, lag = cfg.pad_size, cfg.lag
    if lag is not None and (isinstance(lag, bool) or not isinstance(lag, int) or lag < 0):
        raise ValueError(f"data.lag must be an integer >= 0 or null, got {lag!r}")
    data_dir, data_id = prepare(cfg, cache_dir)
    class_names = read_classes(data_dir)
    ident = {"data_id": data_id, "tokenizer": cfg.tokenizer, "vocab_size": cfg.vocab_size,
             "min_freq": cfg.min_freq, "pad_size": pad_size}
    if lag is not None:
        ident["lag"] = lag
    lag_part = "" if lag is None else f"-lag{lag}"
    cache = Path(cache_dir) / f"encoded-{data_id}-pad{pad_size}{lag_part}-{stable_hash(ident)}.npz"
    cached = _read_cache(cache)
    if cached is not None:
        arrays, vocab_size, pad_index = cached
        vocab = json.loads(arrays.pop("vocab_json").tobytes().decode("utf-8"))
    else:
        splits = {s: read_split(data_dir / f"{s}.txt", len(class_names)) for s in SPLITS}
        vocab = _vocab(cfg, data_dir, [t for t, _ in splits["train"]])
        arrays = {}
        for s, rows in splits.items():
            tokens, lengths = encode_texts([t for t, _ in rows], vocab, cfg.tokenizer, pad_size)
            if lag is not None:
                tokens, arrays[f"{s}_starts"] = lag_layout(tokens, lengths, lag, vocab[PAD])
            arrays.update({f"{s}_tokens": tokens, f"{s}_lengths": lengths,
                           f"{s}_labels": np.array([y for _, y in rows], dtype=np.int64)})
        vocab_size, pad_index = len(vocab), vocab[PAD]
        # The vocabulary as UTF-8 JSON bytes: an array without pickles that keeps every token exactly.
        vocab_json = np.frombuffer(json.dumps(vocab, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
        _atomic_savez(cache, vocab_size=np.int64(vocab_size), pad_index=np.int64(pad_index), vocab_json=vocab_json,
                      **arrays)
    embeddings = None
    if cfg.embedding != "random":
        embeddings = load_embeddings(data_dir / cfg.embedding, vocab_size)
    split = {s: EncodedSplit(arrays[f"{s}_tokens"], arrays[f"{s}_lengths"], arrays[f"{s}_labels"],
                             arrays.get(f"{s}_starts")) for s in SPLITS}
    name = data_dir.name if cfg.kind == "thucnews" else cfg.kind
    return Dataset(**split, vocab_size=vocab_size, pad_index=pad_index, class_names=class_names,
                   embeddings=embeddings, data_id=data_id, name=name, pad_size=pad_size, lag=lag,
                   vocab=vocab, tokenizer=cfg.tokenizer)


def _read_cache(cache: Path) -> tuple[dict[str, np.ndarray], int, int] | None:
    """An encoded data set's arrays, vocabulary size and pad index from its cache file, read without
    pickles (allow_pickle=False: a file in a results folder never runs code); None when there is none,
    or one that cannot be used (damaged, holding objects, missing arrays): it is encoded again."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        vocab_size, pad_index = int(arrays.pop("vocab_size")), int(arrays.pop("pad_index"))
        if any(f"{s}_{a}" not in arrays for s in SPLITS for a in ("tokens", "lengths", "labels")):
            return None
        if "vocab_json" not in arrays:  # a cache from before the vocabulary was kept: encoded again
            return None
        json.loads(arrays["vocab_json"].tobytes().decode("utf-8"))  # damaged: encoded again
        return arrays, vocab_size, pad_index
    except Exception:  # damaged or foreign: the texts are encoded again (and the file replaced)
        return None


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
    out["embeddings"] = _check_embeddings(data_dir, tokenizer)
    return out


def _check_embeddings(data_dir: Path, tokenizer: str) -> dict[str, str]:
    """Every .npz in the folder checked as `harness run` checks the one `data.embedding` names
    (thucnews.load_embeddings: no pickles, an 'embeddings' array of finite real numbers, one row per
    token): file name -> "N x D". The vocabulary is vocab.pkl, else the one built from train.txt with
    the default data.vocab_size and data.min_freq (a config with others counts other rows)."""
    files = sorted(data_dir.glob("*.npz"))
    if not files:
        return {}
    defaults = DataConfig()
    vocab = _vocab(dataclasses.replace(defaults, tokenizer=tokenizer), data_dir,
                   [t for t, _ in read_split(data_dir / "train.txt", len(read_classes(data_dir)))])
    return {f.name: "{} x {}".format(*load_embeddings(f, len(vocab)).shape) for f in files}


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz under a temporary name and rename it: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
