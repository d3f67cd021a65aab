"""Permissions of the files the harness writes: what `open()` and `mkdir()` would give.

`tempfile.mkstemp` creates files 0600 and `tempfile.mkdtemp` folders 0700 whatever the umask, so a
file or folder written under a temporary name and renamed would be private even in a folder shared
by a group. `shareable_file(path)` / `shareable_dir(path)` give them the mode a plain `open()`
(0666) or `mkdir()` (0777) would have had under the process's umask (0644 / 0755 with umask 022,
0664 / 0775 with umask 002).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_lock = threading.Lock()


def umask() -> int:
    """The process's umask, read without changing it where /proc allows (Linux), else set and reset."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _lock:  # os.umask can only be read by setting it; put it back at once
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode `open(path, "w")` gives a new file (0o666 less the umask)."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """The mode `os.mkdir(path)` gives a new folder (0o777 less the umask)."""
    return 0o777 & ~umask()


def shareable_file(path: str | os.PathLike) -> None:
    """Give a file made by tempfile.mkstemp the mode open() would have given it."""
    os.chmod(path, file_mode())


def shareable_dir(path: str | os.PathLike) -> None:
    """Give a folder made by tempfile.mkdtemp the mode mkdir() would have given it."""
    os.chmod(path, dir_mode())
