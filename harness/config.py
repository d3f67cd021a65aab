"""Experiment config: YAML → typed dataclasses → validated → expanded into `TrialSpec`s.

Every key is checked before anything trains: an unknown key, a wrong type, a value outside its
allowed set or range, or an empty grid axis raises `ConfigError`, whose message names the dotted
key, the bad value, what is allowed and (when it came from a file) the file and line.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCHEMA_VERSION = 1

CELLS = ("rnn", "lstm", "gru")
LAYERNORMS = ("none", "output", "recurrent")
READOUTS = ("last", "last_valid", "mean", "max")


class ConfigError(ValueError):
    """A config value is wrong. The message names the key, the value and what is allowed."""


def _meta(doc: str = "", *, min: float | None = None, max: float | None = None,
          exclusive_min: bool = False, choices: tuple = ()) -> dict:
    return {"doc": doc, "min": min, "max": max, "exclusive_min": exclusive_min, "choices": choices}


@dataclass
class SynthConfig:
    """The embedded synthetic data set (news-title-like, char-level, 10 classes)."""

    seed: int = field(default=0, metadata=_meta("seed of the generator"))
    n_train: int = field(default=18000, metadata=_meta("training titles", min=1))
    n_dev: int = field(default=2000, metadata=_meta("dev titles", min=1))
    n_test: int = field(default=2000, metadata=_meta("test titles", min=1))
    n_classes: int = field(default=10, metadata=_meta("number of classes", min=2))
    vocab_size: int = field(default=3000, metadata=_meta("distinct background characters", min=50))
    keywords_per_class: int = field(default=40, metadata=_meta("class-indicative chars", min=1))
    signal: float = field(default=0.13, metadata=_meta(
        "probability that a character is drawn from the class's indicative set", min=0.0, max=1.0))
    min_len: int = field(default=4, metadata=_meta("shortest title, characters", min=1))
    max_len: int = field(default=32, metadata=_meta("longest title, characters", min=1))
    mean_len: float = field(default=19.0, metadata=_meta("mean title length, characters", min=1.0))


@dataclass
class DataConfig:
    kind: str = field(default="synthetic", metadata=_meta(
        "synthetic (embedded generator) or thucnews (a directory)", choices=("synthetic", "thucnews")))
    dir: str | None = field(default=None, metadata=_meta(
        "for thucnews: holds train.txt dev.txt test.txt class.txt [vocab.pkl] [*.npz]"))
    embedding: str = field(default="random", metadata=_meta(
        "random, or the file name of an .npz in dir with an 'embeddings' array"))
    tokenizer: str = field(default="char", metadata=_meta(
        "char (each character a token) or word (split on spaces)", choices=("char", "word")))
    pad_size: int = field(default=32, metadata=_meta("tokens per text: padded or cut", min=1))
    vocab_size: int = field(default=10000, metadata=_meta("most frequent tokens kept", min=1))
    min_freq: int = field(default=1, metadata=_meta("minimum count of a kept token", min=1))
    synth: SynthConfig = field(default_factory=SynthConfig)


@dataclass
class ModelConfig:
    cell: str = field(default="lstm", metadata=_meta("recurrent cell", choices=CELLS))
    layernorm: str = field(default="none", metadata=_meta(
        "none | output (LN on the read-out vector) | recurrent (LN inside the cell)",
        choices=LAYERNORMS))
    embed_dim: int = field(default=300, metadata=_meta("embedding width", min=1))
    hidden_size: int = field(default=128, metadata=_meta("recurrent width per direction", min=1))
    num_layers: int = field(default=2, metadata=_meta("stacked recurrent layers", min=1))
    bidirectional: bool = field(default=True, metadata=_meta("two directions per layer"))
    dropout: float = field(default=0.3, metadata=_meta(
        "dropout between recurrent layers", min=0.0, max=1.0))
    readout: str = field(default="last", metadata=_meta(
        "which outputs the classifier reads", choices=READOUTS))
    init: str = field(default="xavier", metadata=_meta(
        "xavier (the seed's init_network) or default (PyTorch's)", choices=("xavier", "default")))
    forget_bias: float = field(default=0.0, metadata=_meta("LSTM forget-gate bias at init"))


@dataclass
class TrainConfig:
    seed: int = field(default=0, metadata=_meta("base seed; data order, init and dropout derive from it"))
    batch_size: int = field(default=64, metadata=_meta("training batch size", min=1))
    lr: float = field(default=1e-3, metadata=_meta("Adam learning rate", min=0.0, exclusive_min=True))
    epochs: int = field(default=7, metadata=_meta("passes over the training set", min=1))
    max_steps: int | None = field(default=None, metadata=_meta("stop after this many steps", min=1))
    eval_every: int = field(default=100, metadata=_meta("steps between dev evaluations", min=1))
    require_improvement: int = field(default=1000, metadata=_meta(
        "early stop after this many steps without dev-loss improvement", min=1))
    shuffle: bool = field(default=True, metadata=_meta("reshuffle the training set every epoch"))
    drop_last: bool = field(default=False, metadata=_meta("drop the last partial batch of an epoch"))
    grad_clip: float | None = field(default=None, metadata=_meta(
        "clip the global gradient norm to this", min=0.0, exclusive_min=True))
    target_dev_acc: float = field(default=0.8, metadata=_meta(
        "convergence = first step with dev accuracy at least this", min=0.0, max=1.0))
    eval_batch_size: int = field(default=1024, metadata=_meta("batch size for dev/test", min=1))
    probe_size: int = field(default=256, metadata=_meta("examples in the gradient-reach probe", min=1))
    probe_points: int = field(default=4, metadata=_meta(
        "log-spaced probe steps between step 0 and the end", min=0))
    instrument: bool = field(default=True, metadata=_meta(
        "record gradient norms, update ratios and the gradient-reach probe (off: curves only; "
        "for measuring the recording's cost)"))
    precision: str = field(default="fp32", metadata=_meta(
        "fp32, or bf16 autocast (meant for CUDA; on a CPU autocast leaves nn.GRU in fp32)",
        choices=("fp32", "bf16")))


@dataclass
class RunConfig:
    workers: int = field(default=1, metadata=_meta("worker processes", min=1))
    device: str = field(default="auto", metadata=_meta("auto | cpu | cuda | cuda:K[,cuda:J...]"))
    threads: int | None = field(default=None, metadata=_meta(
        "torch CPU threads per worker (default: cores / workers)", min=1))
    storage: str | None = field(default=None, metadata=_meta(
        "Optuna storage URL (default: a journal file in the results directory)"))


SAMPLERS = ("tpe", "random", "qmc", "gp", "nsga2", "grid", "bruteforce")
PRUNERS = ("none", "median", "hyperband", "successive_halving", "wilcoxon")
# Runs-table metrics a study can optimise, with the direction that is better.
METRICS = {"best_dev_acc": "maximize", "test_acc": "maximize", "test_macro_f1": "maximize",
           "test_loss": "minimize", "steps_to_target": "minimize", "samples_to_target": "minimize",
           "seconds_to_target": "minimize", "train_s": "minimize", "wall_s": "minimize"}
# Options each sampler/pruner accepts (a subset of the Optuna constructors' keyword arguments).
SAMPLER_OPTIONS = {
    "tpe": ("n_startup_trials", "n_ei_candidates", "multivariate", "group", "constant_liar", "gamma"),
    "random": (), "qmc": ("qmc_type", "scramble"), "gp": ("n_startup_trials", "deterministic_objective"),
    "nsga2": ("population_size", "mutation_prob", "crossover_prob", "swapping_prob"), "grid": (),
    "bruteforce": ("avoid_premature_stop",),
}
PRUNER_OPTIONS = {
    "none": (), "median": ("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor"),
    "successive_halving": ("min_resource", "reduction_factor", "min_early_stopping_rate"),
    "wilcoxon": ("p_threshold", "n_startup_steps"),
}


@dataclass
class ParamSpec:
    """One search distribution: float (low, high, log, step), int (low, high, log, step) or
    categorical (choices)."""

    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list | None = None


@dataclass
class Objective:
    metric: str
    direction: str


@dataclass
class StudyConfig:
    n_trials: int = 20
    sampler: str = "tpe"
    sampler_options: dict = field(default_factory=dict)
    pruner: str = "none"
    pruner_options: dict = field(default_factory=dict)
    objectives: list[Objective] = field(default_factory=lambda: [Objective("best_dev_acc", "maximize")])
    params: dict[str, ParamSpec] = field(default_factory=dict)  # canonical dotted key -> distribution
    per: list[str] = field(default_factory=list)  # canonical dotted keys of grid axes: one study each
    rerun_best: bool = True   # re-run each study's best setting once per grid seed
    seed: int = 0             # the sampler's seed


SECTIONS: dict[str, type] = {
    "data": DataConfig, "model": ModelConfig, "train": TrainConfig, "run": RunConfig,
}
# Short grid-axis names and the dotted keys they stand for.
AXIS_ALIASES = {
    "cell": "model.cell", "layernorm": "model.layernorm", "batch_size": "train.batch_size",
    "pad_size": "data.pad_size", "lr": "train.lr", "seed": "train.seed",
}
GRIDDABLE_SECTIONS = ("data", "model", "train")
NOT_GRIDDABLE = {"data.kind", "data.dir", "data.embedding", "data.synth"}


@dataclass
class ExperimentConfig:
    name: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    grid: dict[str, list] = field(default_factory=dict)  # canonical dotted key -> values
    study: StudyConfig | None = None
    source: str | None = None  # the file it came from

    def to_dict(self) -> dict:
        """The resolved config as plain data (what `config.yaml` in the results holds)."""
        out = {"name": self.name}
        for name in SECTIONS:
            out[name] = dataclasses.asdict(getattr(self, name))
        out["grid"] = {short_axis_name(k): list(v) for k, v in self.grid.items()}
        if self.study is not None:
            st = dataclasses.asdict(self.study)
            st["params"] = {short_axis_name(k): {a: b for a, b in v.items() if b is not None and b is not False}
                            for k, v in st["params"].items()}
            st["per"] = [short_axis_name(k) for k in self.study.per]
            out["study"] = st
        return out


@dataclass(frozen=True)
class TrialSpec:
    """One trial: every setting resolved. A trial is a pure function of this (plus a device)."""

    name: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    factors: dict[str, Any]  # short axis name -> value, for every grid axis
    data_id: str              # identity of the data set (content hash)
    trial_id: str             # stable hash of the resolved settings and the data identity
    tag: dict[str, Any] = field(default_factory=dict)  # study, number, phase for study trials

    def settings(self) -> dict[str, Any]:
        """Flat dotted-key dict of every resolved data/model/train setting."""
        return flatten({"data": dataclasses.asdict(self.data), "model": dataclasses.asdict(self.model),
                         "train": dataclasses.asdict(self.train)})


# ----------------------------------------------------------------------------- validation

def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def short_axis_name(dotted: str) -> str:
    for short, full in AXIS_ALIASES.items():
        if full == dotted:
            return short
    return dotted


class _Where:
    """Maps dotted keys to 'file line N' using the YAML node marks."""

    def __init__(self, source: str | None, lines: dict[str, int] | None = None):
        self.source = source
        self.lines = lines or {}

    def __call__(self, key: str) -> str:
        if self.source is None:
            return ""
        line = self.lines.get(key)
        return f" ({self.source}, line {line})" if line else f" ({self.source})"


def _yaml_lines(text: str) -> dict[str, int]:
    """dotted key -> 1-based line of the key in the YAML text."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}{k.value}"
                lines[key] = k.start_mark.line + 1
                walk(v, key + ".")

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, "")
    return lines


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _check_value(key: str, value: Any, tp: Any, meta: dict, where: _Where) -> Any:
    """Coerce and check one scalar value against its annotated type and metadata."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true or false, got {value!r}{where(key)}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}{where(key)}")
    elif tp is float:
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}{where(key)}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}{where(key)}")
    choices = meta.get("choices") or ()
    if choices and value not in choices:
        raise ConfigError(f"config key '{key}': {value!r} is not allowed; allowed: "
                          f"{', '.join(map(str, choices))}{where(key)}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and (value < lo or (meta.get("exclusive_min") and value == lo)):
        op = ">" if meta.get("exclusive_min") else ">="
        raise ConfigError(f"config key '{key}': {value!r} is out of range; must be {op} {lo}{where(key)}")
    if hi is not None and value > hi:
        raise ConfigError(f"config key '{key}': {value!r} is out of range; must be <= {hi}{where(key)}")
    return value


def _field_info(cls: type) -> dict[str, tuple[Any, dict]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], dict(f.metadata)) for f in dataclasses.fields(cls)}


def _build(cls: type, raw: Any, prefix: str, where: _Where) -> Any:
    """Build dataclass `cls` from a mapping, checking every key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.')}': expected a mapping of keys, got "
                          f"{raw!r}{where(prefix.rstrip('.'))}")
    info = _field_info(cls)
    kwargs = {}
    for k, v in raw.items():
        key = f"{prefix}{k}"
        if k not in info:
            raise ConfigError(f"unknown config key '{key}'{where(key)}; allowed keys under "
                              f"'{prefix.rstrip('.')}': {', '.join(info)}")
        tp, meta = info[k]
        if dataclasses.is_dataclass(tp):
            kwargs[k] = _build(tp, v, key + ".", where)
        else:
            kwargs[k] = _check_value(key, v, tp, meta, where)
    return cls(**kwargs)


