"""`write_report(DIR)` end to end: report.md linking every figure file, on a finished run, a partial
run, a single trial, a run with failed and diverged trials, and a real (tiny) run via the CLI."""

import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import yaml
from conftest import tiny_raw
from report_tables import grid, trial_tables, write_results

from harness import adaptive
from harness.config import ConfigError, config_from_dict
from harness.records import write_trial
from harness.report import FIGURE_NAMES, build_figures, compute, render, write_report

CORE = ["frontier_fit", "frontier_targets", "survival", "frontier", "curves_step", "gradient_reach", "weights_moving",
        "convergence", "confusion"]                      # pad_size varies, the learning rate does not: no heatmap
ONE_PAD_ONE_LR = [f for f in CORE if f not in ("frontier_fit", "frontier_targets", "frontier")]  # no frontier


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
    for section in ("## Findings", "## Success: reaching the target", "## Effects", "## Summary per configuration",
                    "## Figures", "## Provenance"):
        assert section in md
    assert ("## Frontier: how far each reaches the target (D50)" in md) == ("frontier_fit" in expected)
    assert ("## Frontier at every target" in md) == ("frontier_targets" in expected)
    return md


def test_report_on_a_finished_run(tmp_path):
    d = write_results(tmp_path / "r", grid(pads=(8, 16), seeds=(0, 1)))
    md = check_report(d, CORE)
    assert "16 trials have results (16 complete) of the 16 the config plans." in md
    assert "**cell lstm vs rnn**" in md and "the data cannot decide" in md and "decided:" not in md
    assert "`0123abcd`" in md and "torch `2.13.0+cpu`" in md and "```yaml" in md


def test_report_on_a_partial_run(tmp_path):
    axes = {"cell": ["rnn", "lstm"], "layernorm": ["none", "output"], "pad_size": [8, 16], "lr": [1e-3],
            "seed": [0, 1, 2]}
    points = [("rnn", "none", 8, 1e-3, 0), ("lstm", "none", 8, 1e-3, 0), ("lstm", "output", 8, 1e-3, 0)]
    d = write_results(tmp_path / "r", points, grid_axes=axes)
    md = check_report(d, ONE_PAD_ONE_LR)     # one pad_size and one lr so far
    assert "3 trials have results (3 complete) of the 24 the config plans." in md
    assert "21 of 24 planned trials have no results yet" in md
    assert "With at most 1 seed per configuration no paired difference can be claimed" in md


def test_report_with_failed_and_diverged_trials(tmp_path):
    points = grid(pads=(8,), seeds=(0, 1))
    statuses = {("rnn", "none", 8, 1e-3, 1): "diverged", ("lstm", "output", 8, 1e-3, 0): "failed",
                ("lstm", "output", 8, 1e-3, 1): "failed"}
    d = write_results(tmp_path / "r", points, statuses)
    md = check_report(d, ONE_PAD_ONE_LR)
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
    assert [d.name for d in built.figures] == ONE_PAD_ONE_LR
    md = render(data, built)
    assert render(data, built) == md  # rendering reads its arguments only: the same text every time
    assert linked_figures(md) == ONE_PAD_ONE_LR
    assert "1 trial has results (1 complete)" in md
    assert "No factor varies in these results" in md
    assert "(one run)" in md
    assert "Not drawn: Training curves against samples seen — batch_size does not vary" in md
    assert "Not drawn" not in render(data)  # without figures there are no notes on them either
    assert "frontier" not in md.lower()     # one distance: no frontier, not even a note that there is none


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
    # 2 seeds that agree exactly: no spread, so no t interval (never a zero-width one), and the exact sign
    # test needs 7 seeds of one sign at this row's Holm level (97.5%: 2 / 2**7 < 0.025)
    assert "| model.readout | mean − last | all | test acc (points) | 2 (2) | +10.0 no interval |" in md
    assert "no t interval: every difference is +0.1, but the exact sign test needs 7 pairs at this level" in md


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
    assert linked_figures(md) == ONE_PAD_ONE_LR
    assert "4 trials have results" in md
    assert yaml.safe_load((tiny_run / "config.yaml").read_text())["name"] in md
    assert set(FIGURE_NAMES) >= set(CORE)


