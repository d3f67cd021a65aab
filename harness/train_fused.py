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

What is kept per trial (the curves and runs rows, the best dev point, the stop rules, the probe, the
clock) is `harness.ledger`'s, shared with `run_trial`: this module holds only the fused model's step,
evaluation and checkpoint. A trial can be fused when `fusable` says so (search trials and cells or
read-outs without a fused form cannot; data with a lag and every built-in read-out can), and trials
fuse together when `fusable_key` agrees: everything but the per-trial settings in `PER_TRIAL_KEYS`.

`train.cuda_graph` (harness.fused_step): the training step runs on static buffers (every batch full:
drop_last) and, on CUDA, is captured once in a CUDA graph and replayed; evaluations, the probe and the
recording stay eager. On a CPU the static step runs eagerly (`harness run` refuses the setting there:
`check_cuda_graph`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from harness import metrics, names
from harness import model_file as model_file_format
from harness.config import ConfigError, ExperimentConfig, TrialSpec
from harness.data import Dataset
from harness.device import check_cuda_graph
from harness.fused_step import FusedStep
from harness.ledger import (
    EvalPoint,
    Instruments,
    PhaseClock,
    ProbeBatch,
    RunningSums,
    Split,
    StepResult,
    TrialLedger,
    batches,
)
from harness.models import build_model, param_groups
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
    eval_batch,
    machine_columns,
    restore_rng,
    rng_states,
    settings_columns,
)

__all__ = ["AUTO_FUSE_CUDA", "PER_TRIAL_KEYS", "check_cuda_graph", "check_fusable", "fusable", "fusable_key",
           "fuse_size", "group_specs", "run_fused"]

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


def fusable(spec: TrialSpec) -> str | None:
    """None when `spec` can train in a fused group (`run_fused` asserts it); else why not. The one
    place the rules live: a search trial runs alone (the sampler chooses its settings when it is
    claimed, so no other trial is known to share its shape), and a cell or read-out needs a fused form
    (`harness.names` says which have one; a plugin's has none). Data with a lag fuses."""
    if spec.tag.get("phase") == "search":
        return "a search trial's settings are sampled when it is claimed, so it trains alone"
    if not names.fused_cell(spec.model.cell):
        return f"model.cell {spec.model.cell!r} has no fused form"
    if not names.fused_readout(spec.model.readout):
        return f"model.readout {spec.model.readout!r} has no fused form"
    return None


def check_fusable(cfg: ExperimentConfig) -> None:
    """Raise ConfigError, before any work, when the config asks to fuse (`run.fuse` an integer above 1,
    or train.cuda_graph, which trains through the fused step) and a cell or read-out it names has no
    fused form. `run.fuse: auto` fuses what can fuse and trains the rest one at a time."""
    graph = True in cfg.setting_values("train.cuda_graph")
    fuse = cfg.run.fuse
    asked = isinstance(fuse, int) and not isinstance(fuse, bool) and fuse > 1
    if not (asked or graph):
        return
    key = "run.fuse" if asked else "train.cuda_graph"
    value = fuse if asked else "true"
    for setting, ok in (("model.cell", names.fused_cell), ("model.readout", names.fused_readout)):
        bad = [v for v in cfg.setting_values(setting) if not ok(v)]
        if bad:
            raise ConfigError(f"config key {key!r}: {value} trains trials through the fused model, but {setting} "
                              f"{', '.join(map(repr, bad))} has no fused form (a plugin's); set run.fuse: off or auto "
                              f"(auto fuses only what can fuse), train.cuda_graph: false, or leave it out of the grid")


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


@torch.inference_mode()
def evaluate_fused(model: FusedClassifier, split: Split, rows: int, autocast: Any
                   ) -> tuple[list[float], list[float], Tensor]:
    """Per trial (mean cross-entropy, accuracy) over the whole split, and predictions (K, N) on the
    device; every trial reads the same `rows` examples per call."""
    k = model.k
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros(k, device=split.tokens.device)
    preds = []
    for i in range(0, split.n, rows):
        x, lengths, y, *starts = split.batch(slice(i, i + rows))
        with autocast():
            logits = model(x.expand(k, -1, -1), lengths.expand(k, -1),
                           starts=starts[0].expand(k, -1) if starts else None)
        loss_sum += per_trial_cross_entropy(upcast(logits), y.expand(k, -1), "sum")
        preds.append(logits.argmax(2))
    model.train(was_training)
    pred = torch.cat(preds, 1)  # (K, N)
    acc = (pred == split.labels).float().mean(1)
    return (loss_sum.double() / split.n).tolist(), acc.tolist(), pred