def _lookup_field(dotted: str) -> tuple[Any, dict]:
    """Type and metadata of a dotted key like 'model.hidden_size'; KeyError if unknown."""
    parts = dotted.split(".")
    cls: Any = SECTIONS.get(parts[0])
    if cls is None or len(parts) < 2:
        raise KeyError(dotted)
    for i, part in enumerate(parts[1:], start=1):
        info = _field_info(cls)
        if part not in info:
            raise KeyError(dotted)
        tp, meta = info[part]
        if i == len(parts) - 1:
            return tp, meta
        if not dataclasses.is_dataclass(tp):
            raise KeyError(dotted)
        cls = tp
    raise KeyError(dotted)


def _canonical_axis(name: str, where: _Where, prefix: str = "grid.") -> str:
    key = AXIS_ALIASES.get(name, name)
    what = "grid axis" if prefix == "grid." else "config key"
    try:
        tp, _ = _lookup_field(key)
    except KeyError:
        raise ConfigError(
            f"unknown {what} '{prefix}{name}'{where(prefix + name)}; allowed: "
            f"{', '.join(AXIS_ALIASES)} or any dotted data/model/train key "
            f"(e.g. model.readout, train.grad_clip)") from None
    if key.split(".")[0] not in GRIDDABLE_SECTIONS or key in NOT_GRIDDABLE or dataclasses.is_dataclass(tp):
        raise ConfigError(f"{what} '{prefix}{name}' cannot vary{where(prefix + name)}: "
                          f"data identity and run settings are fixed per experiment")
    return key


