"""Atomic writes: a file (or a folder of files) is written under a temporary name in its own parent
folder, then renamed to its name, so a reader sees the old version or the new one, never half of
one. The temporary file or folder is removed when writing fails."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


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
    from harness.config.errors import ConfigError
    from harness.config.yamlload import load_yaml

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
