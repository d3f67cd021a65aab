"""Import other data into the THUCNews folder format: CSV, TSV, JSON Lines, a Hugging Face dataset.

A reader (`read_delimited`, `read_jsonl`, `read_hf`) returns a `Source`: its rows grouped by the
source's own split names (one group named "" when it has none), each row with the place it came
from. `write_import(source, out_dir, ...)` then

- maps labels to class indices: integer labels are kept as indices (names from `--classes`, from a
  Hugging Face `ClassLabel`, or "0".."max"); other labels are names, sorted (numerically when every
  name is an integer) unless `--classes` gives the order;
- maps the source splits to train/dev/test (`DEFAULT_SPLIT_MAP` plus `--split-map`), and carves a
  missing dev or test split out of train with a fixed, seeded, label-stratified split (`carve`);
- notes labels merged (spellings differing only by surrounding whitespace) or normalised (a tab or
  line break inside), and texts in more than one split (`--dedupe` drops them from dev/test);
- writes `train.txt`, `dev.txt`, `test.txt` (`text<TAB>label_index` lines), `class.txt` and
  `import.json` (where the data came from, every rule applied, every warning) into a temporary
  folder beside OUT_DIR, validates it with the checks of `harness data check`, and only then renames
  it into place; it never writes into the source's own folder.

Texts are cleaned so that one text is one line: tabs and line breaks become one space each and
leading/trailing whitespace is removed (the loader strips lines anyway). Bad input raises `DataError`
naming the file and line (or split and row).
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from harness import __version__
from harness.data import describe
from harness.data.thucnews import SPLITS, DataError, _read_lines
from harness.files import atomic_write_text
from harness.fsmode import dir_mode

DEFAULT_SPLIT_MAP = {"train": "train", "dev": "dev", "validation": "dev", "valid": "dev", "val": "dev",
                     "test": "test"}
DEFAULT_FRACTIONS = {"train": Fraction(8, 10), "dev": Fraction(1, 10), "test": Fraction(1, 10)}
DROP = "-"
# What str.splitlines() breaks on, plus the tab: none of these may stay inside a text.
_BREAKS = re.compile("[\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_INT = re.compile(r"[+-]?\d+")


class Row(NamedTuple):
    text: str
    label: str | int
    where: str  # "FILE, line N" or "DATASET, split 'S', row N"


@dataclass
class Source:
    """Rows of a source grouped by its split names ("" when it has none), and what it was."""

    splits: dict[str, list[Row]]
    info: dict[str, Any]  # provenance: format, path or name, columns, sha256
    class_names: list[str] | None = None  # names the source itself gives (a Hugging Face ClassLabel)


@dataclass
class ImportResult:
    out_dir: Path
    provenance: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # printed to stderr by the CLI, and in import.json

    def summary(self) -> list[str]:
        """Lines for the user: the label and split rules, counts per split, notes."""
        p = self.provenance
        lines = [f"labels: {p['labels']['rule']}", f"classes ({len(p['labels']['classes'])}): "
                 + ", ".join(p["labels"]["classes"]), f"split: {p['split']['rule']}"]
        for s in SPLITS:
            c = p["counts"][s]
            lines.append(f"  {s:5s} {c['rows']:7d} rows")
        if self.warnings:
            lines.append(f"{len(self.warnings)} warning(s), printed on stderr and kept in import.json")
        return lines + self.notes


# ----------------------------------------------------------------------------- readers


def read_delimited(path: str | Path, text_col: str, label_col: str, *, delimiter: str = ",",
                   split_col: str | None = None) -> Source:
    """Rows of a CSV (delimiter ",", RFC 4180 quoting, read strictly) or TSV (delimiter "\\t", no
    quoting: a quote is an ordinary character) file with a header line naming the columns."""
    path = Path(path)
    kind = "TSV" if delimiter == "\t" else "CSV"
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    csv.field_size_limit(2**31 - 1)  # texts longer than csv's default 128 KiB are still one field
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: bytes that are not UTF-8 ({e.reason})") from None
    splits: dict[str, list[Row]] = {}
    start = 1
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: the file is empty (expected a header line naming the columns)")
        header = [h.strip() for h in header]
        cols = _find_columns(f"{path}, line 1", header, text_col, label_col, split_col)
        start = reader.line_num + 1
        for record in reader:
            where = f"{path}, line {start}"
            start = reader.line_num + 1
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line
            if len(record) != len(header):
                raise DataError(f"{where}: {len(record)} fields, but the header has {len(header)}"
                                + (" (a tab inside a text?)" if delimiter == "\t" else ""))
            split = record[cols[2]].strip() if cols[2] is not None else ""
            splits.setdefault(split, []).append(Row(record[cols[0]], record[cols[1]], where))
    except csv.Error as e:
        raise DataError(f"{path}, line {start}: not valid {kind} ({e})") from None
    info = {"format": kind.lower(), "path": str(path.resolve()), "sha256": _sha256(path),
            "text_column": text_col, "label_column": label_col, "split_column": split_col}
    return Source(splits, info)


def read_jsonl(path: str | Path, text_col: str, label_col: str, *, split_col: str | None = None) -> Source:
    """Rows of a JSON Lines file: one JSON object per line (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    splits: dict[str, list[Row]] = {}
    for i, line in _read_lines(path):
        where = f"{path}, line {i}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object, found {type(obj).__name__}")
        for key in (text_col, label_col, split_col):
            if key is not None and key not in obj:
                raise DataError(f"{where}: no key {key!r} (keys: {', '.join(map(repr, obj)) or 'none'})")
        split = "" if split_col is None else str(obj[split_col]).strip()
        splits.setdefault(split, []).append(Row(obj[text_col], obj[label_col], where))
    info = {"format": "jsonl", "path": str(path.resolve()), "sha256": _sha256(path),
            "text_column": text_col, "label_column": label_col, "split_column": split_col}
    return Source(splits, info)


