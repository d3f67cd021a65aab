"""The config's sections as typed dataclasses: every key with its type, default, documentation and
allowed values or range (in the field metadata the validation reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.config.errors import ConfigError, Where
from harness.names import CELLS, DATA_KINDS, LAYERNORMS, READOUTS
from harness.plugins import CELL_GROUP, DATASET_GROUP, READOUT_GROUP

MAX_STEPS = 10**9  # training steps one trial may take: the bound of train.epochs and train.max_steps (and
#                    of epochs × steps per epoch, checked against the data size by harness.plan.check_bounds)


def _meta(doc: str = "", *, min: float | None = None, max: float | None = None,
          exclusive_min: bool = False, choices: tuple = (), plugins: str | None = None, parse: Any = None) -> dict:
    """A field's documentation and allowed values; `plugins` names the entry-point group whose names
    add to `choices`; `parse(key, value, where)` (optional) checks and converts a value whose type is
    not one plain scalar type (it replaces the type check)."""
    meta = {"doc": doc, "min": min, "max": max, "exclusive_min": exclusive_min, "choices": choices,
            "plugins": plugins}
    if parse is not None:
        meta["parse"] = parse
    return meta


def parse_fuse(key: str, value: Any, where: Where) -> str | int:
    """`run.fuse`: 'off', 'auto' or a group size K >= 1. YAML reads a bare `off` as false, which
    means 'off'; a string of digits (as `--set run.fuse=4` may arrive) is K."""
    if value is False:
        return "off"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, str) and value in ("off", "auto"):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(f"config key '{key}': {value!r} is not allowed; allowed: off, auto, or an integer "
                      f">= 1 (trials trained together as one fused model){where(key)}")


LIVE_TRACKERS = ("tensorboard", "mlflow", "wandb")  # what run.trackers may name (harness.export.live)
SAVE_MODEL = ("none", "best", "last")  # what train.save_model may be (harness.train keeps those weights)


def parse_trackers(key: str, value: Any, where: Where) -> list[str]:
    """`run.trackers`: a list of tracker names (a comma-separated string, as `--set run.trackers=a,b`
    may arrive, is that list); repeats dropped, order kept."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"config key '{key}': expected a list of tracker names ({', '.join(LIVE_TRACKERS)}), "
                          f"got {value!r}{where(key)}")
    for v in value:
        if v not in LIVE_TRACKERS:
            raise ConfigError(f"config key '{key}': {v!r} is not allowed; allowed: "
                              f"{', '.join(LIVE_TRACKERS)}{where(key)}")
    return list(dict.fromkeys(value))


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
    length_concentration: float = field(default=10.0, metadata=_meta(
        "spread of title lengths: a + b of the beta-binomial (larger = narrower; 10 gives sd 4.9 at the "
        "defaults, 20 gives 3.9)", min=0.1))
    word_len: int = field(default=1, metadata=_meta(
        "class-indicative characters come in words of this many consecutive characters (1: each "
        "character on its own)", min=1, max=8))
    signal_concentration: float | None = field(default=None, metadata=_meta(
        "null: every title has `signal` as its share of indicative characters; a number c: each title draws "
        "its own share from a Beta with mean `signal` and a + b = c (smaller = titles differ more: some "
        "carry much evidence, some almost none)", min=0.1))
    background_zipf: float = field(default=1.0, metadata=_meta(
        "exponent of the background characters' Zipf distribution (rank r has weight r^-s)", min=0.0))
    background_tilt: float = field(default=0.0, metadata=_meta(
        "how much every background character leans to some classes: class c draws background character x "
        "with weight zipf(x) * exp(tilt * z[x, c]), z standard normal per (character, class); 0: the background "
        "is the same for every class and only the indicative sets carry the class", min=0.0, max=5.0))


