"""Validation of the `study:` section: sampler, pruner and their options (their types and ranges; what Optuna
itself refuses is found where studies are built, `harness.study.check_study`), the objectives, the
searched distributions (`params`) and the grid axes with one study each (`per`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.config.errors import ConfigError, Where, did_you_mean, reject_unknown_keys
from harness.config.fields import base_type, canonical_axis, check_finite, check_value, lookup_field
from harness.config.sections import AXIS_ALIASES, short_axis_name
from harness.config.study_config import (
    METRICS,
    OPTION_TYPES,
    PRUNER_OPTIONS,
    PRUNERS,
    SAMPLER_OPTIONS,
    SAMPLERS,
    Objective,
    ParamSpec,
    StudyConfig,
)

_PARAM_KEYS = {"type", "low", "high", "log", "step", "choices"}


def build_study(raw: Any, grid: dict[str, list], where: Where) -> StudyConfig:
    """Validate the `study:` mapping against the already validated grid (canonical dotted keys)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config key 'study': expected a mapping, got {raw!r}{where('study')}")
    allowed = [f.name for f in dataclasses.fields(StudyConfig)]
    reject_unknown_keys(raw, allowed, "study", where)
    st = StudyConfig()
    _set_scalars(st, raw, where)
    for kind, table in (("sampler", SAMPLER_OPTIONS), ("pruner", PRUNER_OPTIONS)):
        setattr(st, f"{kind}_options", _options(raw, kind, getattr(st, kind), table, where))
    st.objectives = _objectives(raw, where)
    if len(st.objectives) > 1 and st.pruner != "none":
        raise ConfigError(f"config key 'study.pruner': {st.pruner!r} cannot be used with "
                          f"{len(st.objectives)} objectives (Optuna prunes single-objective studies only); "
                          f"use none{where('study.pruner')}")
    _refuse_test_objectives(st, where)
    st.params = _params(raw, grid, st.sampler, where)
    st.per = _per(raw, grid, where)
    return st


def _set_scalars(st: StudyConfig, raw: dict, where: Where) -> None:
    """n_trials, seed, rerun_best, allow_test_objectives, sampler and pruner."""
    for k in ("n_trials", "seed"):
        if k in raw:
            setattr(st, k, check_value(f"study.{k}", raw[k], int, {"min": 1 if k == "n_trials" else None}, where))
    for k in ("rerun_best", "allow_test_objectives"):
        if k in raw:
            setattr(st, k, check_value(f"study.{k}", raw[k], bool, {}, where))
    st.sampler = check_value("study.sampler", raw.get("sampler", "tpe"), str, {"choices": SAMPLERS}, where)
    st.pruner = check_value("study.pruner", raw.get("pruner", "none"), str, {"choices": PRUNERS}, where)


def _options(raw: dict, kind: str, name: str, table: dict[str, tuple], where: Where) -> dict:
    """`study.<kind>_options`: only keyword arguments the chosen sampler or pruner accepts."""
    key = f"study.{kind}_options"
    opts = raw.get(f"{kind}_options") or {}
    if not isinstance(opts, dict):
        raise ConfigError(f"config key '{key}': expected a mapping, got {opts!r}{where(key)}")
    for k, v in opts.items():
        if k not in table[name]:
            raise ConfigError(f"unknown config key '{key}.{k}'{where(key)}: the {name} {kind} accepts "
                              f"{', '.join(table[name]) or 'no options'}{did_you_mean(k, table[name])}")
        _check_option(f"{key}.{k}", v, OPTION_TYPES[k], where)
    lo, hi = opts.get("min_resource"), opts.get("max_resource")
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        raise ConfigError(f"config key '{key}.min_resource': {lo} is above max_resource {hi}{where(key)}")
    return dict(opts)


def _check_option(key: str, value: Any, spec: tuple[str, float | None, float | None], where: Where) -> None:
    """One sampler or pruner option against its type and range in OPTION_TYPES."""
    kind, lo, hi = spec
    if kind == "int|auto" and value == "auto":
        return
    if "|" in kind and kind != "int|auto":
        check_value(key, value, str, {"choices": tuple(kind.split("|"))}, where)
        return
    tp = {"int": int, "int|auto": int, "float": float, "bool": bool}[kind]
    check_value(key, value, tp, {"min": lo, "max": hi}, where)


