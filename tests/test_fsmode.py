"""Tests for harness.fsmode: files and folders made under temporary names get the umask's modes."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest

from harness.fsmode import dir_mode, file_mode, shareable_dir, shareable_file, umask


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_modes_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        assert umask() == mask
        assert (file_mode(), dir_mode()) == (0o666 & ~mask, 0o777 & ~mask)
        fd, f = tempfile.mkstemp(dir=tmp_path)
        os.close(fd)
        d = tempfile.mkdtemp(dir=tmp_path)
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600  # what tempfile gives, whatever the umask
        shareable_file(f)
        shareable_dir(d)
        plain = tmp_path / f"plain-{mask:o}"
        plain.write_text("x")
        plain_dir = tmp_path / f"plain-dir-{mask:o}"
        plain_dir.mkdir()
        assert stat.S_IMODE(os.stat(f).st_mode) == stat.S_IMODE(plain.stat().st_mode)
        assert stat.S_IMODE(os.stat(d).st_mode) == stat.S_IMODE(plain_dir.stat().st_mode)
    finally:
        os.umask(old)