@dataclass
class DataConfig:
    kind: str = field(default="synthetic", metadata=_meta(
        "synthetic (embedded generator), thucnews (a directory) or a plugin's data set kind", choices=DATA_KINDS,
        plugins=DATASET_GROUP))
    dir: str | None = field(default=None, metadata=_meta(
        "for thucnews: holds train.txt dev.txt test.txt class.txt [vocab.pkl] [*.npz]"))
    embedding: str = field(default="random", metadata=_meta(
        "random, or the file name of an .npz in dir with an 'embeddings' array"))
    tokenizer: str = field(default="char", metadata=_meta(
        "char (each character a token) or word (split on spaces)", choices=("char", "word")))
    pad_size: int = field(default=32, metadata=_meta("tokens per text: padded or cut", min=1))
    lag: int | None = field(default=None, metadata=_meta(
        "null: the reference code's layout (texts from position 0, PAD after). D: texts cut to pad_size, "
        "right-aligned in the first pad_size positions, then D PAD positions: every text's last token "
        "is exactly D steps before the read-out position (sequence length pad_size + D)", min=0))
    vocab_size: int = field(default=10000, metadata=_meta("most frequent tokens kept", min=1))
    min_freq: int = field(default=1, metadata=_meta("minimum count of a kept token", min=1))
    synth: SynthConfig = field(default_factory=SynthConfig)


@dataclass
class ModelConfig:
    cell: str = field(default="lstm", metadata=_meta("recurrent cell", choices=CELLS, plugins=CELL_GROUP))
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
        "which outputs the classifier reads", choices=READOUTS, plugins=READOUT_GROUP))
    init: str = field(default="xavier", metadata=_meta(
        "xavier (the reference code's init_network) or default (PyTorch's)", choices=("xavier", "default")))
    forget_bias: float = field(default=0.0, metadata=_meta("LSTM forget-gate bias at init"))


@dataclass
class TrainConfig:
    seed: int = field(default=0, metadata=_meta("base seed; data order, init and dropout derive from it"))
    batch_size: int = field(default=64, metadata=_meta("training batch size", min=1))
    lr: float = field(default=1e-3, metadata=_meta("Adam learning rate", min=0.0, exclusive_min=True))
    epochs: int = field(default=7, metadata=_meta("passes over the training set", min=1, max=MAX_STEPS))
    max_steps: int | None = field(default=None, metadata=_meta("stop after this many steps", min=1, max=MAX_STEPS))
    eval_every: int = field(default=100, metadata=_meta("steps between dev evaluations", min=1))
    require_improvement: int = field(default=1000, metadata=_meta(
        "early stop after this many steps without dev-loss improvement", min=1))
    shuffle: bool = field(default=True, metadata=_meta("reshuffle the training set every epoch"))
    drop_last: bool = field(default=False, metadata=_meta("drop the last partial batch of an epoch"))
    grad_clip: float | None = field(default=None, metadata=_meta(
        "clip the global gradient norm to this", min=0.0, exclusive_min=True))
    target_dev_acc: float = field(default=0.8, metadata=_meta(
        "convergence = first step with dev accuracy at least this", min=0.0, max=1.0))
    stop_at_target: bool = field(default=False, metadata=_meta(
        "end the trial at the first evaluation that reaches target_dev_acc (stop_reason 'target'): what a "
        "reach/time-to-target experiment needs, at a fraction of the cost; test accuracy is then the early model's"))
    eval_batch_size: int = field(default=1024, metadata=_meta(
        "batch size for dev/test; on a CPU at most 256 (measured faster there: benchmarks/README §12)", min=1))
    probe_size: int = field(default=256, metadata=_meta("examples in the gradient-reach probe", min=1))
    probe_points: int = field(default=4, metadata=_meta(
        "log-spaced probe steps between step 0 and the end", min=0))
    instrument: bool = field(default=True, metadata=_meta(
        "record gradient norms, update ratios and the gradient-reach probe (off: curves only; "
        "for measuring the recording's cost)"))
    precision: str = field(default="fp32", metadata=_meta(
        "fp32, or bf16 autocast (meant for CUDA; on a CPU autocast leaves nn.GRU in fp32)",
        choices=("fp32", "bf16")))
    cuda_graph: bool = field(default=False, metadata=_meta(
        "capture the fused training step (forward, loss, backward, gradient norms, clipping, Adam) in a "
        "CUDA graph and replay it every step; forces drop_last (static shapes); needs a CUDA device "
        "(refused at `harness run` start otherwise); evaluation and the probe stay eager"))
    checkpoint_every: int = field(default=0, metadata=_meta(
        "save the trial's whole state every this many optimizer steps to DIR/trials/.ckpt-<trial_id>.pt "
        "(written atomically, deleted when the trial ends) and resume from it, bit-identically, when the "
        "trial starts again after an interruption (Ctrl-C, kill -9, a requeue); 0: off. How a trial runs, "
        "not what it computes: left out of trial ids, not a grid axis, may change between runs into one "
        "directory", min=0, max=MAX_STEPS))
    save_model: str = field(default="none", metadata=_meta(
        "keep the trial's weights (its model's state_dict, torch.save) as DIR/trials/<trial_id>/model.pt, "
        "named in the runs column model_file and attached as an artifact by `harness export` and the live "
        "trackers (MLflow, W&B): best (the lowest-dev-loss weights the test accuracy is measured with), last "
        "(the weights after the last step) or none. Not for a diverged or failed trial. How a trial runs, not "
        "what it computes: left out of trial ids, not a grid axis, may change between runs into one directory",
        choices=SAVE_MODEL))

    def budget(self, n_train: int) -> tuple[int, int]:
        """(steps per epoch, total steps) of a trial on `n_train` training texts: `epochs` passes in
        batches of batch_size (the last partial batch dropped with drop_last or cuda_graph), capped by
        max_steps. The one count the trainers, the plan and the progress display share. Raises
        ValueError when drop_last leaves no batch."""
        bs = self.batch_size
        per_epoch = n_train // bs if self.drop_last or self.cuda_graph else -(-n_train // bs)
        if per_epoch == 0:
            raise ValueError(f"train.batch_size {bs} is larger than the training set ({n_train}) with drop_last")
        total = self.epochs * per_epoch
        return per_epoch, total if self.max_steps is None else min(total, self.max_steps)