def read_hf(name_or_path: str, text_col: str, label_col: str, *, subset: str | None = None) -> Source:
    """Rows of a Hugging Face dataset: a folder written by `save_to_disk` (a Dataset or a
    DatasetDict, read with `load_from_disk`), else a name for `load_dataset` (may download)."""
    datasets = _import_datasets()
    path = Path(name_or_path).expanduser()
    if path.exists():
        origin, how = str(path), "load_from_disk"
        try:
            obj = datasets.load_from_disk(str(path))
        except Exception as e:
            raise DataError(f"{path}: not a dataset written by save_to_disk ({type(e).__name__}: {e})") from None
    else:
        origin, how = name_or_path, "load_dataset"
        try:
            obj = datasets.load_dataset(name_or_path, subset)
        except Exception as e:
            raise DataError(f"Hugging Face dataset {name_or_path!r}: could not load it "
                            f"({type(e).__name__}: {e})") from None
    parts = dict(obj) if isinstance(obj, datasets.DatasetDict) else {"": obj}
    splits: dict[str, list[Row]] = {}
    names: list[str] | None = None
    for split, ds in parts.items():
        at = f"{origin}" + (f", split {split!r}" if split else "")
        _find_columns(at, list(ds.column_names), text_col, label_col, None)
        feature = ds.features[label_col]
        if isinstance(feature, datasets.ClassLabel):
            if names is not None and names != list(feature.names):
                raise DataError(f"{at}: column {label_col!r} has other class names than another split")
            names = list(feature.names)
        texts, labels = list(ds[text_col]), list(ds[label_col])
        splits[split] = [Row(t, y, f"{at}, row {i}") for i, (t, y) in enumerate(zip(texts, labels))]
    info = {"format": "hf", "name_or_path": origin, "loaded_with": how, "subset": subset,
            "text_column": text_col, "label_column": label_col}
    return Source(splits, info, names)


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise DataError("importing a Hugging Face dataset needs the optional extra 'hf' (the `datasets` "
                        "library): pip install 'rnn-ablation-harness[hf]'") from None
    return datasets


