"""Each figure function on small hand-made tables: the expected panels and lines, nothing saved."""

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from report_tables import grid, results_tables

from harness.report import figures, stats
from harness.report import outcomes as O

matplotlib.use("Agg")

KEYS = ["cell", "layernorm", "pad_size", "batch_size", "lr"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def tables():
    points = grid(pads=(8, 16), lrs=(1e-3, 1e-2), seeds=(0, 1))
    statuses = {("rnn", "none", 16, 1e-2, 1): "diverged", ("lstm", "output", 8, 1e-3, 0): "failed"}
    t = results_tables(points, statuses)
    t["runs"] = stats.prepare_runs(t["runs"])
    return t


def visible(axes):
    return [ax for ax in axes.flat if ax.get_visible()]


def labelled_lines(ax):
    return [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def test_frontier_one_panel_per_lr_one_line_per_cell_and_layernorm(tables):
    summary = stats.summarize(tables["runs"], KEYS)
    fig, axes = figures.frontier(summary, ["lr"], chance=0.25)
    panels = visible(axes)
    assert len(panels) == 2
    for ax in panels:
        assert len(labelled_lines(ax)) == 4
        assert ax.get_xlabel().startswith("pad_size")
    # chance drawn in every panel; the diverged and the failed run drawn as markers, not dropped
    assert all(any(ln.get_label() == "_chance" for ln in ax.get_lines()) for ax in panels)
    assert sum(ln.get_label() == "_fail" for ax in panels for ln in ax.get_lines()) == 2
    assert fig.legends


def test_heatmap_one_panel_per_cell_and_layernorm_with_numbers(tables):
    summary = stats.summarize(tables["runs"], KEYS)
    fig, axes = figures.heatmaps(summary, ["pad_size"], "lr", chance=0.25)
    panels = visible(axes)
    assert len(panels) == 4
    for ax in panels:
        assert len(ax.images) == 1
        assert len(ax.texts) == 4  # 2 pad sizes × 2 learning rates
    assert any("✕" in t.get_text() for ax in panels for t in ax.texts)


def test_training_curves_rows_per_pad_and_cells_side_by_side(tables):
    runs = stats.best_settings(tables["runs"], KEYS)
    by = ["cell", "layernorm", "pad_size"]
    loss = stats.curve_bands(tables["curves"], runs, by, "step", "dev_loss")
    acc = stats.curve_bands(tables["curves"], runs, by, "step", "dev_acc")
    fig, axes = figures.training_curves(loss, acc, "step", target=0.5, chance=0.25)
    assert axes.shape == (2, 4)  # pad sizes × (loss, acc) × (rnn, lstm)
    for ax in axes.flat:
        assert len(labelled_lines(ax)) == 2  # layernorm none and output overlaid
    assert "rnn" in axes[0, 0].get_title() and "lstm" in axes[0, 1].get_title()
    assert axes[0, 0].collections  # the seed band


def test_gradient_reach_start_and_end_per_cell(tables):
    reach = stats.reach_table(tables["grad_time"], stats.best_settings(tables["runs"], KEYS))
    fig, axes = figures.gradient_reach(reach)
    assert axes.shape == (2, 2)
    for ax in axes.flat:
        assert ax.get_yscale() == "log"
        assert len(labelled_lines(ax)) == 4  # 2 layernorms × 2 pad sizes


def test_gradient_reach_marks_underflow_on_the_floor_not_at_a_made_up_value(tables):
    g = tables["grad_time"].copy()
    rnn16 = g["trial_id"].str.startswith("rnn-none-16-") & (g["layer"] == "input")
    g.loc[rnn16 & (g["position"] < 3), "grad_norm"] = 0.0          # every seed: distances 13-15
    g.loc[rnn16 & (g["position"] == 3) & g["trial_id"].str.endswith("-0"), "grad_norm"] = 0.0  # one seed
    reach = stats.reach_table(g, stats.best_settings(tables["runs"], KEYS))
    fig, axes = figures.gradient_reach(reach)
    ax = axes[0, 0]                                                 # rnn at step 0
    floor = ax.get_ylim()[0]
    every = [ln for ln in ax.get_lines() if ln.get_label() == "_underflow_all"]
    some = [ln for ln in ax.get_lines() if ln.get_label() == "_underflow_some"]
    assert every and sorted(every[0].get_xdata()) == [13, 14, 15]
    assert all(y == pytest.approx(floor) for y in every[0].get_ydata())
    assert some and list(some[0].get_xdata()) == [12]
    real = min(min(ln.get_ydata()) for ax_ in axes.flat for ln in labelled_lines(ax_))
    assert floor < real and real > 1e-10                            # no line at a clipped 1e-30
    assert any("underflow" in t.get_text() for t in fig.legends[0].get_texts())


def test_survival_curves_per_panel_with_censored_marks(tables):
    out = O.run_outcomes(tables["runs"], tables["curves"])
    curves, marks = O.km_curves(out, KEYS)
    fig, axes = figures.survival(curves, marks, ["pad_size", "lr"])
    panels = visible(axes)
    assert len(panels) == 4                                          # 2 pad sizes x 2 learning rates
    # laid out by factor: pad sizes across, learning rates down
    assert [ax.get_title().split("\n")[0] for ax in axes.flat] == ["pad_size=8, lr=0.001", "pad_size=16, lr=0.001",
                                                                   "pad_size=8, lr=0.01", "pad_size=16, lr=0.01"]
    lstm = [ln for ln in labelled_lines(panels[0]) if ln.get_label().startswith("lstm")]
    assert lstm and max(lstm[0].get_ydata()) == 1.0                  # every lstm run reached the target
    n_marks = sum(len(ln.get_xdata()) for ax in panels for ln in ax.get_lines() if ln.get_label() == "_censored")
    assert n_marks == len(marks) == int(((out["reached"] == 0)).sum())


def test_frontier_fit_rates_with_intervals_and_d50(tables):
    out = O.run_outcomes(tables["runs"], tables["curves"])
    fits = O.frontier_fits(out, ["cell", "layernorm", "pad_size", "lr"], n_boot=50)
    fig, axes = figures.frontier_fit(fits, distance="pad_size")
    panels = visible(axes)
    assert len(panels) == 2                                          # one per learning rate
    assert all(ax.get_xscale() == "function" for ax in panels)
    assert sum(len(ax.containers) for ax in panels) == len(fits)    # one error-bar set per group
    assert fig.legends


def test_weights_moving_groups_and_layernorm(tables):
    chosen = stats.best_settings(tables["runs"], KEYS)
    t = stats.group_norm_table(tables["grad_norms"], chosen[chosen["pad_size"] == 16])
    fig, axes = figures.weights_moving(t)
    assert axes.shape == (2, 2)
    for ax in axes.flat:
        assert ax.get_yscale() == "log"
        assert len(labelled_lines(ax)) == 4 + 5  # 4 groups without LN, 5 with (its norm group)


def test_convergence_one_panel_per_pad_and_censored_runs_kept(tables):
    conv = stats.convergence_table(O.run_outcomes(tables["runs"], tables["curves"]), KEYS)
    assert len(conv) == len(tables["runs"])  # nothing dropped, failed included
    fig, axes = figures.convergence(conv, ["cell", "layernorm", "lr"], target=0.5)
    assert len(visible(axes)) == 2
    ax = axes[0, 0]
    assert len(ax.get_yticklabels()) == 8  # cell × layernorm × lr
    n_points = sum(len(c.get_offsets()) for ax in visible(axes) for c in ax.collections
                   if hasattr(c, "get_offsets"))
    assert n_points == len(conv)


def test_confusion_matrices_labelled_with_class_names(tables):
    best = stats.best_trials(tables["runs"])
    items = [(f"{r.cell}/{r.layernorm}", r.cell, stats.confusion_matrix(tables["confusion"], r.trial_id))
             for r in best.itertuples()]
    fig, axes = figures.confusion_matrices(items)
    panels = visible(axes)
    assert len(panels) == 4
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["finance", "realty", "stocks", "sports"]


def test_figures_draw_with_no_rows():
    empty = stats.summarize(stats.prepare_runs(results_tables([])["runs"]), KEYS)
    fig, axes = figures.frontier(empty)
    assert axes.size == 1


def test_survival_panels_have_their_own_step_axes_and_name_who_never_reached():
    # lag 8: every run reaches the target by step 50; lag 32: the LSTM by step 3000, the RNN never
    rows = [("lstm", 8, [(0, 0.0), (50, 1.0)]), ("rnn", 8, [(0, 0.0), (50, 1.0)]),
            ("lstm", 32, [(0, 0.0), (2000, 0.5), (3000, 1.0)]), ("rnn", 32, [(0, 0.0), (3000, 0.0)])]
    curves = pd.DataFrame([{"cell": c, "layernorm": "none", "lag": lag, "time": t, "share": y, "n": 3}
                           for c, lag, pts in rows for t, y in pts])
    marks = pd.DataFrame([{"cell": "rnn", "layernorm": "none", "lag": 32, "time": 3000.0, "share": 0.0}])
    fig, axes = figures.survival(curves, marks, ["lag"])
    short, long_ = visible(axes)
    assert short.get_xlim()[1] < 100 < 2000 < long_.get_xlim()[1]   # not one shared 0-3000 axis
    assert short.get_title() == "lag=8"
    assert long_.get_title() == "lag=32\nnever reached: rnn 0/3"     # in the title, not on a curve
    assert not any(ax.texts for ax in axes.flat)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == ["rnn", "lstm"] and not any("LN" in t for t in legend)  # layernorm does not vary


def test_legends_name_only_what_varies(tables):
    runs = tables["runs"]
    one_ln = runs[runs["layernorm"] == "none"]
    summary = stats.summarize(one_ln, KEYS)
    fig, _ = figures.frontier(summary, ["lr"], chance=0.25)
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == ["rnn", "lstm"]
    lstm = stats.summarize(one_ln[one_ln["cell"] == "lstm"], KEYS)
    fig, axes = figures.heatmaps(lstm, ["pad_size"], "lr")
    assert visible(axes)[0].get_title() == ""                     # one panel: nothing to tell apart
    fig, _ = figures.frontier(stats.summarize(runs, KEYS), ["lr"])
    assert "rnn, LN output" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_factor_panels_put_the_first_factor_across_and_the_others_down():
    df = pd.DataFrame({"lag": [0, 8, 0, 8, 32], "readout": ["last", "last", "mean", "mean", "mean"]})
    nrows, ncols, panels = figures._factor_panels(df, ["lag", "readout"])
    assert (nrows, ncols) == (2, 3)
    assert [(i, t) for i, t, _ in panels] == [(0, "lag=0, readout=last"), (1, "lag=8, readout=last"),
                                              (3, "lag=0, readout=mean"), (4, "lag=8, readout=mean"),
                                              (5, "lag=32, readout=mean")]
