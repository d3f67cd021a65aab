"""Planning a run: which trials a config describes, its data, and the results directory's config.

Knows the config and the data; knows nothing of Optuna's storage or of training (no torch import),
so `harness status`, `harness report` and `--dry-run` stay light.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import yaml

from harness import adaptive as adaptive_mod
from harness import data as data_mod
from harness import study as study_mod
from harness.config import (
    AXIS_ALIASES,
    GRIDDABLE_SECTIONS,
    ConfigError,
    ExperimentConfig,
    TrialSpec,
    config_from_dict,
    expand_grid,
    flatten,
    short_axis_name,
)
from harness.files import atomic_write_text
from harness.records import is_done, trial_dir
from harness.study import SearchStudy


@dataclass
class Plan:
    """What a run is made of: the grid trials (or, for a study, the re-runs of each study's best
    setting once they are known) and the search studies. With adaptive seeds, `specs` are the
    trials the finished runs say are needed so far, `reserve` the other seeds up to max_seeds and
    `adaptive` the decision behind them (harness.adaptive)."""

    cfg: ExperimentConfig
    out_dir: Path
    specs: list[TrialSpec]
    data_id: str
    studies: list[SearchStudy] = field(default_factory=list)
    reserve: list[TrialSpec] = field(default_factory=list)
    adaptive: adaptive_mod.Decision | None = None

    @property
    def by_id(self) -> dict[str, TrialSpec]:
        """Every trial of this run by id, adaptive seeds not needed (yet) included."""
        return {s.trial_id: s for s in (*self.specs, *self.reserve)}

    @property
    def total(self) -> int:
        """Trials the run will have when it is finished (with adaptive seeds: needed so far)."""
        if self.cfg.study is None:
            return len(self.specs)
        reruns = len(self.studies) * len(study_mod.rerun_seeds(self.cfg)) if self.cfg.study.rerun_best else 0
        return len(self.studies) * self.cfg.study.n_trials + reruns

    @property
    def max_total(self) -> int:
        """The most trials the run can have (adaptive seeds: every configuration at max_seeds)."""
        return self.total + len(self.reserve)

    def update(self, fresh: Plan) -> None:
        """Take over a fresh plan's trials (in place: the progress bar holds this object)."""
        self.specs[:] = fresh.specs
        self.reserve[:] = fresh.reserve
        self.adaptive = fresh.adaptive

    @property
    def factor_names(self) -> list[str]:
        """Short names of the settings that vary between trials (for progress lines)."""
        names = [short_axis_name(k) for k in self.cfg.grid]
        if self.cfg.adaptive is not None:
            names.append("seed")
        if self.cfg.study is not None:
            names += [short_axis_name(k) for k in self.cfg.study.params]
        return names


def cache_dir(out_dir: Path) -> Path:
    """Where the encoded data of a results directory is cached (shared by its workers)."""
    return out_dir / "cache"


def make_plan(cfg: ExperimentConfig, out_dir: str | Path) -> Plan:
    """Locate/synthesise the data, expand the grid. Raises DataError/ConfigError before training."""
    out_dir = Path(out_dir)
    _, data_id = data_mod.prepare(cfg.data, cache_dir(out_dir))
    if cfg.study is None and cfg.adaptive is not None:
        return _adaptive_plan(cfg, out_dir, data_id)
    if cfg.study is None:
        return Plan(cfg, out_dir, expand_grid(cfg, data_id), data_id)
    return Plan(cfg, out_dir, [], data_id, study_mod.search_studies(cfg))


def _adaptive_plan(cfg: ExperimentConfig, out_dir: Path, data_id: str) -> Plan:
    """The seeds each configuration needs, decided from the trials finished in out_dir."""
    pool = adaptive_mod.pool(cfg, data_id)
    decision = adaptive_mod.decide(cfg, pool, finished_runs(out_dir, [s.trial_id for s in pool]))
    return Plan(cfg, out_dir, decision.needed, data_id, reserve=decision.reserve, adaptive=decision)


