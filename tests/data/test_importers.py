"""Tests for `harness data import`: CSV/TSV/JSONL/Hugging Face sources into a THUCNews-format folder."""

from __future__ import annotations

import csv
import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.data import DataError, describe
from harness.data.importers import (
    carve,
    parse_fractions,
    parse_split_map,
    read_delimited,
    read_hf,
    read_jsonl,
    write_import,
)
from harness.data.thucnews import read_classes, read_split


def _csv(path: Path, rows: list[list], header=("id", "sentence", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _lines(path: Path) -> list[tuple[str, int]]:
    return [(t, int(y)) for t, y in (line.split("\t") for line in path.read_text("utf-8").splitlines())]


def _balanced(n_per_class: int, labels=("pos", "neg", "neu")) -> list[list]:
    return [[i, f"text number {i}", labels[i % len(labels)]] for i in range(n_per_class * len(labels))]


# ----------------------------------------------------------------------------- the split


def test_carve_gives_exact_stratified_shares_and_is_seeded():
    labels = np.repeat([0, 1], 100)
    fr = {"train": Fraction(8, 10), "dev": Fraction(1, 10), "test": Fraction(1, 10)}
    names = carve(labels, fr, seed=0)
    for s, n in (("train", 160), ("dev", 20), ("test", 20)):
        assert (names == s).sum() == n
        assert (labels[names == s] == 0).sum() == n // 2  # each label gets its share
    assert (carve(labels, fr, seed=0) == names).all()
    assert not (carve(labels, fr, seed=1) == names).all()
    # only dev missing: carved with the train:dev ratio 8:1
    assert (carve(np.zeros(90, dtype=int), {"train": fr["train"], "dev": fr["dev"]}, 0) == "dev").sum() == 10


def test_parse_split_map_and_fractions():
    assert parse_split_map(["validation=dev", "a=train,b=-"]) == {"validation": "dev", "a": "train", "b": "-"}
    with pytest.raises(DataError, match="SOURCE_SPLIT=train"):
        parse_split_map(["validation=valid"])
    assert parse_fractions("0.7,0.2,0.1") == {"train": Fraction(7, 10), "dev": Fraction(1, 5), "test": Fraction(1, 10)}
    for bad in ("0.8,0.1", "0.8,0.1,0.2", "1,0,0", "a,b,c"):
        with pytest.raises(DataError, match="--fractions"):
            parse_fractions(bad)


# ----------------------------------------------------------------------------- CSV end to end


def test_csv_without_split_writes_a_folder_that_data_check_accepts(tmp_path, capsys):
    rows = _balanced(20)
    rows[5][1] = "has a\ttab"
    rows[6][1] = "two\r\nlines  "
    src = _csv(tmp_path / "a.csv", rows)
    out = tmp_path / "out"
    assert main(["data", "import", "csv", str(src), str(out), "--text", "sentence", "--label", "label"]) == 0
    printed = capsys.readouterr().out
    assert "80/10/10" in printed and "seeded" in printed and "2 texts had tabs or line breaks" in printed

    assert read_classes(out) == ["neg", "neu", "pos"]  # names in sorted order
    splits = {s: _lines(out / f"{s}.txt") for s in ("train", "dev", "test")}
    assert [len(v) for v in splits.values()] == [48, 6, 6]
    for s in ("dev", "test"):
        assert sorted(y for _, y in splits[s]) == [0, 0, 1, 1, 2, 2]  # stratified
    everything = {t: y for v in splits.values() for t, y in v}
    assert len(everything) == 60  # each row once
    assert everything["text number 0"] == 2 and everything["text number 1"] == 0  # pos -> 2, neg -> 0
    assert everything["has a tab"] == 1 and everything["two  lines"] == 2  # one line each, stripped

    prov = json.loads((out / "import.json").read_text())
    assert prov["source"]["format"] == "csv" and len(prov["source"]["sha256"]) == 64
    assert prov["split"]["seed"] == 0 and prov["split"]["fractions"] == {"train": 0.8, "dev": 0.1, "test": 0.1}
    assert prov["counts"]["dev"]["per_class"] == {"neg": 2, "neu": 2, "pos": 2}
    assert prov["texts"]["changed"] == 2

    assert main(["data", "check", str(out)]) == 0  # `data check` validates it
    assert describe(out)["splits"]["train"]["size"] == 48

    # the same command gives the same files (the split is fixed), and refuses a non-empty folder
    before = {p.name: p.read_bytes() for p in out.glob("*.txt")}
    assert main(["data", "import", "csv", str(src), str(out), "--text", "sentence", "--label", "label"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["data", "import", "csv", str(src), str(out), "--text", "sentence", "--label", "label",
                 "--force"]) == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.txt")} == before


def test_tsv_with_a_split_column_and_split_map(tmp_path, capsys):
    src = tmp_path / "a.tsv"
    lines = ["text\tlabel\tpart"]
    for i in range(12):
        part = ["train", "validation", "heldout"][i % 3]
        lines.append(f'"quoted" text {i}\t{["b", "a"][i % 2]}\t{part}')
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["data", "import", "tsv", str(src), str(out), "--text", "text", "--label", "label", "--split-column", "part"]
    assert main(args) == 2
    assert "source split 'heldout'" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--split-map", "heldout=test"]) == 0
    assert "the source's own splits" in capsys.readouterr().out
    train, dev, test = (_lines(out / f"{s}.txt") for s in ("train", "dev", "test"))
    assert train[0] == ('"quoted" text 0', 1)  # TSV: quotes are ordinary characters; a -> 0, b -> 1
    assert [t for t, _ in dev] == [f'"quoted" text {i}' for i in (1, 4, 7, 10)]
    assert len(test) == 4


def test_train_and_test_only_carves_dev_out_of_train(tmp_path):
    rows = [[i, f"t{i}", "x" if i % 2 else "y", "test" if i >= 90 else "train"] for i in range(100)]
    src = _csv(tmp_path / "a.csv", rows, header=("id", "text", "label", "split"))
    result = write_import(read_delimited(src, "text", "label", split_col="split"), tmp_path / "out")
    counts = {s: result.provenance["counts"][s]["rows"] for s in ("train", "dev", "test")}
    assert counts == {"train": 80, "dev": 10, "test": 10}  # dev = 1/9 of the 90 train rows
    assert "no dev split: it is carved out of train" in result.provenance["split"]["rule"]
    assert [t for t, _ in _lines(tmp_path / "out" / "test.txt")] == [f"t{i}" for i in range(90, 100)]


# ----------------------------------------------------------------------------- JSONL and integer labels


def test_jsonl_integer_labels_are_kept_with_names_from_classes(tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps({"t": f"doc {i}", "y": i % 3}) + "\n" for i in range(30)) + "\n")
    classes = tmp_path / "names.txt"
    classes.write_text("zero\none\ntwo\n")
    result = write_import(read_jsonl(src, "t", "y"), tmp_path / "out", classes_file=classes)
    assert read_classes(tmp_path / "out") == ["zero", "one", "two"]
    assert all(int(t.split()[1]) % 3 == y for t, y in read_split(tmp_path / "out" / "train.txt", 3))
    assert "class names from the --classes file" in result.provenance["labels"]["rule"]

    # without --classes: names "0".."max"; integer-looking strings count as integers
    write_import(read_jsonl(src, "t", "y"), tmp_path / "o2")
    assert read_classes(tmp_path / "o2") == ["0", "1", "2"]
    # --label-type name: the same values as names, sorted numerically
    src2 = tmp_path / "b.csv"
    _csv(src2, [[i, f"d{i}", [2, 10][i % 2]] for i in range(20)])
    write_import(read_delimited(src2, "sentence", "label"), tmp_path / "o3", label_type="name")
    assert read_classes(tmp_path / "o3") == ["2", "10"]


@pytest.mark.parametrize(("content", "message"), [
    ('{"t": "a", "y": 0}\n{"t": "b", "y": -1}\n', r"a\.jsonl, line 2: label -1 is negative"),
    ('{"t": "a", "y": 0}\n\n{"t": "b" "y": 1}\n', r"a\.jsonl, line 3: not valid JSON"),
    ('{"t": "a", "y": 0}\n["t", 1]\n', r"line 2: expected a JSON object"),
    ('{"t": "a", "y": 0}\n{"text": "b", "y": 1}\n', r"line 2: no key 't'"),
    ('{"t": "a", "y": 0}\n{"t": " \\t ", "y": 1}\n', r"line 2: empty text"),
    ('{"t": "a", "y": 0}\n{"t": 5, "y": 1}\n', r"line 2: the text is int 5"),
    ('{"t": "a", "y": 0}\n{"t": "b", "y": 1.5}\n', r"line 2: the label is float"),
    ('{"t": "a", "y": 0}\n{"t": "b", "y": 7}\n', r"line 2: label 7 is not an index into the --classes file"),
])
def test_jsonl_errors_name_the_file_and_line(tmp_path, content, message):
    src = tmp_path / "a.jsonl"
    src.write_text(content)
    classes = tmp_path / "c.txt"
    classes.write_text("a\nb\n")
    with pytest.raises(DataError, match=message):
        write_import(read_jsonl(src, "t", "y"), tmp_path / "out", classes_file=classes)


@pytest.mark.parametrize(("content", "message"), [
    ("sentence,label\n", r"a\.csv: no rows"),
    ("", r"a\.csv: the file is empty"),
    ("text,label\nx,1\n", r"a\.csv, line 1: no text column 'sentence' \(columns: 'text', 'label'\)"),
    ('sentence,label\nok,1\n"unterminated,1\nmore,2\n', r"a\.csv, line 3: not valid CSV"),
    ("sentence,label\nok,1\nx,1,extra\n", r"a\.csv, line 3: 3 fields, but the header has 2"),
    ("sentence,label\nok,1\n,1\n", r"a\.csv, line 3: empty text"),
    ("sentence,label\nok,a\nb,\n", r"a\.csv, line 3: empty label"),
    (b"sentence,label\nok,1\n\xff\xfe,1\n", r"a\.csv, line 3: bytes that are not UTF-8"),
])
def test_csv_errors_name_the_file_and_line(tmp_path, content, message):
    src = tmp_path / "a.csv"
    src.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=message):
        write_import(read_delimited(src, "sentence", "label"), tmp_path / "out")


def test_cli_error_exit_code_and_too_small_split(tmp_path, capsys):
    src = _csv(tmp_path / "a.csv", [[0, "only", "a"], [1, "two", "a"]])
    assert main(["data", "import", "csv", str(src), str(tmp_path / "o"), "--text", "sentence", "--label", "nope"]) == 2
    assert "line 1: no label column 'nope'" in capsys.readouterr().err
    assert main(["data", "import", "csv", str(src), str(tmp_path / "o"), "--text", "sentence", "--label", "label"]) == 2
    assert "too few rows to carve" in capsys.readouterr().err


# ----------------------------------------------------------------------------- Hugging Face datasets


def test_hf_dataset_dict_with_class_label(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({"sentence": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["negative", "positive"])})

    def part(n: int, start: int) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"sentence": [f"s {i}\nx" for i in range(start, start + n)],
                                           "label": [i % 2 for i in range(n)]}, features=feats)

    saved = tmp_path / "dd"
    datasets.DatasetDict({"train": part(10, 0), "validation": part(4, 100), "test": part(4, 200),
                          "unsupervised": part(3, 300)}).save_to_disk(str(saved))
    out = tmp_path / "out"
    args = ["data", "import", "hf", str(saved), str(out), "--text", "sentence", "--label", "label"]
    assert main(args) == 2
    assert "'unsupervised'" in capsys.readouterr().err
    assert main([*args, "--split-map", "unsupervised=-"]) == 0
    assert read_classes(out) == ["negative", "positive"]  # from the ClassLabel
    assert _lines(out / "dev.txt") == [("s 100 x", 0), ("s 101 x", 1), ("s 102 x", 0), ("s 103 x", 1)]
    prov = json.loads((out / "import.json").read_text())
    assert prov["split"]["source_splits"]["unsupervised"]["to"] == "dropped"
    assert prov["source"]["loaded_with"] == "load_from_disk"
    assert main(["data", "check", str(out)]) == 0


