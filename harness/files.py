"""Atomic writes: a file (or a folder of files) is written under a temporary name in its own parent
folder, then renamed to its name, so a reader sees the old version or the new one, never half of
one. The temporary file or folder is removed when writing fails."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.config.errors import ConfigError
from harness.config.yamlload import load_yaml
from harness.fsmode import dir_mode, file_mode


@contextmanager
def atomic_path(path: str | Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on leaving the block without an error it
    is renamed to `path` (permissions `mode`; default what open() gives under the umask, so a
    group-shared folder stays shared). On an error it is deleted and `path` is untouched."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, file_mode() if mode is None else mode)
        os.replace(tmp, path)
    except OSError as e:
        _name_path(e, path)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _name_path(e: OSError, path: Path) -> None:
    """Give an error of the machine (a full disk, a read-only file system) that names no file, as a
    failed write through a file object does, the file being written, for its message."""
    if e.filename is None and e.errno is not None:
        e.filename = str(path)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically, as UTF-8 with the newlines as given."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)


@contextmanager
def staged_dir(path: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a new empty temporary folder beside `path` to fill; on leaving the block without an
    error it is renamed to `path`. Where `path` already exists: with `replace` the old folder is
    moved aside and deleted; without, the existing folder is kept (another process made the same
    one first) and the new one deleted. On an error the temporary folder is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    try:
        os.chmod(tmp, dir_mode())  # mkdtemp makes 0700 whatever the umask
        yield tmp
        if replace and path.exists():
            old = path.with_name(f".old-{path.name}-{uuid.uuid4().hex[:8]}")
            os.rename(path, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, path)
        except OSError:
            if replace or not path.is_dir():
                raise
    except OSError as e:
        _name_path(e, path)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_yaml_mapping(path: str | Path, recover: str) -> dict:
    """The mapping a YAML file the harness wrote holds (DIR/config.yaml, DIR/run.yaml), read
    defensively: a file that is not UTF-8, not YAML (or hostile YAML: alias bombs, deep nesting,
    repeated keys; see harness.config.yamlload) or not a mapping raises one ConfigError naming the
    file, what is wrong and `recover` (how to get going again). An unreadable file raises OSError."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start}): {recover}") from None
    try:
        raw, _ = load_yaml(text, str(path))
    except ConfigError as e:
        raise ConfigError(f"{one_line(str(e))}: {recover}") from None
    if not isinstance(raw, dict):
        what = "is empty" if raw is None else f"holds {kind(raw)}, not a mapping of settings"
        raise ConfigError(f"{path} {what}: {recover}")
    return raw


def one_line(text: str, limit: int = 300) -> str:
    """`text` on one line (runs of whitespace as one space), cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def kind(value: object) -> str:
    """What a YAML value is, for messages: 'a list', 'an integer', 'true or false', ..."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping"}
    return next((n for t, n in names.items() if isinstance(value, t)), f"a {type(value).__name__}")


# ----------------------------------------------------------------------------- the machine refuses a write

# The errors of a write that say the machine, not the harness, is in the way: no space, over quota,
# no permission, a read-only file system. They stop a run (the trial waits for the next one).
NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})

# What torch's zip writer (inline_container.cc) raises, as a RuntimeError that names no errno, when
# the file under it stops taking bytes: a full disk, a quota (fwrite failed, the position is short).
_TORCH_WRITER = ("inline_container.cc", "PytorchStreamWriter", "file write failed", "unexpected pos")


class NoRoom(OSError):
    """A write the machine refused (see NO_ROOM_ERRNOS): errno, a message that says what is free and
    what is needed, and the folder as its filename. Not the trial's fault: the run stops with one
    line, the trial stays waiting, and the same command finishes it once there is room."""