def _find_columns(where: str, header: list[str], text_col: str, label_col: str,
                  split_col: str | None) -> tuple[int, int, int | None]:
    """Indices of the text, label and split columns; DataError naming a missing one."""
    out = []
    for what, col in (("text", text_col), ("label", label_col), ("split", split_col)):
        if col is None:
            out.append(None)
            continue
        if col not in header:
            raise DataError(f"{where}: no {what} column {col!r} (columns: {', '.join(map(repr, header))})")
        out.append(header.index(col))
    return out[0], out[1], out[2]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- texts and labels


def clean_text(text: Any, where: str) -> tuple[str, bool]:
    """(text on one line, whether a tab or line break was replaced). DataError if not a non-empty string."""
    if not isinstance(text, str):
        raise DataError(f"{where}: the text is {type(text).__name__} {text!r}, expected a string")
    one_line = _BREAKS.sub(" ", text)
    out = one_line.strip().removeprefix("\ufeff").strip()
    if not out:
        raise DataError(f"{where}: empty text")
    return out, one_line != text


def read_class_file(path: str | Path) -> list[str]:
    """Class names, one per non-blank line (stripped), each once."""
    path = Path(path)
    names = [line.strip() for _, line in _read_lines(path)]
    if not names:
        raise DataError(f"{path}: no class names")
    for i, n in enumerate(names):
        if n in names[:i]:
            raise DataError(f"{path}: class name {n!r} is repeated")
        if _BREAKS.search(n):
            raise DataError(f"{path}: class name {n!r} contains a tab")
    return names


def resolve_labels(rows: list[Row], label_type: str = "auto", classes: list[str] | None = None,
                   source_names: list[str] | None = None) -> tuple[list[str], list[int], str]:
    """(class names, class index per row, the rule applied in words).

    label_type "index": labels are integer class indices (ints, or strings that are integers);
    "name": labels are class names; "auto": "index" when every label is an integer, else "name".
    """
    for r in rows:
        if isinstance(r.label, bool) or not isinstance(r.label, str | int):
            raise DataError(f"{r.where}: the label is {type(r.label).__name__} {r.label!r}, expected a string "
                            f"or an integer")
        if isinstance(r.label, str) and not r.label.strip():
            raise DataError(f"{r.where}: empty label")
    if label_type == "auto":
        label_type = "index" if all(_is_int(r.label) for r in rows) else "name"
    if label_type == "index":
        return _index_labels(rows, classes, source_names)
    if label_type != "name":
        raise ValueError(f"label_type must be auto, index or name, not {label_type!r}")
    values = [_BREAKS.sub(" ", str(r.label)).strip() for r in rows]
    if classes is not None:
        lookup = {n: i for i, n in enumerate(classes)}
        for r, v in zip(rows, values):
            if v not in lookup:
                raise DataError(f"{r.where}: label {v!r} is not in the --classes file")
        return classes, [lookup[v] for v in values], "label names looked up in the --classes file (its order)"
    distinct = set(values)
    numeric = all(_INT.fullmatch(v) for v in distinct)
    names = sorted(distinct, key=lambda v: (int(v), v) if numeric else (0, v))
    lookup = {n: i for i, n in enumerate(names)}
    order = "numerically" if numeric else "in Python string order"
    return names, [lookup[v] for v in values], f"label names sorted {order}, then numbered 0..{len(names) - 1}"


def _is_int(v: str | int) -> bool:
    return isinstance(v, int) or bool(_INT.fullmatch(v.strip()))


def _index_labels(rows: list[Row], classes: list[str] | None,
                  source_names: list[str] | None) -> tuple[list[str], list[int], str]:
    ys = []
    for r in rows:
        if not _is_int(r.label):
            raise DataError(f"{r.where}: label {r.label!r} is not an integer class index")
        y = int(r.label)
        if y < 0:
            raise DataError(f"{r.where}: label {y} is negative (an unlabelled row? leave its split out "
                            f"with --split-map NAME=-)")
        ys.append(y)
    top = max(ys, default=-1)
    for names, what in ((classes, "the --classes file"), (source_names, "the dataset's ClassLabel")):
        if names is not None:
            if top >= len(names):
                r = rows[ys.index(top)]
                raise DataError(f"{r.where}: label {top} is not an index into {what} ({len(names)} names)")
            return names, ys, f"integer labels kept as class indices; class names from {what}"
    return [str(i) for i in range(top + 1)], ys, "integer labels kept as class indices; class names '0'..'max'"


