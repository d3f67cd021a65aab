"""Passwords out of what the harness writes and says: storage URLs in files and in messages.

Torch- and Optuna-free, so the results folder's files (`harness.results_dir`) and every message use it.
"""

from __future__ import annotations

import re

__all__ = ["first_line", "has_password", "redact_text", "redact_url", "without_password"]

_PASSWORD_IN_TEXT = re.compile(r"(\w[\w+.-]*://[^:/@\s]*:)[^@\s]+@")


def redact_url(url: str | None) -> str | None:
    """`url` with its password (if any) shown as ***: postgresql://user:***@host/db. For messages."""
    if not url or "://" not in url:
        return url
    return _PASSWORD_IN_TEXT.sub(r"\1***@", url)


def without_password(url: str | None) -> str | None:
    """`url` with its password left out (postgresql://user@host/db): what is written to files.
    libpq (psycopg) then takes the password from PGPASSWORD or ~/.pgpass."""
    if not url or "://" not in url:
        return url
    return _PASSWORD_IN_TEXT.sub(lambda m: m.group(1)[:-1] + "@", url)


def has_password(url: str | None) -> bool:
    """Whether `url` carries a password."""
    return bool(url) and without_password(url) != url


def redact_text(text: str) -> str:
    """`text` with the password of every URL in it shown as ***."""
    return _PASSWORD_IN_TEXT.sub(r"\1***@", text)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (drivers add hints and SQL on further lines)."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
