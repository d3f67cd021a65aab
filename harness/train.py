"""The trainer: one trial, top to bottom. A pure function of a `TrialSpec`, the encoded data and a
device; everything it measures goes to the `TrialRecorder` it is handed (no files, no Optuna).

Read `run_trial` first: the whole trial as one story (build, probe, the training loop with its
evaluation points, probe, test, the runs row). The pieces it uses follow it:

- `train_step`: one optimisation step (forward, loss, backward, per-group gradient norms in one
  fused `torch._foreach_norm` call, optional clipping, Adam); its results stay on the device;
- `RunningSums`: what the steps add up on the device between evaluation points;
- `BestDev`: the best dev loss (weights kept for the test), early stopping, the target accuracy;
- `Instruments`: what is recorded (curves rows; with `train.instrument`, gradient norms and update
  ratios per parameter group and the gradient-reach probe);
- `PhaseClock`: seconds per phase (training, dev evaluation, probe and recording), as AlgoPerf
  keeps submission time apart from evaluation time;
- `Checkpoint`: with `train.checkpoint_every`, the whole state of the trial every N steps in one file
  (weights, Adam, the running sums, the best-dev state, the instruments', the recorder's rows, the
  random states, the seconds so far), from which an interrupted trial resumes bit-identically.

Where the host waits on the device: a training step reads nothing back. The host reads device
values only at an evaluation point (every `eval_every` steps and at the last step: the running sums,
the dev evaluation, the per-group norms) and at a probe (instrumented trials only: step 0, the
`probe_points` log-spaced steps and the end; the probe copies its per-position gradient norms to the
host). The clock synchronises the device where it switches phase: at those same points and where the
training loop starts and ends. Between them a GPU never waits on Python.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
import hashlib
import math
import os
import platform
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from harness import metrics
from harness.config import ConfigError, TrainConfig, TrialSpec
from harness.data import Dataset, EncodedSplit
from harness.models import build_model, param_groups, read_positions
from harness.models.precision import upcast
from harness.records import TrialRecorder, model_file, trial_dir

Autocast = Callable[[], contextlib.AbstractContextManager]  # a fresh autocast context per call


class Diverged(Exception):
    """Training produced a non-finite loss."""


@dataclass(frozen=True)
class Seeds:
    """Seeds split by purpose, each derived from the base seed alone: adding a grid point never
    shifts another's, and trials that differ only in a factor share data order and init streams."""

    data_order: int
    init: int
    dropout: int

    @classmethod
    def from_base(cls, base: int) -> Seeds:
        def derive(purpose: str) -> int:
            return int.from_bytes(hashlib.sha256(f"{base}:{purpose}".encode()).digest()[:4], "little")

        return cls(derive("data_order"), derive("init"), derive("dropout"))


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' → CUDA when present, else CPU; 'cuda' / 'cuda:K' / 'cpu' as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: not a device; use auto, cpu, cuda or cuda:K") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: torch sees no CUDA device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: torch sees only {torch.cuda.device_count()} CUDA device(s)")
    return device


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device}:{torch.cuda.get_device_name(device)}"
    return "cpu"


def cpu_model() -> str | None:
    """The CPU's model name: /proc/cpuinfo's first "model name" line (Linux), else
    platform.processor(); None when neither says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def onednn_version(config_text: str | None = None) -> str | None:
    """The oneDNN (formerly MKL-DNN) version torch was built with, from `torch.__config__.show()`
    ("Intel(R) MKL-DNN v3.12.0 (Git Hash …)" → "3.12.0"); None when torch has no oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return None
    text = torch.__config__.show() if config_text is None else config_text
    m = re.search(r"(?:MKL-DNN|oneDNN)\s+v(\d[\w.]*)", text)
    return m.group(1) if m else None


@functools.lru_cache(maxsize=8)
def provenance(device: torch.device) -> dict[str, str | None]:
    """What the numbers depend on beyond the code: the runs row's cpu_model, cpu_capability (the
    vector instruction set ATen dispatches to, e.g. AVX512; ATEN_CPU_CAPABILITY changes it),
    onednn_version, and on CUDA cudnn_version and gpu_name (null on a CPU). Cached per device."""
    cuda = device.type == "cuda"
    cudnn = torch.backends.cudnn.version() if cuda and torch.backends.cudnn.is_available() else None
    return {"cpu_model": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_version": onednn_version(), "cudnn_version": str(cudnn) if cudnn is not None else None,
            "gpu_name": torch.cuda.get_device_name(device) if cuda else None}


# ----------------------------------------------------------------------------- the trial

