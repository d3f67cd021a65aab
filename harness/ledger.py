"""What a trainer keeps per trial, shared by the one-trial trainer (`harness.train.run_trial`) and the
fused one (`harness.train_fused.run_fused`, K trials at once). Each trainer keeps only its step.

- `Split`: an encoded split on the training device (with each text's first position when the data
  has a lag);
- `batches`: each step's example indices, per trial (one data-order stream each), resumable;
- `StepResult` / `RunningSums`: what a step measures and what the steps add up on the device between
  evaluation points, for one trial (shape ()) or K (shape (K,));
- `BestDev`: the best dev loss, early stopping and the target accuracy of one trial;
- `PhaseClock`: seconds per phase (training, evaluation, probe and recording, other);
- `ProbeBatch`: the gradient-reach probe's fixed batch;
- `Instruments`: per-group gradient norms, update ratios and the probe, recorded for K trials;
- `TrialLedger`: one trial's story from the first evaluation point to its runs row: the curves row,
  the best dev point, why it stopped, its probe and gradient rows, its test and confusion rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from harness import metrics
from harness.config import TrainConfig, TrialSpec
from harness.data import Dataset, EncodedSplit
from harness.models import read_positions
from harness.records import TrialRecorder
from harness.stats.chance import learned_at_all

__all__ = ["BestDev", "EvalPoint", "Instruments", "PhaseClock", "ProbeBatch", "RunningSums", "Split", "StepResult",
           "TrialLedger", "batches", "sync"]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on a CPU. For timing."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- data

class Split:
    """An encoded split as tensors resident on the training device. `starts` (each text's first
    position) only with `spans` (data with a lag); None means every text starts at position 0."""

    def __init__(self, split: EncodedSplit, device: torch.device, spans: bool = False):
        self.tokens = torch.from_numpy(split.tokens).to(device)    # (N, T) int64
        self.lengths = torch.from_numpy(split.lengths).to(device)  # (N,) int64
        self.labels = torch.from_numpy(split.labels).to(device)    # (N,) int64
        self.starts = torch.from_numpy(split.starts).to(device) if spans else None  # (N,) int64
        self.n = len(split.labels)

    def batch(self, idx: Tensor | slice) -> tuple[Tensor, ...]:
        """(tokens (…, T), lengths (…), labels (…)) of the examples `idx` (a slice, (B,) or (K, B)
        indices), and their starts (…) when the split has them."""
        out = self.tokens[idx], self.lengths[idx], self.labels[idx]
        return out if self.starts is None else (*out, self.starts[idx])


def batches(n: int, tc: TrainConfig, seeds: Sequence[int], device: torch.device, start: int = 0
            ) -> Iterator[tuple[float, Tensor]]:
    """For each training step, (epoch reached, as a fraction; each trial's example indices (K, B) on
    the device): each epoch every trial draws a permutation of the n examples from a generator of its
    own (seeded `seeds[k]`; in order without train.shuffle), cut into batches; `tc.budget(n)` steps in
    all. `start`: the steps already taken (a resumed trial): skipped, their orders still drawn."""
    steps_per_epoch, total_steps = tc.budget(n)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    bs, step = tc.batch_size, 0
    for epoch in range(tc.epochs):
        if step + steps_per_epoch <= start:  # an epoch a resumed trial has done: draw its orders only
            if tc.shuffle:
                for g in gens:
                    torch.randperm(n, generator=g)
            step += steps_per_epoch
            continue
        order = torch.stack([torch.randperm(n, generator=g) if tc.shuffle else torch.arange(n)
                             for g in gens]).to(device)  # (K, N)
        for b in range(steps_per_epoch):
            if step < start:
                step += 1
                continue
            yield epoch + (b + 1) / steps_per_epoch, order[:, b * bs:(b + 1) * bs]
            step += 1
            if step >= total_steps:
                return


# ----------------------------------------------------------------------------- running sums

@dataclass(frozen=True)
class StepResult:
    """One training step's measurements, all on the device (nothing read back); shapes for one trial
    as given, for K trials with a leading (K,)."""

    loss: Tensor                      # () the batch's mean cross-entropy, detached
    correct: Tensor                   # () correct predictions in the batch
    group_sq: Tensor | None = None    # (G,) squared gradient norm per group, before clipping
    total_norm: Tensor | None = None  # () global gradient L2 norm, before clipping


@dataclass
class RunningSums:
    """What the training steps add up on the device since the last evaluation point, read there
    only; for one trial (shape ()) or K trials (shape (K,); group_sum (G, K)). `nonfinite_at` (the
    first step whose loss was not finite, -1 while none) and `steps` (the step count, kept on the
    device for it) run over the whole trial; the rest restart at `reset`."""

    loss_sum: Tensor      # sum of the steps' mean losses
    correct_sum: Tensor   # correct predictions
    gnorm_sum: Tensor     # sum of the global gradient norms (instrumented trials)
    group_sum: Tensor     # (G[, K]) sum of the per-group gradient norms (instrumented trials)
    nonfinite_at: Tensor
    steps: Tensor         # ()
    interval_steps: int = 0
    samples_interval: int = 0

    @classmethod
    def start(cls, n_groups: int, device: torch.device, k: int | None = None) -> RunningSums:
        """Zero sums for one trial (`k` None: scalars) or `k` trials."""
        shape = () if k is None else (k,)
        zero = torch.zeros(shape, device=device)
        return cls(zero.clone(), zero.clone(), zero.clone(), torch.zeros((n_groups, *shape), device=device),
                   zero - 1, torch.zeros((), device=device))

    def add(self, out: StepResult, n_samples: int) -> None:
        """Add one step of `n_samples` examples per trial (device ops only)."""
        self.interval_steps += 1
        self.samples_interval += n_samples
        with torch.no_grad():
            self.steps += 1
            self.nonfinite_at = torch.where((self.nonfinite_at < 0) & ~torch.isfinite(out.loss), self.steps,
                                            self.nonfinite_at)
            self.loss_sum += out.loss
            self.correct_sum += out.correct
            if out.total_norm is not None and out.group_sq is not None:
                self.gnorm_sum += out.total_norm
                self.group_sum += out.group_sq.sqrt()

    def nonfinite_steps(self) -> list[int]:
        """Per trial, the first step whose training loss was not finite, -1 where none (reads back)."""
        return [int(s) for s in torch.atleast_1d(self.nonfinite_at).tolist()]

    def interval_means(self) -> list[tuple[float, float, float]]:
        """Per trial, (mean training loss, training accuracy, mean gradient norm) over the interval."""
        n = max(self.interval_steps, 1)
        cols = (torch.atleast_1d(t).tolist() for t in (self.loss_sum, self.correct_sum, self.gnorm_sum))
        return [(loss / n, correct / max(self.samples_interval, 1), gnorm / n) for loss, correct, gnorm in zip(*cols)]

    def reset(self) -> None:
        """Start the next interval."""
        zero = torch.zeros_like(self.loss_sum)
        self.loss_sum, self.correct_sum, self.gnorm_sum = zero.clone(), zero.clone(), zero.clone()
        self.group_sum = torch.zeros_like(self.group_sum)
        self.interval_steps, self.samples_interval = 0, 0

    def state(self) -> dict[str, Any]:
        """For a checkpoint: every field (the tensors as they are, mid-interval)."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    def restore(self, state: dict[str, Any]) -> None:
        for f in self.__dataclass_fields__:
            setattr(self, f, state[f])


