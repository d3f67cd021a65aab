"""The trainer: one trial, top to bottom. A pure function of a `TrialSpec`, the encoded data and a
device; everything it measures goes to the `TrialRecorder` it is handed (no files, no Optuna).

Per step the only work besides forward/backward/Adam is a handful of small device ops: the
per-parameter gradient norms in one fused `torch._foreach_norm` call, summed into groups, and the
running sums of loss and correct predictions. Nothing is read back to the host until an
evaluation point (every `eval_every` steps), so a GPU never waits on Python per step.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from harness import metrics
from harness.config import ConfigError, TrialSpec
from harness.data import Dataset, EncodedSplit
from harness.models import build_model, param_groups, read_positions
from harness.records import TrialRecorder


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


class _Split:
    """An encoded split as tensors resident on the training device."""

    def __init__(self, split: EncodedSplit, device: torch.device):
        self.tokens = torch.from_numpy(split.tokens).to(device)    # (N, T) int64
        self.lengths = torch.from_numpy(split.lengths).to(device)  # (N,) int64
        self.labels = torch.from_numpy(split.labels).to(device)    # (N,) int64
        self.n = len(split.labels)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, split: _Split, batch_size: int, autocast: Any
             ) -> tuple[float, float, Tensor]:
    """(mean cross-entropy, accuracy, predictions (N,) on the device) over the whole split."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=split.tokens.device)
    preds = []
    for i in range(0, split.n, batch_size):
        sl = slice(i, i + batch_size)
        with autocast():
            logits = model(split.tokens[sl], split.lengths[sl])
        loss_sum += F.cross_entropy(logits.float(), split.labels[sl], reduction="sum")
        preds.append(logits.argmax(1))
    model.train(was_training)
    pred = torch.cat(preds)
    return loss_sum.item() / split.n, (pred == split.labels).float().mean().item(), pred


def _probe(model: torch.nn.Module, tokens: Tensor, lengths: Tensor, labels: Tensor, autocast: Any
           ) -> list[np.ndarray]:
    """Per layer (input, rnn.l0, …) the per-example gradient norm ‖∂L_b/∂x_{b,t}‖ as (B, T) arrays,
    L_b the cross-entropy of example b. Dropout is off; the model stays in train mode because cuDNN
    RNNs only run backward in train mode."""
    dropout = model.dropout.p
    model.dropout.p = 0.0
    try:
        with torch.enable_grad(), autocast():
            logits, hidden = model(tokens, lengths, return_hidden=True)
            loss = F.cross_entropy(logits.float(), labels, reduction="sum")
        grads = torch.autograd.grad(loss, hidden)
    finally:
        model.dropout.p = dropout
    return [g.float().norm(dim=2).cpu().numpy() for g in grads]  # each (B, T)


