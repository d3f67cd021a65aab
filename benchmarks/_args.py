"""Checking a benchmark script's arguments before any work: a bad one is one line on stderr and
exit code 2 (as `harness` does), not a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import pandas as pd


def refuse(script: str, message: str) -> NoReturn:
    """Print `script: message` on stderr and exit 2."""
    print(f"{script}: {message}", file=sys.stderr)
    raise SystemExit(2)


def existing_file(script: str, flag: str, path: str) -> Path:
    """`path` as a Path; refused when it is not a file."""
    p = Path(path)
    if not p.is_file():
        refuse(script, f"{flag} {path}: {'not a file' if p.exists() else 'no such file'}")
    return p


def finished_runs(script: str, flag: str, path: str) -> pd.DataFrame:
    """The runs table of the results folder `path` (rebuilt from its trial shards); refused when it is
    not a folder or holds no finished trial."""
    from harness.records import load

    folder = Path(path)
    if not folder.is_dir():
        refuse(script, f"{flag} {path}: {'not a folder' if folder.exists() else 'no such folder'}")
    runs = load(folder)["runs"]
    if runs.empty:
        refuse(script, f"{flag} {path}: no finished trial in it (a results folder holds them in trials/; "
                       f"run `harness run CONFIG --out {path}` first)")
    return runs
