"""Optuna studies that *search* (config `study:`), beside grids that enumerate.

One search study per combination of the `study.per` axes (or one in all), each named
`<name>/<axis=value,...>`. Its `n_trials` slots are enqueued as empty WAITING trials and claimed
exactly like grid trials; the sampler chooses the parameters when the claiming worker suggests them.
When every search has finished, each study's best setting is re-run once per grid seed (the
"rerun" phase), so configurations are compared at their own best settings.

Seeds: the search trials train with a seed of their own (`search_seed`: the first grid seed +
1,000,000, moved up past any grid seed), so no re-run repeats the selected trial bit for bit and the
re-runs measure the chosen setting on seeds the selection never saw. The best trial is the best on
the objectives, which are dev or cost metrics unless `study.allow_test_objectives` is set.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import optuna

from harness.config import (
    ARM,
    AXIS_ALIASES,
    ConfigError,
    ExperimentConfig,
    ParamSpec,
    StudyConfig,
    TrialSpec,
    lookup_field,
    make_spec,
    short_axis_name,
)


@dataclass(frozen=True)
class SearchStudy:
    name: str                  # the Optuna study name
    fixed: dict[str, Any]      # dotted key -> value of the `per` axes for this study
    label: str                 # "cell=lstm, pad_size=32" or "all"


def search_studies(cfg: ExperimentConfig) -> list[SearchStudy]:
    """One search study per combination of the `per` axes' grid values."""
    st = cfg.study
    assert st is not None
    per = list(st.per)
    out = []
    for combo in itertools.product(*(cfg.grid[a] for a in per)):
        fixed = dict(zip(per, combo))
        label = ", ".join(f"{short_axis_name(k)}={v}" for k, v in fixed.items()) or "all"
        suffix = ",".join(f"{short_axis_name(k)}={v}" for k, v in fixed.items()) or "all"
        out.append(SearchStudy(f"{cfg.name}/{suffix}", fixed, label))
    return out


SEARCH_SEED_OFFSET = 1_000_000


def seeds(cfg: ExperimentConfig) -> list[int]:
    """The grid's seeds (or train.seed): the seeds of the re-runs."""
    return list(cfg.grid.get("train.seed", [cfg.train.seed]))


def search_seed(cfg: ExperimentConfig) -> int:
    """The seed every search trial trains with: the first grid seed + SEARCH_SEED_OFFSET, or the
    next integer that is not a grid seed, so the re-runs' seeds are disjoint from it."""
    taken = set(seeds(cfg))
    s = seeds(cfg)[0] + SEARCH_SEED_OFFSET
    while s in taken:
        s += 1
    return s


def rerun_seeds(cfg: ExperimentConfig) -> list[int]:
    """The seeds a study's best setting is re-run with: the grid's, none of them the search's."""
    return [s for s in seeds(cfg) if s != search_seed(cfg)]


def make_sampler(st: StudyConfig, worker: int = 0) -> optuna.samplers.BaseSampler:
    """The configured sampler. Each worker gets its own seed (base seed + worker index) so parallel
    workers do not propose the same points."""
    seed = st.seed + 7919 * worker
    opts = dict(st.sampler_options)
    s = optuna.samplers
    if st.sampler == "tpe":
        return s.TPESampler(seed=seed, **opts)
    if st.sampler == "random":
        return s.RandomSampler(seed=seed)
    if st.sampler == "qmc":
        return s.QMCSampler(seed=st.seed, **opts)  # one shared sequence; workers take its points in turn
    if st.sampler == "gp":
        return s.GPSampler(seed=seed, **opts)
    if st.sampler == "nsga2":
        return s.NSGAIISampler(seed=seed, **opts)
    if st.sampler == "grid":
        return s.GridSampler(grid_space(st.params), seed=seed)
    return s.BruteForceSampler(seed=seed, **opts)


def grid_space(params: dict[str, ParamSpec]) -> dict[str, list]:
    space = {}
    for key, p in params.items():
        if p.type == "categorical":
            values = list(p.choices or [])
        elif p.type == "int":
            values = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
        else:
            n = int(round((p.high - p.low) / p.step)) + 1
            values = [p.low + i * p.step for i in range(n)]
        space[short_axis_name(key)] = values
    return space


def make_pruner(st: StudyConfig) -> optuna.pruners.BasePruner:
    p, opts = optuna.pruners, dict(st.pruner_options)
    return {"none": lambda: p.NopPruner(), "median": lambda: p.MedianPruner(**opts),
            "hyperband": lambda: p.HyperbandPruner(**opts),
            "successive_halving": lambda: p.SuccessiveHalvingPruner(**opts),
            "wilcoxon": lambda: p.WilcoxonPruner(**opts)}[st.pruner]()


