"""Tests for the THUCNews-format loader: harness.data.thucnews, harness.data.load/describe, `data check`."""

from __future__ import annotations

import json
import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import harness.data as hdata
from harness.cli import main
from harness.config import DataConfig
from harness.data import DataError, describe, encode_texts, load
from harness.data.thucnews import (
    PAD,
    UNK,
    build_vocab,
    char_tokenizer,
    content_hash,
    load_embeddings,
    load_vocab_pickle,
    read_classes,
    read_split,
    word_tokenizer,
)

TRAIN = "aab\t0\nbc\t1\n\nabcd\t0\n"   # a blank line (line 3) is skipped
DEV = "ab\t1\n"
TEST = "zz\t0\n"
CLASSES = "alpha\nbeta\n"
# vocabulary built from TRAIN (char): a:3 b:3 c:2 d:1
BUILT = {"a": 0, "b": 1, "c": 2, "d": 3, UNK: 4, PAD: 5}


def _write(d: Path, **files: str | bytes) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = d / name.replace("_txt", ".txt")
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return d


def _tiny(tmp_path: Path, name: str = "tiny", **overrides: str | bytes) -> Path:
    files: dict[str, str | bytes] = {"train_txt": TRAIN, "dev_txt": DEV, "test_txt": TEST,
                                     "class_txt": CLASSES}
    files.update(overrides)
    return _write(tmp_path / name, **files)


def _cfg(d: Path, **kw: object) -> DataConfig:
    kw.setdefault("pad_size", 3)
    return DataConfig(kind="thucnews", dir=str(d), **kw)