# ----------------------------------------------------------------------------- clock

class PhaseClock:
    """Wall seconds per phase, as AlgoPerf keeps accumulated_submission_time, eval_time and
    logging_time apart: `train` (the training steps), `eval` (dev evaluations and their bookkeeping),
    `probe` (the gradient-reach probe and the per-group gradient recording) and `other` (building,
    checkpoints, the test, the rest). Switching phase synchronises the device, then charges the
    seconds since the last switch to the phase that was running."""

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

    def columns(self, samples: int, train_s: float | None = None) -> dict[str, Any]:
        """The runs row's timing columns, seconds; `train_s` (default: the clock's) is the trial's
        training time, which samples_per_s divides by (a fused trial that stopped early trained less)."""
        train_s = self.seconds["train"] if train_s is None else train_s
        return {"wall_s": time.perf_counter() - self._start, "train_s": train_s,
                "eval_s": self.seconds["eval"], "probe_s": self.seconds["probe"],
                "samples_per_s": samples / train_s if train_s > 0 else None}


# ----------------------------------------------------------------------------- best dev point

@dataclass
class BestDev:
    """One trial's evaluation points so far: the lowest dev loss and its step, the best dev accuracy,
    the step of the last improvement (for early stopping) and the first point at the target dev
    accuracy. The weights of the best point are the trainer's to keep (`update` says when)."""

    loss: float = math.inf
    step: int = 0
    dev_acc: float = 0.0
    reached: bool = False  # an evaluation point was reached
    last_improve: int = 0
    target_hit: tuple[int, int, float] | None = None  # (step, samples seen, training seconds)

    def update(self, dev_loss: float, dev_acc: float, step: int, samples_seen: int, train_s: float,
               target_acc: float) -> bool:
        """Take in one evaluation point; True when its dev loss is the lowest so far."""
        self.reached = True
        if self.target_hit is None and dev_acc >= target_acc:
            self.target_hit = (step, samples_seen, train_s)
        self.dev_acc = max(self.dev_acc, dev_acc)
        if dev_loss < self.loss:
            self.loss, self.step, self.last_improve = dev_loss, step, step
            return True
        return False

    def columns(self) -> dict[str, Any]:
        """The runs row's best_dev_acc, best_step (null when no evaluation point was reached) and
        steps / samples / seconds (training time) to the target dev accuracy (null if never reached)."""
        hit = self.target_hit
        return {"best_dev_acc": self.dev_acc if self.reached else None,
                "best_step": self.step if self.reached else None,
                "steps_to_target": hit[0] if hit else None, "samples_to_target": hit[1] if hit else None,
                "seconds_to_target": hit[2] if hit else None}


