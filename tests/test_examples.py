"""examples/analyse_results.py runs (as a script, one torch thread) against a tiny results folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_raw

from harness import runner
from harness.config import config_from_dict
from harness.records import load

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "analyse_results.py"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("example") / "res"
    cfg = config_from_dict(tiny_raw("example", {"cell": ["rnn", "lstm"], "pad_size": [8, 16], "seed": [0, 1]}))
    assert runner.run(cfg, out, workers=1, device="cpu", threads=1, progress=False)["missing"] == 0
    return out


def test_example_draws_the_figure_and_prints_the_paired_effect(results, tmp_path):
    figure = tmp_path / "fig" / "acc.png"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(SCRIPT), str(results), str(figure)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert figure.is_file() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = re.search(r"effect lstm - rnn test accuracy: ([+-]\d\.\d{4}) \(95% t-interval \[([+-]\d\.\d{3}), "
                  r"([+-]\d\.\d{3})\], 4 pairs", proc.stdout)
    assert m, proc.stdout
    effect, low, high = map(float, m.groups())
    runs = load(results)["runs"].set_index(["cell", "pad_size", "seed"])["test_acc"]
    expected = np.mean([runs["lstm", p, s] - runs["rnn", p, s] for p in (8, 16) for s in (0, 1)])
    assert effect == pytest.approx(expected, abs=1e-4)
    assert low <= effect <= high


def test_example_is_a_percent_format_notebook():
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(SCRIPT)
    kinds = [c.cell_type for c in nb.cells]
    assert kinds.count("code") >= 4 and kinds.count("markdown") >= 3


@pytest.mark.slow
def test_example_executes_as_a_notebook(results, tmp_path, monkeypatch):
    """Where Jupyter is installed (jupytext, nbclient, ipykernel): the notebook runs in a kernel."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    figure = tmp_path / "nb.png"
    for k, v in {"HARNESS_RESULTS": str(results), "HARNESS_FIGURE": str(figure), "OMP_NUM_THREADS": "1",
                 "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}.items():
        monkeypatch.setenv(k, v)
    nb = jupytext.read(SCRIPT)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                            ).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert re.search(r"effect lstm - rnn test accuracy: [+-]\d\.\d{4}", text), text
    assert figure.is_file()