def _build_grid(raw: Any, where: _Where) -> dict[str, list]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config key 'grid': expected a mapping of axis -> list of values, got "
                          f"{raw!r}{where('grid')}")
    grid: dict[str, list] = {}
    for name, values in raw.items():
        key = _canonical_axis(str(name), where)
        gkey = f"grid.{name}"
        if not isinstance(values, list):
            raise ConfigError(f"grid axis '{gkey}': expected a list of values, got {values!r}{where(gkey)}")
        if not values:
            raise ConfigError(f"grid axis '{gkey}' is empty{where(gkey)}; give at least one value")
        if key in grid:
            raise ConfigError(f"grid axis '{gkey}' is given twice (as '{short_axis_name(key)}' and "
                              f"'{key}'){where(gkey)}")
        tp, meta = _lookup_field(key)
        checked = [_check_value(gkey, v, tp, meta, where) for v in values]
        if len(set(map(repr, checked))) != len(checked):
            raise ConfigError(f"grid axis '{gkey}' repeats a value: {values!r}{where(gkey)}")
        grid[key] = checked
    return grid


def config_from_dict(raw: Any, source: str | None = None, lines: dict[str, int] | None = None
                     ) -> ExperimentConfig:
    """Validate a plain mapping (as read from YAML) into an `ExperimentConfig`."""
    where = _Where(source, lines)
    if not isinstance(raw, dict):
        raise ConfigError(f"config{where('')}: expected a mapping at the top level, got {type(raw).__name__}")
    allowed = ["name", *SECTIONS, "grid", "study"]
    for k in raw:
        if k not in allowed:
            raise ConfigError(f"unknown config key '{k}'{where(str(k))}; allowed top-level keys: "
                              f"{', '.join(allowed)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"config key 'name': expected a non-empty string without '/', got {name!r}"
                          f"{where('name')}")
    sections = {s: _build(cls, raw.get(s), s + ".", where) for s, cls in SECTIONS.items()}
    grid = _build_grid(raw.get("grid"), where)
    study = _build_study(raw["study"], grid, where) if raw.get("study") is not None else None
    cfg = ExperimentConfig(name=name, grid=grid, study=study, source=source, **sections)
    _check_consistency(cfg, where)
    return cfg