def run_fused(specs: Sequence[TrialSpec], data: Dataset, device: torch.device,
              recorders: Sequence[TrialRecorder], checkpoint: Path | None = None) -> list[dict[str, Any]]:
    """Train and evaluate K fusable trials together. Returns their runs rows (also set on each
    recorder), in the order of `specs`. Raises ValueError when a trial cannot be fused (`fusable`) or
    the specs do not share a shape.

    `checkpoint`: as run_trial's, for the group (a checkpoint of the same trials in the same order
    is resumed; `train.checkpoint_every` N > 0 saves one every N steps; deleted at the end)."""
    if not specs or len(specs) != len(recorders):
        raise ValueError(f"run_fused: {len(specs)} specs and {len(recorders)} recorders")
    for s in specs:
        if (why := fusable(s)) is not None:
            raise ValueError(f"run_fused: trial {s.trial_id} cannot be fused: {why}")
    keys = [fusable_key(s) for s in specs]
    for s, key in zip(specs, keys):
        if key != keys[0]:
            diff = sorted(set(key) ^ set(keys[0]))
            raise ValueError(f"run_fused: trial {s.trial_id} differs from {specs[0].trial_id} in a shared "
                             f"setting: {[d[0] for d in diff if isinstance(d, tuple)] or 'data_id'}")
    return _FusedRun(list(specs), data, device, list(recorders), checkpoint).run()


