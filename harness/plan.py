"""Planning a run: which trials a config describes, its data, and the results directory's config.

Knows the config and the data; knows nothing of Optuna's storage or of training (no torch import),
so `harness status`, `harness report` and `--dry-run` stay light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
from harness.records import verify_trial
from harness.study import SearchStudy


@dataclass
class Plan:
    """What a run is made of: the grid trials (or, for a study, the re-runs of each study's best
    setting once they are known) and the search studies."""

    cfg: ExperimentConfig
    out_dir: Path
    specs: list[TrialSpec]
    data_id: str
    studies: list[SearchStudy] = field(default_factory=list)

    @property
    def by_id(self) -> dict[str, TrialSpec]:
        return {s.trial_id: s for s in self.specs}

    @property
    def total(self) -> int:
        """Trials the run will have when it is finished."""
        if self.cfg.study is None:
            return len(self.specs)
        reruns = len(self.studies) * len(study_mod.seeds(self.cfg)) if self.cfg.study.rerun_best else 0
        return len(self.studies) * self.cfg.study.n_trials + reruns

    @property
    def factor_names(self) -> list[str]:
        """Short names of the settings that vary between trials (for progress lines)."""
        names = [short_axis_name(k) for k in self.cfg.grid]
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
    if cfg.study is None:
        return Plan(cfg, out_dir, expand_grid(cfg, data_id), data_id)
    return Plan(cfg, out_dir, [], data_id, study_mod.search_studies(cfg))


def prepare_data(plan: Plan) -> dict[int, data_mod.Dataset]:
    """Encode the data once per pad_size (cached on disk for every worker); validate embeddings."""
    cfg = plan.cfg
    pads = set(cfg.grid.get("data.pad_size", [cfg.data.pad_size]))
    if cfg.study is not None and "data.pad_size" in cfg.study.params:
        p = cfg.study.params["data.pad_size"]
        pads = set(p.choices) if p.type == "categorical" else set()  # sampled sizes encode on first use
    dims = {s.model.embed_dim for s in plan.specs} or {cfg.model.embed_dim}
    out = {}
    for pad in sorted(pads):
        ds = data_mod.load(cfg.data, cache_dir(plan.out_dir), pad)
        if ds.embeddings is not None and dims != {ds.embeddings.shape[1]}:
            raise ConfigError(f"config key 'model.embed_dim': {sorted(dims)} does not match the "
                              f"pretrained embeddings' width {ds.embeddings.shape[1]} ({cfg.data.embedding})")
        out[pad] = ds
    return out


def _fixed_settings(raw: dict) -> dict[str, Any]:
    """The parts of a resolved config that must not change between runs into one directory:
    everything in data/model/train that is not a grid axis."""
    axes = {AXIS_ALIASES.get(a, a) for a in raw.get("grid", {})}
    axes |= {AXIS_ALIASES.get(a, a) for a in (raw.get("study") or {}).get("params", {})}
    flat = {}
    for section in GRIDDABLE_SECTIONS:
        for k, v in flatten(raw.get(section, {}), section + ".").items():
            if k not in axes:
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
    """Write the resolved config to DIR/config.yaml (atomically: temp file, then rename); a
    `run.storage` URL without its password."""
    from harness.storage import without_password

    raw = plan.cfg.to_dict()
    if raw.get("run", {}).get("storage"):
        raw["run"]["storage"] = without_password(raw["run"]["storage"])
    atomic_write_text(plan.out_dir / "config.yaml", yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))


def load_results_config(out_dir: str | Path) -> ExperimentConfig:
    """The resolved config a results directory was run with."""
    path = Path(out_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{out_dir} is not a results directory (no config.yaml)")
    return config_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")), source=str(path))


def dry_run(cfg: ExperimentConfig, out_dir: str | Path) -> list[dict[str, Any]]:
    """The trials the config describes, whether each is done, and a rough cost estimate."""
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
             "done": verify_trial(plan.out_dir, spec.trial_id) is None} for spec in plan.specs]