def test_hf_single_dataset_gets_the_fixed_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    saved = tmp_path / "ds"
    datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(40)],
                                "topic": ["a", "b"] * 20}).save_to_disk(str(saved))
    result = write_import(read_hf(str(saved), "text", "topic"), tmp_path / "out")
    assert [result.provenance["counts"][s]["rows"] for s in ("train", "dev", "test")] == [32, 4, 4]
    with pytest.raises(DataError, match=r"no text column 'sentence' \(columns: 'text', 'topic'\)"):
        read_hf(str(saved), "sentence", "topic")


def test_hf_without_the_library_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    with pytest.raises(DataError, match=r"optional extra 'hf'.*rnn-ablation-harness\[hf\]"):
        read_hf(str(tmp_path), "text", "label")


# ----------------------------------------------------------------------------- never lose or leak data


def _import(src: Path, out: Path, *extra: str) -> int:
    return main(["data", "import", "csv", str(src), str(out), "--text", "sentence", "--label", "label", *extra])


def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in root.rglob("*")}


def test_import_never_writes_over_its_source(tmp_path, capsys):
    folder = tmp_path / "d"
    folder.mkdir()
    src = _csv(folder / "train.txt", _balanced(20))  # a CSV that happens to be named train.txt
    (tmp_path / "link").symlink_to(folder)
    before = _tree(tmp_path)
    # the source's folder itself (also spelled with .. or through a symlink), or a folder holding it
    for out in (folder, tmp_path / "x" / ".." / "d", tmp_path / "link", tmp_path):
        assert _import(src, out, "--force") == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "would write over the source" in err
    assert _tree(tmp_path) == before  # nothing written, nothing created
    assert _import(src, folder / "sub") == 0  # a new folder inside the source's folder is fine
    assert src.read_bytes() == before["d/train.txt"]


