"""Validation of a whole config mapping (as read from YAML) into an `ExperimentConfig`: every key
checked, every error a `ConfigError` naming the dotted key, the bad value, what is allowed and
(when it came from a file) the file and line."""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.config.adaptive_config import build_adaptive
from harness.config.arms import ARM, arm_keys, build_arms, check_arm_axes, check_distinct_arms
from harness.config.errors import ConfigError, Where, did_you_mean, reject_unknown_keys
from harness.config.experiment import ExperimentConfig
from harness.config.fields import canonical_axis, check_name, check_value, field_info, lookup_field
from harness.config.headline import HeadlineError, parse_headline
from harness.config.sections import SECTIONS, short_axis_name
from harness.config.validate_study import build_study


def config_from_dict(raw: Any, source: str | None = None, lines: dict[str, int | str] | None = None
                     ) -> ExperimentConfig:
    """Validate a plain mapping (as read from YAML) into an `ExperimentConfig`. `source` and
    `lines` (dotted key -> line) place errors in the file."""
    where = Where(source, lines)
    if not isinstance(raw, dict):
        raise ConfigError(f"config{where('')}: expected a mapping at the top level, got {type(raw).__name__}")
    allowed = ["name", *SECTIONS, "grid", "study", "adaptive", "headline"]
    for k in raw:
        if k not in allowed:
            raise ConfigError(f"unknown config key '{k}'{where(str(k))}; allowed top-level keys: "
                              f"{', '.join(allowed)}{did_you_mean(k, allowed)}")
    name = check_name(raw.get("name"), where)
    sections = {s: build_section(cls, raw.get(s), s + ".", where) for s, cls in SECTIONS.items()}
    grid, arms = build_grid(raw.get("grid"), where)
    study = build_study(raw["study"], grid, where) if raw.get("study") is not None else None
    adaptive = build_adaptive(raw["adaptive"], grid, study is not None, where) \
        if raw.get("adaptive") is not None else None
    try:
        headline = parse_headline(raw.get("headline"))
    except HeadlineError as e:  # "headline.KEY: what is wrong" -> the same, placed in the file
        key, _, rest = str(e).partition(":")
        raise ConfigError(f"config key '{key}':{rest}{where(key)}") from None
    cfg = ExperimentConfig(name=name, grid=grid, arms=arms, study=study, adaptive=adaptive, headline=headline,
                           source=source, **sections)
    check_distinct_arms(arms, {k: cfg.fixed_value(k) for k in arm_keys(arms)}, where)
    check_searched_not_in_arms(cfg, where)
    check_consistency(cfg, where)
    check_embedding_name(cfg.data.embedding, where)
    check_headline(cfg, where)
    return cfg