def run_trial(spec: TrialSpec, data: Dataset, device: torch.device, recorder: TrialRecorder,
              checkpoint: Path | None = None) -> dict[str, Any]:
    """Train and evaluate one trial. Returns the trial's runs row (also set on the recorder).

    One linear story, so longer than the rest: build (seeded), probe at step 0, the training loop
    with an evaluation point every `eval_every` steps, probe at the end, test the best-dev weights,
    the runs row.

    `train.save_model` best or last: the best-dev-loss weights (those tested) or the weights after the
    last step, as a CPU state_dict, go to `recorder.weights` and the row's model_file names where they
    will be (records.stage_trial writes them beside the shards); none for a diverged trial.

    `checkpoint` (a file path; the runner's is DIR/trials/.ckpt-<trial_id>.pt): when the file holds a
    checkpoint of this trial, training resumes from it and ends bit-identical to an uninterrupted run on
    the same machine (timings aside); with `train.checkpoint_every` N > 0 the trial's state is saved
    there every N steps; the file is deleted when the trial ends (complete, diverged, pruned, stopped)."""
    clock = PhaseClock(device)
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    tc, mc = spec.train, spec.model
    seeds = Seeds.from_base(tc.seed)
    steps_per_epoch, total_steps = tc.budget(len(data.train.labels))

    model = _seeded_model(spec, data, device, seeds)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr)
    autocast = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16")
    spans = data.lag is not None  # texts that do not start at position 0: the read-outs need their starts
    train, dev, test = (_Split(s, device, spans) for s in (data.train, data.dev, data.test))
    groups = ParamGroups.of(model, device)
    instruments = Instruments(
        model, groups, ProbeBatch.first(dev, data, tc.probe_size, mc.readout, mc.num_layers), autocast,
        recorder, clock, on=tc.instrument, probe_at=set(metrics.log_spaced_steps(total_steps, tc.probe_points)))
    sums, best = RunningSums.start(len(groups.names), device), BestDev()
    step, epoch, samples_seen, stop = 0, 0.0, 0, None
    ckpt = Checkpoint(checkpoint, tc.checkpoint_every, spec.trial_id, total_steps)
    saved = ckpt.load(device)
    if saved is None:
        instruments.probe(0, "init")
    else:  # resume: everything as it was after step saved["step"]
        step, epoch, samples_seen = saved["step"], saved["epoch"], saved["samples_seen"]
        started_at = saved["started_at"]
        ckpt.restore(saved, model, optimizer, sums, best, instruments, clock, recorder, device)
    status, error = "complete", None
    # On a CPU, vanishing gradients underflow into float32 denormals, which are slow to compute with
    # (the per-step gradient norms cost 10-20x more); training flushes them to zero, the probe not.
    flush = device.type == "cpu"
    torch.set_flush_denormal(flush)
    clock.switch("train")
    try:
        for epoch, idx in _batches(train.n, tc, steps_per_epoch, total_steps, seeds.data_order, device, start=step):
            batch = train.batch(idx)  # (B, T), (B,), (B,)[, (B,)]
            out = train_step(model, optimizer, batch, autocast, tc.grad_clip, groups if tc.instrument else None)
            step += 1
            samples_seen += len(idx)
            sums.add(out, len(idx))
            instruments.after_step(step, out, flush_after=flush)
            if step % tc.eval_every == 0 or step == total_steps:  # an evaluation point
                with clock.phase("eval"):
                    sums.check_finite()
                    dev_loss, dev_acc, _ = evaluate(model, dev, eval_batch(tc, device), autocast)
                    if not math.isfinite(dev_loss):
                        raise Diverged(f"non-finite dev loss at step {step}")
                    train_s = clock.seconds["train"]
                    instruments.record_eval(step, epoch, samples_seen, train_s, sums, dev_loss, dev_acc)
                    best.update(model, dev_loss, dev_acc, step, samples_seen, train_s, tc.target_dev_acc)
                    sums.reset()
                    stop = _stop_reason(recorder, tc, best, step, dev_acc)
                if stop:
                    break
            if ckpt.due(step):
                with clock.phase("other"):
                    ckpt.save(step=step, epoch=epoch, samples_seen=samples_seen, started_at=started_at,
                              model=model.state_dict(), optimizer=optimizer.state_dict(), sums=sums.state(),
                              best=best.state_dict(), instruments=instruments.state(), clock=clock.state(),
                              rows={t: rows for t, rows in recorder.rows.items() if t != "runs"},
                              rng=rng_states(device))
    except Diverged as e:
        status, error = "diverged", str(e)
    finally:
        torch.set_flush_denormal(False)
    clock.switch("other")
    if stop == "pruned":
        status = "pruned"

    test_cols: dict[str, Any] = {"test_acc": None, "test_macro_f1": None, "test_loss": None}
    weights = None  # train.save_model: the weights kept (a diverged trial keeps none)
    if status != "diverged":
        instruments.probe(step, "final")
        test_cols, weights = _test_and_keep(model, best.state, tc.save_model, test, data, eval_batch(tc, device),
                                            autocast, recorder)
    row = {
        "status": status, "error": error, **test_cols, **best.columns(),
        "steps": step, "epochs": epoch, "stop_reason": stop or ("diverged" if status == "diverged" else "budget"),
        "target_dev_acc": tc.target_dev_acc, **best.target_columns(), **instruments.columns(),
        **clock.columns(samples_seen),
        **machine_columns(device), "started_at": started_at, "dataset": data.name, "data_id": data.data_id,
        "model_file": model_file(spec.trial_id) if weights is not None else None,
    }
    recorder.weights = weights  # written beside the shards (records.stage_trial)
    recorder.set_run(**settings_columns(spec), **row)
    ckpt.remove()  # the trial ended: its checkpoint has served
    return recorder.rows["runs"][0]


