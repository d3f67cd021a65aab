"""The Optuna journal file (DIR/optuna.journal): checked when opened, a torn last line repaired.

Optuna's JournalFileBackend appends one JSON object per line (ASCII, `json.dumps`); the harness
gives it an flock on `<journal>.flock` as its lock (`JournalFlock`: waiters sleep in the kernel
instead of polling, and a killed holder releases it at once, where Optuna's symlink lock polls with
sleeps up to 1 s and waits 30 s for a dead holder). A process killed (or a disk filling up) in
the middle of an append leaves a *torn* last line: a prefix of a record with no newline. Optuna
skips such a line while it is the last one, but the next append lands on it, and from then on every
read fails. So, on open:

- a torn last line is cut off, under the writers' lock (no one appends meanwhile, and of two
  processes that open the journal at once only one repairs), after copying it to
  `<journal>.torn-<time>`;
- a line that is not a journal record anywhere else (garbage, bytes that are not UTF-8, a record
  cut short and then appended to) is refused with `JournalDamaged`, which says how to recover.

No torch import.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock

TAIL_BYTES = 1 << 20    # how much of the journal's end is read to check its last lines
_CUT: dict[str, set[int]] = {}  # journal path -> trials named in a torn line this process cut off


class JournalDamaged(Exception):
    """The journal holds a line that is not a journal record; it cannot be repaired safely."""


def damage_message(path: Path, line: int | None, what: str) -> str:
    """What is wrong with the journal at `path` (line number, 1-based, when known) and how to recover."""
    where = f"{path}:{line}" if line else str(path)
    return (f"{where}: the Optuna journal is damaged ({what}) and cannot be repaired safely. The finished "
            f"trials are kept in {path.parent / 'trials'} (the source of truth): move the journal aside "
            f"(mv {path} {path}.damaged) and run the same `harness run` command again; it enqueues what "
            f"is not finished")


class JournalFlock(BaseJournalFileLock):
    """The journal's write lock: an exclusive flock on `<journal>.flock`. Every process that writes
    the journal must use it (a harness older than this lock used Optuna's `<journal>.lock`)."""

    def __init__(self, journal: str | Path):
        self.path = Path(str(journal) + ".flock")
        self._mutex = threading.Lock()  # one holder per object across threads (flock is per open file)
        self._fd: int | None = None

    def acquire(self) -> bool:
        self._mutex.acquire()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self._mutex.release()
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                os.close(fd)  # closing the only descriptor releases the flock
        finally:
            self._mutex.release()


class CheckedJournalBackend(JournalFileBackend):
    """Optuna's journal file backend that checks the journal's end when opened (`prepare`), raises
    JournalDamaged (naming the line) instead of ValueError / UnicodeDecodeError when a line in the
    middle is not a record, and names the journal in the error of a failed append (a full disk)."""

    def __init__(self, file_path: str):
        self.path = Path(file_path)
        prepare(self.path)
        super().__init__(file_path, lock_obj=JournalFlock(file_path))

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        try:
            yield from super().read_logs(log_number_from)
        except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError, Optuna's "Invalid log format."
            line = first_bad_line(self.path)
            raise JournalDamaged(damage_message(self.path, line, f"not a journal record: {e}")) from None

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        try:
            super().append_logs(logs)
        except OSError as e:  # a full disk: name the journal (Optuna's write names no file)
            if e.filename is None:
                e.filename = str(self.path)
            raise


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def first_bad_line(path: Path) -> int | None:
    """The number (1-based) of the first complete line of `path` that is not a journal record."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if line.endswith(b"\n") and not _is_record(line):
                return number
    return None


def _looks_torn(tail: bytes) -> bool:
    """Whether bytes after the last newline can be the start of a record Optuna was writing
    (json.dumps writes ASCII and every record is an object)."""
    return tail.startswith(b"{") and tail.isascii()


def _tail(path: Path) -> tuple[int, bytes]:
    """(offset, bytes) of the end of the file: up to TAIL_BYTES."""
    size = path.stat().st_size
    start = max(0, size - TAIL_BYTES)
    with open(path, "rb") as f:
        f.seek(start)
        return start, f.read()


def prepare(path: Path) -> None:
    """Check the end of the journal at `path`: repair a torn last line, refuse a last line (complete
    or not) that is not a journal record. The middle is checked as Optuna reads it (CheckedJournalBackend)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    start, data = _tail(path)
    if not data.endswith(b"\n"):
        tail = data[data.rfind(b"\n") + 1:]
        if not _looks_torn(tail):
            raise JournalDamaged(damage_message(path, None, "it ends in bytes that are not a journal record"))
        repair_torn(path)
        start, data = _tail(path)
    lines = data.splitlines(keepends=True)
    if lines and (start == 0 or len(lines) > 1) and not _is_record(lines[-1]):
        line = first_bad_line(path)
        raise JournalDamaged(damage_message(path, line, "its last line is not a journal record"))


def repair_torn(path: Path) -> Path | None:
    """Cut a torn last line off the journal, keeping it in `<journal>.torn-<time>`, under the
    writers' lock. Returns the copy's path, or None when (seen under the lock) there was nothing to cut."""
    lock = JournalFlock(path)
    lock.acquire()
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
        if not data or data.endswith(b"\n"):
            return None  # another process repaired it (or a writer finished) meanwhile
        cut = data[data.rfind(b"\n") + 1:]
        copy = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        copy.write_bytes(cut)
        os.truncate(path, size - len(cut))
        _CUT.setdefault(str(path.resolve()), set()).update(int(i) for i in re.findall(rb'"trial_id":\s*(\d+)', cut))
    finally:
        lock.release()
    print(f"harness: {path} ended in a line cut short ({len(cut)} bytes, from a write that was killed or "
          f"ran out of disk space): cut it off and went on; the cut bytes are kept in {copy}", file=sys.stderr)
    return copy


def cut_trials(path: str | Path) -> set[int]:
    """The storage ids of the trials named in a torn line this process cut off the journal at `path`:
    their writer died mid-append (killed, or a full disk), so a RUNNING one among them has no live
    worker, even when the cut line was the one with its host, pid and heartbeat."""
    return set(_CUT.get(str(Path(path).resolve()), ()))
