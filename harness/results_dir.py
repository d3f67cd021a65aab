"""The results folder: where everything in it lives, and its two settings files.

- Paths: `trial_dir` (DIR/trials/<trial_id>/, the shard folder), a trial's staged folder
  (`staged_path`) and kept weights (`MODEL_FILE`, `model_file`, `find_model`), `is_done`, `cache_dir`.
- DIR/config.yaml, the resolved config: `write_config`, `results_config_raw`, `load_results_config`,
  and `check_existing` (may this run go on in this folder?), with `config_recovery`, the hint when the
  file cannot be read.
- DIR/run.yaml, where the run's shared state lives (`RunSettings`): `write_run_settings`,
  `read_run_settings`.
- `pid_alive`: whether the process that named a staged folder or a temporary file still runs here.

Neither torch nor Optuna: the planner, the records, the storage and `harness status` all use it.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.config import (
    ARM,
    AXIS_ALIASES,
    GRIDDABLE_SECTIONS,
    ConfigError,
    ExperimentConfig,
    config_from_dict,
    flatten,
)
from harness.config.sections import ADDED_LATER, EXECUTION_KEYS, SYNTH_ADDED_LATER
from harness.files import atomic_write_text, kind, one_line, read_yaml_mapping
from harness.redact import without_password

__all__ = ["MODEL_FILE", "STAGED_PREFIX", "RunSettings", "cache_dir", "check_existing", "config_recovery",
           "find_model", "is_done", "load_results_config", "model_file", "pid_alive", "read_run_settings",
           "results_config_raw", "staged_path", "trial_dir", "write_config", "write_run_settings"]


# ----------------------------------------------------------------------------- paths

def trial_dir(results_dir: str | Path, trial_id: str) -> Path:
    """A trial's shard folder: DIR/trials/<trial_id>."""
    return Path(results_dir) / "trials" / trial_id


def cache_dir(out_dir: Path) -> Path:
    """Where the encoded data of a results directory is cached (shared by its workers)."""
    return out_dir / "cache"


# A trial's kept weights (train.save_model), in its shard folder beside the shards.
MODEL_FILE = "model.pt"


def model_file(trial_id: str) -> str:
    """The runs column model_file of a trial whose weights are kept: its MODEL_FILE relative to the
    results folder, with '/' (trials/<trial_id>/model.pt)."""
    return f"trials/{trial_id}/{MODEL_FILE}"


STAGED_PREFIX = ".staged@"


def staged_path(results_dir: str | Path, trial_id: str) -> Path:
    """Where this process stages a trial's shards before publishing them:
    DIR/trials/.staged@<host>@<pid>@<trial_id> (a hidden folder: loaders and progress skip it)."""
    return Path(results_dir) / "trials" / f"{STAGED_PREFIX}{socket.gethostname()}@{os.getpid()}@{trial_id}"


def find_model(results_dir: str | Path, trial_id: str) -> Path | None:
    """The trial's weights file: still staged by this process (`staged_path`: a live tracker closes a
    trial before the runner publishes it), else published (DIR/trials/<trial_id>/model.pt); None when
    neither exists. The staged one first: a published one may be an earlier attempt's."""
    for folder in (staged_path(results_dir, trial_id), trial_dir(results_dir, trial_id)):
        if (folder / MODEL_FILE).is_file():
            return folder / MODEL_FILE
    return None


def is_done(results_dir: str | Path, trial_id: str) -> bool:
    """A trial is done when its shard folder exists (it only ever appears complete)."""
    return (trial_dir(results_dir, trial_id) / "runs.parquet").is_file()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host. A zombie (exited, not yet reaped) does not:
    a worker whose main process was killed is re-parented, and where no process reaps it (an init
    that does not, as in some containers) it stays a zombie that answers signals."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether /proc says this process is a zombie (False where there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()  # the command name, in parentheses, may hold spaces
    return bool(fields) and fields[0] == "Z"


# ----------------------------------------------------------------------------- DIR/config.yaml

def config_recovery(out_dir: str | Path) -> str:
    """How to get going again when DIR/config.yaml cannot be read."""
    return (f"restore it from your experiment's YAML (delete it, then `harness run CONFIG --out {out_dir}` "
            f"writes it again and keeps the finished trials) or delete {out_dir} to start over")


def results_config_raw(out_dir: str | Path) -> dict | None:
    """DIR/config.yaml as a mapping, unvalidated (None when there is none); a file that is not
    UTF-8, not YAML or not a mapping is a ConfigError naming it and how to recover."""
    path = Path(out_dir) / "config.yaml"
    if not path.is_file():
        return None
    return read_yaml_mapping(path, config_recovery(out_dir))


def load_results_config(out_dir: str | Path) -> ExperimentConfig:
    """The resolved config a results directory was run with. ConfigError (naming the file and how to
    recover) when there is none, or it is not UTF-8, not YAML or not a valid config."""
    raw = results_config_raw(out_dir)
    if raw is None:
        raise ConfigError(f"{out_dir} is not a results directory (no config.yaml)")
    path = Path(out_dir) / "config.yaml"
    try:
        return config_from_dict(raw, source=str(path))
    except ConfigError as e:
        raise ConfigError(f"{path} is not a valid config: {one_line(str(e))}; {config_recovery(out_dir)}") from None