# ----------------------------------------------------------------------------- checkpoints

CHECKPOINT_FORMAT = 1  # what a checkpoint file holds (run_trial); one of another format is not resumed


def checkpoint_path(results_dir: str | Path, trial_id: str) -> Path:
    """Where a trial's checkpoint lives: DIR/trials/.ckpt-<trial_id>.pt (a hidden file: loaders,
    progress and the damage check skip it), on the folder every worker of the run shares."""
    return trial_dir(results_dir, trial_id).parent / f".ckpt-{trial_id}.pt"


def rng_states(device: torch.device) -> dict[str, Any]:
    """Every random state training draws from: the global CPU generator (dropout on a CPU) and, on
    CUDA, the device's (dropout there). Data order has a generator of its own, re-derived from its seed."""
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore_rng(rng: dict[str, Any], device: torch.device) -> None:
    """Put back `rng_states`'s states (byte tensors, on the CPU whatever map_location loaded them to)."""
    torch.set_rng_state(rng["cpu"].cpu())
    if device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"].cpu(), device)


class Checkpoint:
    """A trial's checkpoint file (`path`; None: no checkpoints): saved every `every` steps before the
    last (`due`, `save`: atomically, a temporary file then os.replace), read back at the start
    (`load`, `restore`), deleted at the end (`remove`)."""

    def __init__(self, path: Path | None, every: int, trial_id: str, total_steps: int):
        self.path, self.every, self.trial_id, self.total_steps = path, every, trial_id, total_steps

    def due(self, step: int) -> bool:
        """Whether to save after training step `step` (never after the last: the trial ends there)."""
        return self.path is not None and self.every > 0 and step % self.every == 0 and step < self.total_steps

    def save(self, **state: Any) -> None:
        """torch.save `state` (with the format, trial id and step budget that `load` checks) to the
        path atomically: a temporary file beside it (fsynced), then os.replace. A file that cannot be
        written (disk full, no permission) is a warning, not the trial's end: the trial goes on."""
        assert self.path is not None
        tmp = self.path.with_name(f"{self.path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save({"format": CHECKPOINT_FORMAT, "trial_id": self.trial_id,
                            "total_steps": self.total_steps, **state}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            warnings.warn(f"checkpoint {self.path} not written ({e}); trial {self.trial_id} goes on",
                          RuntimeWarning, stacklevel=2)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def load(self, device: torch.device) -> dict[str, Any] | None:
        """The checkpoint of this trial, or None (no path, no file; or a file that cannot be read or is
        not this trial's: a warning says so and the trial starts from step 0). The file is the
        harness's own, in the run's results folder, so it is read as a full pickle (rows hold numpy
        scalars)."""
        if self.path is None or not self.path.is_file():
            return None
        try:
            saved = torch.load(self.path, map_location=device, weights_only=False)
            if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"not a checkpoint of format {CHECKPOINT_FORMAT}")
            if saved["trial_id"] != self.trial_id or saved["total_steps"] != self.total_steps:
                raise ValueError(f"it is trial {saved['trial_id']}'s of {saved['total_steps']} steps, not "
                                 f"{self.trial_id}'s of {self.total_steps}")
        except Exception as e:  # any unreadable or foreign file: start over rather than fail the trial
            warnings.warn(f"checkpoint {self.path} not resumed ({type(e).__name__}: {e}); trial {self.trial_id} "
                          f"starts from step 0", RuntimeWarning, stacklevel=3)
            return None
        return saved

    @staticmethod
    def restore(saved: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                sums: RunningSums, best: BestDev, instruments: Instruments, clock: PhaseClock,
                recorder: TrialRecorder, device: torch.device) -> None:
        """Put back what `saved` holds: weights, Adam's state, the running sums, the best-dev state,
        the instruments', the clock's seconds, the recorder's rows so far and (last: building the
        model drew from them) the random states. The Optuna reports of the evaluation points before
        the checkpoint are made again (the trial went on past them, so their answers are not asked)."""
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        sums.restore(saved["sums"])
        best.restore(saved["best"])
        instruments.restore(saved["instruments"])
        clock.restore(saved["clock"])
        recorder.rows.update({t: list(rows) for t, rows in saved["rows"].items()})
        for row in recorder.rows["curves"]:
            recorder.report_eval(row["step"], row["dev_acc"])
        restore_rng(saved["rng"], device)

    def remove(self) -> None:
        """Delete the checkpoint (the trial ended); one that cannot be deleted is left (never resumed:
        the trial is done)."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)


def _stop_reason(recorder: TrialRecorder, tc: TrainConfig, best: BestDev, step: int, dev_acc: float) -> str | None:
    """Why the trial stops at this evaluation point, or None: pruned by its recorder, reached the target
    with `stop_at_target`, or no dev-loss improvement for `require_improvement` steps."""
    if recorder.report_eval(step, dev_acc):
        return "pruned"
    if tc.stop_at_target and best.target_hit is not None:
        return "target"
    if step - best.last_improve >= tc.require_improvement:
        return "early_stop"
    return None


def _seeded_model(spec: TrialSpec, data: Dataset, device: torch.device, seeds: Seeds) -> torch.nn.Module:
    """The trial's model in train mode on `device`: weights drawn from the init stream, then the
    global generator (dropout) reseeded from the dropout stream, in that order."""
    torch.manual_seed(seeds.init)
    model = build_model(spec.model, data.vocab_size, len(data.class_names), data.pad_index, data.embeddings)
    model.to(device).train()
    torch.manual_seed(seeds.dropout)
    if device.type == "cuda":
        torch.cuda.manual_seed(seeds.dropout)
    return model


def cpu_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A copy of a state_dict on the CPU (what `train.save_model` keeps: loadable without the device)."""
    return {name: t.detach().to("cpu", copy=True) for name, t in state.items()}


