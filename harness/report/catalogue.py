"""The report's figures as one table: each `FigureEntry` names a figure (its file, figures/<name>.png
and .svg), gives its one-line title (the figure's title and the report's heading), its caption, when
it is drawn (`needs`: predicates on the loaded results, each with the reason it gives when it fails)
and the function that builds it (a matplotlib Figure, from the `ReportData` alone). The report draws
every entry whose needs hold, in the table's order, and nothing else.

What a figure needs follows the question the results ask (`harness.report.question`): the frontier
figures only where a distance (pad_size or lag) varies over two or more values, the learning-rate
figures only where the learning rate varies; a figure that does not fit the question is left out
without a note (`Need.quiet`), one the data cannot draw yet is left out with one.

Search studies (`study:`) add Optuna's plots per study, from `harness.report.study.STUDY_FIGURES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import pandas as pd
from matplotlib.figure import Figure

from harness.report import figures, stats
from harness.report import outcomes as O
from harness.report import targets as T
from harness.report.fmt import fmt_setting, fmt_value

if TYPE_CHECKING:
    from harness.report.data import ReportData

__all__ = ["CATALOGUE", "FigureEntry", "Need", "Drawn", "entry", "draw", "figure_names"]


class Drawn(NamedTuple):
    """A figure the report drew: its file name (no suffix), the figure, its caption and title."""

    name: str
    figure: Any
    caption: str
    title: str


@dataclass(frozen=True)
class Need:
    """One condition a figure needs, with the reason the report gives when it fails; a `quiet` need
    is part of the question (a frontier needs a varying distance): failing, it leaves no note."""

    check: Callable[[ReportData], bool]
    reason: str | Callable[[ReportData], str]
    quiet: bool = False

    def why(self, data: ReportData) -> str:
        return self.reason(data) if callable(self.reason) else self.reason


@dataclass(frozen=True)
class FigureEntry:
    """One figure of the report: name (file), title (one line; '{distance}' is filled in), caption,
    needs (all must hold for it to be drawn) and build (the figure, from the report's data)."""

    name: str
    title: str
    caption: Callable[[ReportData], str]
    needs: tuple[Need, ...]
    build: Callable[[ReportData], Figure]

    def when(self, data: ReportData) -> bool:
        """Whether the report draws this figure for `data`."""
        return all(n.check(data) for n in self.needs)

    def missing(self, data: ReportData) -> Need | None:
        """The first need that fails, or None when the figure is drawn."""
        return next((n for n in self.needs if not n.check(data)), None)

    def heading(self, data: ReportData) -> str:
        return self.title.format(distance=data.question.distance)


# ----------------------------------------------------------------------------- what the data give

def _distance(data: ReportData) -> str:
    return data.question.distance


def _others(data: ReportData) -> list[str]:
    """The varied factors a figure shows as panels (or chooses the best of): not the group, the
    layernorm (line style) or the distance."""
    return [k for k in data.varying if k not in (data.group, "layernorm", _distance(data))]


def _by(data: ReportData) -> list[str]:
    """What the curve and gradient figures keep apart: group, layernorm and the distance."""
    return [data.group, "layernorm", _distance(data)]


def _chosen(data: ReportData) -> pd.DataFrame:
    """The runs of the best setting (on dev data) of the other factors, per group × layernorm × distance."""
    return stats.best_settings(data.runs, data.keys, by=[k for k in _by(data) if k in data.runs.columns])


def _choice_note(data: ReportData) -> str:
    others = _others(data)
    if not others:
        return ""
    return (f"Each line shows the {' × '.join(others)} setting with the best mean dev accuracy for its "
            f"{data.group}, layernorm and {_distance(data)} (chosen on dev data only, never on test).")


def _lines(data: ReportData, what: str = "line") -> str:
    """'one line per arm', 'one line per cell × layernorm', or '' when every line is one group."""
    by = data.question.lines_by
    return f"one {what} per {by}" if by else ""


def _panels(keys: Sequence[str]) -> str:
    return f" One panel per {' × '.join(keys)}." if keys else ""


def _varies(key: str) -> Callable[[ReportData], bool]:
    return lambda d: key in d.varying


def _frontier(data: ReportData) -> bool:
    return data.question.has_frontier


def _no_frontier(data: ReportData) -> bool:
    return not data.question.has_frontier


FRONTIER = Need(_frontier, "no distance (pad_size or lag) varies", quiet=True)
LR_VARIES = Need(_varies("lr"), "the learning rate does not vary", quiet=True)
OUTCOMES = Need(lambda d: bool(d.outcomes["reached"].notna().any()) if "reached" in d.outcomes else False,
                "no run has an outcome yet")


# ----------------------------------------------------------------------------- 1. outcomes

def _frontier_fit_caption(data: ReportData) -> str:
    dist, lines = _distance(data), _lines(data)
    return (f"Share of runs that reached the target dev accuracy against the distance ({dist})"
            + (f", {lines}" if lines else "") + ", with Wilson 95% intervals; the curve is the logistic fit in "
            "log(1 + D) and the ◆ on the 0.5 line its D50 with a bootstrap interval (somewhat optimistic at few "
            "seeds per distance); a wide pale bar is a bracket where the outcomes split perfectly (no finite fit)."
            + _panels(_others(data)) + (" pad_size mixes the padding distance with truncation." if dist == "pad_size"
                                         else ""))


def _targets(data: ReportData) -> Figure:
    tf = T.of(data)
    return figures.frontier_targets(tf.d50s, tf.group, distance=tf.distance, by=tf.selection.by,
                                    distances=sorted(tf.points[tf.distance].unique()),
                                    headline_target=tf.headline_target)[0]


def _targets_caption(data: ReportData) -> str:
    tf = T.of(data)
    budget = f"{tf.budget:,} steps" if tf.budget is not None else "the budget"
    cap = (f" The runs stopped at the first evaluation that reached {tf.capped:g} (`train.stop_at_target`), so no "
           "higher target is drawn." if tf.capped is not None and tf.capped < tf.ceiling else "")
    head = "" if tf.headline_target is None else f"; the dashed line is the headline's target {tf.headline_target:g}"
    return (f"D50 against the target dev accuracy, one line per {tf.group}: a run counts as reaching a target when its "
            f"best dev accuracy within {budget} is at least that target, and D50 is fitted at each target as for the "
            "headline (a dot with its bootstrap interval; a pale vertical span is a bracket where the outcomes "
            "separate; ▲ / ▼: every / no run reached it at every distance)" + head + f". Targets from chance + "
            f"{T.ABOVE_CHANCE:g} to {tf.targets[-1]:.3g}." + cap + _panels(tf.selection.by))


def _has_targets(data: ReportData) -> bool:
    tf = T.of(data)
    return tf is not None and len(tf.d50s) > 0


def _survival_keys(data: ReportData) -> list[str]:
    return [_distance(data)] * data.question.has_frontier + _others(data)


def _survival(data: ReportData) -> Figure:
    curves, marks = O.km_curves(data.outcomes, data.keys)
    return figures.survival(curves, marks, _survival_keys(data))[0]


def _survival_caption(data: ReportData) -> str:
    keys = _survival_keys(data)
    lines = _lines(data)
    return ("Kaplan–Meier curves of time to target: the share of a configuration's runs that had reached the "
            "target dev accuracy by each step" + (f" ({lines})" if lines else "") + ", each run censored at its "
            "own last evaluated step (+); a diverged run never reaches it and stays in until the end."
            + (f" One panel per {' × '.join(keys)}, each with its own step axis; a group that never reached the "
               "target is named in its panel's title." if keys else
               " A group that never reached the target is named in the title."))


# ----------------------------------------------------------------------------- 2. accuracy

def _accuracy_caption(data: ReportData, x: str) -> str:
    lines = _lines(data)
    panels = [k for k in _others(data) if k != x] + [_distance(data)] * (x == "lr" and data.question.has_frontier)
    return (f"Test accuracy against {'the learning rate' if x == 'lr' else x}" + (f", {lines}" if lines else "")
            + ": the mean over seeds with a band from the lowest to the highest seed (a description of the runs, "
            "not a confidence interval: the accuracies are bimodal, so read success and time to target above); "
            "the dashed grey line is chance. ✕ on the axis marks configurations with diverged or failed runs "
            "(their count beside it)." + _panels(panels))


def _heat_rows(data: ReportData) -> list[str]:
    return [k for k in data.keys if k not in (data.group, "layernorm", "lr") and k in data.varying]


def _heatmap_caption(data: ReportData) -> str:
    panels = _lines(data, "panel")
    return (f"Mean test accuracy over {' × '.join(_heat_rows(data))} (rows) and learning rate (columns)"
            + (f", {panels}" if panels else "") + "; (n✕) counts diverged/failed runs, 'div.' a setting where "
            "every run diverged.")


# ----------------------------------------------------------------------------- 3. curves

def _curve_rows(data: ReportData) -> str:
    """What the curve figure's rows show: the distance where it varies, else the one other factor
    that does (a learning-rate study: a row per learning rate), else the (fixed) distance."""
    others = _others(data)
    return others[0] if not data.question.has_frontier and len(others) == 1 else _distance(data)


def _curve_runs(data: ReportData) -> pd.DataFrame:
    by = [k for k in (data.group, "layernorm", _curve_rows(data)) if k in data.runs.columns]
    return stats.best_settings(data.runs, data.keys, by=by)


def _curves(data: ReportData, x: str) -> Figure:
    curves, chosen, rows = data.tables["curves"], _curve_runs(data), _curve_rows(data)
    by = [data.group, "layernorm", rows]
    return figures.training_curves(stats.curve_bands(curves, chosen, by, x, "dev_loss"),
                                   stats.curve_bands(curves, chosen, by, x, "dev_acc"), x, target=data.target,
                                   chance=data.chance, row_key=rows)[0]


def _curves_caption(data: ReportData, x: str) -> str:
    q, rows = data.question, _curve_rows(data)
    parts = [f"one row per {rows}"] * (rows in data.varying) + [f"{q.group}s side by side"] * q.compares_groups
    parts += ["layernorm by line style"] * (len(q.layernorms) > 1)
    others = [k for k in _others(data) if k != rows]
    note = (f"Each line shows the {' × '.join(others)} setting with the best mean dev accuracy for its {q.group}, "
            f"layernorm and {rows} (chosen on dev data only, never on test)." if others else "")
    return (f"Dev loss (left columns) and dev accuracy (right columns) against "
            f"{'step' if x == 'step' else 'samples seen'}" + "".join(f", {p}" for p in parts)
            + f"; band: min–max over seeds. {note}").strip()


CURVES = Need(lambda d: len(d.tables["curves"]) > 0 and len(_curve_runs(d)) > 0, "no evaluation points recorded yet")


# ----------------------------------------------------------------------------- 4. gradients

def _reach_choice(data: ReportData) -> tuple[pd.DataFrame, str | None, str]:
    """The runs the gradient-reach figure shows, their read-out (None when several) and the note
    on how they were chosen."""
    runs = data.runs
    readout = _single_str(runs, "readout")
    only_last = readout is None and "readout" in runs.columns and bool((runs["readout"] == "last").any())
    if not (only_last or "lag" in data.varying):
        return _chosen(data), readout, _choice_note(data)
    # Distance from the read-out is defined for `last` alone (the others read a different position
    # per text), and each lag is a sequence layout of its own: one line per lag, `last` only.
    sub = runs[runs["readout"] == "last"] if only_last else runs
    by = (data.group, "layernorm", "pad_size") + (("lag",) if "lag" in data.varying else ())
    others = [k for k in data.varying if k not in (*by, "readout", "model.readout")]
    note = ("Read-out `last` only (the others read a different position per text). " if only_last else "") + (
        f"Each line shows the {' × '.join(others)} setting with the best mean dev accuracy for its {data.group}, "
        "layernorm and layout (chosen on dev data only, never on test)." if others else "")
    return stats.best_settings(sub, data.keys, by=by), _single_str(sub, "readout"), note


def _reach_table(data: ReportData) -> pd.DataFrame:
    return stats.reach_table(data.tables["grad_time"], _reach_choice(data)[0])


def _reach(data: ReportData) -> Figure:
    readout = _reach_choice(data)[1]
    return figures.gradient_reach(_reach_table(data), xlabel="distance from the read-out position (tokens)"
                                  if readout == "last" else "input position (read-out position varies per text)")[0]


def _reach_caption(data: ReportData) -> str:
    return ("‖∂L/∂x_t‖ (mean over the probe batch, geometric mean over seeds) for the embedding output, against "
            "distance from the position the classifier reads (x = 0), at step 0 and at the end of training; a "
            "steep fall means the gradient vanishes on the way. A gradient that underflowed to exactly 0 (below "
            "1e-38) is never clipped to a made-up value: ▼ on the axis floor where every seed's did, ○ where some "
            "seeds' did (the line then shows the others). " + _reach_choice(data)[2]).strip()


def _longest(data: ReportData) -> object:
    return data.runs[_distance(data)].max()


def _norms_table(data: ReportData) -> pd.DataFrame:
    chosen = _chosen(data)
    return stats.group_norm_table(data.tables["grad_norms"], chosen[chosen[_distance(data)] == _longest(data)])


def _norms_caption(data: ReportData) -> str:
    return (f"Per parameter group, gradient norm and update ratio ‖Δθ‖/‖θ‖ against step at "
            f"{_distance(data)} {fmt_value(_longest(data))} (the longest; geometric mean over seeds). "
            f"{_choice_note(data)}").strip()


# ----------------------------------------------------------------------------- 5. convergence, confusion

def _convergence_x(data: ReportData) -> str:
    return "samples" if "batch_size" in data.varying else "steps"


def _convergence_rows(data: ReportData) -> list[str]:
    return [k for k in data.varying if k != _distance(data)] or [data.group]


def _convergence(data: ReportData) -> Figure:
    conv = stats.convergence_table(data.outcomes, data.keys)
    return figures.convergence(conv, _convergence_rows(data), x=_convergence_x(data), target=data.target,
                               panel_key=_distance(data))[0]


def _convergence_caption(data: ReportData) -> str:
    if data.target is None:
        return "Steps to target per run."
    what = "Samples" if _convergence_x(data) == "samples" else "Steps"
    panels = f" (one panel per {_distance(data)})" if data.question.has_frontier else ""
    return (f"{what} to the target dev accuracy {data.target:g} per run{panels}; runs that never reached it sit in "
            "the grey zone right of every budget (censored), diverged runs as ✕ (failed: hollow ✕); the black bar "
            "is the Kaplan–Meier median (each run censored at its own last evaluated step; in the grey zone when "
            "fewer than half reached it).")


def _confusion_items(data: ReportData) -> list[tuple[str, str, pd.DataFrame]]:
    """(panel title, group, matrix) of the best trial on dev data per group × layernorm."""
    q, items = data.question, []
    for _, r in stats.best_trials(data.runs).iterrows():
        m = stats.confusion_matrix(data.tables["confusion"], r["trial_id"])
        if not len(m):
            continue
        head = figures.series_label(r[data.group], r["layernorm"], q.groups, q.layernorms)
        extra = ", ".join(fmt_setting(k, r[k]) for k in data.varying if k not in (data.group, "layernorm"))
        items.append((f"{head}: dev acc {r['best_dev_acc']:.3f}, test acc {r['test_acc']:.3f}\n"
                      f"{extra}{', ' if extra else ''}seed {int(r['seed'])}", r[data.group], m))
    return items


def _confusion_caption(data: ReportData) -> str:
    by = data.question.lines_by
    return (f"Confusion matrices (test set) of the trial with the best dev accuracy{f' for each {by}' if by else ''} "
            "(chosen on dev data only, never on test); colour: share of the true class, numbers: counts.")


def _single_str(runs: pd.DataFrame, col: str) -> str | None:
    if col not in runs.columns:
        return "last"
    v = runs[col].dropna().unique()
    return str(v[0]) if len(v) == 1 else None


# ----------------------------------------------------------------------------- the catalogue

CATALOGUE: tuple[FigureEntry, ...] = (
    FigureEntry("frontier_fit", "Success against {distance}, with D50", _frontier_fit_caption,
                (FRONTIER, Need(lambda d: bool(d.fits), "no run has an outcome yet")),
                lambda d: figures.frontier_fit(d.fits, distance=_distance(d))[0]),
    FigureEntry("frontier_targets", "D50 at every target dev accuracy", _targets_caption,
                (FRONTIER, Need(_has_targets, "no run has a best dev accuracy above chance yet, or chance is unknown")),
                _targets),
    FigureEntry("survival", "Time to target (Kaplan–Meier)", _survival_caption, (OUTCOMES,), _survival),
    FigureEntry("frontier", "Test accuracy against {distance}", lambda d: _accuracy_caption(d, _distance(d)),
                (FRONTIER,),
                lambda d: figures.frontier(d.summary, _others(d), d.chance, x=_distance(d))[0]),
    FigureEntry("accuracy_lr", "Test accuracy against the learning rate", lambda d: _accuracy_caption(d, "lr"),
                (LR_VARIES, Need(_no_frontier, "a distance varies: the heatmap shows the learning rate", quiet=True)),
                lambda d: figures.frontier(d.summary, [k for k in _others(d) if k != "lr"], d.chance, x="lr")[0]),
    FigureEntry("heatmap", "Test accuracy by learning rate", _heatmap_caption,
                (LR_VARIES, Need(lambda d: bool(_heat_rows(d)), "only the learning rate varies", quiet=True)),
                lambda d: figures.heatmaps(d.summary, _heat_rows(d), "lr", d.chance)[0]),
    FigureEntry("curves_step", "Training curves against step", lambda d: _curves_caption(d, "step"), (CURVES,),
                lambda d: _curves(d, "step")),
    FigureEntry("curves_samples", "Training curves against samples seen",
                lambda d: _curves_caption(d, "samples_seen"),
                (CURVES, Need(_varies("batch_size"),
                              "batch_size does not vary, so it is the step figure with the x axis rescaled")),
                lambda d: _curves(d, "samples_seen")),
    FigureEntry("gradient_reach", "Gradient reach from the read-out position", _reach_caption,
                (Need(lambda d: len(_reach_table(d)) > 0, "no gradient probe recorded yet"),), _reach),
    FigureEntry("weights_moving", "Are the weights moving?", _norms_caption,
                (Need(lambda d: len(_norms_table(d)) > 0, "no gradient norms recorded yet"),),
                lambda d: figures.weights_moving(_norms_table(d))[0]),
    FigureEntry("convergence", "Convergence speed per run", _convergence_caption,
                (Need(lambda d: len(stats.convergence_table(d.outcomes, d.keys)) > 0, "no run has trained yet"),),
                _convergence),
    FigureEntry("confusion", "Confusion matrices (test set)", _confusion_caption,
                (Need(lambda d: bool(_confusion_items(d)), "no trial has a confusion table yet"),),
                lambda d: figures.confusion_matrices(_confusion_items(d))[0]),
)


def entry(name: str) -> FigureEntry:
    """The catalogue's entry called `name`."""
    return next(e for e in CATALOGUE if e.name == name)


def figure_names() -> tuple[str, ...]:
    return tuple(e.name for e in CATALOGUE)


def draw(e: FigureEntry, data: ReportData) -> Drawn:
    """Build entry `e`'s figure for `data` in the report's style, titled with its one-line title."""
    title = e.heading(data)
    with figures.style():
        fig = e.build(data)
        fig.suptitle(title)
    return Drawn(e.name, fig, e.caption(data), title)