# ----------------------------------------------------------------------------- splits


def parse_split_map(items: list[str]) -> dict[str, str]:
    """{"validation": "dev", ...} from ["validation=dev", "extra=-", "a=train,b=test"]."""
    out = {}
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            name, sep, target = part.partition("=")
            if not sep or target.strip() not in (*SPLITS, DROP):
                raise DataError(f"--split-map {part!r}: expected SOURCE_SPLIT=train|dev|test|- (- leaves it out)")
            out[name.strip()] = target.strip()
    return out


def parse_fractions(text: str) -> dict[str, Fraction]:
    """{"train": 4/5, "dev": 1/10, "test": 1/10} from "0.8,0.1,0.1" (positive, summing to 1)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [Fraction(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or any(v <= 0 for v in values) or sum(values) != 1:
        raise DataError(f"--fractions {text!r}: expected three positive numbers TRAIN,DEV,TEST summing to 1, "
                        f"e.g. 0.8,0.1,0.1")
    return dict(zip(SPLITS, values))


def carve(labels: np.ndarray, fractions: dict[str, Fraction], seed: int = 0) -> np.ndarray:
    """Split name for each row ("train", and "dev"/"test" where they are in `fractions`).

    Stratified by label: within each label (in sorted order) the rows are shuffled with
    numpy.random.default_rng(seed); this label-sorted sequence is then dealt out by cumulative
    fraction (test first, then dev from what is left), so each split gets its share of every label
    to within one row and its share of all rows to within one row.
    """
    rng = np.random.default_rng(seed)
    groups = [rng.permutation(np.flatnonzero(labels == k)) for k in np.unique(labels)]
    remaining = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
    out = np.full(len(labels), "train", dtype=object)
    left = sum(fractions.values())
    for name in ("test", "dev"):
        if name not in fractions:
            continue
        p = fractions[name] / left  # the share of the rows still unassigned
        j = np.arange(len(remaining), dtype=np.int64)
        take = (j + 1) * p.numerator // p.denominator > j * p.numerator // p.denominator
        out[remaining[take]] = name
        remaining = remaining[~take]
        left -= fractions[name]
    return out


def _split_rule(fractions: dict[str, Fraction], seed: int) -> str:
    pct = "/".join(f"{float(fractions[s]) * 100:g}" for s in fractions)
    return (f"{pct} ({', '.join(fractions)}) by label-stratified seeded permutation "
            f"(numpy default_rng({seed}); see harness.data.importers.carve)")


def assign_splits(source: Source, ys: list[int], split_map: dict[str, str] | None = None,
                  fractions: dict[str, Fraction] | None = None, seed: int = 0
                  ) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """(row positions per output split, in source order; what was done). `ys`: class index per row,
    rows numbered in the order of `source.splits` then within each."""
    fractions = fractions or DEFAULT_FRACTIONS
    mapping = {**DEFAULT_SPLIT_MAP, **(split_map or {})}
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    sources: dict[str, Any] = {}
    pos = 0
    for name, rows in source.splits.items():
        positions = list(range(pos, pos + len(rows)))
        pos += len(rows)
        if name == "":
            target = "train"  # no split in the source: everything is carved below
        else:
            target = mapping.get(name, mapping.get(name.lower()))
            if target is None:
                raise DataError(f"source split {name!r} ({len(rows)} rows, e.g. {rows[0].where}) is not mapped to "
                                f"train, dev or test: add --split-map {name}=train|dev|test|- (- leaves it out)")
        sources[name or "(none)"] = {"rows": len(rows), "to": "dropped" if target == DROP else target}
        if target != DROP:
            out[target].extend(positions)
    if not out["train"]:
        raise DataError("no train rows: map a source split to train with --split-map NAME=train "
                        f"(source splits: {', '.join(map(repr, source.splits))})")
    missing = [s for s in ("dev", "test") if not out[s]]
    info: dict[str, Any] = {"source_splits": sources, "seed": None, "fractions": None}
    if not missing:
        info["rule"] = "the source's own splits (" + ", ".join(f"{k} → {v['to']}" for k, v in sources.items()) + ")"
        return out, info
    fr = {s: fractions[s] for s in ("train", *missing)}
    train = np.array(out["train"])
    names = carve(np.array(ys)[train], fr, seed)
    for s in ("train", *missing):
        out[s] = sorted(train[names == s].tolist())
        if not out[s]:
            raise DataError(f"too few rows to carve a {s} split: {len(train)} train rows, {float(fr[s]):.0%} "
                            f"asked for; give more rows or a source split")
    if len(missing) == 2:
        info["rule"] = "the source has no split: " + _split_rule(fr, seed)
    else:
        info["rule"] = (f"the source has no {missing[0]} split: it is carved out of train, "
                        + _split_rule(fr, seed))
    info["seed"], info["fractions"] = seed, {k: float(v) for k, v in fr.items()}
    return out, info


# ----------------------------------------------------------------------------- labels and duplicates noted

IMPORT_FILES = (*(f"{s}.txt" for s in SPLITS), "class.txt", "import.json")


def label_changes(rows: list[Row]) -> dict[str, Any]:
    """What cleaning the labels did: {"merged": {label: [source spellings, ...]} for string labels
    that differ only by surrounding whitespace, "normalised": {source label: label} for labels with
    a tab or line break inside (turned into a space)}."""
    spellings: dict[str, set[str]] = {}
    normalised: dict[str, str] = {}
    for r in rows:
        if not isinstance(r.label, str):
            continue
        spellings.setdefault(r.label.strip(), set()).add(r.label)
        if _BREAKS.search(r.label.strip()):
            normalised[r.label] = _BREAKS.sub(" ", r.label).strip()
    merged = {_BREAKS.sub(" ", k): sorted(v) for k, v in sorted(spellings.items()) if len(v) > 1}
    return {"merged": merged, "normalised": normalised}


def _label_warnings(changes: dict[str, Any]) -> list[str]:
    out = []
    if changes["merged"]:
        items = [f"{' + '.join(map(repr, v))} -> {k!r}" for k, v in list(changes["merged"].items())[:10]]
        out.append(f"warning: {len(changes['merged'])} label(s) merged because their spellings differ only by "
                   f"surrounding whitespace: {'; '.join(items)}")
    if changes["normalised"]:
        items = [f"{k!r} -> {v!r}" for k, v in list(changes["normalised"].items())[:10]]
        out.append(f"warning: {len(changes['normalised'])} label(s) normalised (a tab or line break inside "
                   f"became a space): {'; '.join(items)}")
    return out


def find_duplicates(texts: list[str], positions: dict[str, list[int]], dedupe: bool = False
                    ) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """(positions per split, with duplicates dropped when `dedupe`; what was found).

    Found: texts in more than one split (count, and how many per combination of splits, e.g.
    "train+test"), and per split the rows repeating an earlier row's text in that split. With
    `dedupe` a row is dropped when its text is already in an earlier split (train, then dev, then
    test) or earlier in its own split, so dev and test share no text with train (nor test with dev)."""
    where: dict[str, list[str]] = {}
    for s in SPLITS:
        for i in positions[s]:
            seen = where.setdefault(texts[i], [])
            if s not in seen:
                seen.append(s)
    combos: dict[str, int] = {}
    for splits in where.values():
        if len(splits) > 1:
            combos["+".join(splits)] = combos.get("+".join(splits), 0) + 1
    kept: dict[str, list[int]] = {s: [] for s in SPLITS}
    within = dict.fromkeys(SPLITS, 0)
    dropped = dict.fromkeys(SPLITS, 0)
    taken: set[str] = set()
    for s in SPLITS:
        here: set[str] = set()
        for i in positions[s]:
            t = texts[i]
            within[s] += t in here
            if dedupe and (t in here or t in taken):
                dropped[s] += 1
            else:
                kept[s].append(i)
            here.add(t)
        taken |= here
    info = {"across_splits": {"texts": sum(combos.values()), "splits": combos},
            "within_split": within, "dedupe": dedupe, "dropped": dropped if dedupe else None}
    return (kept if dedupe else positions), info


def _duplicate_lines(info: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(warnings, notes) about duplicate texts."""
    warnings, notes = [], []
    across = info["across_splits"]
    if across["texts"]:
        combos = ", ".join(f"{k}: {v}" for k, v in across["splits"].items())
        warnings.append(f"warning: {across['texts']} text(s) appear in more than one split ({combos})"
                        + (": dropped from the later split (--dedupe)" if info["dedupe"]
                           else "; --dedupe drops them from dev/test"))
    within = {s: n for s, n in info["within_split"].items() if n}
    if within:
        notes.append("note: duplicate rows within a split: " + ", ".join(f"{s} {n}" for s, n in within.items()))
    if info["dedupe"]:
        d = info["dropped"]
        notes.append(f"note: --dedupe dropped {sum(d.values())} row(s): "
                     + ", ".join(f"{s} {n}" for s, n in d.items()))
    return warnings, notes