def machine_columns(device: torch.device) -> dict[str, Any]:
    """The runs columns that say which machine and software produced a row."""
    return {"device": device_label(device), "torch_version": torch.__version__, **provenance(device)}


def _batches(n: int, tc: TrainConfig, steps_per_epoch: int, total_steps: int, seed: int, device: torch.device,
             start: int = 0) -> Iterator[tuple[float, Tensor]]:
    """For each training step, (epoch reached, as a fraction; the batch's example indices (B,) on the
    device): each epoch a permutation of the n examples (drawn from a generator of its own, seeded
    `seed`; in order without train.shuffle) cut into `steps_per_epoch` batches; `total_steps` in all.
    `start`: the steps already taken (a resumed trial): they are skipped, their orders still drawn."""
    order_gen = torch.Generator().manual_seed(seed)
    bs, step = tc.batch_size, 0
    for epoch in range(tc.epochs):
        if step + steps_per_epoch <= start:  # an epoch a resumed trial has done: draw its order only
            if tc.shuffle:
                torch.randperm(n, generator=order_gen)
            step += steps_per_epoch
            continue
        order = (torch.randperm(n, generator=order_gen) if tc.shuffle else torch.arange(n)).to(device)
        for b in range(steps_per_epoch):
            if step < start:
                step += 1
                continue
            yield epoch + (b + 1) / steps_per_epoch, order[b * bs:(b + 1) * bs]
            step += 1
            if step >= total_steps:
                return


def _test_and_keep(model: torch.nn.Module, state: dict[str, Tensor] | None, save_model: str, test: _Split,
                   data: Dataset, batch_size: int, autocast: Autocast, recorder: TrialRecorder
                   ) -> tuple[dict[str, Any], dict[str, Tensor] | None]:
    """The end of a trial that did not diverge: the test columns of the best-dev weights `state` (null
    without an evaluation point), and the weights `save_model` keeps as a CPU state_dict: `last` the
    model's as training left them (taken before the test loads `state`), `best` `state`, `none` None."""
    test_cols: dict[str, Any] = {"test_acc": None, "test_macro_f1": None, "test_loss": None}
    weights = cpu_state(model.state_dict()) if save_model == "last" else None
    if state is not None:
        test_cols = _test(model, state, test, data, batch_size, autocast, recorder)
        if save_model == "best":
            weights = cpu_state(state)
    return test_cols, weights


def _test(model: torch.nn.Module, state: dict[str, Tensor], test: _Split, data: Dataset, batch_size: int,
          autocast: Autocast, recorder: TrialRecorder) -> dict[str, Any]:
    """Load the best-dev weights `state`, evaluate on the test split, record its confusion matrix.
    Returns the runs row's test columns."""
    model.load_state_dict(state)
    test_loss, test_acc, pred = evaluate(model, test, batch_size, autocast)
    cm = metrics.confusion_matrix(data.test.labels, pred.cpu().numpy(), len(data.class_names))
    recorder.add_many("confusion", [
        {"true_label": i, "pred_label": j, "count": int(cm[i, j]),
         "true_name": data.class_names[i], "pred_name": data.class_names[j]}
        for i in range(cm.shape[0]) for j in range(cm.shape[1])])
    return {"test_acc": test_acc, "test_macro_f1": metrics.macro_f1(cm), "test_loss": test_loss}


# ----------------------------------------------------------------------------- one step, evaluation

class _Split:
    """An encoded split as tensors resident on the training device. `starts` (each text's first
    position) only with `spans` (data with a lag); None means every text starts at position 0."""

    def __init__(self, split: EncodedSplit, device: torch.device, spans: bool = False):
        self.tokens = torch.from_numpy(split.tokens).to(device)    # (N, T) int64
        self.lengths = torch.from_numpy(split.lengths).to(device)  # (N,) int64
        self.labels = torch.from_numpy(split.labels).to(device)    # (N,) int64
        self.starts = torch.from_numpy(split.starts).to(device) if spans else None  # (N,) int64
        self.n = len(split.labels)

    def batch(self, idx: Tensor | slice) -> tuple[Tensor, ...]:
        """(tokens (B, T), lengths (B,), labels (B,)) of the examples `idx`, and their starts (B,)
        when the split has them."""
        out = self.tokens[idx], self.lengths[idx], self.labels[idx]
        return out if self.starts is None else (*out, self.starts[idx])