def check_study(st: StudyConfig) -> None:
    """Build the sampler and the pruner once, so an option Optuna refuses is a ConfigError naming the
    options key before any work (the planner calls it), not a dead worker later."""
    for kind, make in (("sampler", make_sampler), ("pruner", make_pruner)):
        try:
            with warnings.catch_warnings():  # e.g. ExperimentalWarning: said again when the run builds it
                warnings.simplefilter("ignore")
                make(st)
        except Exception as e:  # any refusal by Optuna's constructor names the options key
            key = f"{kind}_options"
            raise ConfigError(f"config key 'study.{key}': the {getattr(st, kind)} {kind} refuses "
                              f"{getattr(st, key)!r}: {type(e).__name__}: {e}") from None


def suggest(trial: optuna.Trial, params: dict[str, ParamSpec]) -> dict[str, Any]:
    """Ask the sampler for every searched setting; dotted key -> value."""
    values = {}
    for key, p in params.items():
        name = short_axis_name(key)
        if p.type == "float":
            values[key] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
        elif p.type == "int":
            values[key] = trial.suggest_int(name, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            values[key] = trial.suggest_categorical(name, p.choices)
    return values


def search_spec(cfg: ExperimentConfig, data_id: str, study: SearchStudy, trial: optuna.Trial) -> TrialSpec:
    """The TrialSpec of a sampled trial: the study's fixed values, the sampled ones, the search seed."""
    values = {**study.fixed, **suggest(trial, cfg.study.params), "train.seed": search_seed(cfg)}
    return make_spec(cfg, data_id, values,
                     tag={"phase": "search", "study": study.name, "study_trial": trial.number})


def objective_values(cfg: ExperimentConfig, row: dict[str, Any]) -> list[float]:
    """The trial's objective values from its runs row. A metric the trial never reached (e.g.
    seconds_to_target null) counts as the worst value, ±inf, so 'never converged' ranks last."""
    out = []
    for o in cfg.study.objectives:
        v = row.get(o.metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            v = math.inf if o.direction == "minimize" else -math.inf
        out.append(float(v))
    return out


def best_trial(study: optuna.Study, st: StudyConfig) -> optuna.trial.FrozenTrial | None:
    """The best complete trial: by the objective, or for several objectives the Pareto-optimal
    trial that is best on the first objective."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    if len(st.objectives) == 1:
        return study.best_trial
    front = study.best_trials
    sign = 1 if st.objectives[0].direction == "maximize" else -1
    return max(front, key=lambda t: sign * t.values[0])


def rerun_specs(cfg: ExperimentConfig, data_id: str, study: SearchStudy, best: optuna.trial.FrozenTrial
                ) -> list[TrialSpec]:
    """The best setting of one study, once per re-run seed (never the search's seed)."""
    params = {key: best.params[short_axis_name(key)] for key in cfg.study.params}
    return [make_spec(cfg, data_id, {**study.fixed, **params, "train.seed": s},
                      tag={"phase": "rerun", "study": study.name, "study_trial": best.number})
            for s in rerun_seeds(cfg)]


def trial_params(cfg: ExperimentConfig, spec: TrialSpec
                 ) -> tuple[dict[str, Any], dict[str, optuna.distributions.BaseDistribution]]:
    """A planned trial's settings as Optuna params and their distributions (so the dashboard can
    plot them and Optuna's importance can rank them), written when the trial is enqueued. Every trial
    of the study gets the same distribution per axis, that of the whole axis: a text setting's choices
    are the built-in ones, then the grid's (or the arms') others (a plugin's cell, say); an arm's the
    arm names; a number's the axis's range, from its smallest to its largest value (IntDistribution
    when every value is an integer, else FloatDistribution; a searched setting's re-runs: its search
    range). Before, a number was recorded with a one-point distribution, which Optuna's importance
    cannot rank; a study resumed from then keeps its finished trials' (docs/studies.md)."""
    D = optuna.distributions
    params: dict[str, Any] = {}
    dists: dict[str, D.BaseDistribution] = {}
    for axis, value in spec.factors.items():
        if value is None:
            continue
        if axis == ARM:
            dist: D.BaseDistribution = D.CategoricalDistribution(list(cfg.grid[ARM]))
        elif isinstance(value, bool):
            dist = D.CategoricalDistribution([False, True])
        elif isinstance(value, str):
            dotted = AXIS_ALIASES.get(axis, axis)
            _, meta = lookup_field(dotted)
            dist = D.CategoricalDistribution(list(dict.fromkeys(
                [*(meta.get("choices") or ()), *cfg.setting_values(dotted), value])))
        else:
            dotted = AXIS_ALIASES.get(axis, axis)
            searched = cfg.study.params.get(dotted) if cfg.study is not None else None
            if searched is not None and searched.type != "categorical":  # a re-run of a searched setting
                cast = int if searched.type == "int" else float
                values = [cast(searched.low), cast(searched.high), value]
            else:
                values = [v for v in cfg.setting_values(dotted) if v is not None] + [value]
            if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                dist = D.IntDistribution(min(values), max(values))
            else:
                dist = D.FloatDistribution(float(min(values)), float(max(values)))
                value = float(value)
        params[axis], dists[axis] = value, dist
    return params, dists