def free_bytes(folder: str | Path) -> int | None:
    """Bytes an unprivileged user may still write on the file system of `folder` (or of its nearest
    existing parent); None where it cannot be asked."""
    p = Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def no_room(e: BaseException, folder: str | Path, needed: int | None = None) -> NoRoom | None:
    """`e` as a NoRoom naming `folder` when it says the machine refused a write there, however the
    library reports it: an OSError with an errno of NO_ROOM_ERRNOS (itself, or the cause or context
    of what was raised: torch's writer raises a RuntimeError from the OSError of a file object), or
    torch's zip-writer RuntimeError with no errno at all (then: a folder this process may not write is
    EACCES, else ENOSPC: the bytes it could not write are gone with its temporary file, so the free
    space now need not show it). `needed`: about how many bytes the write needed, for the message.
    The folder named is that of the file the OSError names, else `folder`.
    None for anything else (a bug, a bad file: the caller's to handle)."""
    if isinstance(e, NoRoom):
        return e
    code = None
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in NO_ROOM_ERRNOS:
            code = cur.errno
            if isinstance(cur.filename, str) and Path(cur.filename).parent != Path(cur.filename):
                folder = Path(cur.filename).parent  # the folder of the file it names
            break
        cur = cur.__cause__ or cur.__context__
    if code is None:
        if not (isinstance(e, RuntimeError) and any(s in str(e) for s in _TORCH_WRITER)):
            return None
        existing = Path(folder)
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        code = errno.ENOSPC if os.access(existing, os.W_OK) else errno.EACCES
    what = os.strerror(code)
    if code in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(folder)
        parts = [f"{_mb(free)} free there" if free is not None else None,
                 f"the write needs about {_mb(needed)}" if needed else None]
        if any(parts):
            what += f" ({'; '.join(p for p in parts if p)})"
    return NoRoom(code, what, str(folder))


# ----------------------------------------------------------------------------- loading is never executing

class NotLoadable(ValueError):
    """A file the harness reads that is not what it should hold: unreadable, damaged, or holding
    more than tensors and plain values (a pickle that would import or call something). One line,
    naming the file."""


def load_tensors(path: str | Path, map_location: Any = None, mmap: bool = False) -> Any:
    """What a torch.save file holds, read with `weights_only=True` (PyTorch's own rule: tensors,
    and dicts, lists, tuples, strings, numbers, None; no class is imported, no code runs), the one
    rule for every file the harness loads from a results folder, an artifact store or a user's path.
    Anything else raises NotLoadable naming the file and why, on one line. `mmap`: map the tensors'
    bytes instead of reading them (a check that the file loads, at the cost of its pickle only)."""
    import pickle

    import torch  # only here: the loaders and the report stay torch-free

    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols: not the user's business
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:  # torch's weights-only unpickler refused something
        paragraphs = [p.strip() for p in str(e).split("\n\n") if p.strip()] or [""]
        why = next((p for p in paragraphs if not p.startswith(("Weights only load failed", "Check the documentation"))),
                   paragraphs[0]).removeprefix("WeightsUnpickler error:").strip()
        raise NotLoadable(f"{path}: not loaded: it holds more than tensors and plain values "
                          f"({one_line(why, 160)})") from None
    except FileNotFoundError:
        raise
    except Exception as e:  # not a torch file, a torn or damaged one, an unreadable one
        raise NotLoadable(f"{path}: not a readable torch file ({type(e).__name__}: {one_line(str(e), 160)})") from None


def weights_problem(path: str | Path) -> str | None:
    """Why a kept weights file (train.save_model's model.pt) cannot be used: missing, not loadable
    with weights_only=True, or holding no state_dict (names to tensors: the file's own, or its
    `state_dict` entry in harness.model_file's format); None when it holds one. Maps the
    tensors rather than reading them, so checking many files costs their pickles only."""
    import torch  # only here: the loaders and the report stay torch-free

    path = Path(path)
    if not path.is_file():
        return "missing"
    if not zipfile.is_zipfile(path):
        return "not a torch file (not the zip archive torch.save writes)"
    try:
        state = load_tensors(path, map_location="cpu", mmap=True)
    except NotLoadable as e:
        return str(e).removeprefix(f"{path}: ")
    except OSError as e:
        return f"not readable ({e.strerror or e})"
    if isinstance(state, dict) and "state_dict" in state:  # the saved-model format (harness.model_file)
        state = state["state_dict"]
    if not (isinstance(state, dict) and state
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        return "not a state_dict (a mapping of parameter names to tensors)"
    return None