# ----------------------------------------------------------------------------- the statistics in the report

def _write_noisy(d: Path, points, noise: float = 0.0, seed: int = 0, edit=None) -> Path:
    """Results like write_results, with Gaussian noise on each run's test accuracy and an optional
    edit(tables) per trial."""
    axes = {"cell": sorted({p[0] for p in points}), "layernorm": sorted({p[1] for p in points}),
            "pad_size": sorted({p[2] for p in points}), "lr": sorted({p[3] for p in points}),
            "seed": sorted({p[4] for p in points})}
    write_results(d, [], grid_axes=axes)
    rng = np.random.default_rng(seed)
    for p in points:
        t = trial_tables(*p)
        t["runs"]["test_acc"] += rng.normal(0.0, noise) if noise else 0.0
        if edit is not None:
            edit(p, t)
        write_trial(d, t["runs"]["trial_id"].iloc[0], t)
    return d


def findings_of(md: str) -> str:
    return md.split("## Findings")[1].split("## Success")[0]


def test_two_seed_report_claims_nothing_and_says_how_many_seeds_would_decide(tmp_path):
    d = _write_noisy(tmp_path / "r", grid(pads=(8, 16, 32), seeds=(0, 1)), noise=0.01)
    md = check_report(d, CORE)
    f = findings_of(md)
    assert "decided:" not in md and " differs" not in md and "excludes zero;" not in f
    assert "2 seeds per configuration cannot decide" in f
    assert re.search(r"would need about \d+ seeds", f) and re.search(r"about \d+ seeds would decide", f)
    # success as k of n with Wilson intervals, in the table and the findings
    assert "| rnn | none | 8 | 2 of 2 | 100% [34%, 100%] |" in md
    assert "reached the target dev accuracy 0.5 in 2 of 2 runs at pad_size 8 [34%, 100%]" in f
    assert (d / "figures" / "survival.png").stat().st_size > 1000


def test_report_leads_with_the_frontier(tmp_path):
    d = _write_noisy(tmp_path / "r", grid(pads=(4, 8, 16), seeds=(0, 1)))
    md = render(compute(d))
    # The contrast the question asks leads (cell against cell at each distance), then the frontier.
    assert findings_of(md).strip().startswith("### Cell against cell at each pad_size\n\n")
    first = next(line for line in findings_of(md).splitlines() if line.startswith("- "))
    assert first.startswith("- **Frontier** (criterion: reaching dev accuracy 0.5 within 40 steps; D = pad_size; "
                            "D50: the distance at which half the runs still do): The RNN: reached the target within "
                            "40 steps in every run up to D = 8 and in none from D = 16 on (D50 between them: a "
                            "bracket)")
    assert ("the LSTM: every run reached the target within 40 steps at every distance tested (D50 beyond D = 16)"
            in first)
    assert "stops" not in first and "stop learning" not in first
    assert "pad_size mixes" in md or "Distance here is pad_size, which mixes" in md


def test_six_seeds_with_a_clear_effect_are_claimed(tmp_path):
    d = _write_noisy(tmp_path / "r", grid(lns=("none",), pads=(8,), seeds=tuple(range(6))), noise=0.01, seed=3)
    md = render(compute(d))
    assert re.search(r"\*\*cell lstm vs rnn\*\* \(6 seeds\): test accuracy \+3\d\.\d points "
                     r"\[\+3\d\.\d, \+[34]\d\.\d\] \(9\d(\.\d+)?%, Holm\): decided: lstm is higher", md)
    assert "decided: lstm reaches the target sooner" in md
    # One comparison (lstm vs rnn) seen on two measures is counted once, with the tests it rests on.
    assert ("1 of the 1 paired comparison in the Effects table is decided (1 by the paired t interval on one "
            "measure and the exact sign test on the other; Holm-corrected over its 2 rows") in md
    assert "(pad_size 8), and how fast?" in md.split("## Findings")[0]  # the opening names the fixed distance