def _build_param(key: str, raw: Any, where: _Where) -> ParamSpec:
    """One distribution under study.params, checked against the setting it searches."""
    dotted = _canonical_axis(key.removeprefix("study.params."), where, prefix="study.params.")
    skey = f"study.params.{key}"
    if not isinstance(raw, dict):
        raise ConfigError(f"config key '{skey}': expected a mapping like {{type: float, low: 1e-4, high: 1e-2, "
                          f"log: true}}, got {raw!r}{where(skey)}")
    allowed = {"type", "low", "high", "log", "step", "choices"}
    for k in raw:
        if k not in allowed:
            raise ConfigError(f"unknown config key '{skey}.{k}'{where(skey + '.' + str(k))}; allowed: "
                              f"{', '.join(sorted(allowed))}")
    kind = raw.get("type")
    if kind not in ("float", "int", "categorical"):
        raise ConfigError(f"config key '{skey}.type': {kind!r} is not allowed; allowed: float, int, "
                          f"categorical{where(skey)}")
    tp, meta = _lookup_field(dotted)
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"config key '{skey}.choices': a categorical needs a non-empty list, got "
                              f"{choices!r}{where(skey)}")
        checked = [_check_value(f"{skey}.choices", c, tp, meta, where) for c in choices]
        return ParamSpec("categorical", choices=checked)
    for k in ("low", "high"):
        v = raw.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"config key '{skey}.{k}': expected a number, got {v!r}{where(skey)}")
    low, high = raw["low"], raw["high"]
    _check_value(f"{skey}.low", low if kind == "float" else int(low), tp, meta, where)
    _check_value(f"{skey}.high", high if kind == "float" else int(high), tp, meta, where)
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
    if log and step is not None:
        raise ConfigError(f"config key '{skey}': step and log cannot be combined (Optuna){where(skey)}")
    if kind == "int":
        if _base_type(tp) is not int:
            raise ConfigError(f"config key '{skey}.type': '{dotted}' is not an integer setting{where(skey)}")
        if any(not float(v).is_integer() for v in (low, high, step or 1)):
            raise ConfigError(f"config key '{skey}': an int distribution needs integer low/high/step{where(skey)}")
        return ParamSpec("int", low=int(low), high=int(high), log=log, step=int(step) if step else None)
    if _base_type(tp) is not float:
        raise ConfigError(f"config key '{skey}.type': '{dotted}' is not a float setting; use int or "
                          f"categorical{where(skey)}")
    return ParamSpec("float", low=float(low), high=float(high), log=log, step=float(step) if step else None)