def finished_runs(out_dir: Path, trial_ids: list[str]) -> pd.DataFrame:
    """The runs rows (columns adaptive.RUNS_COLUMNS) of those of `trial_ids` that have a shard here."""
    cols = list(adaptive_mod.RUNS_COLUMNS)
    parts = [pq.read_table(path, columns=cols).to_pandas() for tid in trial_ids
             if (path := trial_dir(out_dir, tid) / "runs.parquet").is_file()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def write_adaptive(plan: Plan) -> None:
    """Write DIR/adaptive.json (atomically): per configuration how many seeds it got and why it
    stopped, per requested effect its interval (adaptive.summary). Nothing without adaptive seeds."""
    if plan.adaptive is not None:
        atomic_write_text(plan.out_dir / "adaptive.json",
                          json.dumps(adaptive_mod.summary(plan.cfg, plan.adaptive), indent=1, default=str) + "\n")


def _axis_values(cfg: ExperimentConfig, key: str) -> set:
    """The values a data setting takes in a run: its grid axis, a categorical study parameter's
    choices, or the fixed value; empty for a sampled range (encoded when a trial first needs it)."""
    values = set(cfg.grid.get(key, [getattr(cfg.data, key.split(".")[1])]))
    if cfg.study is not None and key in cfg.study.params:
        p = cfg.study.params[key]
        values = set(p.choices) if p.type == "categorical" else set()
    return values


def prepare_data(plan: Plan) -> dict[tuple[int, int | None], data_mod.Dataset]:
    """Encode the data once per (pad_size, lag) (cached on disk for every worker); validate embeddings."""
    cfg = plan.cfg
    pads, lags = _axis_values(cfg, "data.pad_size"), _axis_values(cfg, "data.lag")
    dims = {s.model.embed_dim for s in plan.specs} or {cfg.model.embed_dim}
    out = {}
    for pad in sorted(pads):
        for lag in sorted(lags, key=lambda v: -1 if v is None else v):
            ds = data_mod.load(cfg.data, cache_dir(plan.out_dir), pad, lag)
            if ds.embeddings is not None and dims != {ds.embeddings.shape[1]}:
                raise ConfigError(f"config key 'model.embed_dim': {sorted(dims)} does not match the "
                                  f"pretrained embeddings' width {ds.embeddings.shape[1]} ({cfg.data.embedding})")
            out[pad, lag] = ds
    return out


# Settings added after results existed whose null default means what their absence meant.
_ADDED_LATER = {"data.lag"}


def _fixed_settings(raw: dict) -> dict[str, Any]:
    """The parts of a resolved config that must not change between runs into one directory:
    everything in data/model/train that is not a grid axis."""
    axes = {AXIS_ALIASES.get(a, a) for a in raw.get("grid", {})}
    axes |= {AXIS_ALIASES.get(a, a) for a in (raw.get("study") or {}).get("params", {})}
    if raw.get("adaptive"):
        axes.add("train.seed")  # adaptive seeds vary it as a grid axis would
    flat = {}
    for section in GRIDDABLE_SECTIONS:
        for k, v in flatten(raw.get(section, {}), section + ".").items():
            if k not in axes and not (k in _ADDED_LATER and v is None):
                flat[k] = v
    return flat


def check_compatible(plan: Plan) -> None:
    """Refuse to mix results of different fixed settings in one directory."""
    path = plan.out_dir / "config.yaml"
    if not path.is_file():
        return
    old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    new = plan.cfg.to_dict()
    if old.get("name") != new["name"]:
        raise ConfigError(f"{plan.out_dir} holds results of experiment {old.get('name')!r}, not "
                          f"{new['name']!r}; choose another --out")
    a, b = _fixed_settings(old), _fixed_settings(new)
    # A key that became a grid axis (or stopped being one) changes what the old trials mean.
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k, "<grid axis>") != b.get(k, "<grid axis>")]
    if changed:
        detail = "; ".join(f"{k}: {a.get(k, '<grid axis>')!r} -> {b.get(k, '<grid axis>')!r}"
                           for k in changed[:6])
        raise ConfigError(
            f"{plan.out_dir} holds results run with other fixed settings ({detail}). Only grid axes "
            f"may grow when resuming into the same directory; use another --out for a new experiment")


def write_config(plan: Plan) -> None:
    """Write the resolved config to DIR/config.yaml (atomically: temp file, then rename)."""
    atomic_write_text(plan.out_dir / "config.yaml",
                      yaml.safe_dump(plan.cfg.to_dict(), sort_keys=False, allow_unicode=True))


def load_results_config(out_dir: str | Path) -> ExperimentConfig:
    """The resolved config a results directory was run with."""
    path = Path(out_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{out_dir} is not a results directory (no config.yaml)")
    return config_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")), source=str(path))


def dry_run(cfg: ExperimentConfig, out_dir: str | Path) -> list[dict[str, Any]]:
    """The trials the config describes, whether each is done, and a rough cost estimate. With
    adaptive seeds: the trials needed so far (adaptive.trial_bounds gives the range)."""
    plan = make_plan(cfg, out_dir)
    n_train = cfg.data.synth.n_train if cfg.data.kind == "synthetic" else None

    def steps(t: Any) -> int | None:
        if not n_train:
            return None
        s = t.epochs * -(-n_train // t.batch_size)
        return min(s, t.max_steps) if t.max_steps else s

    if cfg.study is not None:
        return [{"trial_id": f"{s.name} × {cfg.study.n_trials} sampled trials", **s.fixed,
                 "max_steps": steps(cfg.train), "done": False, "trials": cfg.study.n_trials} for s in plan.studies]
    return [{"trial_id": spec.trial_id, **spec.factors, "max_steps": steps(spec.train),
             "done": is_done(plan.out_dir, spec.trial_id)} for spec in plan.specs]
