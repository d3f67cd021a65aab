"""Planning a run: which trials a config describes, its data, and the results directory's config.

Knows the config and the data; knows nothing of Optuna's storage or of training (no torch import),
so `harness status`, `harness report` and `--dry-run` stay light.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from harness import adaptive as adaptive_mod
from harness import budget_check as budget_mod
from harness import data as data_mod
from harness import results_dir
from harness import study as study_mod
from harness.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    TrialSpec,
    expand_grid,
    short_axis_name,
)
from harness.config.sections import MAX_STEPS, NOT_GRIDDABLE
from harness.files import atomic_write_text
from harness.records import verify_trial
from harness.results_dir import cache_dir, check_existing, trial_dir
from harness.study import SearchStudy


@dataclass
class Plan:
    """What a run is made of: the grid trials (or, for a study, the re-runs of each study's best
    setting once they are known) and the search studies. With adaptive seeds, `specs` are the
    trials the finished runs say are needed so far, `reserve` the other seeds up to max_seeds and
    `adaptive` the decision behind them (harness.adaptive). With headline.budget_check, `specs` end
    with the budget-check trials the finished runs call for so far, `reserve` holds the other check
    trials they may still call for, and `budget_check` the decision behind them (harness.budget_check)."""

    cfg: ExperimentConfig
    out_dir: Path
    specs: list[TrialSpec]
    data_id: str
    studies: list[SearchStudy] = field(default_factory=list)
    reserve: list[TrialSpec] = field(default_factory=list)
    adaptive: adaptive_mod.Decision | None = None
    budget_check: budget_mod.BudgetDecision | None = None

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
        self.budget_check = fresh.budget_check

    @property
    def factor_names(self) -> list[str]:
        """Short names of the settings that vary between trials (for progress lines)."""
        names = [short_axis_name(k) for k in self.cfg.grid]
        if self.cfg.adaptive is not None:
            names.append("seed")
        if self.cfg.study is not None:
            names += [short_axis_name(k) for k in self.cfg.study.params]
        return names


MAX_TRIALS = 100_000  # a run (or dry run) of more trials than this needs --yes


def count_trials(cfg: ExperimentConfig) -> int:
    """Trials the run will have when finished, counted without expanding the grid: the product of
    the axis lengths, or per study its n_trials plus (with rerun_best) one re-run per seed."""
    if cfg.study is None:
        n = math.prod(len(v) for v in cfg.grid.values())
        return n * cfg.adaptive.max_seeds if cfg.adaptive is not None else n  # adaptive: at most
    n_studies = math.prod(len(cfg.grid[a]) for a in cfg.study.per)
    reruns = len(study_mod.seeds(cfg)) if cfg.study.rerun_best else 0
    return n_studies * (cfg.study.n_trials + reruns)


def check_size(cfg: ExperimentConfig, yes: bool = False) -> int:
    """The trial count; above MAX_TRIALS a ConfigError unless `yes`. Instant for any grid size."""
    n = count_trials(cfg)
    if n > MAX_TRIALS and not yes:
        key = "grid" if cfg.study is None else "study.n_trials"
        sizes = " × ".join(f"{short_axis_name(k)} {len(v)}" for k, v in cfg.grid.items())
        raise ConfigError(f"config key '{key}': {n} trials ({sizes or 'one study'}) is more than {MAX_TRIALS}; "
                          f"shrink it, or pass --yes to plan and run them all")
    return n


def machine_memory() -> int | None:
    """This machine's physical memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _extremes(cfg: ExperimentConfig, key: str) -> list:
    """Every value a setting takes in the run (grid, arms, fixed), plus a searched range's bounds."""
    values = list(cfg.setting_values(key))
    if cfg.study is not None and key in cfg.study.params:
        p = cfg.study.params[key]
        values = list(p.choices) if p.type == "categorical" else [int(p.low), int(p.high)]
    return values


