"""The five results tables: every column any consumer may rely on, defined once, with its type.

A trial's tables are written as Parquet shards with these Arrow schemas (`harness.records`): a
column the trial did not fill is a typed null, never a `null`-typed column, so every shard of a
table has the same types. A table may carry more columns than listed here (the runs table: a grid
axis or an arm's setting given by its dotted name such as `model.forget_bias`); their types are
inferred.

Torch-free: the report and the status command read the tables without importing torch.
"""

from __future__ import annotations

import pyarrow as pa

from harness.names import CELLS

# Bumped whenever a column's meaning or type changes (2: typed nulls, started_at a timestamp). Adding a
# column is no change: shards written before it read it as typed nulls (`harness.records.conform`).
SCHEMA_VERSION = 2

_STR, _F64, _I64, _BOOL = pa.string(), pa.float64(), pa.int64(), pa.bool_()
_UTC = pa.timestamp("us", tz="UTC")


def _field(name: str, type_: pa.DataType, doc: str, *, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


RUNS = pa.schema([
    _field("trial_id", _STR, "stable hash of the resolved settings and the data identity", nullable=False),
    _field("status", _STR, "complete | diverged | failed | pruned"),
    _field("error", _STR, "why a trial diverged or failed (one line)"),
    _field("cell", _STR, f"recurrent cell: {' | '.join(CELLS)} (the registered ones, harness.names) or a plugin's"),
    _field("layernorm", _STR, "none | output | recurrent"),
    _field("batch_size", _I64, "training batch size"),
    _field("pad_size", _I64, "tokens per text"),
    _field("lag", _I64, "PAD positions between every text's last token and the last position "
           "(data.lag); null: the reference code's layout"),
    _field("lr", _F64, "Adam learning rate"),
    _field("seed", _I64, "base seed"),
    _field("readout", _STR, "which outputs the classifier reads"),
    _field("bidirectional", _BOOL, "two directions per layer"),
    _field("num_layers", _I64, "stacked recurrent layers"),
    _field("hidden_size", _I64, "recurrent width per direction"),
    _field("embed_dim", _I64, "embedding width"),
    _field("dataset", _STR, "'synthetic' or the data directory's name"),
    _field("test_acc", _F64, "test accuracy of the best-dev-loss weights (fraction)"),
    _field("test_macro_f1", _F64, "test macro F1 of the same weights"),
    _field("test_loss", _F64, "test cross-entropy (nats)"),
    _field("n_test", _I64, "test examples the test accuracy is over; null: no test"),
    _field("chance_acc", _F64, "the test split's most common class's share (fraction): the accuracy of always "
           "predicting it; null: no test"),
    _field("learned_p", _F64, "exact one-sided binomial p-value of round(test_acc × n_test) correct against "
           "chance_acc (harness.stats.chance); null: no test"),
    _field("learned", _BOOL, "learned at all: learned_p < 0.001 (test accuracy above chance); null: no test"),
    _field("best_dev_acc", _F64, "highest dev accuracy at an evaluation point"),
    _field("best_step", _I64, "step of the lowest dev loss"),
    _field("steps", _I64, "optimizer steps taken"),
    _field("epochs", _F64, "passes over the training set (fractional)"),
    _field("target_dev_acc", _F64, "the dev accuracy that counts as converged"),
    _field("steps_to_target", _I64, "first step with dev accuracy >= target; null: never reached"),
    _field("samples_to_target", _I64, "training samples seen by then; null: never reached"),
    _field("seconds_to_target", _F64, "training seconds by then; null: never reached"),
    _field("grad_norm_init", _F64, "global gradient norm at the first step"),
    _field("grad_norm_final", _F64, "global gradient norm over the last evaluation interval"),
    _field("vanishing_ratio_init", _F64, "log10 ‖∂L/∂x_0‖ / ‖∂L/∂x_read‖ at step 0"),
    _field("vanishing_ratio_final", _F64, "the same at the end of training"),
    _field("wall_s", _F64, "seconds for the whole trial"),
    _field("train_s", _F64, "seconds spent training (evaluations excluded)"),
    _field("samples_per_s", _F64, "training samples per training second"),
    _field("device", _STR, "cpu, or cuda:K:<device name>"),
    _field("torch_version", _STR, "torch.__version__"),
    _field("started_at", _UTC, "when the trial started (UTC)"),
    _field("schema_version", _I64, "SCHEMA_VERSION of the writer"),
    # Beyond the list every consumer relies on: settings, provenance and timing details.
    _field("name", _STR, "the experiment's name"),
    _field("arm", _STR, "the named bundle of settings (grid.arm) the trial ran; null: the grid has no arms"),
    _field("phase", _STR, "grid | search | rerun | budget_check"),
    _field("budget_check", _I64, "a budget-check run's factor: a headline configuration trained again at factor × "
           "the budget (headline.budget_check; harness.budget_check); null: any other run"),
    _field("study", _STR, "the search study of a sampled or re-run trial"),
    _field("study_trial", _I64, "the Optuna trial number within that study"),
    _field("dropout", _F64, "dropout between recurrent layers"),
    _field("init", _STR, "xavier | default"),
    _field("forget_bias", _F64, "LSTM forget-gate bias at init"),
    _field("grad_clip", _F64, "global gradient-norm clip; null: none"),
    _field("precision", _STR, "fp32 | bf16"),
    _field("data_id", _STR, "identity (content hash) of the data set"),
    _field("stop_reason", _STR, "budget | target (train.stop_at_target) | early_stop | pruned | diverged"),
    _field("eval_s", _F64, "seconds spent in dev evaluations"),
    _field("probe_s", _F64, "seconds spent in the gradient-reach probe"),
    _field("traceback", _STR, "the last frames of a failed trial's exception"),
    _field("git_commit", _STR, "commit of the harness checkout that ran the trial; null: not run from a git checkout"),
    _field("git_dirty", _BOOL, "whether that checkout had uncommitted changes to tracked files; null: no checkout"),
    _field("harness_version", _STR, "the installed harness's version (harness.__version__)"),
    _field("worker", _STR, "host:pid of the worker process"),
    _field("cpu_model", _STR, "the CPU's model name (/proc/cpuinfo or platform.processor())"),
    _field("cpu_capability", _STR, "the vector instruction set ATen dispatches to (AVX512, AVX2, …)"),
    _field("onednn_version", _STR, "oneDNN version torch was built with (torch.__config__.show())"),
    _field("cudnn_version", _STR, "torch.backends.cudnn.version() on CUDA; null on a CPU"),
    _field("gpu_name", _STR, "torch.cuda.get_device_name on CUDA; null on a CPU"),
    _field("fused_group", _STR, "trained fused with the trials of the same value (the group's first "
                                "trial id); null: trained on its own"),
    _field("model_file", _STR, "the trial's kept weights (train.save_model: best or last), a torch.save'd "
                               "state_dict, relative to the results folder (trials/<trial_id>/model.pt); "
                               "null: none kept"),
    _field("resumed_from_step", _I64, "the step of the in-trial checkpoint (train.checkpoint_every) the trial "
                                      "resumed from after an interruption; null: it ran from step 0"),
])

CURVES = pa.schema([
    _field("trial_id", _STR, "the trial", nullable=False),
    _field("step", _I64, "optimizer steps so far", nullable=False),
    _field("epoch", _F64, "passes over the training set so far"),
    _field("samples_seen", _I64, "training samples so far"),
    _field("elapsed_s", _F64, "training seconds so far"),
    _field("train_loss", _F64, "mean training loss since the last row"),
    _field("train_acc", _F64, "training accuracy since the last row"),
    _field("dev_loss", _F64, "dev cross-entropy (nats)"),
    _field("dev_acc", _F64, "dev accuracy"),
    _field("grad_norm", _F64, "global L2 gradient norm before clipping, mean since the last row"),
])

GRAD_NORMS = pa.schema([
    _field("trial_id", _STR, "the trial", nullable=False),
    _field("step", _I64, "optimizer steps so far", nullable=False),
    _field("group", _STR, "embedding, rnn.l0, rnn.l1, …, norm, fc", nullable=False),
    _field("grad_norm", _F64, "the group's gradient norm, mean since the last row"),
    _field("update_ratio", _F64, "‖Δθ‖/‖θ‖ of the group since the last row"),
])

GRAD_TIME = pa.schema([
    _field("trial_id", _STR, "the trial", nullable=False),
    _field("step", _I64, "optimizer steps so far", nullable=False),
    _field("layer", _STR, "input (the embedding output), rnn.l0, rnn.l1, …", nullable=False),
    _field("position", _I64, "0 … T-1 (T = pad_size, or pad_size + lag)", nullable=False),
    _field("pad_fraction", _F64, "share of the probe batch that is padding there"),
    _field("grad_norm", _F64, "mean over the probe batch of ‖∂L/∂x_t‖"),
])

CONFUSION = pa.schema([
    _field("trial_id", _STR, "the trial", nullable=False),
    _field("true_label", _I64, "true class index", nullable=False),
    _field("pred_label", _I64, "predicted class index", nullable=False),
    _field("count", _I64, "test examples", nullable=False),
    _field("true_name", _STR, "true class name"),
    _field("pred_name", _STR, "predicted class name"),
])

SCHEMAS: dict[str, pa.Schema] = {
    "runs": RUNS, "curves": CURVES, "grad_norms": GRAD_NORMS, "grad_time": GRAD_TIME, "confusion": CONFUSION,
}
TABLES = tuple(SCHEMAS)
COLUMNS: dict[str, list[str]] = {t: list(s.names) for t, s in SCHEMAS.items()}

# The runs columns that hold numbers (statistics read them as floats, nulls as nan).
NUMERIC_RUN_COLUMNS = tuple(f.name for f in RUNS if pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
# The runs columns copied onto each Optuna trial as user attributes (what `optuna-dashboard` shows).
SUMMARY_COLUMNS = ("status", "steps", "test_acc", "test_macro_f1", "learned", "best_dev_acc", "steps_to_target",
                   "seconds_to_target", "vanishing_ratio_init", "vanishing_ratio_final", "wall_s",
                   "samples_per_s", "error", "stop_reason")
