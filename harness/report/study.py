"""The report's study section: for each search study, Optuna's own plots (history, importance by
Optuna's default evaluator and by fANOVA, parallel coordinates, the Pareto front for several
objectives) and a table of each study's best setting — the per-factor "best learning rate" table."""

from __future__ import annotations

import math
import warnings
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from harness.config import ExperimentConfig, short_axis_name


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


def study_figures(study: optuna.Study, cfg: ExperimentConfig, slug: str, label: str
                  ) -> list[tuple[str, plt.Figure, str]]:
    """Figures for one search study, each with its caption."""
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization import matplotlib as ovm

    metrics = [o.metric for o in cfg.study.objectives]
    out: list[tuple[str, Any, str]] = []
    if len(metrics) == 1:
        candidates = [
            ("history", lambda: optuna_figure(ovm.plot_optimization_history, study, target_name=metrics[0]),
             f"Optimisation history ({label}): {metrics[0]} of each trial and the best so far."),
            ("importance", lambda: optuna_figure(ovm.plot_param_importances, study, target_name=metrics[0]),
             f"Hyperparameter importance for {metrics[0]} ({label}), Optuna's default evaluator."),
            ("fanova", lambda: optuna_figure(lambda *a, **k: ovm.plot_param_importances(
                *a, evaluator=FanovaImportanceEvaluator(seed=0), **k), study, target_name=metrics[0]),
             f"Hyperparameter importance for {metrics[0]} ({label}), fANOVA."),
            ("parallel", lambda: optuna_figure(ovm.plot_parallel_coordinate, study, target_name=metrics[0]),
             f"Parallel coordinates of the sampled settings ({label})."),
        ]
    else:
        candidates = [
            ("pareto", lambda: optuna_figure(ovm.plot_pareto_front, study, target_names=metrics),
             f"Pareto front of {' vs '.join(metrics)} ({label}); trials that never reached the target count "
             f"as the worst value."),
        ] + [(f"importance_{m}", lambda i=i, m=m: optuna_figure(ovm.plot_param_importances, study,
                                                      target=lambda t, i=i: t.values[i], target_name=m),
              f"Hyperparameter importance for {m} ({label}), Optuna's default evaluator.")
             for i, m in enumerate(metrics)]
    for kind, make, caption in candidates:
        fig = make()
        if fig is not None:
            ax = fig.axes[0]
            ax.set_title(f"{ax.get_title()} — {label}")
            out.append((f"study_{kind}_{slug}", fig, caption))
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