def _err(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


class _PrintPayload:
    """Unpickling this calls print("pwned"): a stand-in for any code-executing pickle."""

    def __reduce__(self):
        return (print, ("pwned",))


class _Token:
    """A plain class: pickling an instance needs an import on load."""

    def __init__(self) -> None:
        self.x = 1


# ------------------------------------------------------------------------------------------ vocab


def test_build_vocab_frequency_then_first_appearance_then_unk_pad() -> None:
    texts = ["zebra apple zebra", "apple mango", "kiwi"]
    vocab = build_vocab(texts, word_tokenizer, max_size=100, min_freq=1)
    # zebra and apple tie at 2 (zebra first seen); mango and kiwi tie at 1 (mango first seen)
    assert list(vocab.items()) == [("zebra", 0), ("apple", 1), ("mango", 2), ("kiwi", 3),
                                   (UNK, 4), (PAD, 5)]


def test_build_vocab_max_size_and_min_freq() -> None:
    texts = ["zebra apple zebra", "apple mango", "kiwi"]
    assert list(build_vocab(texts, word_tokenizer, max_size=3, min_freq=1).items()) == [
        ("zebra", 0), ("apple", 1), ("mango", 2), (UNK, 3), (PAD, 4)]
    assert list(build_vocab(texts, word_tokenizer, max_size=100, min_freq=2).items()) == [
        ("zebra", 0), ("apple", 1), (UNK, 2), (PAD, 3)]
    assert list(build_vocab(texts, word_tokenizer, max_size=1, min_freq=2).items()) == [
        ("zebra", 0), (UNK, 1), (PAD, 2)]
    assert build_vocab(texts, word_tokenizer, max_size=100, min_freq=5) == {UNK: 0, PAD: 1}


def test_build_vocab_char_tokenizer() -> None:
    assert build_vocab(["aab", "bc", "abcd"], char_tokenizer, max_size=100, min_freq=1) == BUILT
    assert list(build_vocab(["ba", "x"], char_tokenizer, 100, 1)) == ["b", "a", "x", UNK, PAD]


def test_tokenizers() -> None:
    assert char_tokenizer("ab c") == ["a", "b", " ", "c"]
    assert word_tokenizer("the cat sat") == ["the", "cat", "sat"]
    assert word_tokenizer("a  b") == ["a", "", "b"]       # split on single spaces, as the seed does
    assert word_tokenizer("a\u3000b") == ["a\u3000b"]      # only the ASCII space separates words


# ----------------------------------------------------------------------------------------- encode


def test_encode_texts_char_pad_and_cut() -> None:
    vocab = {"a": 0, "b": 1, "c": 2, UNK: 3, PAD: 4}
    texts = ["abc", "ax", "abcab"]
    tokens, lengths = encode_texts(texts, vocab, "char", 4)
    assert tokens.dtype == np.int64 and lengths.dtype == np.int64
    assert tokens.tolist() == [[0, 1, 2, 4], [0, 3, 4, 4], [0, 1, 2, 0]]
    assert lengths.tolist() == [3, 2, 4]

    tokens, lengths = encode_texts(texts, vocab, "char", 2)
    assert tokens.tolist() == [[0, 1], [0, 3], [0, 1]]
    assert lengths.tolist() == [2, 2, 2]

    tokens, lengths = encode_texts(texts, vocab, "char", 6)
    assert tokens.tolist() == [[0, 1, 2, 4, 4, 4], [0, 3, 4, 4, 4, 4], [0, 1, 2, 0, 1, 4]]
    assert lengths.tolist() == [3, 2, 5]


def test_encode_texts_empty_text_has_length_one() -> None:
    vocab = {"a": 0, UNK: 1, PAD: 2}
    tokens, lengths = encode_texts(["", "a"], vocab, "char", 3)
    assert tokens.tolist() == [[2, 2, 2], [0, 2, 2]]
    assert lengths.tolist() == [1, 1]


def test_encode_texts_word_tokenizer() -> None:
    vocab = {"the": 0, "cat": 1, UNK: 2, PAD: 3}
    tokens, lengths = encode_texts(["the cat", "the big cat sat"], vocab, "word", 3)
    assert tokens.tolist() == [[0, 1, 3], [0, 2, 1]]
    assert lengths.tolist() == [2, 3]
    tokens, lengths = encode_texts(["the cat", "the big cat sat"], vocab, "word", 5)
    assert tokens.tolist() == [[0, 1, 3, 3, 3], [0, 2, 1, 2, 3]]
    assert lengths.tolist() == [2, 4]


# ------------------------------------------------------------------------------------------- load


def test_load_tiny_dir(tmp_path: Path) -> None:
    d = _tiny(tmp_path)
    ds = load(_cfg(d), tmp_path / "cache")
    assert ds.class_names == ["alpha", "beta"]
    assert ds.vocab_size == 6 and ds.pad_index == 5 == ds.vocab_size - 1
    assert ds.embeddings is None
    assert ds.name == "tiny"
    assert ds.data_id == "dir-" + content_hash(d, "random")
    assert ds.train.tokens.shape == (3, 3)            # the blank line is skipped
    assert ds.train.tokens.tolist() == [[0, 0, 1], [1, 2, 5], [0, 1, 2]]
    assert ds.train.lengths.tolist() == [3, 2, 3]
    assert ds.train.labels.tolist() == [0, 1, 0]
    assert ds.dev.tokens.tolist() == [[0, 1, 5]]
    assert ds.dev.lengths.tolist() == [2]
    assert ds.dev.labels.tolist() == [1]
    assert ds.test.tokens.tolist() == [[4, 4, 5]]     # unseen 'z' → UNK
    assert ds.test.lengths.tolist() == [2]
    assert ds.test.labels.tolist() == [0]
    for split in (ds.train, ds.dev, ds.test):
        assert split.tokens.dtype == split.lengths.dtype == split.labels.dtype == np.int64


def test_load_pad_size_argument_overrides_config(tmp_path: Path) -> None:
    ds = load(_cfg(_tiny(tmp_path), pad_size=5), tmp_path / "cache")
    assert ds.train.tokens.tolist() == [[0, 0, 1, 5, 5], [1, 2, 5, 5, 5], [0, 1, 2, 3, 5]]
    assert ds.train.lengths.tolist() == [3, 2, 4]


def test_load_vocab_size_and_min_freq(tmp_path: Path) -> None:
    ds = load(_cfg(_tiny(tmp_path), vocab_size=2, pad_size=4), tmp_path / "cache")
    assert ds.vocab_size == 4 and ds.pad_index == 3
    assert ds.train.tokens.tolist() == [[0, 0, 1, 3], [1, 2, 3, 3], [0, 1, 2, 2]]
    ds = load(_cfg(_tiny(tmp_path), min_freq=3, pad_size=4), tmp_path / "cache")
    assert ds.vocab_size == 4 and ds.pad_index == 3
    assert ds.train.tokens.tolist() == [[0, 0, 1, 3], [1, 2, 3, 3], [0, 1, 2, 2]]


def test_load_word_tokenizer(tmp_path: Path) -> None:
    d = _tiny(tmp_path, train_txt="the cat\t0\nthe dog\t1\n", dev_txt="a cat\t1\n",
              test_txt="the the the the\t0\n")
    ds = load(_cfg(d, tokenizer="word"), tmp_path / "cache")
    # the:2 cat:1 dog:1 → {the:0, cat:1, dog:2, UNK:3, PAD:4}
    assert ds.vocab_size == 5 and ds.pad_index == 4
    assert ds.train.tokens.tolist() == [[0, 1, 4], [0, 2, 4]]
    assert ds.dev.tokens.tolist() == [[3, 1, 4]]
    assert ds.test.tokens.tolist() == [[0, 0, 0]]
    assert ds.test.lengths.tolist() == [3]


def test_load_writes_cache_and_second_load_uses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    d, cache = _tiny(tmp_path), tmp_path / "cache"
    first = load(_cfg(d), cache)
    files = sorted(cache.glob("encoded-*.npz"))
    assert len(files) == 1 and files[0].name.startswith(f"encoded-{first.data_id}-pad3-")
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]   # no temporary left behind

    def _no_reading(*_a: object, **_k: object) -> None:
        raise AssertionError("the split files were read again: the cache was not used")

    monkeypatch.setattr(hdata, "read_split", _no_reading)
    second = load(_cfg(d), cache)
    for s in ("train", "dev", "test"):
        a, b = getattr(first, s), getattr(second, s)
        for field in ("tokens", "lengths", "labels"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
            assert getattr(b, field).dtype == np.int64
    assert (second.vocab_size, second.pad_index) == (first.vocab_size, first.pad_index)
    assert type(second.vocab_size) is int and type(second.pad_index) is int
    assert second.class_names == first.class_names and second.data_id == first.data_id
    monkeypatch.undo()

    load(_cfg(d, pad_size=4), cache)                   # another pad size: another cache file
    assert len(list(cache.glob("encoded-*.npz"))) == 2
    (d / "train.txt").write_text(TRAIN + "dd\t1\n", encoding="utf-8")
    changed = load(_cfg(d), cache)                     # changed bytes: new identity, re-encoded
    assert changed.data_id != first.data_id
    assert changed.train.labels.tolist() == [0, 1, 0, 1]
    assert len(list(cache.glob("encoded-*.npz"))) == 3


def test_blank_lines_crlf_and_bom(tmp_path: Path) -> None:
    d = _tiny(tmp_path, train_txt=b"\xef\xbb\xbfaab\t0\r\n\r\n   \r\nbc\t1\r\n\n\nabcd\t0",
              class_txt=b"alpha\r\nbeta\r\n\r\n")
    assert read_classes(d) == ["alpha", "beta"]
    assert read_split(d / "train.txt", 2) == [("aab", 0), ("bc", 1), ("abcd", 0)]
    ds = load(_cfg(d), tmp_path / "cache")
    assert ds.train.tokens.tolist() == [[0, 0, 1], [1, 2, 5], [0, 1, 2]]


def test_load_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such directory") as e:
        load(_cfg(tmp_path / "nope"), tmp_path / "cache")
    assert "nope" in _err(e)


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("content, line, words", [
    ("aab\t0\nbc 1\n", 2, "no tab"),
    ("aab\t0\n\nbc\t1\tx\n", 3, "2 tabs"),
    ("aab\t0\nbc\tbeta\n", 2, "'beta' is not an integer"),
    ("aab\t0\nbc\t1.0\n", 2, "is not an integer"),
    ("aab\t0\n\n\nbc\t2\n", 4, "label 2 is not a valid class index"),
    ("aab\t-1\n", 1, "label -1 is not a valid class index"),
])
def test_bad_train_line_names_file_and_line(tmp_path: Path, content: str, line: int, words: str) -> None:
    d = _tiny(tmp_path, train_txt=content)
    with pytest.raises(DataError) as e:
        read_split(d / "train.txt", 2)
    msg = _err(e)
    assert str(d / "train.txt") in msg and f"line {line}:" in msg and words in msg
    with pytest.raises(DataError) as e:
        load(_cfg(d), tmp_path / "cache")
    assert "train.txt" in _err(e) and f"line {line}:" in _err(e)
    assert not list((tmp_path / "cache").glob("encoded-*.npz"))


def test_bad_line_in_test_split(tmp_path: Path) -> None:
    d = _tiny(tmp_path, test_txt="zz\t0\nzz\t7\n")
    with pytest.raises(DataError) as e:
        load(_cfg(d), tmp_path / "cache")
    assert "test.txt, line 2:" in _err(e) and "0..1" in _err(e)


def test_non_utf8_bytes_name_file_and_line(tmp_path: Path) -> None:
    d = _tiny(tmp_path, dev_txt=b"ab\t1\n\nx\xff\xfey\t0\nab\t0\n")
    with pytest.raises(DataError) as e:
        load(_cfg(d), tmp_path / "cache")
    msg = _err(e)
    assert "dev.txt, line 3:" in msg and "not UTF-8" in msg
    d2 = _tiny(tmp_path, "gbk", class_txt=b"alpha\n" + "体育\n".encode("gbk"))
    with pytest.raises(DataError) as e:
        read_classes(d2)
    assert "class.txt, line 2:" in _err(e)


@pytest.mark.parametrize("name", ["train.txt", "dev.txt", "test.txt", "class.txt"])
def test_missing_file_named(tmp_path: Path, name: str) -> None:
    d = _tiny(tmp_path)
    (d / name).unlink()
    with pytest.raises(DataError, match="missing file") as e:
        load(_cfg(d), tmp_path / "cache")
    assert name in _err(e)
    with pytest.raises(DataError, match="missing file") as e:
        describe(d)
    assert name in _err(e)


@pytest.mark.parametrize("name", ["train", "dev", "test"])
def test_empty_split_named(tmp_path: Path, name: str) -> None:
    d = _tiny(tmp_path, **{f"{name}_txt": "\n  \n\n"})
    with pytest.raises(DataError, match="the split is empty") as e:
        load(_cfg(d), tmp_path / "cache")
    assert f"{name}.txt" in _err(e)


def test_bad_class_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no class names") as e:
        read_classes(_tiny(tmp_path, "a", class_txt="\n\n"))
    assert "class.txt" in _err(e)
    with pytest.raises(DataError, match="repeated") as e:
        read_classes(_tiny(tmp_path, "b", class_txt="x\ny\nx\n"))
    assert "class.txt" in _err(e)


# ------------------------------------------------------------------------------------- embeddings


def test_embeddings_loaded_as_float32(tmp_path: Path) -> None:
    d = _tiny(tmp_path)
    emb = np.arange(24, dtype=np.float64).reshape(6, 4)
    np.savez(d / "emb.npz", embeddings=emb)
    ds = load(_cfg(d, embedding="emb.npz"), tmp_path / "cache")
    assert ds.embeddings is not None and ds.embeddings.dtype == np.float32
    np.testing.assert_array_equal(ds.embeddings, emb.astype(np.float32))
    assert ds.data_id == "dir-" + content_hash(d, "emb.npz") != "dir-" + content_hash(d, "random")


def test_embedding_shape_mismatch(tmp_path: Path) -> None:
    d = _tiny(tmp_path)
    np.savez(d / "emb.npz", embeddings=np.zeros((5, 4), dtype=np.float32))
    with pytest.raises(DataError) as e:
        load(_cfg(d, embedding="emb.npz"), tmp_path / "cache")
    msg = _err(e)
    assert "emb.npz" in msg and "(5, 4)" in msg and "6 tokens" in msg
    np.savez(d / "flat.npz", embeddings=np.zeros(6, dtype=np.float32))
    with pytest.raises(DataError, match=r"shape \(6,\)"):
        load_embeddings(d / "flat.npz", 6)


def test_embedding_npz_without_embeddings_array(tmp_path: Path) -> None:
    np.savez(tmp_path / "w.npz", weights=np.zeros((6, 4)))
    with pytest.raises(DataError) as e:
        load_embeddings(tmp_path / "w.npz", 6)
    assert "w.npz" in _err(e) and "no 'embeddings' array" in _err(e) and "weights" in _err(e)


def test_embedding_object_array_refused_without_running_it(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, embeddings=np.array([_PrintPayload(), _PrintPayload()], dtype=object))
    capsys.readouterr()
    with pytest.raises(DataError) as e:
        load_embeddings(path, 2)
    assert "obj.npz" in _err(e) and "without pickles" in _err(e)
    assert capsys.readouterr().out == ""


def test_embedding_other_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing embedding file") as e:
        load_embeddings(tmp_path / "none.npz", 6)
    assert "none.npz" in _err(e)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="junk.npz"):
        load_embeddings(tmp_path / "junk.npz", 6)
    np.save(tmp_path / "plain.npy", np.zeros((6, 4)))        # an .npy, not an .npz
    with pytest.raises(DataError, match="plain.npy"):
        load_embeddings(tmp_path / "plain.npy", 6)
    bad = np.zeros((6, 4))
    bad[2, 1] = np.nan
    np.savez(tmp_path / "nan.npz", embeddings=bad)
    with pytest.raises(DataError, match="finite"):
        load_embeddings(tmp_path / "nan.npz", 6)
    np.savez(tmp_path / "str.npz", embeddings=np.full((6, 4), "x"))
    with pytest.raises(DataError, match="finite numbers"):
        load_embeddings(tmp_path / "str.npz", 6)