# ----------------------------------------------------------------------------- writing


def write_import(source: Source, out_dir: str | Path, *, label_type: str = "auto",
                 classes_file: str | Path | None = None, split_map: dict[str, str] | None = None,
                 fractions: dict[str, Fraction] | None = None, seed: int = 0, force: bool = False,
                 dedupe: bool = False, warn: Callable[[str], None] | None = None) -> ImportResult:
    """Write `source` as a THUCNews-format folder (plus import.json) and validate it.

    Everything is written into a temporary folder beside `out_dir` (with, under `force`, the other
    files of an existing `out_dir` linked in, so a stale vocab.pkl is checked too), validated, and
    only then renamed into place; a refused import leaves `out_dir` as it was and nothing beside it.
    Each warning is passed to `warn` as soon as it is known (the CLI prints it to stderr) and kept in
    the result."""
    out_dir = Path(out_dir)
    real = _check_target(source, out_dir, force)
    rows = [r for part in source.splits.values() for r in part]
    if not rows:
        raise DataError(f"{source.info.get('path') or source.info.get('name_or_path')}: no rows")
    result = ImportResult(out_dir, {})

    def say(line: str) -> None:
        result.warnings.append(line)
        if warn is not None:
            warn(line)

    classes = read_class_file(classes_file) if classes_file is not None else None
    names, ys, label_rule = resolve_labels(rows, label_type, classes, source.class_names)
    changes = label_changes(rows)
    for line in _label_warnings(changes):
        say(line)
    texts, changed = [], 0
    for r in rows:
        text, was_changed = clean_text(r.text, r.where)
        texts.append(text)
        changed += was_changed
    positions, split_info = assign_splits(source, ys, split_map, fractions, seed)
    positions, dup_info = find_duplicates(texts, positions, dedupe)
    dup_warnings, dup_notes = _duplicate_lines(dup_info)
    for line in dup_warnings:
        say(line)
    counts = {}
    for s in SPLITS:
        per_class = np.bincount([ys[i] for i in positions[s]], minlength=len(names))
        counts[s] = {"rows": len(positions[s]), "per_class": {n: int(c) for n, c in zip(names, per_class)}}
    if changed:
        result.notes.append(f"note: {changed} texts had tabs or line breaks, each replaced by a space")
    unused = [n for n in names if not any(counts[s]["per_class"][n] for s in SPLITS)]
    if unused:
        result.notes.append(f"note: {len(unused)} class(es) have no rows: {', '.join(unused[:10])}"
                            + (" (labels are not 0-based indices? --label-type name treats them as names)"
                               if label_rule.startswith("integer") else ""))
    result.notes.extend(dup_notes)
    result.provenance = {
        "source": source.info,
        "labels": {"rule": label_rule, "label_type": label_type, "classes_file": str(classes_file)
                   if classes_file is not None else None, "classes": names, **changes},
        "split": split_info,
        "texts": {"rule": "tabs and line breaks replaced by a space; leading/trailing whitespace removed",
                  "changed": changed},
        "duplicates": dup_info,
        "counts": counts,
        "warnings": result.warnings,  # the same list: the stale-file warning below lands here too
    }
    files = {f"{s}.txt": "".join(f"{texts[i]}\t{ys[i]}\n" for i in positions[s]) for s in SPLITS}
    files["class.txt"] = "".join(f"{n}\n" for n in names)
    _stage(real, out_dir, files, result.provenance, say)
    return result