def write_config(cfg: ExperimentConfig, out_dir: Path) -> None:
    """Write the resolved config to DIR/config.yaml (atomically: temp file, then rename); a
    `run.storage` URL without its password."""
    raw = cfg.to_dict()
    if raw.get("run", {}).get("storage"):
        raw["run"]["storage"] = without_password(raw["run"]["storage"])
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))


def check_existing(cfg: ExperimentConfig, out_dir: str | Path) -> None:
    """Refuse an existing results directory this run cannot go on with: a DIR/config.yaml or
    DIR/run.yaml that cannot be read (naming the file and how to recover), or results of another
    experiment or of other fixed settings (mixing them would make the tables meaningless)."""
    out_dir = Path(out_dir)
    read_run_settings(out_dir)
    old = results_config_raw(out_dir)
    if old is None:
        return
    new = cfg.to_dict()
    try:
        if not isinstance(old.get("name"), str):
            raise ConfigError(f"'name' holds {kind(old.get('name'))}, not a string")
        a = _fixed_settings(old)
    except ConfigError as e:
        raise ConfigError(f"{out_dir / 'config.yaml'} is not a config: {e}; {config_recovery(out_dir)}") from None
    if old["name"] != new["name"]:
        raise ConfigError(f"{out_dir} holds results of experiment {one_line(repr(old['name']), 80)}, not "
                          f"{new['name']!r}; choose another --out")
    b = _fixed_settings(new)
    # A key that became a grid axis (or stopped being one) changes what the old trials mean.
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k, "<grid axis>") != b.get(k, "<grid axis>")]
    if changed:
        detail = "; ".join(f"{k}: {a.get(k, '<grid axis>')!r} -> {b.get(k, '<grid axis>')!r}"
                           for k in changed[:6])
        raise ConfigError(
            f"{out_dir} holds results run with other fixed settings ({detail}). Only grid axes "
            f"may grow when resuming into the same directory; use another --out for a new experiment")


# Keys added to the config later, at the values that mean "as before": a folder written before they existed
# lacks them, and a new run that leaves them there is the same experiment.
LATER = {**ADDED_LATER, **{f"data.synth.{k}": v for k, v in SYNTH_ADDED_LATER.items()}}


def _fixed_settings(raw: dict) -> dict[str, Any]:
    """The parts of a resolved config that must not change between runs into one directory:
    everything in data/model/train that is not a grid axis, nor set by every arm of grid.arm. (A key
    only some arms set stays a fixed setting: the other arms' trials run with its fixed value.)
    ConfigError when a part of `raw` that should be a mapping is not (a damaged config.yaml)."""
    grid = _mapping(raw, "grid")
    axes = {AXIS_ALIASES.get(a, a) for a in grid if a != ARM}
    arms = [{AXIS_ALIASES.get(k, k) for k in _mapping(_mapping(grid, ARM), a)} for a in _mapping(grid, ARM)]
    axes |= set.intersection(*arms) if arms else set()
    axes |= {AXIS_ALIASES.get(a, a) for a in _mapping(_mapping(raw, "study"), "params")}
    if raw.get("adaptive"):
        axes.add("train.seed")  # adaptive seeds vary it as a grid axis would
    flat = {}
    for section in GRIDDABLE_SECTIONS:
        for k, v in flatten(_mapping(raw, section), section + ".").items():
            if k not in axes and k not in EXECUTION_KEYS and not (k in LATER and v == LATER[k]):
                flat[k] = v
    return flat


def _mapping(raw: dict, key: str) -> dict:
    """raw[key] when it is a mapping, {} when it is absent or null; else a ConfigError."""
    v = raw.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(f"'{key}' holds {kind(v)}, not a mapping")
    return v


# ----------------------------------------------------------------------------- DIR/run.yaml

@dataclass
class RunSettings:
    """Where a run's shared state lives (written to DIR/run.yaml so report/status find it), and the
    results folder's identity: a random id made by its first run, which a copied or moved folder
    keeps; each trial records the id of the folder its worker wrote its shards into."""

    storage: str | None = None
    artifacts: str | None = None
    folder_id: str | None = None


def write_run_settings(out_dir: Path, settings: RunSettings) -> None:
    """Write DIR/run.yaml (atomically: temp file, then rename), the storage URL without its password,
    keeping the folder's id (or making one)."""
    folder = settings.folder_id or read_run_settings(out_dir).folder_id or uuid.uuid4().hex
    settings = dataclasses.replace(settings, storage=without_password(settings.storage), folder_id=folder)
    atomic_write_text(out_dir / "run.yaml", yaml.safe_dump(dataclasses.asdict(settings), sort_keys=False))


def read_run_settings(out_dir: Path) -> RunSettings:
    """DIR/run.yaml, or the defaults (journal in DIR, no artifact store) when there is none. A file
    that is not UTF-8, not YAML or not a mapping of these settings (each a string or null) is a
    ConfigError naming it and how to recover."""
    path = Path(out_dir) / "run.yaml"
    if not path.is_file():
        return RunSettings()
    recover = (f"delete it (the next `harness run` writes it again; give --storage and --artifacts again if the "
               f"run used them) or delete {out_dir} to start over")
    raw = read_yaml_mapping(path, recover)
    names = [f.name for f in dataclasses.fields(RunSettings)]
    wrong = next((k for k in names if raw.get(k) is not None and not isinstance(raw[k], str)), None)
    if wrong is not None:
        raise ConfigError(f"{path}: '{wrong}' holds {kind(raw[wrong])}, not a string: {recover}")
    return RunSettings(**{k: raw.get(k) for k in names})