def test_underflowed_gradient_is_counted_in_the_findings(tmp_path):
    def underflow(p, t):
        if p[0] == "rnn" and p[2] == 16 and p[4] == 0:
            t["runs"]["vanishing_ratio_final"] = -np.inf

    d = _write_noisy(tmp_path / "r", grid(pads=(8, 16), seeds=(0, 1)), edit=underflow)
    f = findings_of(render(compute(d)))
    assert "rnn/none 10^-3.2 at init → 10^-0.8 in 1 of 2 runs, below 1e-38 (underflow) in 1 of 2 runs" in f


def test_figures_and_confusion_matrices_are_chosen_on_dev_not_test(tmp_path):
    def dev_vs_test(p, t):
        better_on_test = p[3] == 1e-2
        t["runs"]["test_acc"] += 0.1 if better_on_test else 0.0
        t["runs"]["best_dev_acc"] += 0.0 if better_on_test else 0.1

    d = _write_noisy(tmp_path / "r", grid(pads=(8,), lrs=(1e-3, 1e-2), seeds=(0, 1)), edit=dev_vs_test)
    data = compute(d)
    built = build_figures(data)
    figs = {d.name: (d.figure, d.caption) for d in built.figures}
    titles = [ax.get_title() for ax in figs["confusion"][0].axes if ax.get_title()]
    assert titles and all("lr=0.001" in t for t in titles)
    assert "best dev accuracy" in figs["confusion"][1] and "never on test" in figs["confusion"][1]
    assert "best mean dev accuracy" in figs["weights_moving"][1]  # the curves show a row per lr
    plt.close("all")


def test_adaptive_seeds_table_when_the_runner_wrote_it(tmp_path):
    d = write_results(tmp_path / "r", grid(pads=(8, 16), seeds=(0, 1)))
    assert "## Adaptive seeds" not in render(compute(d))
    (d / "adaptive.json").write_text('{"rnn/none pad_size=8": {"seeds": 7, "reason": "decided: rate below 0.5"}}')
    md = render(compute(d))
    assert "## Adaptive seeds" in md and "| rnn/none pad_size=8 | 7 | decided: rate below 0.5 |" in md
    # the adaptive runner's own form (harness.adaptive.summary)
    (d / "adaptive.json").write_text(json.dumps({
        "min_seeds": 2, "max_seeds": 8, "trials": {"needed": 20, "max": 64, "finished": 20},
        "per_configuration": [{"factors": {"cell": "rnn", "pad_size": 8}, "seeds": 2, "finished": 2, "reached": 0,
                               "state": "decided", "reason": "success rate interval excludes 0.5"}],
        "effects": [{"factor": "cell", "baseline": "rnn", "level": "lstm", "seeds": 2, "state": "undecided"}]}))
    md = render(compute(d))
    assert "20 trials were needed of the 64 that 8 seeds everywhere would take" in md
    assert "| cell=rnn pad_size=8 | 2 | 0 | decided | success rate interval excludes 0.5 |" in md
    assert "| cell lstm vs rnn | 2 | undecided |" in md
    # Seeds chosen adaptively: the Success rows say they are exploratory, with the coverage of the rule.
    success = md.split("## Success")[1].split("## Frontier")[0]
    assert "**Exploratory.** Adaptive seeding chose each configuration's number of seeds (2 to 8)" in success
    assert f"covers it {adaptive.stopping_coverage(0.5, 2, 8):.0%} of the time" in success
    rows = [line for line in success.splitlines() if line.startswith("| rnn") or line.startswith("| lstm")]
    assert rows and all(line.endswith("| chosen adaptively: exploratory |") for line in rows)
    assert "exploratory (seeds chosen adaptively)" in md.split("## Frontier")[1].split("## Effects")[0]