def _objectives(raw: dict, where: Where) -> list[Objective]:
    """`study.objectives`: runs-table metrics, each with a direction (default: the metric's own)."""
    objectives = raw.get("objectives", [{"metric": "best_dev_acc", "direction": "maximize"}])
    if not isinstance(objectives, list) or not objectives:
        raise ConfigError(f"config key 'study.objectives': expected a non-empty list of {{metric, direction}}, "
                          f"got {objectives!r}{where('study.objectives')}")
    out = []
    for i, o in enumerate(objectives):
        key = f"study.objectives[{i}]"
        if isinstance(o, str):
            o = {"metric": o}
        if not isinstance(o, dict) or set(o) - {"metric", "direction"}:
            raise ConfigError(f"config key '{key}': expected {{metric: ..., direction: ...}}, got {o!r}"
                              f"{where('study.objectives')}")
        metric = check_value(f"{key}.metric", o.get("metric"), str, {"choices": tuple(METRICS)}, where)
        direction = check_value(f"{key}.direction", o.get("direction", METRICS[metric]), str,
                                {"choices": ("maximize", "minimize")}, where)
        out.append(Objective(metric, direction))
    if len({o.metric for o in out}) != len(out):
        raise ConfigError(f"config key 'study.objectives': a metric is repeated{where('study.objectives')}")
    return out


def _refuse_test_objectives(st: StudyConfig, where: Where) -> None:
    """A test-set metric as an objective picks settings on the test data (their test numbers are
    then biased upward): refused unless study.allow_test_objectives."""
    if st.allow_test_objectives:
        return
    for i, o in enumerate(st.objectives):
        if o.metric.startswith("test_"):
            dev = ", ".join(m for m in METRICS if not m.startswith("test_"))
            raise ConfigError(f"config key 'study.objectives[{i}].metric': {o.metric!r} is measured on the test "
                              f"set; choosing settings by it makes their test numbers optimistic. Use a dev or "
                              f"cost metric ({dev}), or set study.allow_test_objectives: true (the report then "
                              f"warns){where('study.objectives')}")


def _params(raw: dict, grid: dict[str, list], sampler: str, where: Where) -> dict[str, ParamSpec]:
    """`study.params`: canonical dotted key -> distribution; neither the seed nor a grid axis."""
    params = raw.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"config key 'study.params': expected a mapping of setting -> distribution, got "
                          f"{params!r}{where('study.params')}")
    out: dict[str, ParamSpec] = {}
    for k, v in params.items():
        spec = build_param(str(k), v, where)
        dotted = AXIS_ALIASES.get(str(k), str(k))
        if dotted == "train.seed":
            raise ConfigError(f"config key 'study.params.{k}': seeds are not searched; list them in "
                              f"grid.seed{where('study.params.' + str(k))}")
        if dotted in grid:
            raise ConfigError(f"config key 'study.params.{k}': '{k}' is also a grid axis; a setting is either "
                              f"searched or enumerated{where('study.params.' + str(k))}")
        out[dotted] = spec
    if sampler == "grid":
        for k, p in out.items():
            if p.type == "float" and p.step is None:
                raise ConfigError(f"config key 'study.params.{short_axis_name(k)}': the grid sampler needs "
                                  f"categorical, int, or stepped float distributions{where('study.sampler')}")
    return out


def _per(raw: dict, grid: dict[str, list], where: Where) -> list[str]:
    """`study.per`: the grid axes other than the seed, each value combination its own study; every
    such axis must be listed."""
    per = raw.get("per", [])
    if not isinstance(per, list):
        raise ConfigError(f"config key 'study.per': expected a list of grid axes, got {per!r}{where('study.per')}")
    out = []
    for axis in per:
        dotted = AXIS_ALIASES.get(str(axis), str(axis))
        if dotted not in grid or dotted == "train.seed":
            raise ConfigError(f"config key 'study.per': {axis!r} must be a grid axis other than seed (its values "
                              f"come from grid:); grid axes here: "
                              f"{', '.join(short_axis_name(g) for g in grid if g != 'train.seed') or 'none'}"
                              f"{where('study.per')}")
        out.append(dotted)
    enumerated = [short_axis_name(g) for g in grid if g not in out and g != "train.seed"]
    if enumerated:
        raise ConfigError(f"config key 'grid': with a study, grid axes other than seed must be listed in "
                          f"study.per (one study per combination); not listed: {', '.join(enumerated)}"
                          f"{where('study.per')}")
    return out


