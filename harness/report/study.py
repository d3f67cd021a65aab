"""The report's study section: for each search study, Optuna's own plots (history, importance by
Optuna's default evaluator and by fANOVA, parallel coordinates, the Pareto front for several
objectives) and a table of each study's best setting — the per-factor "best learning rate" table."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from harness.config import ExperimentConfig, short_axis_name
from harness.report.catalogue import Drawn


def optuna_figure(fn: Any, *args: Any, **kw: Any) -> plt.Figure | None:
    """One of optuna.visualization.matplotlib's plots as a figure, or None when Optuna cannot draw it."""
    try:
        with warnings.catch_warnings(), plt.rc_context():
            warnings.simplefilter("ignore")
            ax = fn(*args, **kw)
            ax0 = np.asarray(ax).flat[0] if isinstance(ax, np.ndarray) else ax
            fig = ax0.figure
            fig.set_size_inches(9, 5)
            fig.set_layout_engine("tight")
            return fig
    except Exception:  # too few trials, one parameter, ...: the report says it is missing
        return None


@dataclass(frozen=True)
class StudyFigure:
    """One of Optuna's plots of a search study, drawn once per study (or, `per_metric`, once per
    objective): file name study_<kind>_<slug> (kind_<metric> per metric), title and caption ('{label}'
    the study, '{metric}' the objective, '{metrics}' all of them), when it is drawn (on the number of
    objectives) and how (from the study, the objectives' metrics and the metric's index)."""

    kind: str
    title: str
    caption: str
    when: Callable[[int], bool]
    build: Callable[[optuna.Study, list[str], int], plt.Figure | None]
    per_metric: bool = False


def _ovm(name: str) -> Callable[..., Any]:
    """optuna.visualization.matplotlib's plot function `name` (imported when a study is drawn)."""
    from optuna.visualization import matplotlib as ovm  # a heavy submodule: only when a plot is drawn

    return getattr(ovm, name)


def _importance(study: optuna.Study, metrics: list[str], i: int, fanova: bool = False) -> plt.Figure | None:
    """Optuna's importance plot for objective i: Optuna's default evaluator, or fANOVA."""
    kw: dict[str, Any] = {}
    if fanova:
        from optuna.importance import FanovaImportanceEvaluator  # a heavy submodule: only for importances

        kw["evaluator"] = FanovaImportanceEvaluator(seed=0)
    if len(metrics) > 1:
        kw["target"] = lambda t: t.values[i]
    return optuna_figure(_ovm("plot_param_importances"), study, target_name=metrics[i], **kw)


def _one(n: int) -> bool:
    return n == 1


def _several(n: int) -> bool:
    return n > 1


STUDY_FIGURES: tuple[StudyFigure, ...] = (
    StudyFigure("history", "Optimisation history ({label})",
                "Optimisation history ({label}): {metric} of each trial and the best so far.", _one,
                lambda st, m, i: optuna_figure(_ovm("plot_optimization_history"), st, target_name=m[i])),
    StudyFigure("importance", "Hyperparameter importance ({label})",
                "Hyperparameter importance for {metric} ({label}), Optuna's default evaluator.", _one,
                _importance),
    StudyFigure("fanova", "Hyperparameter importance, fANOVA ({label})",
                "Hyperparameter importance for {metric} ({label}), fANOVA.", _one,
                lambda st, m, i: _importance(st, m, i, fanova=True)),
    StudyFigure("parallel", "Parallel coordinates ({label})", "Parallel coordinates of the sampled settings ({label}).",
                _one, lambda st, m, i: optuna_figure(_ovm("plot_parallel_coordinate"), st, target_name=m[i])),
    StudyFigure("pareto", "Pareto front ({label})",
                "Pareto front of {metrics} ({label}); trials that never reached the target count as the worst "
                "value.", _several, lambda st, m, i: optuna_figure(_ovm("plot_pareto_front"), st, target_names=m)),
    StudyFigure("importance", "Hyperparameter importance for {metric} ({label})",
                "Hyperparameter importance for {metric} ({label}), Optuna's default evaluator.", _several,
                _importance, per_metric=True),
)


def study_figures(study: optuna.Study, cfg: ExperimentConfig, slug: str, label: str) -> list[Drawn]:
    """The figures of `STUDY_FIGURES` one search study can show, each with its file name, caption and
    title; a plot Optuna cannot draw (too few trials, one parameter) is left out."""
    metrics = [o.metric for o in cfg.study.objectives]
    out: list[Drawn] = []
    for f in STUDY_FIGURES:
        if not f.when(len(metrics)):
            continue
        for i in range(len(metrics)) if f.per_metric else [0]:
            words = {"label": label, "metric": metrics[i], "metrics": " vs ".join(metrics)}
            fig = f.build(study, metrics, i)
            if fig is None:
                continue
            title = f.title.format(**words)
            fig.axes[0].set_title(title)
            kind = f"{f.kind}_{metrics[i]}" if f.per_metric else f.kind
            out.append(Drawn(f"study_{kind}_{slug}", fig, f.caption.format(**words), title))
    return out


def best_table(studies: dict[str, optuna.Study], labels: dict[str, str], cfg: ExperimentConfig
               ) -> pd.DataFrame:
    """One row per search study: its best setting and value, trials by state, and what pruning saved."""
    rows = []
    metric = cfg.study.objectives[0]
    for name, study in studies.items():
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                or t.user_attrs.get("status") in ("failed", "diverged")]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        pruned = [t for t in trials if t.state == TrialState.PRUNED]
        row: dict[str, Any] = {"study": labels[name], "trials": len(done), "complete": len(complete),
                               "pruned": len(pruned)}
        if complete:
            sign = 1 if metric.direction == "maximize" else -1
            best = max(complete, key=lambda t: sign * t.values[0])
            for key in cfg.study.params:
                v = best.params.get(short_axis_name(key))
                row[f"best {short_axis_name(key)}"] = f"{v:.3g}" if isinstance(v, float) else v
            row[f"best {metric.metric}"] = f"{best.values[0]:.3f}" if math.isfinite(best.values[0]) else "—"
            # Pruned trials stopped early: the steps they did not train, against a full trial's steps.
            full = np.median([t.user_attrs.get("steps", 0) or 0 for t in complete if "steps" in t.user_attrs]
                             or [0])
            if pruned and full:
                saved = sum(max(full - (t.last_step or 0), 0) for t in pruned)
                row["steps saved by pruning"] = f"{saved:.0f} ({saved / (full * len(done)):.0%})"
        rows.append(row)
    return pd.DataFrame(rows)
