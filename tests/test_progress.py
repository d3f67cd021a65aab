"""Tests for harness.progress: a bar on a terminal, one plain line per trial otherwise."""

from __future__ import annotations

import io
import re

from conftest import tiny_raw

from harness import runner
from harness.config import config_from_dict


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(tmp_path, name: str) -> dict:
    cfg = config_from_dict(tiny_raw(name, {"cell": ["rnn", "lstm"], "pad_size": [8], "seed": [0]}))
    return runner.run(cfg, tmp_path / name, workers=1, device="cpu", threads=1, progress=True)


def test_not_a_terminal_one_line_per_trial_no_carriage_return(tmp_path, capsys):
    assert _run(tmp_path, "log")["complete"] == 2
    err = capsys.readouterr().err  # pytest's capture is not a terminal
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 3, err
    # Before the first trial, once the checks passed: what the run is doing (the workers starting).
    assert lines[0].startswith("harness: 2 trials planned, data ready in ")
    assert lines[0].endswith("; starting 1 worker(s) on cpu (1 thread(s) each)")
    assert re.match(r"\[1/2\] \[complete\] cell=(rnn|lstm) pad_size=8 seed=0  test_acc=0\.\d{3}", lines[1])
    assert lines[2].startswith("[2/2] [complete] cell=")


def test_a_terminal_gets_the_bar(tmp_path, monkeypatch):
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    assert _run(tmp_path, "tty")["complete"] == 2
    out = term.getvalue()
    assert "\r" in out and "2/2" in out and "trial" in out  # tqdm's bar, redrawn in place
    assert "[1/2]" not in out
