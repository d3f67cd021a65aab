"""Read a data directory in the seed's THUCNews format, strictly.

A directory holds `train.txt`, `dev.txt`, `test.txt` (lines `text<TAB>label`, label an integer
index into `class.txt`), `class.txt` (one class name per line), optionally `vocab.pkl` (a pickled
dict token → index) and an `.npz` with an `embeddings` array. Blank lines are skipped, as the seed
does; anything else that is wrong raises `DataError` naming the file and line.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import numpy as np

from harness.names import SPLITS

UNK, PAD = "<UNK>", "<PAD>"


class DataError(ValueError):
    """The data directory has a problem; the message names the file (and line)."""


def char_tokenizer(text: str) -> list[str]:
    return list(text)


def word_tokenizer(text: str) -> list[str]:
    return text.split(" ")


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"char": char_tokenizer, "word": word_tokenizer}


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, line without newline) for each non-blank line; strict UTF-8."""
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    raw = path.read_bytes()
    out = []
    for i, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}, line {i}: bytes that are not UTF-8 ({e.reason} at byte "
                            f"{e.start} of the line)") from None
        line = line.rstrip("\r")
        if i == 1:
            line = line.removeprefix("\ufeff")
        if line.strip():
            out.append((i, line))
    return out


def read_classes(data_dir: Path) -> list[str]:
    """The class names of class.txt, one a line: at least two, none repeated."""
    path = data_dir / "class.txt"
    lines = _read_lines(path)
    names = [line.strip() for _, line in lines]
    if not names:
        raise DataError(f"{path}: no class names")
    if len(names) == 1:
        raise DataError(f"{path}, line {lines[0][0]}: only one class ({names[0]!r}); a classifier needs at "
                        f"least two")
    first: dict[str, int] = {}
    for (i, _), name in zip(lines, names):
        if name in first:
            raise DataError(f"{path}, line {i}: class name {name!r} is repeated (first on line {first[name]})")
        first[name] = i
    return names


_LABEL = re.compile(r"-?[0-9]+")  # ASCII digits only: int() would also take '１', '+1', ' 1' and '1_0'


def read_split(path: Path, n_classes: int) -> list[tuple[str, int]]:
    """[(text, label)] of one split file, checked line by line."""
    rows = []
    for i, line in _read_lines(path):
        if line.rstrip(" ").endswith("\t"):
            raise DataError(f"{path}, line {i}: a tab after the label; expected 'text<TAB>label': {line[:60]!r}")
        parts = line.strip().split("\t")
        if len(parts) != 2:
            what = "no tab" if len(parts) == 1 else f"{len(parts) - 1} tabs"
            raise DataError(f"{path}, line {i}: expected 'text<TAB>label', found {what}: {line[:60]!r}")
        text, label_text = parts
        if not _LABEL.fullmatch(label_text):
            raise DataError(f"{path}, line {i}: label {label_text!r} is not an integer (ASCII digits 0-9)")
        label = int(label_text)
        if not 0 <= label < n_classes:
            raise DataError(f"{path}, line {i}: label {label} is not a valid class index "
                            f"(class.txt has {n_classes} classes: 0..{n_classes - 1})")
        rows.append((text, label))
    if not rows:
        raise DataError(f"{path}: the split is empty")
    return rows


class _DictOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can build plain dicts, strings and ints but imports nothing."""

    def find_class(self, module: str, name: str) -> NoReturn:
        raise DataError(f"refusing to load {module}.{name}: vocab.pkl may only hold a dict of str -> int")


def load_vocab_pickle(path: Path) -> dict[str, int]:
    """Read vocab.pkl safely: only a dict of str → int with indices 0..n-1, containing <UNK>, <PAD>."""
    try:
        vocab = _DictOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except Exception as e:  # any unpickling failure is a data error
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
    if not isinstance(vocab, dict):
        raise DataError(f"{path}: expected a dict of str -> int, found {type(vocab).__name__}")
    for k, v in vocab.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int):
            raise DataError(f"{path}: expected a dict of str -> int, found entry {k!r}: {v!r}")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise DataError(f"{path}: indices must be 0..{len(vocab) - 1}, each used once")
    for special in (UNK, PAD):
        if special not in vocab:
            raise DataError(f"{path}: the vocabulary has no {special} entry")
    return vocab


def build_vocab(texts: list[str], tokenizer: Callable[[str], list[str]], max_size: int,
                min_freq: int) -> dict[str, int]:
    """The seed's build_vocab: most frequent tokens (ties in order of first appearance), then UNK, PAD."""
    counts: dict[str, int] = {}
    for text in texts:
        for tok in tokenizer(text):
            counts[tok] = counts.get(tok, 0) + 1
    kept = sorted((kv for kv in counts.items() if kv[1] >= min_freq), key=lambda kv: kv[1], reverse=True)
    vocab = {tok: i for i, (tok, _) in enumerate(kept[:max_size])}
    vocab[UNK] = len(vocab)
    vocab[PAD] = len(vocab)
    return vocab


def load_embeddings(path: Path, n_vocab: int) -> np.ndarray:
    """(n_vocab, D) float32 from an .npz's 'embeddings' array, loaded without pickles."""
    if not path.is_file():
        raise DataError(f"missing embedding file: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "embeddings" not in npz.files:
                raise DataError(f"{path}: no 'embeddings' array (found: {', '.join(npz.files) or 'none'})")
            emb = npz["embeddings"]
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: not a readable .npz without pickles ({type(e).__name__}: {e})") from None
    if emb.ndim != 2 or emb.shape[0] != n_vocab:
        raise DataError(f"{path}: embeddings have shape {tuple(emb.shape)}, but the vocabulary has "
                        f"{n_vocab} tokens: expected ({n_vocab}, D)")
    if emb.dtype.kind not in "iuf":
        raise DataError(f"{path}: the 'embeddings' array holds {emb.dtype} values; expected finite numbers "
                        f"(real: float or integer)")
    if not np.isfinite(emb).all():
        raise DataError(f"{path}: embeddings must be finite numbers")
    return emb.astype(np.float32)


def content_hash(data_dir: Path, embedding: str) -> str:
    """Identity of a data directory: a hash of the bytes of every file the loader reads."""
    h = hashlib.sha256()
    names = [f"{s}.txt" for s in SPLITS] + ["class.txt", "vocab.pkl"]
    if embedding != "random":
        names.append(embedding)
    for name in names:
        path = data_dir / name
        if path.is_file():
            h.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        elif name not in ("vocab.pkl",):
            raise DataError(f"missing file: {path}")
    return h.hexdigest()[:16]