def _base_type(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _build_study(raw: Any, grid: dict[str, list], where: _Where) -> StudyConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"config key 'study': expected a mapping, got {raw!r}{where('study')}")
    allowed = [f.name for f in dataclasses.fields(StudyConfig)]
    for k in raw:
        if k not in allowed:
            raise ConfigError(f"unknown config key 'study.{k}'{where('study.' + str(k))}; allowed keys under "
                              f"'study': {', '.join(allowed)}")
    st = StudyConfig()
    for k in ("n_trials", "seed"):
        if k in raw:
            setattr(st, k, _check_value(f"study.{k}", raw[k], int, {"min": 1 if k == "n_trials" else None},
                                        where))
    if "rerun_best" in raw:
        st.rerun_best = _check_value("study.rerun_best", raw["rerun_best"], bool, {}, where)
    st.sampler = _check_value("study.sampler", raw.get("sampler", "tpe"), str, {"choices": SAMPLERS}, where)
    st.pruner = _check_value("study.pruner", raw.get("pruner", "none"), str, {"choices": PRUNERS}, where)
    for kind, table in (("sampler", SAMPLER_OPTIONS), ("pruner", PRUNER_OPTIONS)):
        key = f"study.{kind}_options"
        opts = raw.get(f"{kind}_options") or {}
        if not isinstance(opts, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {opts!r}{where(key)}")
        name = getattr(st, kind)
        for k in opts:
            if k not in table[name]:
                raise ConfigError(f"unknown config key '{key}.{k}'{where(key)}: the {name} {kind} accepts "
                                  f"{', '.join(table[name]) or 'no options'}")
        setattr(st, f"{kind}_options", dict(opts))
    objectives = raw.get("objectives", [{"metric": "best_dev_acc", "direction": "maximize"}])
    if not isinstance(objectives, list) or not objectives:
        raise ConfigError(f"config key 'study.objectives': expected a non-empty list of {{metric, direction}}, "
                          f"got {objectives!r}{where('study.objectives')}")
    st.objectives = []
    for i, o in enumerate(objectives):
        key = f"study.objectives[{i}]"
        if isinstance(o, str):
            o = {"metric": o}
        if not isinstance(o, dict) or set(o) - {"metric", "direction"}:
            raise ConfigError(f"config key '{key}': expected {{metric: ..., direction: ...}}, got {o!r}"
                              f"{where('study.objectives')}")
        metric = _check_value(f"{key}.metric", o.get("metric"), str, {"choices": tuple(METRICS)}, where)
        direction = _check_value(f"{key}.direction", o.get("direction", METRICS[metric]), str,
                                 {"choices": ("maximize", "minimize")}, where)
        st.objectives.append(Objective(metric, direction))
    if len({o.metric for o in st.objectives}) != len(st.objectives):
        raise ConfigError(f"config key 'study.objectives': a metric is repeated{where('study.objectives')}")
    if len(st.objectives) > 1 and st.pruner != "none":
        raise ConfigError(f"config key 'study.pruner': {st.pruner!r} cannot be used with "
                          f"{len(st.objectives)} objectives (Optuna prunes single-objective studies only); "
                          f"use none{where('study.pruner')}")
    params = raw.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"config key 'study.params': expected a mapping of setting -> distribution, got "
                          f"{params!r}{where('study.params')}")
    for k, v in params.items():
        spec = _build_param(str(k), v, where)
        dotted = AXIS_ALIASES.get(str(k), str(k))
        if dotted == "train.seed":
            raise ConfigError(f"config key 'study.params.{k}': seeds are not searched; list them in "
                              f"grid.seed{where('study.params.' + str(k))}")
        if dotted in grid:
            raise ConfigError(f"config key 'study.params.{k}': '{k}' is also a grid axis; a setting is either "
                              f"searched or enumerated{where('study.params.' + str(k))}")
        st.params[dotted] = spec
    if st.sampler == "grid":
        for k, p in st.params.items():
            if p.type == "float" and p.step is None:
                raise ConfigError(f"config key 'study.params.{short_axis_name(k)}': the grid sampler needs "
                                  f"categorical, int, or stepped float distributions{where('study.sampler')}")
    per = raw.get("per", [])
    if not isinstance(per, list):
        raise ConfigError(f"config key 'study.per': expected a list of grid axes, got {per!r}{where('study.per')}")
    for axis in per:
        dotted = AXIS_ALIASES.get(str(axis), str(axis))
        if dotted not in grid or dotted == "train.seed":
            raise ConfigError(f"config key 'study.per': {axis!r} must be a grid axis other than seed (its values "
                              f"come from grid:); grid axes here: "
                              f"{', '.join(short_axis_name(g) for g in grid if g != 'train.seed') or 'none'}"
                              f"{where('study.per')}")
        st.per.append(dotted)
    enumerated = [short_axis_name(g) for g in grid if g not in st.per and g != "train.seed"]
    if enumerated:
        raise ConfigError(f"config key 'grid': with a study, grid axes other than seed must be listed in "
                          f"study.per (one study per combination); not listed: {', '.join(enumerated)}"
                          f"{where('study.per')}")
    return st