@dataclass
class RunConfig:
    workers: int = field(default=1, metadata=_meta("worker processes", min=1))
    device: str = field(default="auto", metadata=_meta("auto | cpu | cuda | cuda:K[,cuda:J...]"))
    threads: int | None = field(default=None, metadata=_meta(
        "torch CPU threads per worker (default: cores / workers)", min=1))
    storage: str | None = field(default=None, metadata=_meta(
        "Optuna storage URL (default: a journal file in the results directory)"))
    fuse: str | int = field(default="off", metadata=_meta(
        "off | auto | K: train up to K waiting trials of one shape together as one fused model "
        "(auto: 32 on CUDA, off on a CPU)", parse=parse_fuse))
    trackers: list[str] = field(default_factory=list, metadata=_meta(
        "trackers each worker streams its trials' scalars to at every evaluation, as `harness export` names "
        "them: tensorboard (DIR/tensorboard-live/), mlflow (a SQLite store, DIR/mlflow-live/mlflow.db), wandb "
        "(offline runs, DIR/wandb-live/); a tracker that fails is a warning and the trial goes on. How trials "
        "run, not what they compute: left out of trial ids, not a grid axis, may change between runs into one "
        "directory", parse=parse_trackers))


SECTIONS: dict[str, type] = {
    "data": DataConfig, "model": ModelConfig, "train": TrainConfig, "run": RunConfig,
}
# Short grid-axis names and the dotted keys they stand for.
AXIS_ALIASES = {
    "cell": "model.cell", "layernorm": "model.layernorm", "batch_size": "train.batch_size",
    "pad_size": "data.pad_size", "lr": "train.lr", "seed": "train.seed", "lag": "data.lag",
}
GRIDDABLE_SECTIONS = ("data", "model", "train")
# Settings of how a trial runs, not of what it computes: left out of trial ids (config.grid.make_spec) and
# of the fixed settings a resumed results directory must keep (results_dir._fixed_settings), and not grid axes.
EXECUTION_KEYS = frozenset({"train.checkpoint_every", "train.save_model"})
# Settings added after results existed, each with the value that means what its absence meant: trial
# ids leave a key out at that value (config.grid.make_spec), and so does the check of the fixed
# settings a resumed results directory must keep (results_dir._fixed_settings). Add a new such key here only.
# Generator keys added after version 1 of the synthetic set: at these values its output is version 1's byte
# for byte, so they are left out of the data identity and an older results folder's config (which lacks
# them) counts as having them at these values.
SYNTH_ADDED_LATER: dict[str, object] = {"length_concentration": 10.0, "word_len": 1, "signal_concentration": None,
                                        "background_zipf": 1.0, "background_tilt": 0.0}
ADDED_LATER: dict[str, object] = {"data.lag": None, "train.cuda_graph": False, "train.stop_at_target": False}
NOT_GRIDDABLE = {"data.kind", "data.dir", "data.embedding", "data.synth", *EXECUTION_KEYS}


def short_axis_name(dotted: str) -> str:
    """The short grid-axis name of a dotted key ('train.lr' -> 'lr'), or the key itself."""
    for short, full in AXIS_ALIASES.items():
        if full == dotted:
            return short
    return dotted


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