# ----------------------------------------------------------------------------- instruments

@dataclass(frozen=True)
class ProbeBatch:
    """The gradient-reach probe's fixed batch: the first `train.probe_size` dev examples.

    The vanishing ratio compares the gradient at `source` with that at `read`: in the reference
    layout the first position of the sequence (0); with `data.lag` D the texts' last token
    (pad_size-1), which a `last` read-out (at T-1) reads across exactly D steps."""

    tokens: Tensor            # (B, T) on the device
    lengths: Tensor           # (B,)
    labels: Tensor            # (B,)
    read: np.ndarray          # (B,) the input position the classifier reads, per example
    pad_fraction: np.ndarray  # (T,) share of the batch that is padding at each position
    layers: list[str]         # input, rnn.l0, rnn.l1, …
    starts: Tensor | None = None  # (B,) the texts' first positions (data with a lag)
    source: int = 0           # the position the vanishing ratio measures the gradient at

    @classmethod
    def first(cls, dev: Split, data: Dataset, size: int, readout: str, num_layers: int) -> ProbeBatch:
        n, seq_len = min(size, dev.n), data.train.tokens.shape[1]
        lengths, starts = data.dev.lengths[:n], data.dev.starts[:n]
        return cls(dev.tokens[:n], dev.lengths[:n], dev.labels[:n],
                   read_positions(readout, lengths, seq_len, starts), metrics.pad_fraction(lengths, seq_len, starts),
                   ["input"] + [f"rnn.l{i}" for i in range(num_layers)],
                   starts=None if dev.starts is None else dev.starts[:n],
                   source=0 if data.lag is None else data.pad_size - 1)


# probe(batch) -> per layer (input, rnn.l0, …) the per-example gradient norms (K, B, T) on the host
ProbeFn = Callable[[ProbeBatch], list[np.ndarray]]
# squared_norms(tensors, one per parameter) -> (G, K) per group and trial, on the device
GroupNormFn = Callable[[list[Tensor]], Tensor]