def _check_consistency(cfg: ExperimentConfig, where: _Where) -> None:
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


def parse_override(text: str) -> tuple[str, Any]:
    """'model.hidden_size=64' -> ('model.hidden_size', 64). Values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set model.hidden_size=64")
    key, _, value = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: the key is empty")
    return key, yaml.safe_load(value) if value.strip() else None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of the raw mapping with each `key=value` override set (grid axes too)."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        parts = key.split(".")
        node = raw
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: '{p}' is not a section")
        node[parts[-1]] = value
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate a YAML config file. Raises `ConfigError` with file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text: {e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if raw is None:
        raise ConfigError(f"config file {path} is empty")
    lines = _yaml_lines(text)
    if overrides:
        raw = apply_overrides(raw, overrides)
        for text_ in overrides:
            lines.pop(parse_override(text_)[0], None)
    return config_from_dict(raw, source=str(path), lines=lines)


# ----------------------------------------------------------------------------- grid expansion

def stable_hash(obj: Any, n: int = 12) -> str:
    """Hex digest of the canonical JSON of `obj` (sorted keys): stable across runs and machines."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _set_dotted(sections: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    obj = sections[parts[0]]
    for p in parts[1:-1]:
        obj = getattr(obj, p)
    setattr(obj, parts[-1], value)