class _FusedRun:
    """A fused group from build to runs rows: the fused model and its step; the rest is the ledger's."""

    def __init__(self, specs: list[TrialSpec], data: Dataset, device: torch.device,
                 recorders: list[TrialRecorder], checkpoint: Path | None = None):
        self.clock = PhaseClock(device)
        self.started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.resumed_from_step: int | None = None  # the checkpoint's step, when restored from one
        self.checkpoint = checkpoint
        self.resume = True  # False: from step 0 whatever the checkpoint file holds
        self.specs, self.data, self.device = specs, data, device
        self.k = k = len(specs)
        self.tc, self.mc = tc, mc = specs[0].train, specs[0].model  # the shared settings
        self.seeds = [Seeds.from_base(s.train.seed) for s in specs]

        models = []
        for s, sd in zip(specs, self.seeds):
            torch.manual_seed(sd.init)
            models.append(build_model(s.model, data.vocab_size, len(data.class_names), data.pad_index,
                                      data.embeddings))
        self.model = FusedClassifier.from_models(models).to(device).train()
        del models
        self.model.set_dropout([torch.Generator(device).manual_seed(sd.dropout) for sd in self.seeds])
        self.params = list(self.model.parameters())
        self.optimizer = FusedAdam(self.params, torch.tensor([s.train.lr for s in specs]))
        self.group_names, group_of_param = param_groups(self.model)
        self.group_idx = torch.tensor(group_of_param, device=device)
        self.n_groups = len(self.group_names)
        clips = [s.train.grad_clip for s in specs]
        self.clip = (torch.tensor([math.inf if c is None else c for c in clips], device=device)
                     if any(c is not None for c in clips) else None)
        self.active_t = torch.ones(k, dtype=torch.bool, device=device)  # updated in place (a graph reads it)
        graph = tc.cuda_graph  # static shapes; captured and replayed on CUDA, eager elsewhere
        self.step_fn = FusedStep(self.model, self.optimizer, self.active_t, self.norms_and_clip,
                                 lambda: self.autocast(cache=not graph), static=graph,
                                 capture=graph and device.type == "cuda")

        spans = data.lag is not None  # texts that do not start at position 0: the read-outs need their starts
        self.train, self.dev, self.test = (Split(s, device, spans) for s in (data.train, data.dev, data.test))
        self.ledgers = [TrialLedger(s, r) for s, r in zip(specs, recorders)]
        _, total_steps = tc.budget(self.train.n)
        self.instruments = Instruments(
            self.params, self.group_names, lambda ts: group_sq_norms(ts, self.group_idx, self.n_groups), self.probe,
            ProbeBatch.first(self.dev, data, tc.probe_size, mc.readout, mc.num_layers), self.ledgers, self.clock,
            on=tc.instrument, probe_at=set(metrics.log_spaced_steps(total_steps, tc.probe_points)))
        self.sums = RunningSums.start(self.n_groups, device, k)
        self.best_params = [p.detach().clone() for p in self.params]  # each trial's weights at its lowest dev loss
        rows = eval_batch(tc, device)  # on a CPU at most CPU_EVAL_BATCH
        self.eval_rows = max(1, min(rows, 8 * rows // k))
        self.flush = False

    def autocast(self, cache: bool = True) -> Any:
        """bf16 autocast when train.precision says so (a CUDA graph needs its weight cache off)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.tc.precision == "bf16",
                              cache_enabled=cache)

    def probe(self, batch: ProbeBatch) -> list[np.ndarray]:
        """The gradient-reach probe of every trial: per layer (K, B, T) gradient norms on the host."""
        return [g.cpu().numpy() for g in probe_grads(self.model, batch.tokens, batch.lengths, batch.labels,
                                                     self.autocast, batch.starts)]

    def active(self) -> list[int]:
        return [k for k, t in enumerate(self.ledgers) if t.active]

    # ------------------------------------------------------------------------- training
    def run(self) -> list[dict[str, Any]]:
        """Train the group to the end and return each trial's runs row. One linear story, as
        train.run_trial's."""
        tc, device, clock = self.tc, self.device, self.clock
        _, total_steps = tc.budget(self.train.n)
        ckpt = Checkpoint(self.checkpoint, tc.checkpoint_every, ",".join(s.trial_id for s in self.specs), total_steps)
        saved = ckpt.load(device) if self.resume else None
        step, epoch, samples_seen = 0, 0.0, 0
        if saved is None:
            self.instruments.probe(0, "init", list(range(self.k)))
        else:  # resume: everything as it was after step saved["step"]
            try:
                step, epoch, samples_seen = self.restore(saved)
            except Exception as e:  # the group's file, but its state does not fit: start over, never fail
                ckpt.unusable(e)
                recorders = [t.recorder for t in self.ledgers]
                for rows in (rows for r in recorders for rows in r.rows.values()):
                    rows.clear()
                fresh = _FusedRun(self.specs, self.data, device, recorders, self.checkpoint)
                fresh.resume = False
                return fresh.run()
            ckpt.resumed(step)
        self.flush = device.type == "cpu"  # as run_trial: flush float32 denormals while training
        torch.set_flush_denormal(self.flush)
        clock.switch("train")
        try:
            for epoch, idx in batches(self.train.n, tc, [sd.data_order for sd in self.seeds], device, start=step):
                batch = self.train.batch(idx)  # (K, B, T), (K, B), (K, B)[, (K, B)]
                out = self.step_fn(*batch)
                step += 1
                samples_seen += idx.shape[1]
                with torch.no_grad():
                    correct = (out.logits.argmax(2) == batch[2]).sum(1)
                norms = (out.group_sq, out.total_norm) if tc.instrument else (None, None)
                result = StepResult(out.losses, correct, *norms)
                self.sums.add(result, idx.shape[1])
                self.instruments.after_step(step, result, self.active, flush_after=self.flush)
                if step % tc.eval_every == 0 or step == total_steps:
                    self.evaluation_point(step, epoch, samples_seen)
                    if not self.active():
                        break
                if ckpt.due(step):
                    with clock.phase("other"):
                        self.save(ckpt, step, epoch, samples_seen)
        finally:
            self.flush = False
            torch.set_flush_denormal(False)
        clock.switch("other")
        for k in self.active():  # ran to the budget
            self.ledgers[k].end(step, epoch, samples_seen, clock.seconds["train"])
        rows = self.finish()
        ckpt.remove()  # the group ended: its checkpoint has served
        return rows

    def evaluation_point(self, step: int, epoch: float, samples_seen: int) -> None:
        """Evaluate every trial on dev; for each active one, end it if it diverged, else record the
        point and stop it if it was pruned, reached its target or stopped improving."""
        with self.clock.phase("eval"):
            nonfinite = self.sums.nonfinite_steps()
            dev_loss, dev_acc, _ = evaluate_fused(self.model, self.dev, self.eval_rows, self.autocast)
            means, train_s = self.sums.interval_means(), self.clock.seconds["train"]
            recorded, improved = [], []
            for k in self.active():
                ledger = self.ledgers[k]
                if nonfinite[k] >= 0 or not math.isfinite(dev_loss[k]):
                    ledger.diverge(f"non-finite training loss at step {nonfinite[k]}" if nonfinite[k] >= 0
                                   else f"non-finite dev loss at step {step}")
                    ledger.end(step, epoch, samples_seen, train_s)
                    continue
                train_loss, train_acc, gnorm = means[k]
                point = EvalPoint(step, epoch, samples_seen, train_s, train_loss, train_acc, dev_loss[k], dev_acc[k],
                                  gnorm if self.tc.instrument else None)
                if ledger.evaluated(point):
                    improved.append(k)
                recorded.append(k)
            self.instruments.record_groups(step, self.sums, recorded)
            self.keep_best(improved)
            self.sums.reset()
            for k in recorded:
                ledger = self.ledgers[k]
                ledger.stop = ledger.stop_reason(step, dev_acc[k])
                if ledger.stop:
                    ledger.end(step, epoch, samples_seen, train_s)
            self.active_t.copy_(torch.tensor([t.active for t in self.ledgers]))  # in place: the step holds it

    @torch.no_grad()
    def keep_best(self, improved: list[int]) -> None:
        """Copy the current weights of the trials in `improved` to their best weights."""
        if not improved:
            return
        mask = torch.zeros(self.k, dtype=torch.bool, device=self.device)
        mask[improved] = True
        for best, p in zip(self.best_params, self.params):
            best.copy_(torch.where(mask.view(-1, *([1] * (p.dim() - 1))), p.detach(), best))

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

    # ------------------------------------------------------------------------- checkpoints
    def save(self, ckpt: Checkpoint, step: int, epoch: float, samples_seen: int) -> None:
        """Write the group's checkpoint after `step`."""
        opt = self.optimizer
        ckpt.save(
            step=step, epoch=epoch, samples_seen=samples_seen, started_at=self.started_at,
            model=self.model.state_dict(),
            adam={"exp_avg": opt.exp_avg, "exp_avg_sq": opt.exp_avg_sq, "steps": opt.steps},
            dropout=[g.get_state() if g is not None else None for g in self.model.generators],
            rng=rng_states(self.device), active=self.active_t, sums=self.sums.state(), best_params=self.best_params,
            ledgers=[t.state() for t in self.ledgers], instruments=self.instruments.state(), clock=self.clock.state())

    @torch.no_grad()
    def restore(self, saved: dict[str, Any]) -> tuple[int, float, int]:
        """Put back a checkpoint (tensors the step holds, in place); returns the loop's (step, epoch,
        samples seen). The random states last."""
        self.model.load_state_dict(saved["model"])
        opt, adam = self.optimizer, saved["adam"]
        torch._foreach_copy_(opt.exp_avg, adam["exp_avg"])
        torch._foreach_copy_(opt.exp_avg_sq, adam["exp_avg_sq"])
        opt.steps.copy_(adam["steps"])
        torch._foreach_copy_(self.best_params, saved["best_params"])
        self.active_t.copy_(saved["active"])
        self.sums.restore(saved["sums"])
        for ledger, state in zip(self.ledgers, saved["ledgers"]):
            ledger.restore(state)
        self.instruments.restore(saved["instruments"])
        self.clock.restore(saved["clock"])
        self.started_at = saved["started_at"]
        for gen, state in zip(self.model.generators, saved["dropout"]):
            if gen is not None:
                gen.set_state(state.cpu())
        restore_rng(saved["rng"], self.device)
        self.resumed_from_step = saved["step"]
        return saved["step"], saved["epoch"], saved["samples_seen"]

    # ------------------------------------------------------------------------- the end
    def finish(self) -> list[dict[str, Any]]:
        """The final probe (at each trial's stopping point: its weights have not changed since), the
        test evaluation of each trial's best weights, the weights `train.save_model` keeps (each trial's
        as its unfused model's state_dict, on the recorder) and the runs rows."""
        alive = [k for k, t in enumerate(self.ledgers) if t.status != "diverged"]
        self.instruments.probe(None, "final", alive)
        tested = [k for k in alive if self.ledgers[k].best.reached]
        save = self.tc.save_model  # as run_trial: the weights after the last step, or the tested ones
        weights: dict[int, dict[str, Tensor]] = {}
        if save == "last":  # a stopped trial's weights have not changed since its stopping step
            weights = {k: cpu_state(self.model.state_dict_of(k)) for k in alive}
        test: tuple[list[float], list[float], np.ndarray] | None = None
        if tested:
            with torch.no_grad():
                torch._foreach_copy_([p.detach() for p in self.params], self.best_params)
            loss, acc, pred = evaluate_fused(self.model, self.test, self.eval_rows, self.autocast)
            test = loss, acc, pred.cpu().numpy()
            if save == "best":
                weights = {k: cpu_state(self.model.state_dict_of(k)) for k in tested}
        rows = []
        for k, ledger in enumerate(self.ledgers):
            test_cols = ledger.tested(test[0][k], test[1][k], test[2][k], self.data) if test and k in tested else None
            kept = weights.get(k)  # written beside the shards (records.stage_trial), in harness.model_file's format
            ledger.recorder.weights = None if kept is None else model_file_format.bundle(kept, ledger.spec, self.data,
                                                                                         save)
            timing = self.clock.columns(ledger.samples_seen, ledger.train_s)  # the group's seconds, its own training
            rows.append(ledger.finish(
                test_cols, self.instruments.grad_norm_init_of(k), timing, machine_columns(self.device),
                self.started_at, self.data,
                model_file(ledger.spec.trial_id) if k in weights else None, settings_columns(ledger.spec)))
            rows[-1]["resumed_from_step"] = self.resumed_from_step  # the recorder's runs row itself
        return rows