def test_missing_embedding_file_via_load(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing file") as e:
        load(_cfg(_tiny(tmp_path), embedding="emb.npz"), tmp_path / "cache")
    assert "emb.npz" in _err(e)


# -------------------------------------------------------------------------------------- vocab.pkl


def test_vocab_pickle_is_used(tmp_path: Path) -> None:
    d = _tiny(tmp_path)
    vocab = {PAD: 0, "a": 1, "b": 2, UNK: 3}
    (d / "vocab.pkl").write_bytes(pickle.dumps(vocab))
    assert load_vocab_pickle(d / "vocab.pkl") == vocab
    ds = load(_cfg(d), tmp_path / "cache")
    assert ds.vocab_size == 4 and ds.pad_index == 0
    assert ds.train.tokens.tolist() == [[1, 1, 2], [2, 3, 0], [1, 2, 3]]
    assert ds.train.lengths.tolist() == [3, 2, 3]
    assert ds.test.tokens.tolist() == [[3, 3, 0]]
    assert describe(d)["vocab"] == "vocab.pkl, 4 tokens"


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_vocab_pickle_with_code_is_refused_and_not_run(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       protocol: int) -> None:
    path = tmp_path / "vocab.pkl"
    path.write_bytes(pickle.dumps({"a": _PrintPayload(), UNK: 1, PAD: 2}, protocol=protocol))
    capsys.readouterr()
    with pytest.raises(DataError) as e:
        load_vocab_pickle(path)
    assert "vocab.pkl" in _err(e)
    assert re.search(r"refusing to load (builtins|__builtin__)\.print", _err(e))
    assert capsys.readouterr().out == ""


def test_vocab_pickle_os_system_refused(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    class _System:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "vocab.pkl"
    path.write_bytes(pickle.dumps(_System()))
    capfd.readouterr()
    with pytest.raises(DataError, match="refusing to load") as e:
        load_vocab_pickle(path)
    assert "system" in _err(e)
    assert "pwned" not in capfd.readouterr().out


def test_vocab_pickle_class_instance_refused(tmp_path: Path) -> None:
    path = tmp_path / "vocab.pkl"
    path.write_bytes(pickle.dumps(_Token()))
    with pytest.raises(DataError, match=re.escape(f"refusing to load {__name__}._Token")):
        load_vocab_pickle(path)
    path.write_bytes(pickle.dumps(OrderedDict([(UNK, 0), (PAD, 1)])))
    with pytest.raises(DataError, match="refusing to load collections.OrderedDict"):  # a dict subclass
        load_vocab_pickle(path)


def test_vocab_pickle_through_load_and_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = _tiny(tmp_path)
    (d / "vocab.pkl").write_bytes(pickle.dumps(_PrintPayload()))
    capsys.readouterr()
    with pytest.raises(DataError, match="vocab.pkl"):
        load(_cfg(d), tmp_path / "cache")
    assert main(["data", "check", str(d)]) == 2
    out, err = capsys.readouterr()
    assert "pwned" not in out and "pwned" not in err
    assert "vocab.pkl" in err and "refusing to load builtins.print" in err


@pytest.mark.parametrize("vocab, words", [
    ({"a": "0", UNK: 1, PAD: 2}, "found entry 'a': '0'"),
    ({"a": 0.0, UNK: 1, PAD: 2}, "found entry 'a': 0.0"),
    ({"a": True, UNK: 1, PAD: 2}, "found entry 'a': True"),
    ({1: 0, UNK: 1, PAD: 2}, "found entry 1: 0"),
    ({"a": 0, UNK: 1}, "no <PAD> entry"),
    ({"a": 0, PAD: 1}, "no <UNK> entry"),
    ({"a": 0, UNK: 5, PAD: 2}, "indices must be 0..2"),
    ({"a": 0, UNK: 0, PAD: 1}, "indices must be 0..2"),
    ([("a", 0), (UNK, 1), (PAD, 2)], "found list"),
])
def test_vocab_pickle_bad_contents(tmp_path: Path, vocab: object, words: str) -> None:
    path = tmp_path / "vocab.pkl"
    path.write_bytes(pickle.dumps(vocab))
    with pytest.raises(DataError) as e:
        load_vocab_pickle(path)
    assert str(path) in _err(e) and words in _err(e)


def test_vocab_pickle_not_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "vocab.pkl"
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(DataError, match="not a readable pickle") as e:
        load_vocab_pickle(path)
    assert "vocab.pkl" in _err(e)


# ----------------------------------------------------------------------------------- content_hash


def test_content_hash_follows_bytes(tmp_path: Path) -> None:
    d = _tiny(tmp_path)
    h = content_hash(d, "random")
    assert re.fullmatch(r"[0-9a-f]{16}", h)
    assert content_hash(d, "random") == h
    os.utime(d / "train.txt", (1, 1))                       # a new mtime alone changes nothing
    assert content_hash(d, "random") == h
    assert content_hash(_tiny(tmp_path, "copy"), "random") == h   # same bytes elsewhere: same identity
    (d / "other.txt").write_text("ignored", encoding="utf-8")     # files the loader does not read
    assert content_hash(d, "random") == h

    for name in ("train.txt", "dev.txt", "test.txt", "class.txt"):
        original = (d / name).read_bytes()
        (d / name).write_bytes(original + b"x\t0\n")
        assert content_hash(d, "random") != h, name
        (d / name).write_bytes(original)
        assert content_hash(d, "random") == h

    (d / "vocab.pkl").write_bytes(pickle.dumps({UNK: 0, PAD: 1}))
    with_vocab = content_hash(d, "random")
    assert with_vocab != h
    (d / "vocab.pkl").write_bytes(pickle.dumps({PAD: 0, UNK: 1}))
    assert content_hash(d, "random") not in (h, with_vocab)
    (d / "vocab.pkl").unlink()
    assert content_hash(d, "random") == h

    np.savez(d / "emb.npz", embeddings=np.zeros((6, 2)))
    e1 = content_hash(d, "emb.npz")
    assert e1 != h and content_hash(d, "random") == h
    np.savez(d / "emb.npz", embeddings=np.ones((6, 2)))
    assert content_hash(d, "emb.npz") != e1


def test_content_hash_missing_file(tmp_path: Path) -> None:
    d = _tiny(tmp_path)
    with pytest.raises(DataError, match="missing file") as e:
        content_hash(d, "emb.npz")
    assert "emb.npz" in _err(e)
    (d / "dev.txt").unlink()
    with pytest.raises(DataError, match="missing file") as e:
        content_hash(d, "random")
    assert "dev.txt" in _err(e)


# -------------------------------------------------------------------------------- describe and CLI


def _length(mean: float, mn: int, p5: float, p25: float, p50: float, p75: float, p95: float,
            p99: float, mx: int) -> dict:
    approx = pytest.approx
    return {"mean": approx(mean, abs=1e-12), "min": mn, "p5": approx(p5, abs=1e-12),
            "p25": approx(p25, abs=1e-12), "p50": approx(p50, abs=1e-12), "p75": approx(p75, abs=1e-12),
            "p95": approx(p95, abs=1e-12), "p99": approx(p99, abs=1e-12), "max": mx}


def test_describe_tiny_dir(tmp_path: Path) -> None:
    d = _tiny(tmp_path)
    info = describe(d)
    assert info == {
        "dir": str(d),
        "classes": ["alpha", "beta"],
        "splits": {
            # train lengths 3, 2, 4 (sorted 2 3 4; linear interpolation between order statistics)
            "train": {"size": 3, "class_counts": {"alpha": 2, "beta": 1},
                      "length": _length(3.0, 2, 2.1, 2.5, 3.0, 3.5, 3.9, 3.98, 4)},
            "dev": {"size": 1, "class_counts": {"alpha": 0, "beta": 1},
                    "length": _length(2.0, 2, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2)},
            "test": {"size": 1, "class_counts": {"alpha": 1, "beta": 0},
                     "length": _length(2.0, 2, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2)},
        },
        "vocab": "built from train.txt",
        "embeddings": {},   # no .npz in the folder: nothing to check
    }
    assert list(info["splits"]) == ["train", "dev", "test"]
    json.dumps(info)                                        # plain JSON types only


def test_describe_word_tokenizer(tmp_path: Path) -> None:
    d = _tiny(tmp_path, train_txt="a b c d e\t0\na\t1\na b\t1\na b c\t0\na b c d\t1\n")
    info = describe(d, "word")
    # lengths 5 1 2 3 4 → sorted 1..5, (n-1)·q/100 = 0.04·q
    assert info["splits"]["train"]["length"] == _length(3.0, 1, 1.2, 2.0, 3.0, 4.0, 4.8, 4.96, 5)
    assert info["splits"]["train"]["class_counts"] == {"alpha": 2, "beta": 3}
    assert describe(d, "char")["splits"]["train"]["length"]["max"] == 9


def test_cli_data_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = _tiny(tmp_path)
    assert main(["data", "check", str(d)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert f"{d}: 2 classes (alpha, beta); vocabulary: built from train.txt" in out
    assert re.search(r"train\s+3 texts; class counts min 1 max 2; length mean 3\.0 min 2 .* max 4", out)
    assert re.search(r"dev\s+1 texts; class counts min 0 max 1; .* max 2", out)
    assert re.search(r"test\s+1 texts; class counts min 0 max 1; .* max 2", out)

    assert main(["data", "check", str(d), "--json"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out) == describe(d)


def test_cli_data_check_broken(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = _tiny(tmp_path, train_txt="aab\t0\n\nbc 1\n")
    assert main(["data", "check", str(d)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("harness: error: ")
    assert f"{d / 'train.txt'}, line 3:" in err and "no tab" in err

    d2 = _tiny(tmp_path, "bytes", test_txt=b"zz\t0\nzz\t1\n\xc3(\t0\n")
    assert main(["data", "check", str(d2)]) == 2
    assert "test.txt, line 3:" in capsys.readouterr().err

    (d2 / "dev.txt").unlink()
    assert main(["data", "check", str(d2)]) == 2
    assert "missing file" in capsys.readouterr().err