def check_headline(cfg: ExperimentConfig, where: Where) -> None:
    """The headline names groups the grid has, and its `seeds` are all in the grid (confirmatory:
    a fixed seed list, not adaptive seeds)."""
    h = cfg.headline
    if h is None:
        return
    group = h.group or ("arm" if "arm" in cfg.grid else "cell")
    if group not in ("arm", "cell") and not any(k == group or k.endswith("." + group) for k in cfg.grid):
        raise ConfigError(f"config key 'headline.group': {group!r} is not arm, cell or a grid axis; the grid has "
                          f"{', '.join(cfg.grid)}{where('headline.group')}")
    for key, pairs in (("contrasts", h.contrasts), ("d50_ratios", h.d50_ratios),
                       ("directions", [(a, b) for a, b, _ in h.directions])):
        same = [a for a, b in pairs if a == b]
        if same:
            raise ConfigError(f"config key 'headline.{key}': {same[0]} is compared with itself"
                              f"{where('headline.' + key)}")
    distance = any(len(cfg.setting_values(k)) > 1 for k in ("data.lag", "data.pad_size"))
    if (h.d50 or h.d50_ratios or h.contrasts) and not distance:
        raise ConfigError("config key 'headline': contrasts and D50s are taken per distance, but the grid varies no "
                          f"distance (data.lag or data.pad_size){where('headline')}")
    levels = (list(cfg.grid["arm"]) if group == "arm" and "arm" in cfg.grid
              else [str(v) for v in cfg.setting_values("model.cell")] if group == "cell" else None)
    named = [x for pair in (*h.contrasts, *h.d50_ratios) for x in pair] + list(h.d50) + \
        [x for a, b, _ in h.directions for x in (a, b)]
    unknown = sorted({x for x in named if levels is not None and x not in levels})
    if unknown:
        raise ConfigError(f"config key 'headline': {', '.join(unknown)} is not a level of {group}; the grid has "
                          f"{', '.join(levels or [])}{where('headline')}")
    seeds = cfg.grid.get("train.seed", [cfg.train.seed])
    if h.seeds is not None and cfg.adaptive is not None and not set(h.seeds) <= set(range(cfg.adaptive.max_seeds)):
        raise ConfigError(f"config key 'headline.seeds': seeds {h.seed_range()} pre-registered, but adaptive seeding "
                          f"runs at most seeds 0–{cfg.adaptive.max_seeds - 1}{where('headline.seeds')}")
    if h.seeds is not None and cfg.adaptive is None and not set(h.seeds) <= set(seeds):
        raise ConfigError(f"config key 'headline.seeds': seeds {h.seed_range()} pre-registered, but "
                          f"grid.seed is {seeds}{where('headline.seeds')}")
    if h.budget_check is not None:
        check_budget_check(cfg, where)


def check_budget_check(cfg: ExperimentConfig, where: Where) -> None:
    """headline.budget_check needs the grid's own trials at fixed seeds (no study, no adaptive seeds),
    a distance that varies (data.lag or data.pad_size), and no more seeds than the headline has."""
    key, b = "headline.budget_check", cfg.headline.budget_check
    other = "study" if cfg.study is not None else "adaptive" if cfg.adaptive is not None else None
    if other:
        raise ConfigError(f"config key '{key}': needs a grid run at fixed seeds, not with `{other}:`{where(key)}")
    if not any(len(cfg.setting_values(k)) > 1 for k in ("data.lag", "data.pad_size")):
        raise ConfigError(f"config key '{key}': the grid varies no distance (data.lag or data.pad_size), so "
                          f"there is no frontier to check{where(key)}")
    seeds = cfg.headline.seeds or cfg.grid.get("train.seed", [cfg.train.seed])
    if b.seeds is not None and b.seeds > len(seeds):
        raise ConfigError(f"config key '{key}.seeds': {b.seeds} seeds, but the headline has {len(seeds)}"
                          f"{where(key + '.seeds')}")


def check_embedding_name(name: str, where: Where) -> None:
    """data.embedding is 'random' or a relative path inside data.dir: not absolute, no '..', no NUL."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\", "~")) or ".." in parts or "\0" in name or not all(parts):
        raise ConfigError(f"config key 'data.embedding': {name!r} must be random or the name of an .npz "
                          f"file inside data.dir (a relative path without '..'){where('data.embedding')}")


def build_section(cls: type, raw: Any, prefix: str, where: Where) -> Any:
    """Build dataclass `cls` from a mapping, checking every key (nested sections too)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.')}': expected a mapping of keys, got "
                          f"{raw!r}{where(prefix.rstrip('.'))}")
    info = field_info(cls)
    kwargs = {}
    reject_unknown_keys(raw, list(info), prefix.rstrip("."), where)
    for k, v in raw.items():
        key = f"{prefix}{k}"
        tp, meta = info[k]
        if dataclasses.is_dataclass(tp):
            kwargs[k] = build_section(tp, v, key + ".", where)
        else:
            kwargs[k] = check_value(key, v, tp, meta, where)
    return cls(**kwargs)