def test_provenance_warns_when_one_configuration_mixes_machines(tmp_path):
    def kernels(p, t):
        t["runs"]["cpu_capability"] = "AVX512" if p[4] == 0 else "AVX2"
        t["runs"]["cpu_model"] = "Xeon"

    d = _write_noisy(tmp_path / "r", grid(cells=("lstm",), lns=("none",), pads=(8,), seeds=(0, 1)), edit=kernels)
    md = render(compute(d))
    assert "**Warning: mixed machines.**" in findings_of(md)
    assert "cpu_capability=AVX2" in md and "cpu_capability=AVX512" in md
    assert "- Not recorded in these results (older runs): `onednn_version`, `cudnn_version`, `gpu_name`" in md
    plain = write_results(tmp_path / "old", grid(cells=("lstm",), lns=("none",), pads=(8,), seeds=(0, 1)))
    old = render(compute(plain))
    assert "mixed machines" not in old and "`cpu_model`, `cpu_capability`" in old


def test_with_adaptive_seeds_the_trials_planned_are_those_asked_for(tmp_path):
    d = write_results(tmp_path / "r", grid(cells=("rnn",), lns=("none",), pads=(8,), seeds=(0, 1, 2)))
    raw = yaml.safe_load((d / "config.yaml").read_text())
    raw["grid"].pop("seed", None)
    raw["train"].pop("seed", None)
    raw["adaptive"] = {"min_seeds": 2, "max_seeds": 8}
    (d / "config.yaml").write_text(yaml.safe_dump(config_from_dict(raw).to_dict(), sort_keys=False))
    (d / "adaptive.json").write_text(json.dumps({"min_seeds": 2, "max_seeds": 8,
                                                 "trials": {"needed": 4, "max": 8, "finished": 3}}))
    md = render(compute(d))
    assert "no longer in it" not in md
    assert "3 trials have results (3 complete) of the 4 the config plans" in md
    assert "1 of 4 planned trials have no results yet" in md


def test_gradient_reach_with_a_lag_and_two_read_outs_draws_last_at_every_lag(tmp_path):
    d = tmp_path / "r"
    points = [("rnn", "none", 8, 1e-3, s) for s in (0, 1)]
    axes = {"cell": ["rnn"], "lag": [0, 4], "model.readout": ["last", "last_valid"], "seed": [0, 1]}
    write_results(d, points[:0], grid_axes=axes)
    for lag in (0, 4):
        for readout in ("last", "last_valid"):
            for p in points:
                tables = trial_tables(*p, extra={"lag": lag, "readout": readout})
                write_trial(d, tables["runs"]["trial_id"].iloc[0], tables)
    data = compute(d)
    assert "lag" in data.varying
    figs = {d.name: (d.figure, d.caption) for d in build_figures(data).figures}
    fig, caption = figs["gradient_reach"]
    assert caption.rstrip().endswith("Read-out `last` only (the others read a different position per text).")
    labels = {line.get_label() for ax in fig.axes for line in ax.get_lines()}
    # one line per lag in each panel (both phases), every one from the `last` runs
    assert sorted({lbl for lbl in labels if not lbl.startswith("_")}) == ["lag 0", "lag 4"]  # what varies
    plt.close("all")


def test_report_with_one_fixed_lag_names_the_lag_as_the_distance(tmp_path):
    points = grid(cells=("rnn", "lstm"), lns=("none",), pads=(8,), seeds=(0, 1))
    d = write_results(tmp_path / "r", points[:0], grid_axes={"cell": ["rnn", "lstm"], "seed": [0, 1]})
    for p in points:
        tables = trial_tables(*p, extra={"lag": 4})
        write_trial(d, tables["runs"]["trial_id"].iloc[0], tables)
    md = write_report(d).read_text(encoding="utf-8")       # the survival panels used to look for a lag key
    assert "(lag 4), and how fast?" in md.split("## Findings")[0]  # the opening names the fixed distance
    assert (d / "figures" / "survival.png").is_file()


def test_write_report_on_a_damaged_config_yaml_is_a_config_error_naming_it(smoke_run, tmp_path):
    """Called directly (not through the CLI), a config.yaml that is not UTF-8 is a ConfigError that names
    the file and how to recover, not a UnicodeDecodeError."""
    import shutil

    from harness.config import ConfigError

    d = tmp_path / "copy"
    shutil.copytree(smoke_run, d)
    (d / "config.yaml").write_bytes(b"\xff\xfe name: x\n")
    with pytest.raises(ConfigError, match=r"config\.yaml is not UTF-8"):
        write_report(d)