def make_spec(cfg: ExperimentConfig, data_id: str, values: dict[str, Any], tag: dict[str, Any] | None = None
              ) -> TrialSpec:
    """The `TrialSpec` with the config's settings and `values` (dotted key -> value) set on top.
    `tag` (e.g. the study and trial number of a sampled trial) joins the trial's identity."""
    sections = {s: copy.deepcopy(getattr(cfg, s)) for s in GRIDDABLE_SECTIONS}
    for key, value in values.items():
        _set_dotted(sections, key, value)
    identity: dict[str, Any] = {s: dataclasses.asdict(sections[s]) for s in GRIDDABLE_SECTIONS}
    # Where the data came from and the synthetic settings are captured by data_id.
    for k in ("dir", "synth"):
        identity["data"].pop(k)
    identity["data_id"] = data_id
    if tag:
        identity["tag"] = tag
    return TrialSpec(name=cfg.name, data=sections["data"], model=sections["model"], train=sections["train"],
                     factors={short_axis_name(k): v for k, v in values.items()}, data_id=data_id,
                     trial_id=stable_hash(identity), tag=dict(tag or {}))


def expand_grid(cfg: ExperimentConfig, data_id: str) -> list[TrialSpec]:
    """One `TrialSpec` per combination of the grid axes (seed included), in a stable order."""
    axes = list(cfg.grid)
    return [make_spec(cfg, data_id, dict(zip(axes, combo)))
            for combo in itertools.product(*(cfg.grid[a] for a in axes))]