# ----------------------------------------------------------------------------- one distribution

def build_param(key: str, raw: Any, where: Where) -> ParamSpec:
    """One distribution under study.params, checked against the setting it searches."""
    dotted = canonical_axis(key.removeprefix("study.params."), where, prefix="study.params.")
    skey = f"study.params.{key}"
    if not isinstance(raw, dict):
        raise ConfigError(f"config key '{skey}': expected a mapping like {{type: float, low: 1e-4, high: 1e-2, "
                          f"log: true}}, got {raw!r}{where(skey)}")
    reject_unknown_keys(raw, sorted(_PARAM_KEYS), skey, where)
    kind = raw.get("type")
    if kind not in ("float", "int", "categorical"):
        raise ConfigError(f"config key '{skey}.type': {kind!r} is not allowed; allowed: float, int, "
                          f"categorical{where(skey)}")
    tp, meta = lookup_field(dotted)
    if kind == "categorical":
        return _categorical(skey, raw.get("choices"), tp, meta, where)
    low, high, log, step = _numeric_bounds(skey, raw, kind, tp, meta, where)
    if kind == "int":
        return _int_param(skey, dotted, tp, low, high, log, step, where)
    if base_type(tp) is not float:
        raise ConfigError(f"config key '{skey}.type': '{dotted}' is not a float setting; use int or "
                          f"categorical{where(skey)}")
    return ParamSpec("float", low=float(low), high=float(high), log=log, step=float(step) if step else None)


def _categorical(skey: str, choices: Any, tp: Any, meta: dict, where: Where) -> ParamSpec:
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"config key '{skey}.choices': a categorical needs a non-empty list, got "
                          f"{choices!r}{where(skey)}")
    return ParamSpec("categorical", choices=[check_value(f"{skey}.choices", c, tp, meta, where) for c in choices])


def _numeric_bounds(skey: str, raw: dict, kind: str, tp: Any, meta: dict, where: Where
                    ) -> tuple[float, float, bool, float | None]:
    """(low, high, log, step) of a float or int distribution, each checked."""
    for k in ("low", "high"):
        v = raw.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"config key '{skey}.{k}': expected a number, got {v!r}{where(skey)}")
        check_finite(f"{skey}.{k}", v, where)
    low, high = raw["low"], raw["high"]
    check_value(f"{skey}.low", low if kind == "float" else int(low), tp, meta, where)
    check_value(f"{skey}.high", high if kind == "float" else int(high), tp, meta, where)
    if low > high:
        raise ConfigError(f"config key '{skey}': low {low} is above high {high}{where(skey)}")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"config key '{skey}.log': expected true or false, got {log!r}{where(skey)}")
    if log and low <= 0:
        raise ConfigError(f"config key '{skey}.low': a log distribution needs low > 0, got {low}{where(skey)}")
    step = raw.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
        raise ConfigError(f"config key '{skey}.step': expected a positive number, got {step!r}{where(skey)}")
    if step is not None:
        check_finite(f"{skey}.step", step, where)
        if high > low and step > high - low:
            raise ConfigError(f"config key '{skey}.step': {step} is larger than the range {low}..{high}; "
                              f"use a step of at most {high - low}{where(skey)}")
    if log and step is not None:
        raise ConfigError(f"config key '{skey}': step and log cannot be combined (Optuna){where(skey)}")
    return low, high, log, step


def _int_param(skey: str, dotted: str, tp: Any, low: float, high: float, log: bool, step: float | None,
               where: Where) -> ParamSpec:
    if base_type(tp) is not int:
        raise ConfigError(f"config key '{skey}.type': '{dotted}' is not an integer setting{where(skey)}")
    if any(not float(v).is_integer() for v in (low, high, step or 1)):
        raise ConfigError(f"config key '{skey}': an int distribution needs integer low/high/step{where(skey)}")
    return ParamSpec("int", low=int(low), high=int(high), log=log, step=int(step) if step else None)