def check_bounds(cfg: ExperimentConfig, memory: int | None | str = "machine") -> None:
    """Refuse sizes beyond reason before anything is written: the encoded data (rows × (pad_size +
    lag) int64 tokens per split, for every pad_size × lag of the run, held at once by a worker) above
    half of `memory` ("machine": this machine's; None: not checked), and a trial of more than
    MAX_STEPS training steps. Both as config errors naming the key. Data sizes come from the config
    (synthetic) or the folder's line counts; a plugin's data set is checked only for its settings."""
    rows = data_mod.split_rows(cfg.data)
    if rows is None:
        return
    _check_steps(cfg, rows["train"])
    limit = machine_memory() if memory == "machine" else memory
    if limit:
        _check_memory(cfg, rows, int(limit))


def _check_steps(cfg: ExperimentConfig, n_train: int) -> None:
    epochs, batch = max(_extremes(cfg, "train.epochs")), min(_extremes(cfg, "train.batch_size"))
    caps = _extremes(cfg, "train.max_steps")
    per_epoch = -(-n_train // batch)
    steps = epochs * per_epoch if None in caps else min(epochs * per_epoch, max(caps))
    factor = budget_mod.max_steps_factor(cfg)
    if steps <= MAX_STEPS < steps * factor:
        raise ConfigError(f"config key 'headline.budget_check.factor': {factor} × the longest trial's {steps} "
                          f"steps is more than {MAX_STEPS}; lower the factor or train.epochs")
    if steps > MAX_STEPS:
        raise ConfigError(f"config key 'train.epochs': {epochs} epochs × {per_epoch} steps per epoch ({n_train} "
                          f"training texts, batch_size {batch}) is {steps} steps, more than {MAX_STEPS}; lower "
                          f"train.epochs or set train.max_steps")


def encoded_bytes(rows: int, pad_size: int, lag: int | None) -> int:
    """Bytes of one split encoded at pad_size and lag: int64 tokens, rows × (pad_size + lag), plus
    the lengths, labels and starts."""
    return rows * (pad_size + (lag or 0) + 3) * 8


def _check_memory(cfg: ExperimentConfig, rows: dict[str, int], memory: int) -> None:
    pads = [int(v) for v in _extremes(cfg, "data.pad_size")]
    lags = [None if v is None else int(v) for v in _extremes(cfg, "data.lag")]
    sizes = {(p, g): sum(encoded_bytes(n, p, g) for n in rows.values()) for p in pads for g in lags}
    need = sum(sizes.values())
    if need <= memory // 2:
        return
    pad, lag = max(sizes, key=sizes.__getitem__)
    key = "data.lag" if (lag or 0) > pad else "data.pad_size"
    every = ", for every pad_size × lag of the run" if len(sizes) > 1 else ""
    raise ConfigError(f"config key '{key}': the encoded data would need {_gib(need)} of memory "
                      f"({sum(rows.values())} texts × (pad_size {pad} + lag {lag or 0}) positions × 8 bytes{every}), "
                      f"more than half of this machine's {_gib(memory)}; lower {key}")


def _gib(n: int) -> str:
    return f"{n / 2**40:.2f} TiB" if n >= 2**40 else f"{n / 2**30:.2f} GiB"


def check_devices(device: str, cfg: ExperimentConfig | None = None) -> None:
    """Refuse a device that is not there, and `cfg`'s train.cuda_graph on a device that is not CUDA,
    as the run does (importing torch only for a CUDA name or a CUDA graph)."""
    graph = cfg is not None and True in cfg.setting_values("train.cuda_graph")
    if all(d in ("auto", "cpu") for d in device.split(",")) and not graph:
        return
    from harness.device import check_cuda_graph, resolve_device  # imports torch: only when CUDA may be asked for

    devices = [resolve_device(d) for d in device.split(",")]
    if graph:
        check_cuda_graph(cfg, devices)


def make_plan(cfg: ExperimentConfig, out_dir: str | Path, write: bool = True) -> Plan:
    """Locate/synthesise the data, expand the grid. Raises DataError/ConfigError before training.
    With write=False nothing is written (the data is identified, not synthesised)."""
    out_dir = Path(out_dir)
    if cfg.study is not None:
        study_mod.check_study(cfg.study)  # an option Optuna refuses, before the data is prepared
    data_id = data_mod.prepare(cfg.data, cache_dir(out_dir))[1] if write else data_mod.identify(cfg.data)
    if cfg.study is None and cfg.adaptive is not None:
        return _adaptive_plan(cfg, out_dir, data_id)
    if cfg.study is None:
        return _with_budget_check(Plan(cfg, out_dir, expand_grid(cfg, data_id), data_id))
    return Plan(cfg, out_dir, [], data_id, study_mod.search_studies(cfg))


def _adaptive_plan(cfg: ExperimentConfig, out_dir: Path, data_id: str) -> Plan:
    """The seeds each configuration needs, decided from the trials finished in out_dir."""
    pool = adaptive_mod.pool(cfg, data_id)
    decision = adaptive_mod.decide(cfg, pool, finished_runs(out_dir, [s.trial_id for s in pool]))
    return Plan(cfg, out_dir, decision.needed, data_id, reserve=decision.reserve, adaptive=decision)


def _with_budget_check(plan: Plan) -> Plan:
    """`plan` with the budget-check trials its finished grid trials call for appended to its specs
    (harness.budget_check; nothing without headline.budget_check)."""
    if not budget_mod.enabled(plan.cfg):
        return plan
    ids = [s.trial_id for members in budget_mod.lines(plan.cfg, plan.specs).values() for s in members]
    plan.budget_check = budget_mod.decide(plan.cfg, plan.specs, finished_runs(plan.out_dir, ids))
    plan.specs += plan.budget_check.trials
    plan.reserve += plan.budget_check.reserve
    return plan


def runs_in_rounds(cfg: ExperimentConfig) -> bool:
    """Whether the finished trials can add trials (adaptive seeds, a budget check): the runner then
    runs in rounds, and an idle worker tops the queue up."""
    return cfg.adaptive is not None or budget_mod.enabled(cfg)


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
    """The values a data setting takes in a run: its grid axis, the arms' values, a categorical study
    parameter's choices, or the fixed value; empty for a sampled range (encoded when a trial first
    needs it)."""
    values = set(cfg.setting_values(key))
    if cfg.study is not None and key in cfg.study.params:
        p = cfg.study.params[key]
        values = set(p.choices) if p.type == "categorical" else set()
    return values


def data_settings(plan: Plan) -> list[DataConfig]:
    """Every data setting the run's trials use, once each by data.encoding_key: the grid's trials'
    (adaptive seeds not needed yet included); for a search, each combination of the data values its
    grid, arms and categorical parameters take (a sampled range is encoded when a trial first needs it)."""
    found = {data_mod.encoding_key(s.data): s.data for s in [*plan.specs, *plan.reserve]}
    cfg = plan.cfg
    if cfg.study is not None:
        keys = [k for k in (f"data.{f.name}" for f in dataclasses.fields(DataConfig)) if k not in NOT_GRIDDABLE
                and (k in cfg.study.params or len(cfg.setting_values(k)) > 1)]
        choices = [sorted(_axis_values(cfg, k), key=repr) for k in keys]
        for combo in itertools.product(*choices):
            d = dataclasses.replace(cfg.data, **{k.split(".", 1)[1]: v for k, v in zip(keys, combo)})
            found.setdefault(data_mod.encoding_key(d), d)
    return list(found.values())


def prepare_data(plan: Plan) -> dict[str, data_mod.Dataset]:
    """Encode each data setting the run uses once (cached on disk for every worker), keyed by
    data.encoding_key; validate embeddings."""
    out = {}
    for d in data_settings(plan):
        ds = data_mod.load(d, cache_dir(plan.out_dir))
        if ds.embeddings is not None:
            check_embed_dim(plan, ds.embeddings.shape[1])
        out[data_mod.encoding_key(d)] = ds
    return out



def check_embed_dim(plan: Plan, width: int) -> None:
    """Every trial's model.embed_dim must be the pretrained embeddings' width."""
    dims = {s.model.embed_dim for s in plan.specs} or {plan.cfg.model.embed_dim}
    if dims != {width}:
        raise ConfigError(f"config key 'model.embed_dim': {sorted(dims)} does not match the "
                          f"pretrained embeddings' width {width} ({plan.cfg.data.embedding})")


def check_compatible(plan: Plan) -> None:
    """Refuse to mix results of different fixed settings in one directory (results_dir.check_existing)."""
    check_existing(plan.cfg, plan.out_dir)


def write_config(plan: Plan) -> None:
    """Write the plan's resolved config to DIR/config.yaml (results_dir.write_config)."""
    results_dir.write_config(plan.cfg, plan.out_dir)


def _max_steps(cfg: ExperimentConfig, t: Any) -> int | None:
    """At most how many steps a trial with train settings `t` takes (None: unknown data size)."""
    n_train = cfg.data.synth.n_train if cfg.data.kind == "synthetic" else None
    if not n_train:
        return None
    try:
        return t.budget(n_train)[1]
    except ValueError:  # drop_last leaves no batch: the trial would fail at once
        return 0


def dry_run(cfg: ExperimentConfig, out_dir: str | Path, *, device: str = "auto", yes: bool = False
            ) -> dict[str, Any]:
    """What a run would do, writing nothing and refusing what the run would refuse (size, device,
    data, a changed fixed setting): a document with the trials (id, factors, done, budget) and
    totals. A study lists its search studies; each study's trials are sampled during the run."""
    check_size(cfg, yes)
    check_devices(device, cfg)
    check_bounds(cfg)
    plan = make_plan(cfg, out_dir, write=False)
    check_compatible(plan)
    width = data_mod.check(cfg.data)
    if width is not None:
        check_embed_dim(plan, width)
    doc: dict[str, Any] = {"name": cfg.name, "out": str(plan.out_dir), "device": device}
    if cfg.study is not None:
        budget = _max_steps(cfg, cfg.train)
        doc["studies"] = [{"study": s.name, "fixed": {short_axis_name(k): v for k, v in s.fixed.items()},
                           "trials": cfg.study.n_trials, "budget": {"max_steps": budget}} for s in plan.studies]
        doc["trials"] = []
        to_run = [(st["trials"], budget) for st in doc["studies"]]
        done = 0
    else:
        doc["trials"] = [{"trial_id": spec.trial_id, "factors": spec.factors,
                          "done": verify_trial(plan.out_dir, spec.trial_id) is None,
                          "budget": {"max_steps": _max_steps(cfg, spec.train)},
                          **({"budget_check": spec.tag[budget_mod.COLUMN]} if budget_mod.COLUMN in spec.tag else {})}
                         for spec in plan.specs]
        to_run = [(1, t["budget"]["max_steps"]) for t in doc["trials"] if not t["done"]]
        done = sum(t["done"] for t in doc["trials"])
    if cfg.adaptive is not None:
        lo, hi = adaptive_mod.trial_bounds(cfg)
        doc["adaptive"] = {"min_trials": lo, "max_trials": hi, "min_seeds": cfg.adaptive.min_seeds,
                           "max_seeds": cfg.adaptive.max_seeds}
    if plan.budget_check is not None:
        b = plan.budget_check
        longest = max((_max_steps(cfg, s.train) or 0 for s in [*b.trials, *b.reserve]), default=0)
        doc["budget_check"] = {"factor": cfg.headline.budget_check.factor, "seeds": len(budget_mod.check_seeds(cfg)),
                               **budget_mod.summary(b), "max_steps": b.max_trials * longest}
    reruns = cfg.study is not None and cfg.study.rerun_best
    doc["totals"] = {"trials": plan.total, "done": done, "to_run": plan.total - done,
                     "max_steps": sum(n * (b or 0) for n, b in to_run), "reruns_after_search": reruns}
    return doc