@dataclass(frozen=True)
class ParamGroups:
    """The model's parameter groups (embedding, rnn.l0, rnn.l1, …, norm, fc), for per-group norms."""

    names: list[str]
    index: Tensor  # (P,) int64 on the device: each parameter's group, in model.parameters() order

    @classmethod
    def of(cls, model: torch.nn.Module, device: torch.device) -> ParamGroups:
        names, index = param_groups(model)
        return cls(names, torch.tensor(index, device=device))

    def squared_norms(self, tensors: list[Tensor]) -> Tensor:
        """(G,) per group, the sum of its tensors' squared L2 norms (`tensors` one per parameter):
        one fused `torch._foreach_norm` call, on the device."""
        return torch.zeros(len(self.names), device=self.index.device).index_add_(
            0, self.index, torch.stack(torch._foreach_norm(tensors)) ** 2)


@dataclass(frozen=True)
class StepResult:
    """One training step's measurements, all on the device (nothing read back)."""

    loss: Tensor                      # () the batch's mean cross-entropy, detached
    correct: Tensor                   # () int64: correct predictions in the batch
    group_sq: Tensor | None = None    # (G,) squared gradient norm per group, before clipping
    total_norm: Tensor | None = None  # () global gradient L2 norm, before clipping


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: tuple[Tensor, ...],
               autocast: Autocast, grad_clip: float | None = None, groups: ParamGroups | None = None
               ) -> StepResult:
    """One optimisation step on `batch` = (tokens (B, T), lengths (B,), labels (B,)[, starts (B,)]):
    forward, cross-entropy, backward; with `groups`, the gradient norm per group (one fused call);
    clipping of the global gradient norm to `grad_clip` if given; the optimizer step. No host sync."""
    x, lengths, y, *rest = batch
    with autocast():
        logits = _forward(model, x, lengths, rest[0] if rest else None)  # (B, C)
    loss = F.cross_entropy(upcast(logits), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = list(model.parameters())
    group_sq = total_norm = None
    with torch.no_grad():
        if groups is not None:
            group_sq = groups.squared_norms([p.grad if p.grad is not None else torch.zeros_like(p) for p in params])
            total_norm = group_sq.sum().sqrt()
            if grad_clip is not None:
                torch.nn.utils.clip_grads_with_norm_(params, grad_clip, total_norm)
        elif grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    with torch.no_grad():
        correct = (logits.detach().argmax(1) == y).sum()
    return StepResult(loss.detach(), correct, group_sq, total_norm)


CPU_EVAL_BATCH = 256  # at most this many rows per evaluation batch on a CPU (benchmarks/README §12)


def eval_batch(tc: TrainConfig, device: torch.device) -> int:
    """Rows per dev/test evaluation batch: train.eval_batch_size, on a CPU at most CPU_EVAL_BATCH (the
    reference-size LSTM evaluated 1.6x faster at 256 than at 1,024 rows on a CPU, whose caches a large
    batch overflows; a GPU wants the large batch). What is computed is the same, up to float rounding."""
    return min(tc.eval_batch_size, CPU_EVAL_BATCH) if device.type == "cpu" else tc.eval_batch_size


@torch.inference_mode()
def evaluate(model: torch.nn.Module, split: _Split, batch_size: int, autocast: Autocast
             ) -> tuple[float, float, Tensor]:
    """(mean cross-entropy, accuracy, predictions (N,) on the device) over the whole split."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=split.tokens.device)
    preds = []
    for i in range(0, split.n, batch_size):
        sl = slice(i, i + batch_size)
        x, lengths, y, *rest = split.batch(sl)
        with autocast():
            logits = _forward(model, x, lengths, rest[0] if rest else None)
        loss_sum += F.cross_entropy(upcast(logits), y, reduction="sum")
        preds.append(logits.argmax(1))
    model.train(was_training)
    pred = torch.cat(preds)
    return loss_sum.item() / split.n, (pred == split.labels).float().mean().item(), pred


def _forward(model: torch.nn.Module, x: Tensor, lengths: Tensor, starts: Tensor | None, **kw: Any) -> Any:
    """model(x, lengths), passing `starts` only where there are some (so models without a lag
    need not know of them)."""
    return model(x, lengths, **kw) if starts is None else model(x, lengths, starts=starts, **kw)


# ----------------------------------------------------------------------------- bookkeeping

@dataclass
class RunningSums:
    """What the training steps add up on the device since the last evaluation point, read there
    only. `nonfinite_at` (the first step whose loss was not finite, -1 while none) and `steps` (the
    step count, kept on the device for it) run over the whole trial; the rest restart at `reset`."""

    loss_sum: Tensor      # () sum of the steps' mean losses
    correct_sum: Tensor   # () correct predictions
    gnorm_sum: Tensor     # () sum of the global gradient norms (instrumented trials)
    group_sum: Tensor     # (G,) sum of the per-group gradient norms (instrumented trials)
    nonfinite_at: Tensor  # ()
    steps: Tensor         # ()
    interval_steps: int = 0
    samples_interval: int = 0

    @classmethod
    def start(cls, n_groups: int, device: torch.device) -> RunningSums:
        zero = torch.zeros((), device=device)
        return cls(zero.clone(), zero.clone(), zero.clone(), torch.zeros(n_groups, device=device), zero - 1,
                   zero.clone())

    def add(self, out: StepResult, n_samples: int) -> None:
        """Add one step of `n_samples` examples (device ops only)."""
        self.interval_steps += 1
        self.samples_interval += n_samples
        with torch.no_grad():
            self.steps += 1
            self.nonfinite_at = torch.where((self.nonfinite_at < 0) & ~torch.isfinite(out.loss), self.steps,
                                            self.nonfinite_at)
            self.loss_sum += out.loss
            self.correct_sum += out.correct
            if out.total_norm is not None:
                self.gnorm_sum += out.total_norm
                self.group_sum += out.group_sq.sqrt()

    def check_finite(self) -> None:
        """Raise Diverged if a step's loss was not finite (reads one value back)."""
        if self.nonfinite_at.item() >= 0:
            raise Diverged(f"non-finite training loss at step {int(self.nonfinite_at.item())}")

    def reset(self) -> None:
        """Start the next interval."""
        zero = torch.zeros((), device=self.loss_sum.device)
        self.loss_sum, self.correct_sum, self.gnorm_sum = zero.clone(), zero.clone(), zero.clone()
        self.group_sum = torch.zeros(len(self.group_sum), device=self.group_sum.device)
        self.interval_steps, self.samples_interval = 0, 0

    def state(self) -> dict[str, Any]:
        """For a checkpoint: every field (the tensors as they are, mid-interval)."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    def restore(self, state: dict[str, Any]) -> None:
        for f in self.__dataclass_fields__:
            setattr(self, f, state[f])


@dataclass
class BestDev:
    """Over the evaluation points: the lowest dev loss (its step, and a copy of the weights for the
    test), the best dev accuracy, the step of the last improvement (for early stopping) and the first
    point at the target dev accuracy."""

    loss: float = math.inf
    step: int = 0
    dev_acc: float = 0.0
    state: dict[str, Tensor] | None = None
    last_improve: int = 0
    target_hit: tuple[int, int, float] | None = None  # (step, samples seen, training seconds)

    def update(self, model: torch.nn.Module, dev_loss: float, dev_acc: float, step: int, samples_seen: int,
               train_s: float, target_acc: float) -> None:
        if self.target_hit is None and dev_acc >= target_acc:
            self.target_hit = (step, samples_seen, train_s)
        self.dev_acc = max(self.dev_acc, dev_acc)
        if dev_loss < self.loss:
            self.loss, self.step, self.last_improve = dev_loss, step, step
            self.state = copy.deepcopy(model.state_dict())

    def state_dict(self) -> dict[str, Any]:
        """For a checkpoint: every field (the best weights included)."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    def restore(self, state: dict[str, Any]) -> None:
        for f in self.__dataclass_fields__:
            setattr(self, f, state[f])

    def columns(self) -> dict[str, Any]:
        """The runs row's best_dev_acc and best_step (null when no evaluation point was reached)."""
        reached = self.state is not None
        return {"best_dev_acc": self.dev_acc if reached else None, "best_step": self.step if reached else None}

    def target_columns(self) -> dict[str, Any]:
        """steps / samples / seconds (training time) to the target dev accuracy; null if never reached."""
        hit = self.target_hit
        return {"steps_to_target": hit[0] if hit else None, "samples_to_target": hit[1] if hit else None,
                "seconds_to_target": hit[2] if hit else None}


class PhaseClock:
    """Wall seconds per phase of a trial, as AlgoPerf keeps accumulated_submission_time, eval_time
    and logging_time apart: `train` (the training steps), `eval` (dev evaluations and their
    bookkeeping), `probe` (the gradient-reach probe and the per-group gradient recording) and `other`
    (building, the test, the rest). Switching phase synchronises the device, then charges the seconds
    since the last switch to the phase that was running."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = {"train": 0.0, "eval": 0.0, "probe": 0.0, "other": 0.0}
        self.current = "other"
        self._start = self._since = time.perf_counter()

    def switch(self, phase: str) -> str:
        """Enter `phase`; returns the phase left."""
        sync(self.device)
        now = time.perf_counter()
        self.seconds[self.current] += now - self._since
        self._since = now
        left, self.current = self.current, phase
        return left

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Run the block as phase `name`, then go back to the phase it interrupted (on an exception
        the clock stays in `name`: the caller's next switch charges it)."""
        left = self.switch(name)
        yield
        self.switch(left)

    def state(self) -> dict[str, Any]:
        """For a checkpoint: the seconds per phase so far and the wall seconds since the start."""
        seconds = dict(self.seconds)
        seconds[self.current] += time.perf_counter() - self._since
        return {"seconds": seconds, "wall_s": time.perf_counter() - self._start}

    def restore(self, state: dict[str, Any]) -> None:
        """Go on from a checkpoint's `state`: its seconds added to the phases, its wall seconds to wall_s."""
        for phase, s in state["seconds"].items():
            self.seconds[phase] = self.seconds.get(phase, 0.0) + s
        self._start -= state["wall_s"]

    def columns(self, samples: int) -> dict[str, Any]:
        """The runs row's timing columns, seconds; samples_per_s counts training time only."""
        train_s = self.seconds["train"]
        return {"wall_s": time.perf_counter() - self._start, "train_s": train_s,
                "eval_s": self.seconds["eval"], "probe_s": self.seconds["probe"],
                "samples_per_s": samples / train_s if train_s > 0 else None}


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on a CPU. For timing."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- instruments

@dataclass(frozen=True)
class ProbeBatch:
    """The gradient-reach probe's fixed batch: the first `train.probe_size` dev examples.

    The vanishing ratio compares the gradient at `source` with that at `read`: in the seed's layout
    the first position of the sequence (0); with `data.lag` D the texts' last token (pad_size-1),
    which a `last` read-out (at T-1) reads across exactly D steps."""

    tokens: Tensor            # (B, T) on the device
    lengths: Tensor           # (B,)
    labels: Tensor            # (B,)
    read: np.ndarray          # (B,) the input position the classifier reads, per example
    pad_fraction: np.ndarray  # (T,) share of the batch that is padding at each position
    layers: list[str]         # input, rnn.l0, rnn.l1, …
    starts: Tensor | None = None  # (B,) the texts' first positions (data with a lag)
    source: int = 0           # the position the vanishing ratio measures the gradient at

    @classmethod
    def first(cls, dev: _Split, data: Dataset, size: int, readout: str, num_layers: int) -> ProbeBatch:
        n, seq_len = min(size, dev.n), data.train.tokens.shape[1]
        lengths, starts = data.dev.lengths[:n], data.dev.starts[:n]
        return cls(dev.tokens[:n], dev.lengths[:n], dev.labels[:n],
                   read_positions(readout, lengths, seq_len, starts), metrics.pad_fraction(lengths, seq_len, starts),
                   ["input"] + [f"rnn.l{i}" for i in range(num_layers)],
                   starts=None if dev.starts is None else dev.starts[:n],
                   source=0 if data.lag is None else data.pad_size - 1)


class Instruments:
    """What a trial records besides its runs row:

    - at each evaluation point, the curves row; with `on` (train.instrument) also per parameter
      group the mean gradient norm over the interval and the update ratio ‖Δθ‖/‖θ‖ since the
      previous point (grad_norms rows; it keeps a copy of the parameters for that);
    - with `on`, the gradient-reach probe (grad_time rows) at step 0, at the `probe_at` steps and at
      the end; the first and last give vanishing_ratio init / final; and the first step's gradient
      norm (grad_norm_init).

    Its gradient work (probe, grad_norms rows) is timed as the clock's `probe` phase."""

    def __init__(self, model: torch.nn.Module, groups: ParamGroups, probe_batch: ProbeBatch, autocast: Autocast,
                 recorder: TrialRecorder, clock: PhaseClock, on: bool, probe_at: set[int]):
        self.model, self.groups, self.probe_batch, self.autocast = model, groups, probe_batch, autocast
        self.recorder, self.clock, self.on, self.probe_at = recorder, clock, on, probe_at
        self.prev_params = [p.detach().clone() for p in model.parameters()] if on else []
        self.grad_norm_init: Tensor | None = None
        self.vanishing: dict[str, float] = {}  # "init" / "final" → vanishing ratio

    def after_step(self, step: int, out: StepResult, flush_after: bool) -> None:
        """After training step `step`: keep the first gradient norm; probe at the `probe_at` steps."""
        if not self.on:
            return
        if self.grad_norm_init is None:
            self.grad_norm_init = out.total_norm.clone()
        if step in self.probe_at:
            self.probe(step, flush_after=flush_after)

    def probe(self, step: int, key: str | None = None, flush_after: bool = False) -> None:
        """Run the gradient-reach probe with denormals kept (the gradients it measures are tiny), then
        set flush-denormal to `flush_after`; record grad_time rows, and under `key` the vanishing ratio."""
        if not self.on:
            return
        b = self.probe_batch
        with self.clock.phase("probe"):
            torch.set_flush_denormal(False)
            try:
                norms = _probe(self.model, b.tokens, b.lengths, b.labels, self.autocast, b.starts)
            finally:
                torch.set_flush_denormal(flush_after)
            for layer, g in zip(b.layers, norms):
                mean = g.mean(0)  # (T,)
                self.recorder.add_many("grad_time", [
                    {"step": step, "layer": layer, "position": t, "pad_fraction": float(b.pad_fraction[t]),
                     "grad_norm": float(mean[t])} for t in range(len(b.pad_fraction))])
            if key:
                self.vanishing[key] = metrics.vanishing_ratio(norms[0], b.read, b.source)

    def record_eval(self, step: int, epoch: float, samples_seen: int, train_s: float, sums: RunningSums,
                    dev_loss: float, dev_acc: float) -> None:
        """The evaluation point's rows: curves (means of `sums` over its interval), and grad_norms."""
        n = max(sums.interval_steps, 1)
        self.recorder.add("curves", step=step, epoch=epoch, samples_seen=samples_seen, elapsed_s=train_s,
                          train_loss=sums.loss_sum.item() / n,
                          train_acc=sums.correct_sum.item() / max(sums.samples_interval, 1),
                          dev_loss=dev_loss, dev_acc=dev_acc, grad_norm=sums.gnorm_sum.item() / n if self.on else None)
        if self.on:
            with self.clock.phase("probe"):
                self._record_groups(step, sums.group_sum, n)

    def _record_groups(self, step: int, group_sum: Tensor, n: int) -> None:
        """grad_norms rows: per group the mean gradient norm over `n` steps (`group_sum` (G,)) and the
        update ratio ‖Δθ‖/‖θ‖ since the previous evaluation point."""
        params = [p.detach() for p in self.model.parameters()]
        with torch.no_grad():
            delta_sq = self.groups.squared_norms(torch._foreach_sub(params, self.prev_params))
            prev_sq = self.groups.squared_norms(self.prev_params)
            torch._foreach_copy_(self.prev_params, params)
        gmean = (group_sum / n).tolist()
        dsq, psq = delta_sq.tolist(), prev_sq.tolist()
        self.recorder.add_many("grad_norms", [
            {"step": step, "group": g, "grad_norm": gmean[i], "update_ratio": metrics.update_ratio(dsq[i], psq[i])}
            for i, g in enumerate(self.groups.names)])

    def state(self) -> dict[str, Any]:
        """For a checkpoint: the parameters at the previous evaluation point, the first gradient norm
        and the vanishing ratios so far."""
        return {"prev_params": self.prev_params, "grad_norm_init": self.grad_norm_init,
                "vanishing": dict(self.vanishing)}

    def restore(self, state: dict[str, Any]) -> None:
        self.prev_params, self.grad_norm_init = state["prev_params"], state["grad_norm_init"]
        self.vanishing = dict(state["vanishing"])

    def columns(self) -> dict[str, Any]:
        """The runs row's grad_norm_init / _final and vanishing_ratio_init / _final (null when off)."""
        curves = self.recorder.rows["curves"]
        return {"grad_norm_init": float(self.grad_norm_init) if self.grad_norm_init is not None else None,
                "grad_norm_final": curves[-1]["grad_norm"] if curves else None,
                "vanishing_ratio_init": self.vanishing.get("init"),
                "vanishing_ratio_final": self.vanishing.get("final")}


def _probe(model: torch.nn.Module, tokens: Tensor, lengths: Tensor, labels: Tensor, autocast: Autocast,
           starts: Tensor | None = None) -> list[np.ndarray]:
    """Per layer (input, rnn.l0, …) the per-example gradient norm ‖∂L_b/∂x_{b,t}‖ as (B, T) arrays,
    L_b the cross-entropy of example b. Dropout is off; the model stays in train mode because cuDNN
    RNNs only run backward in train mode. Reads the norms back to the host."""
    dropout = model.dropout.p
    model.dropout.p = 0.0
    try:
        with torch.enable_grad(), autocast():
            logits, hidden = _forward(model, tokens, lengths, starts, return_hidden=True)
            loss = F.cross_entropy(upcast(logits), labels, reduction="sum")
        grads = torch.autograd.grad(loss, hidden)
    finally:
        model.dropout.p = dropout
    return [upcast(g).norm(dim=2).cpu().numpy() for g in grads]  # each (B, T)


def settings_columns(spec: TrialSpec) -> dict[str, Any]:
    """The runs-table columns that describe a trial's settings: the named factors, the model shape,
    the arm (grid.arm; null without), and every grid axis or arm setting given by dotted name (as a
    column of that name)."""
    m, t = spec.model, spec.train
    cols = {
        "cell": m.cell, "layernorm": m.layernorm, "batch_size": t.batch_size, "pad_size": spec.data.pad_size,
        "lag": spec.data.lag,
        "lr": t.lr, "seed": t.seed, "readout": m.readout, "bidirectional": m.bidirectional,
        "num_layers": m.num_layers, "hidden_size": m.hidden_size, "embed_dim": m.embed_dim,
        "dropout": m.dropout, "init": m.init, "forget_bias": m.forget_bias, "grad_clip": t.grad_clip,
        "precision": t.precision, "name": spec.name, "arm": spec.factors.get("arm"),
    }
    cols.update({"phase": "grid", **spec.tag})
    settings = spec.settings()
    for axis in spec.factors:
        if "." in axis:
            cols[axis] = settings[axis]
    return cols