def run_trial(spec: TrialSpec, data: Dataset, device: torch.device, recorder: TrialRecorder
              ) -> dict[str, Any]:
    """Train and evaluate one trial. Returns the trial's runs row (also set on the recorder)."""
    t_start = time.perf_counter()
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    tc, mc = spec.train, spec.model
    seeds = Seeds.from_base(tc.seed)
    pad_size = data.train.tokens.shape[1]

    torch.manual_seed(seeds.init)
    model = build_model(mc, data.vocab_size, len(data.class_names), data.pad_index, data.embeddings)
    model.to(device).train()
    torch.manual_seed(seeds.dropout)
    if device.type == "cuda":
        torch.cuda.manual_seed(seeds.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr)
    params = [p for p in model.parameters()]
    group_names, group_of_param = param_groups(model)
    group_idx = torch.tensor(group_of_param, device=device)
    n_groups = len(group_names)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16")

    train, dev, test = (_Split(s, device) for s in (data.train, data.dev, data.test))
    n_probe = min(tc.probe_size, dev.n)
    probe_batch = (dev.tokens[:n_probe], dev.lengths[:n_probe], dev.labels[:n_probe])
    probe_lengths = data.dev.lengths[:n_probe]
    probe_read = read_positions(mc.readout, probe_lengths, pad_size)
    probe_pad = metrics.pad_fraction(probe_lengths, pad_size)
    layer_names = ["input"] + [f"rnn.l{i}" for i in range(mc.num_layers)]

    bs = tc.batch_size
    steps_per_epoch = train.n // bs if tc.drop_last else math.ceil(train.n / bs)
    if steps_per_epoch == 0:
        raise ValueError(f"train.batch_size {bs} is larger than the training set ({train.n}) with drop_last")
    total_steps = tc.epochs * steps_per_epoch
    if tc.max_steps is not None:
        total_steps = min(total_steps, tc.max_steps)
    probe_at = set(metrics.log_spaced_steps(total_steps, tc.probe_points))
    vanishing: dict[str, float] = {}

    def probe(step: int, key: str | None = None) -> None:
        torch.set_flush_denormal(False)  # the probe measures tiny gradients: keep denormals
        try:
            norms = _probe(model, *probe_batch, autocast)
        finally:
            torch.set_flush_denormal(flush)
        for layer, g in zip(layer_names, norms):
            mean = g.mean(0)  # (T,)
            recorder.add_many("grad_time", [
                {"step": step, "layer": layer, "position": t, "pad_fraction": float(probe_pad[t]),
                 "grad_norm": float(mean[t])} for t in range(pad_size)])
        if key:
            vanishing[key] = metrics.vanishing_ratio(norms[0], probe_read)

    flush = False
    if tc.instrument:
        probe(0, "init")

    # Running sums on the device, read at evaluation points only.
    zero = torch.zeros((), device=device)
    loss_sum, correct_sum, gnorm_sum, nonfinite_at = zero.clone(), zero.clone(), zero.clone(), zero - 1
    group_sum = torch.zeros(n_groups, device=device)
    step_counter = zero.clone()
    grad_norm_init: Tensor | None = None
    prev_params = [p.detach().clone() for p in params]
    interval_steps, samples_seen, train_s = 0, 0, 0.0
    best_loss, best_step, best_dev_acc, best_state = math.inf, 0, 0.0, None
    last_improve = 0
    target_hit: tuple[int, int, float] | None = None
    status, error = "complete", None
    order_gen = torch.Generator().manual_seed(seeds.data_order)
    step, epoch_float = 0, 0.0
    _sync(device)
    t_resume = time.perf_counter()

    def record_groups(n: int) -> None:
        """Per-group gradient norms (mean over the interval) and update ratios ‖Δθ‖/‖θ‖ since the
        previous evaluation point."""
        with torch.no_grad():
            deltas = torch._foreach_sub([p.detach() for p in params], prev_params)
            delta_sq = torch.zeros(n_groups, device=device).index_add_(
                0, group_idx, torch.stack(torch._foreach_norm(deltas)) ** 2)
            prev_sq = torch.zeros(n_groups, device=device).index_add_(
                0, group_idx, torch.stack(torch._foreach_norm(prev_params)) ** 2)
            torch._foreach_copy_(prev_params, [p.detach() for p in params])
        gmean = (group_sum / n).tolist()
        dsq, psq = delta_sq.tolist(), prev_sq.tolist()
        recorder.add_many("grad_norms", [
            {"step": step, "group": g, "grad_norm": gmean[i], "update_ratio": metrics.update_ratio(dsq[i], psq[i])}
            for i, g in enumerate(group_names)])

    def eval_point(epoch_now: float) -> str | None:
        """Read the running sums, evaluate on dev, record. Returns a reason to stop, or None."""
        nonlocal train_s, t_resume, interval_steps, best_loss, best_step, best_dev_acc, best_state
        nonlocal last_improve, target_hit, loss_sum, correct_sum, gnorm_sum, group_sum, samples_interval
        _sync(device)
        train_s += time.perf_counter() - t_resume
        if nonfinite_at.item() >= 0:
            raise Diverged(f"non-finite training loss at step {int(nonfinite_at.item())}")
        n = max(interval_steps, 1)
        dev_loss, dev_acc, _ = evaluate(model, dev, tc.eval_batch_size, autocast)
        if not math.isfinite(dev_loss):
            raise Diverged(f"non-finite dev loss at step {step}")
        recorder.add("curves", step=step, epoch=epoch_now, samples_seen=samples_seen, elapsed_s=train_s,
                     train_loss=loss_sum.item() / n, train_acc=correct_sum.item() / max(samples_interval, 1),
                     dev_loss=dev_loss, dev_acc=dev_acc,
                     grad_norm=gnorm_sum.item() / n if tc.instrument else None)
        if tc.instrument:
            record_groups(n)
        if target_hit is None and dev_acc >= tc.target_dev_acc:
            target_hit = (step, samples_seen, train_s)
        best_dev_acc = max(best_dev_acc, dev_acc)
        if dev_loss < best_loss:
            best_loss, best_step, last_improve = dev_loss, step, step
            best_state = copy.deepcopy(model.state_dict())
        loss_sum, correct_sum, gnorm_sum = zero.clone(), zero.clone(), zero.clone()
        group_sum = torch.zeros(n_groups, device=device)
        interval_steps, samples_interval = 0, 0
        reason = None
        if recorder.report_eval(step, dev_acc):
            reason = "pruned"
        elif step - last_improve >= tc.require_improvement:
            reason = "early_stop"
        _sync(device)
        t_resume = time.perf_counter()
        return reason

    samples_interval = 0
    stop: str | None = None
    # On a CPU, vanishing gradients underflow into float32 denormals, which are slow to compute with
    # (the per-step gradient norms cost 10-20x more); training flushes them to zero.
    flush = device.type == "cpu"
    torch.set_flush_denormal(flush)
    try:
        for epoch in range(tc.epochs):
            order = (torch.randperm(train.n, generator=order_gen) if tc.shuffle
                     else torch.arange(train.n)).to(device)
            for b in range(steps_per_epoch):
                idx = order[b * bs:(b + 1) * bs]
                x, lengths, y = train.tokens[idx], train.lengths[idx], train.labels[idx]  # (B, T), (B,), (B,)
                with autocast():
                    logits = model(x, lengths)  # (B, C)
                loss = F.cross_entropy(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                with torch.no_grad():
                    if tc.instrument:  # all groups' norms in one fused call, kept on the device
                        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
                        group_sq = torch.zeros(n_groups, device=device).index_add_(
                            0, group_idx, torch.stack(torch._foreach_norm(grads)) ** 2)
                        total_norm = group_sq.sum().sqrt()
                        if tc.grad_clip is not None:
                            torch.nn.utils.clip_grads_with_norm_(params, tc.grad_clip, total_norm)
                    elif tc.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
                optimizer.step()
                step += 1
                interval_steps += 1
                samples_seen += len(idx)
                samples_interval += len(idx)
                with torch.no_grad():
                    step_counter += 1
                    loss_d = loss.detach()
                    nonfinite_at = torch.where((nonfinite_at < 0) & ~torch.isfinite(loss_d),
                                               step_counter, nonfinite_at)
                    loss_sum += loss_d
                    correct_sum += (logits.detach().argmax(1) == y).sum()
                    if tc.instrument:
                        gnorm_sum += total_norm
                        group_sum += group_sq.sqrt()
                        if grad_norm_init is None:
                            grad_norm_init = total_norm.clone()
                if tc.instrument and step in probe_at:
                    probe(step)
                epoch_float = epoch + (b + 1) / steps_per_epoch
                if step % tc.eval_every == 0 or step == total_steps:
                    stop = eval_point(epoch_float)
                    if stop:
                        break
                if step >= total_steps:
                    break
            if stop or step >= total_steps:
                break
    except Diverged as e:
        status, error = "diverged", str(e)
        _sync(device)
    finally:
        flush = False
        torch.set_flush_denormal(False)
    if stop == "pruned":
        status = "pruned"

    if tc.instrument and status != "diverged":
        probe(step, "final")
    test_loss = test_acc = test_f1 = None
    if status != "diverged" and best_state is not None:
        model.load_state_dict(best_state)
        test_loss, test_acc, pred = evaluate(model, test, tc.eval_batch_size, autocast)
        cm = metrics.confusion_matrix(data.test.labels, pred.cpu().numpy(), len(data.class_names))
        test_f1 = metrics.macro_f1(cm)
        recorder.add_many("confusion", [
            {"true_label": i, "pred_label": j, "count": int(cm[i, j]),
             "true_name": data.class_names[i], "pred_name": data.class_names[j]}
            for i in range(cm.shape[0]) for j in range(cm.shape[1])])

    wall_s = time.perf_counter() - t_start
    row = {
        "status": status, "error": error,
        "test_acc": test_acc, "test_macro_f1": test_f1, "test_loss": test_loss,
        "best_dev_acc": best_dev_acc if best_state is not None else None,
        "best_step": best_step if best_state is not None else None,
        "steps": step, "epochs": epoch_float, "stop_reason": stop or ("diverged" if status == "diverged"
                                                                      else "budget"),
        "target_dev_acc": tc.target_dev_acc,
        "steps_to_target": target_hit[0] if target_hit else None,
        "samples_to_target": target_hit[1] if target_hit else None,
        "seconds_to_target": target_hit[2] if target_hit else None,
        "grad_norm_init": float(grad_norm_init) if grad_norm_init is not None else None,
        "grad_norm_final": _last(recorder, "curves", "grad_norm"),
        "vanishing_ratio_init": vanishing.get("init"),
        "vanishing_ratio_final": vanishing.get("final"),
        "wall_s": wall_s, "train_s": train_s,
        "samples_per_s": samples_seen / train_s if train_s > 0 else None,
        "device": device_label(device), "torch_version": torch.__version__, "started_at": started_at,
        "dataset": data.name, "data_id": data.data_id,
    }
    recorder.set_run(**settings_columns(spec), **row)
    return recorder.rows["runs"][0]


def _last(recorder: TrialRecorder, table: str, column: str) -> float | None:
    rows = recorder.rows[table]
    return rows[-1][column] if rows else None


def settings_columns(spec: TrialSpec) -> dict[str, Any]:
    """The runs-table columns that describe a trial's settings: the named factors, the model shape,
    and every grid axis given by dotted name (as a column of that name)."""
    m, t = spec.model, spec.train
    cols = {
        "cell": m.cell, "layernorm": m.layernorm, "batch_size": t.batch_size, "pad_size": spec.data.pad_size,
        "lr": t.lr, "seed": t.seed, "readout": m.readout, "bidirectional": m.bidirectional,
        "num_layers": m.num_layers, "hidden_size": m.hidden_size, "embed_dim": m.embed_dim,
        "dropout": m.dropout, "init": m.init, "forget_bias": m.forget_bias, "grad_clip": t.grad_clip,
        "precision": t.precision, "name": spec.name,
    }
    cols.update({"phase": "grid", **spec.tag})
    settings = spec.settings()
    for axis in spec.factors:
        if "." in axis:
            cols[axis] = settings[axis]
    return cols