def _check_target(source: Source, out_dir: Path, force: bool) -> Path:
    """`out_dir` resolved, after refusing a target that is a file, a non-empty folder without
    `force`, or the source's own folder (or a folder holding it)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder")
    real = out_dir.resolve()
    info = source.info
    if "path" in info:
        src_file, src_dir = Path(info["path"]).resolve(), Path(info["path"]).resolve().parent
    elif info.get("loaded_with") == "load_from_disk":
        src_file = src_dir = Path(info["name_or_path"]).expanduser().resolve()
    else:
        src_file = src_dir = None
    if src_dir is not None and (real == src_dir or real in src_dir.parents):
        raise DataError(f"{out_dir}: is the source's folder or holds it ({src_file}); the import would write "
                        f"over the source: choose another OUT_DIR")
    if real.is_dir() and any(real.iterdir()) and not force:
        raise DataError(f"{out_dir}: the folder is not empty (--force overwrites the files an import writes)")
    return real


def _stage(real: Path, out_dir: Path, files: dict[str, str], provenance: dict[str, Any],
           say: Callable[[str], None]) -> None:
    """Write `files` and import.json into a new folder beside `real` with the other files of the
    folder already there, validate it, and rename it to `real`. On any error nothing is left."""
    made = _missing_ancestor(real.parent)
    real.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{real.name}-", dir=real.parent))
    try:
        os.chmod(tmp, stat.S_IMODE(real.stat().st_mode) if real.is_dir() else dir_mode())
        stale = _carry_over(real, tmp)
        if stale:
            say(f"warning: {', '.join(stale)} in {out_dir} predate this import and may not match it")
        for name, text in files.items():
            _write_text(tmp / name, text)
        provenance["harness_version"] = __version__
        provenance["created_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        _write_text(tmp / "import.json", json.dumps(provenance, indent=2, ensure_ascii=False) + "\n")
        try:
            describe(tmp)  # the checks of `harness data check`: a folder it refuses is never left
        except DataError as e:
            raise DataError(str(e).replace(str(tmp), str(out_dir))) from None
        _swap_in(tmp, real)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise


def _missing_ancestor(path: Path) -> Path | None:
    """The topmost folder of `path` (itself included) that does not exist yet, or None."""
    top = None
    while not path.exists() and path != path.parent:
        top, path = path, path.parent
    return top


def _carry_over(real: Path, tmp: Path) -> list[str]:
    """Link (or copy) into `tmp` what `real` holds besides the files an import writes; the names of
    those that describe the data (vocab.pkl, *.npz) and so may not match the new import."""
    if not real.is_dir():
        return []
    for p in sorted(real.iterdir()):
        if p.name in IMPORT_FILES:
            continue
        if p.is_symlink():
            os.symlink(os.readlink(p), tmp / p.name)
        elif p.is_dir():
            shutil.copytree(p, tmp / p.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(p, tmp / p.name)
    return [p.name for p in (real / "vocab.pkl", *sorted(real.glob("*.npz"))) if p.is_file()]


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _swap_in(tmp: Path, real: Path) -> None:
    """Rename `tmp` to `real`; an existing `real` is moved aside first, put back if the rename fails,
    and deleted once it succeeded."""
    if not real.exists():
        os.rename(tmp, real)
        return
    old = real.with_name(f".old-{real.name}-{uuid.uuid4().hex[:8]}")
    os.rename(real, old)
    try:
        os.rename(tmp, real)
    except BaseException:
        os.rename(old, real)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_text(path: Path, text: str) -> None:
    """Write atomically (readers never see half a file), with Unix newlines."""
    atomic_write_text(path, text)