def build_grid(raw: Any, where: Where) -> tuple[dict[str, list], dict[str, dict[str, Any]]]:
    """`grid:` as (canonical dotted key -> list of checked values (non-empty, no repeats), arms). With
    `grid.arm`, the grid's 'arm' axis lists the arm names and `arms` maps each to its settings
    (harness.config.arms); without, `arms` is empty."""
    if raw is None:
        return {}, {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config key 'grid': expected a mapping of axis -> list of values, got "
                          f"{raw!r}{where('grid')}")
    grid: dict[str, list] = {}
    arms: dict[str, dict[str, Any]] = {}
    written: dict[str, str] = {}  # canonical key -> the axis as the file writes it
    for name, values in raw.items():
        if name == ARM:
            arms = build_arms(values, where)
            grid[ARM] = list(arms)
            continue
        key = canonical_axis(str(name), where)
        written[key] = str(name)
        gkey = f"grid.{name}"
        if not isinstance(values, list):
            raise ConfigError(f"grid axis '{gkey}': expected a list of values, got {values!r}{where(gkey)}")
        if not values:
            raise ConfigError(f"grid axis '{gkey}' is empty{where(gkey)}; give at least one value")
        if key in grid:
            raise ConfigError(f"grid axis '{gkey}' is given twice (as '{short_axis_name(key)}' and "
                              f"'{key}'){where(gkey)}")
        tp, meta = lookup_field(key)
        checked = [check_value(gkey, v, tp, meta, where) for v in values]
        if len(set(map(repr, checked))) != len(checked):
            raise ConfigError(f"grid axis '{gkey}' repeats a value: {values!r}{where(gkey)}")
        grid[key] = checked
    check_arm_axes(arms, written, where)
    return grid, arms


def check_searched_not_in_arms(cfg: ExperimentConfig, where: Where) -> None:
    """A setting is searched (study.params) or set by the arms, not both."""
    if cfg.study is None:
        return
    for key in arm_keys(cfg.arms):
        if key in cfg.study.params:
            skey = f"study.params.{short_axis_name(key)}"
            raise ConfigError(f"config key '{skey}': '{short_axis_name(key)}' is also set by grid.arm; a setting "
                              f"is either searched or set by the arms{where(skey)}")


def check_consistency(cfg: ExperimentConfig, where: Where) -> None:
    """Rules between keys: thucnews needs a dir, synthetic data has no pretrained embeddings, the
    synthetic lengths and vocabulary fit together, and run.device names devices."""
    d = cfg.data
    if d.kind == "thucnews" and not d.dir:
        raise ConfigError(f"config key 'data.dir': required when data.kind is thucnews{where('data.kind')}")
    if d.kind == "synthetic" and d.embedding != "random":
        raise ConfigError(f"config key 'data.embedding': synthetic data has no pretrained embeddings; "
                          f"use random{where('data.embedding')}")
    s = d.synth
    if not s.min_len <= s.mean_len <= s.max_len:
        raise ConfigError(f"config key 'data.synth.mean_len': {s.mean_len} must lie between min_len "
                          f"{s.min_len} and max_len {s.max_len}{where('data.synth.mean_len')}")
    if s.keywords_per_class * s.n_classes > s.vocab_size:
        raise ConfigError(f"config key 'data.synth.keywords_per_class': {s.keywords_per_class} × "
                          f"{s.n_classes} classes exceeds data.synth.vocab_size {s.vocab_size}"
                          f"{where('data.synth.keywords_per_class')}")
    dev = cfg.run.device
    if dev not in ("auto", "cpu") and not all(
            p == "cuda" or (p.startswith("cuda:") and p[5:].isdigit()) for p in dev.split(",")):
        raise ConfigError(f"config key 'run.device': {dev!r} is not allowed; allowed: auto, cpu, cuda, "
                          f"cuda:K or a comma list cuda:0,cuda:1{where('run.device')}")