def test_refused_import_leaves_nothing_behind(tmp_path, capsys):
    one_class = _csv(tmp_path / "one.csv", _balanced(20, labels=("a",)))
    out = tmp_path / "new" / "deeper" / "out"
    assert _import(one_class, out) == 2
    err = capsys.readouterr().err
    assert "class" in err and ".tmp-" not in err  # the message names OUT_DIR, not the temporary folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.csv"]  # no OUT_DIR, no parents, no temp folder

    # --force over an existing folder: a refused import leaves it exactly as it was
    src = _csv(tmp_path / "a.csv", _balanced(20))
    out = tmp_path / "out"
    assert _import(src, out) == 0
    (out / "vocab.pkl").write_bytes(b"not a pickle")  # stale and unreadable
    (out / "embedding.npz").write_bytes(b"kept")
    before = _tree(out)
    assert _import(one_class, out, "--force") == 2
    assert _tree(out) == before
    assert _import(src, out, "--force") == 2  # the stale vocab.pkl is checked, and refused
    err = capsys.readouterr().err
    assert "warning: vocab.pkl, embedding.npz in" in err and "predate this import" in err  # on stderr
    assert f"{out}/vocab.pkl: not a readable pickle" in err
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "one.csv", "out"]

    # a stale but valid vocab.pkl: the import goes through, keeps the other files, warns on stderr
    import io
    import pickle

    import numpy as np

    (out / "vocab.pkl").write_bytes(pickle.dumps({"<UNK>": 0, "<PAD>": 1}))
    buf = io.BytesIO()   # a stale embedding must itself be readable now: run and data check refuse one that is not
    np.savez(buf, embeddings=np.zeros((2, 4), dtype=np.float32))
    (out / "embedding.npz").write_bytes(buf.getvalue())
    (out / "dev.txt").write_text("old\t0\n")
    assert _import(src, out, "--force", "--seed", "1") == 0
    captured = capsys.readouterr()
    assert "predate this import" in captured.err and "predate" not in captured.out
    assert (out / "embedding.npz").read_bytes() == buf.getvalue() and (out / "vocab.pkl").is_file()
    assert "old" not in (out / "dev.txt").read_text()
    prov = json.loads((out / "import.json").read_text())
    assert any("predate this import" in w for w in prov["warnings"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "one.csv", "out"]


def _leaky(path: Path) -> Path:
    rows = []
    for i in range(12):
        rows.append({"t": f"train {i}", "y": ["pos", " pos ", "neg", "very\tgood"][i % 4], "s": "train"})
    rows.append({"t": "train 0", "y": "pos", "s": "train"})  # repeated within train
    for s in ("dev", "test"):
        rows += [{"t": f"{s} {i}", "y": ["pos", "neg", "very good"][i % 3], "s": s} for i in range(6)]
    rows += [{"t": "train 1", "y": "pos", "s": "dev"}, {"t": "train 2", "y": "neg", "s": "test"},
             {"t": "train 3", "y": "neg", "s": "test"}, {"t": "dev 0", "y": "pos", "s": "test"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_merged_and_normalised_labels_and_duplicates_are_warned_and_recorded(tmp_path, capsys):
    src = _leaky(tmp_path / "a.jsonl")
    args = ["data", "import", "jsonl", str(src), str(tmp_path / "out"), "--text", "t", "--label", "y",
            "--split-column", "s"]
    assert main(args) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 3 and all(line.startswith("warning: ") for line in err)
    assert "1 label(s) merged" in err[0] and "' pos ' + 'pos' -> 'pos'" in err[0]
    assert "1 label(s) normalised" in err[1] and "'very\\tgood' -> 'very good'" in err[1]
    assert "4 text(s) appear in more than one split (train+dev: 1, train+test: 2, dev+test: 1)" in err[2]
    assert "3 warning(s)" in captured.out and "duplicate rows within a split: train 1" in captured.out
    prov = json.loads((tmp_path / "out" / "import.json").read_text())
    assert prov["labels"]["merged"] == {"pos": [" pos ", "pos"]}
    assert prov["labels"]["normalised"] == {"very\tgood": "very good"}
    assert prov["duplicates"]["across_splits"] == {"texts": 4, "splits": {"train+dev": 1, "train+test": 2,
                                                                         "dev+test": 1}}
    assert prov["duplicates"]["within_split"] == {"train": 1, "dev": 0, "test": 0}
    assert prov["warnings"] == err and prov["duplicates"]["dropped"] is None
    assert read_classes(tmp_path / "out") == ["neg", "pos", "very good"]
    assert [prov["counts"][s]["rows"] for s in ("train", "dev", "test")] == [13, 7, 9]  # nothing dropped

    # --dedupe: dev/test keep no text of train (test none of dev), and each split each text once
    assert main([*args[:4], str(tmp_path / "o2"), *args[5:], "--dedupe"]) == 0
    captured = capsys.readouterr()
    assert "--dedupe dropped 5 row(s): train 1, dev 1, test 3" in captured.out
    assert "dropped from the later split (--dedupe)" in captured.err
    splits = {s: [t for t, _ in _lines(tmp_path / "o2" / f"{s}.txt")] for s in ("train", "dev", "test")}
    assert [len(v) for v in splits.values()] == [12, 6, 6]
    assert all(len(set(v)) == len(v) for v in splits.values())
    assert not set(splits["train"]) & (set(splits["dev"]) | set(splits["test"]))
    assert not set(splits["dev"]) & set(splits["test"])
    prov = json.loads((tmp_path / "o2" / "import.json").read_text())
    assert prov["duplicates"]["dropped"] == {"train": 1, "dev": 1, "test": 3}
    assert prov["counts"]["test"]["rows"] == 6


def test_warn_callback_of_write_import(tmp_path):
    src = _leaky(tmp_path / "a.jsonl")
    seen: list[str] = []
    result = write_import(read_jsonl(src, "t", "y", split_col="s"), tmp_path / "out", warn=seen.append)
    assert seen == result.warnings and len(seen) == 3
