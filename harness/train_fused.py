"""Fused trials: K trials that share every shape trained together as one model (harness.models.fused).

`run_fused(specs, data, device, recorders)` is `harness.train.run_trial` for K trials at once: the
same seeds (init, data order and dropout streams derived per trial by `Seeds`), per-trial batches
from each trial's own data order, per-trial Adam / lr / clipping, the same evaluation points, and per
trial early stopping, pruning and divergence by masks (a stopped trial's parameters stop changing
while the others go on). Each trial's recorder gets the rows `run_trial` would write, same tables and
columns; the timings (elapsed_s, train_s, eval_s, probe_s, wall_s, samples_per_s) are the group's,
as every trial of the group trains in the same wall time. On a CPU with dropout the results match separate runs to
float tolerance (tests/test_train_fused.py); on CUDA dropout masks are per-trial streams that differ
from an unfused run's.

With a `checkpoint` path (the runner's: the file of the group's first trial id) and `train.checkpoint_every`,
the group's whole state is saved every N steps and a run of the same trials resumes from it, as
`run_trial` does for one trial (bit-identical on the same machine, timings aside).

Trials fuse when `fusable_key` agrees: everything but the per-trial settings in `PER_TRIAL_KEYS`.

`train.cuda_graph` (harness.fused_step): the training step runs on static buffers (every batch full:
drop_last) and, on CUDA, is captured once in a CUDA graph and replayed; evaluations, the probe and the
recording stay eager. On a CPU the static step runs eagerly (`harness run` refuses the setting there:
`check_cuda_graph`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from harness import metrics
from harness.config import ConfigError, ExperimentConfig, TrialSpec
from harness.data import Dataset, EncodedSplit
from harness.fused_step import FusedStep
from harness.models import build_model, param_groups, read_positions
from harness.models.fused import (
    FusedAdam,
    FusedClassifier,
    clip_per_trial,
    group_sq_norms,
    per_trial_cross_entropy,
    probe_grads,
)
from harness.models.precision import upcast
from harness.records import TrialRecorder, model_file
from harness.train import (
    Checkpoint,
    Seeds,
    cpu_state,
    device_label,
    eval_batch,
    provenance,
    restore_rng,
    rng_states,
    settings_columns,
    sync,
)

__all__ = ["AUTO_FUSE_CUDA", "PER_TRIAL_KEYS", "check_cuda_graph", "fuse_size", "fusable_key", "group_specs",
           "run_fused"]

# `run.fuse: auto` on a CUDA device: trials per fused group (until the H200 table says otherwise).
AUTO_FUSE_CUDA = 32

# Settings fused trials may differ in; every other resolved setting (and the data identity) is shared.
PER_TRIAL_KEYS = frozenset({
    "train.seed", "train.lr", "model.dropout", "model.forget_bias", "model.init", "train.grad_clip",
    "train.target_dev_acc", "train.require_improvement", "train.stop_at_target",
})


def fuse_size(fuse: str | int, device: torch.device) -> int:
    """The group size `run.fuse` asks for on `device`: 1 (no fusing) for 'off'; for 'auto',
    AUTO_FUSE_CUDA on CUDA and 1 elsewhere (on a CPU oneDNN's recurrent kernels one trial at a time
    beat the fused model's per-step loop: benchmarks/fused.py); K for an integer."""
    if fuse == "off":
        return 1
    if fuse == "auto":
        return AUTO_FUSE_CUDA if device.type == "cuda" else 1
    if isinstance(fuse, int) and not isinstance(fuse, bool) and fuse >= 1:
        return fuse
    raise ValueError(f"run.fuse: expected off, auto or an integer >= 1, got {fuse!r}")


def check_cuda_graph(cfg: ExperimentConfig, devices: Sequence[torch.device]) -> None:
    """Raise ConfigError when `cfg` asks for train.cuda_graph (the key, a value of its grid axis or an arm's)
    and one of the resolved `devices` is not a CUDA device."""
    wanted = True in cfg.setting_values("train.cuda_graph")
    other = [str(d) for d in devices if d.type != "cuda"]
    if wanted and other:
        raise ConfigError(f"config key 'train.cuda_graph': true needs a CUDA device (it captures the fused "
                          f"training step in a CUDA graph), but the device is {', '.join(other)}; run on a GPU "
                          f"(--device cuda) or set train.cuda_graph: false")


def fusable_key(spec: TrialSpec) -> tuple:
    """The shape key trials must share to be trained fused: the data identity and every resolved
    setting except `PER_TRIAL_KEYS` (cell, layernorm, widths, layers, pad size, batch size, read-out,
    epochs, evaluation and probe settings, precision, …)."""
    settings = spec.settings()
    return (spec.data_id,) + tuple(sorted((k, repr(v)) for k, v in settings.items() if k not in PER_TRIAL_KEYS))


def group_specs(specs: Sequence[TrialSpec], k: int) -> list[list[TrialSpec]]:
    """Split specs into fusable groups of at most k, in the order given (a group's trials in order;
    groups ordered by their first trial). k = 1 gives one group per trial."""
    if k < 1:
        raise ValueError(f"run.fuse: a group size must be at least 1, got {k}")
    by_key: dict[tuple, list[TrialSpec]] = {}
    for s in specs:
        by_key.setdefault(fusable_key(s), []).append(s)
    return [members[i:i + k] for members in by_key.values() for i in range(0, len(members), k)]


class _Split:
    """An encoded split as tensors resident on the training device."""

    def __init__(self, split: EncodedSplit, device: torch.device):
        self.tokens = torch.from_numpy(split.tokens).to(device)    # (N, T) int64
        self.lengths = torch.from_numpy(split.lengths).to(device)  # (N,) int64
        self.labels = torch.from_numpy(split.labels).to(device)    # (N,) int64
        self.n = len(split.labels)



@torch.inference_mode()
def evaluate_fused(model: FusedClassifier, split: _Split, rows: int, autocast: Any
                   ) -> tuple[list[float], list[float], Tensor]:
    """Per trial (mean cross-entropy, accuracy) over the whole split, and predictions (K, N) on the
    device; every trial reads the same `rows` examples per call."""
    k = model.k
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros(k, device=split.tokens.device)
    preds = []
    for i in range(0, split.n, rows):
        sl = slice(i, i + rows)
        with autocast():
            logits = model(split.tokens[sl].expand(k, -1, -1), split.lengths[sl].expand(k, -1))
        loss_sum += per_trial_cross_entropy(upcast(logits), split.labels[sl].expand(k, -1), "sum")
        preds.append(logits.argmax(2))
    model.train(was_training)
    pred = torch.cat(preds, 1)  # (K, N)
    acc = (pred == split.labels).float().mean(1)
    return (loss_sum.double() / split.n).tolist(), acc.tolist(), pred


@dataclass
class _Trial:
    """One trial's host-side bookkeeping (what run_trial keeps in local variables)."""

    spec: TrialSpec
    recorder: TrialRecorder
    active: bool = True
    status: str = "complete"
    error: str | None = None
    stop: str | None = None
    step: int = 0
    epoch: float = 0.0
    samples_seen: int = 0
    train_s: float = 0.0
    best_loss: float = math.inf
    best_step: int = 0
    best_dev_acc: float = 0.0
    has_best: bool = False
    last_improve: int = 0
    target_hit: tuple[int, int, float] | None = None
    vanishing: dict[str, float] = field(default_factory=dict)


def _stop_reason(t: _Trial, step: int, dev_acc: float) -> str | None:
    """Why a trial stops at this evaluation point (as run_trial decides it), or None: pruned by its
    recorder, reached the target with `stop_at_target`, or no dev-loss improvement for too long."""
    if t.recorder.report_eval(step, dev_acc):
        return "pruned"
    if t.spec.train.stop_at_target and t.target_hit is not None:
        return "target"
    if step - t.last_improve >= t.spec.train.require_improvement:
        return "early_stop"
    return None


def run_fused(specs: Sequence[TrialSpec], data: Dataset, device: torch.device,
              recorders: Sequence[TrialRecorder], checkpoint: Path | None = None) -> list[dict[str, Any]]:
    """Train and evaluate K fusable trials together. Returns their runs rows (also set on each
    recorder), in the order of `specs`. Raises ValueError when the specs do not share a shape.

    `checkpoint`: as run_trial's, for the group (a checkpoint of the same trials in the same order
    is resumed; `train.checkpoint_every` N > 0 saves one every N steps; deleted at the end)."""
    if not specs or len(specs) != len(recorders):
        raise ValueError(f"run_fused: {len(specs)} specs and {len(recorders)} recorders")
    keys = [fusable_key(s) for s in specs]
    for s, key in zip(specs, keys):
        if key != keys[0]:
            diff = sorted(set(key) ^ set(keys[0]))
            raise ValueError(f"run_fused: trial {s.trial_id} differs from {specs[0].trial_id} in a shared "
                             f"setting: {[d[0] for d in diff if isinstance(d, tuple)] or 'data_id'}")
    return _FusedRun(list(specs), data, device, list(recorders), checkpoint).run()


class _FusedRun:
    def __init__(self, specs: list[TrialSpec], data: Dataset, device: torch.device,
                 recorders: list[TrialRecorder], checkpoint: Path | None = None):
        self.t_start = time.perf_counter()
        self.checkpoint = checkpoint
        self.started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.specs, self.data, self.device = specs, data, device
        self.k = k = len(specs)
        self.trials = [_Trial(s, r) for s, r in zip(specs, recorders)]
        self.tc, self.mc = specs[0].train, specs[0].model  # the shared settings
        seeds = [Seeds.from_base(s.train.seed) for s in specs]
        self.pad_size = data.train.tokens.shape[1]

        models = []
        for s, sd in zip(specs, seeds):
            torch.manual_seed(sd.init)
            models.append(build_model(s.model, data.vocab_size, len(data.class_names), data.pad_index,
                                      data.embeddings))
        self.model = FusedClassifier.from_models(models).to(device).train()
        del models
        self.model.set_dropout([torch.Generator(device).manual_seed(sd.dropout) for sd in seeds])
        self.order_gens = [torch.Generator().manual_seed(sd.data_order) for sd in seeds]
        self.params = list(self.model.parameters())
        self.optimizer = FusedAdam(self.params, torch.tensor([s.train.lr for s in specs]))
        self.group_names, group_of_param = param_groups(self.model)
        self.group_idx = torch.tensor(group_of_param, device=device)
        self.n_groups = len(self.group_names)
        clips = [s.train.grad_clip for s in specs]
        self.clip = (torch.tensor([math.inf if c is None else c for c in clips], device=device)
                     if any(c is not None for c in clips) else None)
        self.active_t = torch.ones(k, dtype=torch.bool, device=device)  # updated in place (a graph reads it)
        graph = self.tc.cuda_graph  # static shapes; captured and replayed on CUDA, eager elsewhere
        self.step_fn = FusedStep(self.model, self.optimizer, self.active_t, self.norms_and_clip,
                                 lambda: self.autocast(cache=not graph), static=graph,
                                 capture=graph and device.type == "cuda")

        self.train, self.dev, self.test = (_Split(s, device) for s in (data.train, data.dev, data.test))
        n_probe = min(self.tc.probe_size, self.dev.n)
        self.probe_batch = (self.dev.tokens[:n_probe], self.dev.lengths[:n_probe], self.dev.labels[:n_probe])
        probe_lengths = data.dev.lengths[:n_probe]
        self.probe_read = read_positions(self.mc.readout, probe_lengths, self.pad_size)
        self.probe_pad = metrics.pad_fraction(probe_lengths, self.pad_size)
        self.layer_names = ["input"] + [f"rnn.l{i}" for i in range(self.mc.num_layers)]
        rows = eval_batch(self.tc, device)  # on a CPU at most CPU_EVAL_BATCH
        self.eval_rows = max(1, min(rows, 8 * rows // k))
        self.flush = False
        # Seconds (the group's, as wall_s): dev evaluations; the probe and per-group recording.
        self.eval_s = self.probe_s = 0.0
        self.t_resume = time.perf_counter()

    def autocast(self, cache: bool = True) -> Any:
        """bf16 autocast when train.precision says so (a CUDA graph needs its weight cache off)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.tc.precision == "bf16",
                              cache_enabled=cache)

    # ------------------------------------------------------------------------- recording
    def probe(self, step: int | None, key: str | None, trials: list[int]) -> None:
        """The gradient-reach probe for all trials at once, recorded for `trials` (at each trial's own
        stopping step when `step` is None). Its seconds go to probe_s, not to training."""
        sync(self.device)
        t0 = time.perf_counter()
        torch.set_flush_denormal(False)  # the probe measures tiny gradients: keep denormals
        try:
            norms = [g.cpu().numpy() for g in probe_grads(self.model, *self.probe_batch, self.autocast)]
        finally:
            torch.set_flush_denormal(self.flush)
        for k in trials:
            t = self.trials[k]
            at = t.step if step is None else step
            for layer, g in zip(self.layer_names, norms):
                mean = g[k].mean(0)  # (T,)
                t.recorder.add_many("grad_time", [
                    {"step": at, "layer": layer, "position": p, "pad_fraction": float(self.probe_pad[p]),
                     "grad_norm": float(mean[p])} for p in range(self.pad_size)])
            if key:
                t.vanishing[key] = metrics.vanishing_ratio(norms[0][k], self.probe_read)
        seconds = time.perf_counter() - t0
        self.probe_s += seconds
        self.t_resume += seconds  # a probe between evaluations is not training time

    def active(self) -> list[int]:
        return [k for k, t in enumerate(self.trials) if t.active]

    def end_trial(self, k: int, step: int, epoch: float, samples: int, train_s: float) -> None:
        t = self.trials[k]
        t.active, t.step, t.epoch, t.samples_seen, t.train_s = False, step, epoch, samples, train_s

    # ------------------------------------------------------------------------- training
    def run(self) -> list[dict[str, Any]]:
        """Train the group to the end and return each trial's runs row. One linear story (as
        train.run_trial), so longer than the rest."""
        tc, device = self.tc, self.device
        train = self.train
        bs = tc.batch_size
        steps_per_epoch, total_steps = self.budget()
        probe_at = set(metrics.log_spaced_steps(total_steps, tc.probe_points))
        ckpt = Checkpoint(self.checkpoint, tc.checkpoint_every, ",".join(s.trial_id for s in self.specs), total_steps)
        step, epoch_float, samples_seen, step_counter, grad_norm_init = self.begin(ckpt.load(device))
        start = step
        sync(device)
        self.t_resume = time.perf_counter()
        self.flush = device.type == "cpu"  # as run_trial: flush float32 denormals while training
        torch.set_flush_denormal(self.flush)
        try:
            for epoch, orders in self.epoch_orders(start // steps_per_epoch):
                for b in range(max(0, start - epoch * steps_per_epoch), steps_per_epoch):
                    idx = orders[:, b * bs:(b + 1) * bs]  # (K, B)
                    y = train.labels[idx]
                    loss_d, logits, group_sq, total_norm = self.step_fn(train.tokens[idx], train.lengths[idx], y)
                    step += 1
                    self.interval_steps += 1
                    samples_seen += idx.shape[1]
                    self.samples_interval += idx.shape[1]
                    with torch.no_grad():
                        step_counter += 1
                        self.nonfinite_at = torch.where((self.nonfinite_at < 0) & ~torch.isfinite(loss_d),
                                                        step_counter, self.nonfinite_at)
                        self.loss_sum += loss_d
                        self.correct_sum += (logits.argmax(2) == y).sum(1)
                        if tc.instrument and group_sq is not None and total_norm is not None:
                            self.gnorm_sum += total_norm
                            self.group_sum += group_sq.sqrt()
                            if grad_norm_init is None:
                                grad_norm_init = total_norm.clone()
                    if tc.instrument and step in probe_at:
                        self.probe(step, None, self.active())
                    epoch_float = epoch + (b + 1) / steps_per_epoch
                    if step % tc.eval_every == 0 or step == total_steps:
                        self.eval_point(step, epoch_float, samples_seen)
                        if not self.active():
                            break
                    if step >= total_steps:
                        break
                    if ckpt.due(step):
                        self.save(ckpt, step, epoch_float, samples_seen, step_counter, grad_norm_init)
                if not self.active() or step >= total_steps:
                    break
            sync(device)
        finally:
            self.flush = False
            torch.set_flush_denormal(False)
        for kk in self.active():  # ran to the budget
            self.end_trial(kk, step, epoch_float, samples_seen, self.train_s)
        self.grad_norm_init = grad_norm_init.tolist() if grad_norm_init is not None else None
        rows = self.finish()
        ckpt.remove()  # the group ended: its checkpoint has served
        return rows

    def begin(self, saved: dict[str, Any] | None) -> tuple[int, float, int, Tensor, Tensor | None]:
        """The training loop's starting point: step 0 (after the probe at init), or where the checkpoint
        `saved` left off. Returns (step, epoch, samples seen, the step counter on the device, the first
        gradient norm)."""
        k, device = self.k, self.device
        if self.tc.instrument and saved is None:
            self.probe(0, "init", list(range(k)))
        zeros = torch.zeros(k, device=device)
        self.loss_sum, self.correct_sum, self.gnorm_sum = zeros.clone(), zeros.clone(), zeros.clone()
        self.nonfinite_at = zeros - 1
        self.group_sum = torch.zeros(self.n_groups, k, device=device)
        self.prev_params = [p.detach().clone() for p in self.params]
        self.best_params = [p.detach().clone() for p in self.params]
        self.interval_steps, self.samples_interval, self.train_s = 0, 0, 0.0
        if saved is not None:
            return self.restore(saved)
        return 0, 0.0, 0, torch.zeros((), device=device), None

    def epoch_orders(self, first: int) -> Any:
        """For each epoch from `first` on, (epoch, each trial's order of the training examples (K, N) on
        the device). The orders of the epochs before `first` (a resumed group's) are drawn, not used."""
        n = self.train.n
        for epoch in range(self.tc.epochs):
            orders = torch.stack([torch.randperm(n, generator=g) if self.tc.shuffle else torch.arange(n)
                                  for g in self.order_gens])  # (K, N)
            if epoch >= first:
                yield epoch, orders.to(self.device)

    # ------------------------------------------------------------------------- checkpoints
    _TRIAL_STATE = tuple(f.name for f in dataclasses.fields(_Trial) if f.name not in ("spec", "recorder"))

    def save(self, ckpt: Checkpoint, step: int, epoch: float, samples_seen: int, step_counter: Tensor,
             grad_norm_init: Tensor | None) -> None:
        """Write the group's checkpoint after `step`; its seconds are not training time."""
        sync(self.device)
        now = time.perf_counter()
        opt = self.optimizer
        ckpt.save(
            step=step, epoch=epoch, samples_seen=samples_seen, step_counter=step_counter,
            grad_norm_init=grad_norm_init, started_at=self.started_at,
            model=self.model.state_dict(),
            adam={"exp_avg": opt.exp_avg, "exp_avg_sq": opt.exp_avg_sq, "steps": opt.steps},
            dropout=[g.get_state() if g is not None else None for g in self.model.generators],
            rng=rng_states(self.device), active=self.active_t,
            sums={"loss_sum": self.loss_sum, "correct_sum": self.correct_sum, "gnorm_sum": self.gnorm_sum,
                  "nonfinite_at": self.nonfinite_at, "group_sum": self.group_sum,
                  "interval_steps": self.interval_steps, "samples_interval": self.samples_interval},
            prev_params=self.prev_params, best_params=self.best_params,
            trials=[{f: getattr(t, f) for f in self._TRIAL_STATE} for t in self.trials],
            rows=[{name: rows for name, rows in t.recorder.rows.items() if name != "runs"} for t in self.trials],
            timing={"train_s": self.train_s + (now - self.t_resume), "eval_s": self.eval_s, "probe_s": self.probe_s,
                    "wall_s": now - self.t_start})
        self.t_resume += time.perf_counter() - now

    @torch.no_grad()
    def restore(self, saved: dict[str, Any]) -> tuple[int, float, int, Tensor, Tensor | None]:
        """Put back a checkpoint (tensors the step holds, in place); returns the loop's (step, epoch,
        samples seen, step counter, first gradient norm). The random states last; the Optuna reports
        of the evaluation points before it are made again (their answers are not asked)."""
        self.model.load_state_dict(saved["model"])
        opt, adam = self.optimizer, saved["adam"]
        torch._foreach_copy_(opt.exp_avg, adam["exp_avg"])
        torch._foreach_copy_(opt.exp_avg_sq, adam["exp_avg_sq"])
        opt.steps.copy_(adam["steps"])
        torch._foreach_copy_(self.prev_params, saved["prev_params"])
        torch._foreach_copy_(self.best_params, saved["best_params"])
        self.active_t.copy_(saved["active"])
        for name, value in saved["sums"].items():
            setattr(self, name, value)
        for t, state, rows in zip(self.trials, saved["trials"], saved["rows"]):
            for name, value in state.items():
                setattr(t, name, value)
            t.recorder.rows.update({name: list(r) for name, r in rows.items()})
            for row in t.recorder.rows["curves"]:
                t.recorder.report_eval(row["step"], row["dev_acc"])
        timing = saved["timing"]
        self.train_s, self.eval_s, self.probe_s = timing["train_s"], timing["eval_s"], timing["probe_s"]
        self.t_start -= timing["wall_s"]
        self.started_at = saved["started_at"]
        for gen, state in zip(self.model.generators, saved["dropout"]):
            if gen is not None:
                gen.set_state(state.cpu())
        restore_rng(saved["rng"], self.device)
        return saved["step"], saved["epoch"], saved["samples_seen"], saved["step_counter"], saved["grad_norm_init"]

    def budget(self) -> tuple[int, int]:
        """Steps per epoch and the total steps (epochs, capped by max_steps), as run_trial counts them.
        Raises ValueError when drop_last leaves no batch. train.cuda_graph implies drop_last."""
        return self.tc.budget(self.train.n)

    @torch.no_grad()
    def norms_and_clip(self) -> tuple[Tensor | None, Tensor | None]:
        """Per-group squared gradient norms (G, K) and each trial's total norm (K,) before clipping
        (None, None when neither recording nor clipping needs them), clipping each trial's gradients."""
        if not (self.tc.instrument or self.clip is not None):
            return None, None
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        group_sq = group_sq_norms(grads, self.group_idx, self.n_groups)  # (G, K)
        total_norm = group_sq.sum(0).sqrt()  # (K,)
        if self.clip is not None:
            clip_per_trial(grads, self.clip, total_norm)
        return group_sq, total_norm

    def record_groups(self, step: int, n: int, trials: list[int]) -> None:
        """Per-group gradient norms (mean over the interval) and update ratios since the previous
        evaluation point, for every trial in `trials`."""
        with torch.no_grad():
            deltas = [p.detach() - q for p, q in zip(self.params, self.prev_params)]
            delta_sq = group_sq_norms(deltas, self.group_idx, self.n_groups).T.tolist()  # K x G
            prev_sq = group_sq_norms(self.prev_params, self.group_idx, self.n_groups).T.tolist()
            torch._foreach_copy_(self.prev_params, [p.detach() for p in self.params])
        gmean = (self.group_sum / n).T.tolist()
        for k in trials:
            self.trials[k].recorder.add_many("grad_norms", [
                {"step": step, "group": g, "grad_norm": gmean[k][i],
                 "update_ratio": metrics.update_ratio(delta_sq[k][i], prev_sq[k][i])}
                for i, g in enumerate(self.group_names)])

    def eval_point(self, step: int, epoch_now: float, samples_seen: int) -> None:
        """Read the running sums, evaluate every trial on dev, record the active ones, and stop the
        ones that diverged, were pruned or stopped improving."""
        tc, device = self.tc, self.device
        sync(device)
        t_eval = time.perf_counter()
        self.train_s += t_eval - self.t_resume
        nonfinite = self.nonfinite_at.tolist()
        n = max(self.interval_steps, 1)
        dev_loss, dev_acc, _ = evaluate_fused(self.model, self.dev, self.eval_rows, self.autocast)
        loss_sum, correct_sum, gnorm_sum = self.loss_sum.tolist(), self.correct_sum.tolist(), self.gnorm_sum.tolist()
        recorded, improved = [], []
        for k in self.active():
            t = self.trials[k]
            if nonfinite[k] >= 0 or not math.isfinite(dev_loss[k]):
                t.status = "diverged"
                t.error = (f"non-finite training loss at step {int(nonfinite[k])}" if nonfinite[k] >= 0
                           else f"non-finite dev loss at step {step}")
                self.end_trial(k, step, epoch_now, samples_seen, self.train_s)
                continue
            t.recorder.add("curves", step=step, epoch=epoch_now, samples_seen=samples_seen, elapsed_s=self.train_s,
                           train_loss=loss_sum[k] / n, train_acc=correct_sum[k] / max(self.samples_interval, 1),
                           dev_loss=dev_loss[k], dev_acc=dev_acc[k],
                           grad_norm=gnorm_sum[k] / n if tc.instrument else None)
            recorded.append(k)
        if tc.instrument and recorded:
            t_rec = time.perf_counter()
            self.record_groups(step, n, recorded)
            sync(device)
            self.probe_s += time.perf_counter() - t_rec
            t_eval += time.perf_counter() - t_rec
        for k in recorded:
            t = self.trials[k]
            if t.target_hit is None and dev_acc[k] >= t.spec.train.target_dev_acc:
                t.target_hit = (step, samples_seen, self.train_s)
            t.best_dev_acc = max(t.best_dev_acc, dev_acc[k])
            if dev_loss[k] < t.best_loss:
                t.best_loss, t.best_step, t.last_improve, t.has_best = dev_loss[k], step, step, True
                improved.append(k)
        if improved:
            self.keep_best(improved)
        for k in recorded:
            t = self.trials[k]
            t.stop = _stop_reason(t, step, dev_acc[k])
            if t.stop:
                self.end_trial(k, step, epoch_now, samples_seen, self.train_s)
        self.active_t.copy_(torch.tensor([t.active for t in self.trials]))  # in place: the step holds it
        zeros = torch.zeros(self.k, device=device)
        self.loss_sum, self.correct_sum, self.gnorm_sum = zeros.clone(), zeros.clone(), zeros.clone()
        self.group_sum = torch.zeros(self.n_groups, self.k, device=device)
        self.interval_steps, self.samples_interval = 0, 0
        sync(device)
        self.t_resume = time.perf_counter()
        self.eval_s += self.t_resume - t_eval

    @torch.no_grad()
    def keep_best(self, improved: list[int]) -> None:
        """Copy the current weights of the trials in `improved` to their best weights."""
        mask = torch.zeros(self.k, dtype=torch.bool, device=self.device)
        mask[improved] = True
        for best, p in zip(self.best_params, self.params):
            best.copy_(torch.where(mask.view(-1, *([1] * (p.dim() - 1))), p.detach(), best))

    # ------------------------------------------------------------------------- the end
    def finish(self) -> list[dict[str, Any]]:
        """The final probe (at each trial's stopping point: its weights have not changed since), the
        test evaluation of each trial's best weights, the weights `train.save_model` keeps (each trial's
        as its unfused model's state_dict, on the recorder) and the runs rows."""
        data = self.data
        alive = [k for k, t in enumerate(self.trials) if t.status != "diverged"]
        if self.tc.instrument and alive:
            self.probe(None, "final", alive)
        tested = [k for k in alive if self.trials[k].has_best]
        save = self.tc.save_model  # as run_trial: the weights after the last step, or the tested ones
        weights: dict[int, dict[str, Tensor]] = {}
        if save == "last":  # a stopped trial's weights have not changed since its stopping step
            weights = {k: cpu_state(self.model.state_dict_of(k)) for k in alive}
        test: tuple[list[float], list[float], Tensor] | None = None
        if tested:
            with torch.no_grad():
                torch._foreach_copy_([p.detach() for p in self.params], self.best_params)
            test = evaluate_fused(self.model, self.test, self.eval_rows, self.autocast)
            if save == "best":
                weights = {k: cpu_state(self.model.state_dict_of(k)) for k in tested}
        pred_np = test[2].cpu().numpy() if test is not None else None
        wall_s = time.perf_counter() - self.t_start
        rows = []
        for k, t in enumerate(self.trials):
            test_loss = test_acc = test_f1 = None
            if k in tested and test is not None and pred_np is not None:
                test_loss, test_acc = test[0][k], test[1][k]
                cm = metrics.confusion_matrix(data.test.labels, pred_np[k], len(data.class_names))
                test_f1 = metrics.macro_f1(cm)
                t.recorder.add_many("confusion", [
                    {"true_label": i, "pred_label": j, "count": int(cm[i, j]),
                     "true_name": data.class_names[i], "pred_name": data.class_names[j]}
                    for i in range(cm.shape[0]) for j in range(cm.shape[1])])
            if t.stop == "pruned":
                t.status = "pruned"
            curves = t.recorder.rows["curves"]
            row = {
                "status": t.status, "error": t.error,
                "test_acc": test_acc, "test_macro_f1": test_f1, "test_loss": test_loss,
                "best_dev_acc": t.best_dev_acc if t.has_best else None,
                "best_step": t.best_step if t.has_best else None,
                "steps": t.step, "epochs": t.epoch,
                "stop_reason": t.stop or ("diverged" if t.status == "diverged" else "budget"),
                "target_dev_acc": t.spec.train.target_dev_acc,
                "steps_to_target": t.target_hit[0] if t.target_hit else None,
                "samples_to_target": t.target_hit[1] if t.target_hit else None,
                "seconds_to_target": t.target_hit[2] if t.target_hit else None,
                "grad_norm_init": float(self.grad_norm_init[k]) if self.grad_norm_init is not None else None,
                "grad_norm_final": curves[-1]["grad_norm"] if curves else None,
                "vanishing_ratio_init": t.vanishing.get("init"),
                "vanishing_ratio_final": t.vanishing.get("final"),
                "wall_s": wall_s, "train_s": t.train_s, "eval_s": self.eval_s, "probe_s": self.probe_s,
                "samples_per_s": t.samples_seen / t.train_s if t.train_s > 0 else None,
                "device": device_label(self.device), "torch_version": torch.__version__, **provenance(self.device),
                "started_at": self.started_at, "dataset": data.name, "data_id": data.data_id,
                "model_file": model_file(t.spec.trial_id) if k in weights else None,
            }
            t.recorder.weights = weights.get(k)  # written beside the shards (records.stage_trial)
            t.recorder.set_run(**settings_columns(t.spec), **row)
            rows.append(t.recorder.rows["runs"][0])
        return rows