class Instruments:
    """What K trials record besides curves and runs rows, with `on` (train.instrument):

    - at each evaluation point, per parameter group the mean gradient norm over the interval and
      the update ratio ‖Δθ‖/‖θ‖ since the previous point (grad_norms rows; it keeps a copy of the
      parameters for that);
    - the gradient-reach probe (grad_time rows) at step 0, at the `probe_at` steps and at the end;
      the first and last give vanishing_ratio init / final; and the first step's gradient norm.

    Its gradient work is timed as the clock's `probe` phase. The model forms differ only in
    `probe` and `squared_norms` (see ProbeFn, GroupNormFn); one trial is K = 1."""

    def __init__(self, params: list[Tensor], group_names: list[str], squared_norms: GroupNormFn, probe: ProbeFn,
                 batch: ProbeBatch, ledgers: list[TrialLedger], clock: PhaseClock, on: bool, probe_at: set[int]):
        self.params, self.group_names, self.squared_norms, self.probe_fn = params, group_names, squared_norms, probe
        self.batch, self.ledgers, self.clock, self.on, self.probe_at = batch, ledgers, clock, on, probe_at
        self.prev_params = [p.detach().clone() for p in params] if on else []
        self.grad_norm_init: Tensor | None = None  # (K,) or (): the first step's global gradient norm

    def after_step(self, step: int, out: StepResult, which: Callable[[], list[int]], flush_after: bool) -> None:
        """After training step `step`: keep the first gradient norm; probe at the `probe_at` steps, for
        the trials `which()` names."""
        if not self.on:
            return
        if self.grad_norm_init is None and out.total_norm is not None:
            self.grad_norm_init = out.total_norm.clone()
        if step in self.probe_at:
            self.probe(step, None, which(), flush_after)

    def probe(self, step: int | None, key: str | None, which: list[int], flush_after: bool = False) -> None:
        """Run the gradient-reach probe with denormals kept (the gradients it measures are tiny), then
        set flush-denormal to `flush_after`; for the trials `which`, record grad_time rows (at `step`,
        or each trial's own last step when None) and under `key` the vanishing ratio."""
        if not self.on or not which:
            return
        with self.clock.phase("probe"):
            torch.set_flush_denormal(False)
            try:
                norms = self.probe_fn(self.batch)
            finally:
                torch.set_flush_denormal(flush_after)
            for k in which:
                self.ledgers[k].add_probe(step, self.batch, [g[k] for g in norms], key)

    def record_groups(self, step: int, sums: RunningSums, which: list[int]) -> None:
        """grad_norms rows for the trials `which`: per group the mean gradient norm over the interval
        of `sums` and the update ratio ‖Δθ‖/‖θ‖ since the previous evaluation point."""
        if not self.on:
            return
        with self.clock.phase("probe"):
            params = [p.detach() for p in self.params]
            with torch.no_grad():
                delta_sq = self.squared_norms(torch._foreach_sub(params, self.prev_params))  # (G, K)
                prev_sq = self.squared_norms(self.prev_params)
                torch._foreach_copy_(self.prev_params, params)
            gsum = sums.group_sum if sums.group_sum.dim() == 2 else sums.group_sum.unsqueeze(1)
            gmean = (gsum / max(sums.interval_steps, 1)).T.tolist()  # K x G
            dsq, psq = delta_sq.T.tolist(), prev_sq.T.tolist()
            for k in which:
                self.ledgers[k].recorder.add_many("grad_norms", [
                    {"step": step, "group": g, "grad_norm": gmean[k][i],
                     "update_ratio": metrics.update_ratio(dsq[k][i], psq[k][i])}
                    for i, g in enumerate(self.group_names)])

    def grad_norm_init_of(self, k: int) -> float | None:
        if self.grad_norm_init is None:
            return None
        return float(torch.atleast_1d(self.grad_norm_init)[k])

    def state(self) -> dict[str, Any]:
        """For a checkpoint: the parameters at the previous evaluation point and the first gradient norm."""
        return {"prev_params": self.prev_params, "grad_norm_init": self.grad_norm_init}

    def restore(self, state: dict[str, Any]) -> None:
        if self.prev_params:
            torch._foreach_copy_(self.prev_params, state["prev_params"])
        self.grad_norm_init = state["grad_norm_init"]


