"""Atomic writes: the target holds the old content or the new, and no temporary file is left."""

import pytest

from harness.files import atomic_path, atomic_write_text, staged_dir


def test_write_text_replaces_the_file(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "one\n")
    atomic_write_text(p, "two\n")
    assert p.read_text() == "two\n" and oct(p.stat().st_mode & 0o777) == "0o644"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]  # no temporary file left


def test_an_error_while_writing_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert p.read_text() == "old" and [x.name for x in tmp_path.iterdir()] == ["a.txt"]


def test_staged_dir_replaces_or_keeps_an_existing_folder(tmp_path):
    d = tmp_path / "t1"
    for content, replace in (("first", False), ("second", False), ("third", True)):
        with staged_dir(d, replace=replace) as tmp:
            (tmp / "f").write_text(content)
    assert (d / "f").read_text() == "third"  # "second" lost the race to the existing folder
    with pytest.raises(RuntimeError), staged_dir(d, replace=True) as tmp:
        (tmp / "f").write_text("fourth")
        raise RuntimeError("killed")
    assert (d / "f").read_text() == "third" and [x.name for x in tmp_path.iterdir()] == ["t1"]
