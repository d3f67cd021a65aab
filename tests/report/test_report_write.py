"""`write_report(DIR)` end to end: report.md linking every figure file, on a finished run, a partial
run, a single trial, a run with failed and diverged trials, and a real (tiny) run via the CLI."""

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import yaml
from conftest import tiny_raw
from report_tables import grid, trial_tables, write_results

from harness.config import ConfigError, config_from_dict
from harness.records import write_trial
from harness.report import FIGURE_NAMES, build_figures, compute, render, write_report

CORE = ["frontier", "heatmap", "curves_step", "gradient_reach", "weights_moving", "convergence", "confusion"]


def linked_figures(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(figures/([\w-]+)\.png\)", md)


def check_report(d: Path, expected: list[str]) -> str:
    path = write_report(d)
    assert path == d / "report.md" and path.is_file()
    md = path.read_text(encoding="utf-8")
    assert linked_figures(md) == expected
    for name in expected:
        for ext in ("png", "svg"):
            f = d / "figures" / f"{name}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
            assert f"figures/{name}.{ext}" in md
    drawn = {p.stem for p in (d / "figures").glob("*.png")} if (d / "figures").is_dir() else set()
    assert drawn == set(expected)
    for section in ("## Findings", "## Summary per configuration", "## Effects", "## Figures", "## Provenance"):
        assert section in md
    return md


def test_report_on_a_finished_run(tmp_path):
    d = write_results(tmp_path / "r", grid(pads=(8, 16), seeds=(0, 1)))
    md = check_report(d, CORE)
    assert "16 trials have results (16 complete) of the 16 the config plans." in md
    assert "**cell lstm vs rnn**" in md and "the interval excludes zero" in md
    assert "`0123abcd`" in md and "torch `2.13.0+cpu`" in md and "```yaml" in md


def test_report_on_a_partial_run(tmp_path):
    axes = {"cell": ["rnn", "lstm"], "layernorm": ["none", "output"], "pad_size": [8, 16], "lr": [1e-3],
            "seed": [0, 1, 2]}
    points = [("rnn", "none", 8, 1e-3, 0), ("lstm", "none", 8, 1e-3, 0), ("lstm", "output", 8, 1e-3, 0)]
    d = write_results(tmp_path / "r", points, grid_axes=axes)
    md = check_report(d, CORE)
    assert "3 trials have results (3 complete) of the 24 the config plans." in md
    assert "21 of 24 planned trials have no results yet" in md
    assert "Every configuration has a single seed" in md


def test_report_with_failed_and_diverged_trials(tmp_path):
    points = grid(pads=(8,), seeds=(0, 1))
    statuses = {("rnn", "none", 8, 1e-3, 1): "diverged", ("lstm", "output", 8, 1e-3, 0): "failed",
                ("lstm", "output", 8, 1e-3, 1): "failed"}
    d = write_results(tmp_path / "r", points, statuses)
    md = check_report(d, CORE)
    assert "8 trials have results (5 complete, 1 diverged, 2 failed)" in md
    assert "non-finite training loss at step 5" in md and "RuntimeError: boom" in md
    # the summary rows carry the counts: runs | complete | diverged | failed | pruned
    assert re.search(r"\| rnn \| none \| 2 \| 1 \| 1 \| 0 \| 0 \|", md)
    assert re.search(r"\| lstm \| output \| 2 \| 0 \| 0 \| 2 \| 0 \| — \|", md)


def test_report_on_a_single_trial(tmp_path):
    # Built, not saved (saving is covered above): every figure still has something to draw.
    d = write_results(tmp_path / "r", [("lstm", "none", 8, 1e-3, 0)])
    data = compute(d)
    built = build_figures(data)
    assert [name for name, _, _ in built.figures] == CORE
    md = render(data, built)
    assert render(data, built) == md  # rendering reads its arguments only: the same text every time
    assert linked_figures(md) == CORE
    assert "1 trial has results (1 complete)" in md
    assert "No factor varies in these results" in md
    assert "(one seed)" in md
    assert "Not drawn: Training curves (against samples) — batch_size does not vary" in md
    assert "Not drawn" not in render(data)  # without figures there are no notes on them either
    for _, fig, _ in built.figures:
        plt.close(fig)


def test_report_before_any_trial_finished(tmp_path):
    d = write_results(tmp_path / "r", [], grid_axes={"cell": ["rnn"], "seed": [0]})
    md = check_report(d, [])
    assert "No trial has finished yet" in md


def test_report_on_a_directory_that_is_not_results(tmp_path):
    with pytest.raises(ConfigError, match="not a results directory"):
        write_report(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="not a results directory"):
        write_report(tmp_path)


def test_dotted_grid_axis_counts_as_a_factor(tmp_path):
    d = tmp_path / "r"
    axes = {"cell": ["lstm"], "pad_size": [8], "seed": [0, 1], "model.readout": ["last", "mean"]}
    write_results(d, [], grid_axes=axes)
    for seed in (0, 1):
        for readout, bonus in (("last", 0.0), ("mean", 0.1)):
            t = trial_tables("lstm", "none", 8, 1e-3, seed, extra={"model.readout": readout})
            t["runs"]["test_acc"] += bonus
            write_trial(d, t["runs"]["trial_id"].iloc[0], t)
    data = compute(d)  # the tables and text only; the figures are tested elsewhere
    assert "model.readout" in data.varying
    md = render(data)
    assert "**model.readout mean vs last**" in md
    assert "| model.readout | mean − last | all | 2 | +10.0 [+10.0, +10.0]" in md


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A real run of 4 tiny trials (cell × layernorm), trained on the CPU."""
    from harness import runner

    raw = tiny_raw("tinyreport", grid={"cell": ["rnn", "lstm"], "layernorm": ["none", "output"],
                                       "pad_size": [12], "seed": [0]})
    raw["train"]["target_dev_acc"] = 0.2
    out = tmp_path_factory.mktemp("tinyreport")
    runner.run(config_from_dict(raw), out, workers=1, device="cpu", threads=1, progress=False)
    return out


def test_cli_report_on_a_real_run(tiny_run, capsys):
    from harness.cli import main

    assert main(["report", str(tiny_run)]) == 0
    assert "report.md" in capsys.readouterr().out
    md = (tiny_run / "report.md").read_text(encoding="utf-8")
    assert linked_figures(md) == CORE
    assert "4 trials have results" in md and "enumerated grid" in md
    assert yaml.safe_load((tiny_run / "config.yaml").read_text())["name"] in md
    assert set(FIGURE_NAMES) >= set(CORE)