# ----------------------------------------------------------------------------- one trial's story

# The runs row's columns of the test (null for a trial without one: diverged, or no evaluation point).
TEST_COLUMNS = ("test_acc", "test_macro_f1", "test_loss", "n_test", "chance_acc", "learned_p", "learned")


def learned_columns(acc: float, labels: np.ndarray) -> dict[str, Any]:
    """Whether a test accuracy `acc` (fraction) on the test `labels` is above chance: n_test, chance_acc
    (the most common class's share, `metrics.majority_share`), learned_p (the exact one-sided binomial
    p-value of round(acc · n_test) correct, `harness.stats.chance`) and learned (learned_p < 0.001)."""
    n = int(np.asarray(labels).size)
    if n == 0 or acc is None or not math.isfinite(acc):
        return {"n_test": n or None, "chance_acc": None, "learned_p": None, "learned": None}
    chance = metrics.majority_share(labels)
    _, p, learned = learned_at_all(acc, n, chance)
    return {"n_test": n, "chance_acc": chance, "learned_p": p, "learned": learned}


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation point of one trial (seconds are training time so far)."""

    step: int
    epoch: float
    samples_seen: int
    train_s: float
    train_loss: float
    train_acc: float
    dev_loss: float
    dev_acc: float
    grad_norm: float | None


@dataclass
class TrialLedger:
    """One trial's host-side bookkeeping, the same in both trainers: its curves rows, its best dev
    point, whether and why it stopped, its probe rows and vanishing ratios, its test and confusion
    rows, and at the end its runs row (on `recorder`)."""

    spec: TrialSpec
    recorder: TrialRecorder
    best: BestDev = field(default_factory=BestDev)
    active: bool = True
    status: str = "complete"
    error: str | None = None
    stop: str | None = None
    step: int = 0
    epoch: float = 0.0
    samples_seen: int = 0
    train_s: float = 0.0
    vanishing: dict[str, float] = field(default_factory=dict)  # "init" / "final" → vanishing ratio

    def evaluated(self, p: EvalPoint) -> bool:
        """Record the curves row of evaluation point `p` and take it into the best dev point; True
        when its dev loss is the lowest so far (the trainer keeps those weights for the test)."""
        self.recorder.add("curves", step=p.step, epoch=p.epoch, samples_seen=p.samples_seen, elapsed_s=p.train_s,
                          train_loss=p.train_loss, train_acc=p.train_acc, dev_loss=p.dev_loss, dev_acc=p.dev_acc,
                          grad_norm=p.grad_norm)
        return self.best.update(p.dev_loss, p.dev_acc, p.step, p.samples_seen, p.train_s,
                                self.spec.train.target_dev_acc)

    def stop_reason(self, step: int, dev_acc: float) -> str | None:
        """Why the trial stops at this evaluation point, or None: pruned by its recorder, reached the
        target with `stop_at_target`, or no dev-loss improvement for `require_improvement` steps.
        Reports the point to the recorder (Optuna's pruner)."""
        tc = self.spec.train
        if self.recorder.report_eval(step, dev_acc):
            return "pruned"
        if tc.stop_at_target and self.best.target_hit is not None:
            return "target"
        if step - self.best.last_improve >= tc.require_improvement:
            return "early_stop"
        return None

    def diverge(self, error: str) -> None:
        self.status, self.error = "diverged", error

    def end(self, step: int, epoch: float, samples_seen: int, train_s: float) -> None:
        """The trial trains no more: where it stopped."""
        self.active, self.step, self.epoch, self.samples_seen, self.train_s = False, step, epoch, samples_seen, train_s

    def add_probe(self, step: int | None, batch: ProbeBatch, norms: list[np.ndarray], key: str | None) -> None:
        """grad_time rows of one probe (`norms`: per layer (B, T) per-example gradient norms) at `step`
        (None: the trial's last step); under `key` the vanishing ratio."""
        at = self.step if step is None else step
        for layer, g in zip(batch.layers, norms):
            mean = g.mean(0)  # (T,)
            self.recorder.add_many("grad_time", [
                {"step": at, "layer": layer, "position": t, "pad_fraction": float(batch.pad_fraction[t]),
                 "grad_norm": float(mean[t])} for t in range(len(batch.pad_fraction))])
        if key:
            self.vanishing[key] = metrics.vanishing_ratio(norms[0], batch.read, batch.source)

    def tested(self, loss: float, acc: float, pred: np.ndarray, data: Dataset) -> dict[str, Any]:
        """The test of the best-dev weights (`pred` (N,) the predictions): its confusion rows, and the
        runs row's test columns, with whether the run learned at all (`learned_columns`)."""
        cm = metrics.confusion_matrix(data.test.labels, pred, len(data.class_names))
        self.recorder.add_many("confusion", [
            {"true_label": i, "pred_label": j, "count": int(cm[i, j]),
             "true_name": data.class_names[i], "pred_name": data.class_names[j]}
            for i in range(cm.shape[0]) for j in range(cm.shape[1])])
        return {"test_acc": acc, "test_macro_f1": metrics.macro_f1(cm), "test_loss": loss,
                **learned_columns(acc, data.test.labels)}

    def finish(self, test_cols: dict[str, Any] | None, grad_norm_init: float | None, timing: dict[str, Any],
               machine: dict[str, Any], started_at: str, data: Dataset, model_file: str | None,
               settings: dict[str, Any]) -> dict[str, Any]:
        """Set and return the runs row: the settings columns, then how the trial ended."""
        if self.stop == "pruned":
            self.status = "pruned"
        curves, best = self.recorder.rows["curves"], self.best.columns()
        row = {
            "status": self.status, "error": self.error,
            **(test_cols or dict.fromkeys(TEST_COLUMNS)),
            "best_dev_acc": best["best_dev_acc"], "best_step": best["best_step"],
            "steps": self.step, "epochs": self.epoch,
            "stop_reason": self.stop or ("diverged" if self.status == "diverged" else "budget"),
            "target_dev_acc": self.spec.train.target_dev_acc,
            **{k: best[k] for k in ("steps_to_target", "samples_to_target", "seconds_to_target")},
            "grad_norm_init": grad_norm_init,
            "grad_norm_final": curves[-1]["grad_norm"] if curves else None,
            "vanishing_ratio_init": self.vanishing.get("init"),
            "vanishing_ratio_final": self.vanishing.get("final"),
            **timing, **machine, "started_at": started_at, "dataset": data.name, "data_id": data.data_id,
            "model_file": model_file,
        }
        self.recorder.set_run(**settings, **row)
        return self.recorder.rows["runs"][0]

    _STATE = ("best", "active", "status", "error", "stop", "step", "epoch", "samples_seen", "train_s", "vanishing")

    def state(self) -> dict[str, Any]:
        """For a checkpoint: the fields above (the best dev point as a dict: a checkpoint holds only
        tensors and plain values) and the recorder's rows so far (runs aside)."""
        return {**{f: getattr(self, f) for f in self._STATE}, "best": dataclasses.asdict(self.best),
                "rows": {t: rows for t, rows in self.recorder.rows.items() if t != "runs"}}

    def restore(self, state: dict[str, Any]) -> None:
        """Put back `state`; the Optuna reports of the evaluation points before it are made again (the
        trial went on past them, so their answers are not asked)."""
        for f in self._STATE:
            setattr(self, f, state[f])
        hit = state["best"]["target_hit"]
        self.best = BestDev(**{**state["best"], "target_hit": tuple(hit) if hit is not None else None})
        self.recorder.rows.update({t: list(rows) for t, rows in state["rows"].items()})
        for row in self.recorder.rows["curves"]:
            self.recorder.report_eval(row["step"], row["dev_acc"])
