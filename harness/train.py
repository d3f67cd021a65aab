"""The trainer: one trial, top to bottom. A pure function of a `TrialSpec`, the encoded data and a
device; everything it measures goes to the `TrialRecorder` it is handed (no files, no Optuna).

Read `run_trial` first: the whole trial as one story (build, probe, the training loop with its
evaluation points, probe, test, the runs row). What it keeps per trial (the running sums, the best
dev point and the stop rules, the instruments, the clock, the runs row) is `harness.ledger`'s, which
the fused trainer (`harness.train_fused`) shares; here are only what one unfused model needs:

- `train_step`: one optimisation step (forward, loss, backward, per-group gradient norms in one
  fused `torch._foreach_norm` call, optional clipping, Adam); its results stay on the device;
- `evaluate`: dev or test loss, accuracy and predictions;
- `_probe`: the gradient-reach probe's per-position gradient norms;
- `Checkpoint`: with `train.checkpoint_every`, the whole state of the trial every N steps in one file
  (weights, Adam, the running sums, the ledger with the recorder's rows, the instruments', the random
  states, the seconds so far), from which an interrupted trial resumes bit-identically (the fused
  trainer saves its group's state through it too).

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
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from harness import metrics
from harness import model_file as model_file_format
from harness.config import TrainConfig, TrialSpec
from harness.data import Dataset
from harness.device import resolve_device
from harness.files import NotLoadable, load_tensors, no_room, one_line
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
    sync,
)
from harness.models import build_model, param_groups
from harness.models.precision import upcast
from harness.records import TrialRecorder, model_file, trial_dir
from harness.results_dir import pid_alive

__all__ = ["CPU_EVAL_BATCH", "Checkpoint", "Diverged", "ParamGroups", "PhaseClock", "RunningSums", "Seeds",
           "StepResult", "checkpoint_path", "eval_batch", "evaluate", "resolve_device", "run_trial",
           "settings_columns", "sync", "train_step"]

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
              checkpoint: Path | None = None, resume: bool = True) -> dict[str, Any]:
    """Train and evaluate one trial. Returns the trial's runs row (also set on the recorder).

    One linear story, so longer than the rest: build (seeded), probe at step 0, the training loop
    with an evaluation point every `eval_every` steps, probe at the end, test the best-dev weights,
    the runs row. What is kept per trial is `harness.ledger`'s, shared with the fused trainer.

    `train.save_model` best or last: the best-dev-loss weights (those tested) or the weights after the
    last step, as a CPU state_dict with the settings, vocabulary and class names (harness.model_file's
    format), go to `recorder.weights` and the row's model_file names where they will be
    (records.stage_trial writes them beside the shards); none for a diverged trial.

    `checkpoint` (a file path; the runner's is DIR/trials/.ckpt-<trial_id>.pt): when the file holds a
    checkpoint of this trial, training resumes from it and ends bit-identical to an uninterrupted run on
    the same machine (timings aside); with `train.checkpoint_every` N > 0 the trial's state is saved
    there every N steps; the file is deleted when the trial ends (complete, diverged, pruned, stopped).
    A file that cannot be used is a warning line and the trial starts from step 0 (`resume` False:
    from step 0 whatever the file holds)."""
    clock = PhaseClock(device)
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    tc, mc = spec.train, spec.model
    seeds = Seeds.from_base(tc.seed)
    _, total_steps = tc.budget(len(data.train.labels))

    model = _seeded_model(spec, data, device, seeds)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr)
    autocast = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16")
    spans = data.lag is not None  # texts that do not start at position 0: the read-outs need their starts
    train, dev, test = (Split(s, device, spans) for s in (data.train, data.dev, data.test))
    groups = ParamGroups.of(model, device)
    ledger = TrialLedger(spec, recorder)
    instruments = Instruments(
        list(model.parameters()), groups.names, lambda ts: groups.squared_norms(ts).unsqueeze(1),
        lambda b: [g[None] for g in _probe(model, b.tokens, b.lengths, b.labels, autocast, b.starts)],
        ProbeBatch.first(dev, data, tc.probe_size, mc.readout, mc.num_layers), [ledger], clock,
        on=tc.instrument, probe_at=set(metrics.log_spaced_steps(total_steps, tc.probe_points)))
    sums = RunningSums.start(len(groups.names), device)
    best_state: dict[str, Tensor] | None = None  # the weights of the lowest dev loss, for the test
    step, epoch, samples_seen = 0, 0.0, 0
    ckpt = Checkpoint(checkpoint, tc.checkpoint_every, spec.trial_id, total_steps)
    saved = ckpt.load(device) if resume else None
    if saved is None:
        instruments.probe(0, "init", [0])
    else:  # resume: everything as it was after step saved["step"]
        try:
            step, epoch, samples_seen = saved["step"], saved["epoch"], saved["samples_seen"]
            started_at, best_state = saved["started_at"], saved["best_state"]
            ckpt.restore(saved, model, optimizer, sums, ledger, instruments, clock, device)
        except Exception as e:  # this trial's file, but its state does not fit: start over, never fail
            return _start_over(ckpt, e, spec, data, device, recorder)
        ckpt.resumed(step)
    # On a CPU, vanishing gradients underflow into float32 denormals, which are slow to compute with
    # (the per-step gradient norms cost 10-20x more); training flushes them to zero, the probe not.
    flush = device.type == "cpu"
    torch.set_flush_denormal(flush)
    clock.switch("train")
    try:
        for epoch, idx in batches(train.n, tc, [seeds.data_order], device, start=step):
            batch = train.batch(idx[0])  # (B, T), (B,), (B,)[, (B,)]
            out = train_step(model, optimizer, batch, autocast, tc.grad_clip, groups if tc.instrument else None)
            step += 1
            samples_seen += idx.shape[1]
            sums.add(out, idx.shape[1])
            instruments.after_step(step, out, lambda: [0], flush_after=flush)
            if step % tc.eval_every == 0 or step == total_steps:  # an evaluation point
                with clock.phase("eval"):
                    if (at := sums.nonfinite_steps()[0]) >= 0:
                        raise Diverged(f"non-finite training loss at step {at}")
                    dev_loss, dev_acc, _ = evaluate(model, dev, eval_batch(tc, device), autocast)
                    if not math.isfinite(dev_loss):
                        raise Diverged(f"non-finite dev loss at step {step}")
                    train_loss, train_acc, gnorm = sums.interval_means()[0]
                    point = EvalPoint(step, epoch, samples_seen, clock.seconds["train"], train_loss, train_acc,
                                      dev_loss, dev_acc, gnorm if tc.instrument else None)
                    if ledger.evaluated(point):
                        best_state = copy.deepcopy(model.state_dict())
                    instruments.record_groups(step, sums, [0])
                    sums.reset()
                    ledger.stop = ledger.stop_reason(step, dev_acc)
                if ledger.stop:
                    break
            if ckpt.due(step):
                with clock.phase("other"):
                    ckpt.save(step=step, epoch=epoch, samples_seen=samples_seen, started_at=started_at,
                              model=model.state_dict(), optimizer=optimizer.state_dict(), sums=sums.state(),
                              best_state=best_state, ledgers=[ledger.state()], instruments=instruments.state(),
                              clock=clock.state(), rng=rng_states(device))
    except Diverged as e:
        ledger.diverge(str(e))
    finally:
        torch.set_flush_denormal(False)
    clock.switch("other")
    ledger.end(step, epoch, samples_seen, clock.seconds["train"])

    test_cols, weights = None, None  # train.save_model: the weights kept (a diverged trial keeps none)
    if ledger.status != "diverged":
        instruments.probe(step, "final", [0])
        test_cols, weights = _test_and_keep(model, best_state, tc.save_model, test, data, eval_batch(tc, device),
                                            autocast, ledger)
    # written beside the shards (records.stage_trial), with what it takes to use them (harness.model_file)
    recorder.weights = None if weights is None else model_file_format.bundle(weights, spec, data, tc.save_model)
    row = ledger.finish(test_cols, instruments.grad_norm_init_of(0), clock.columns(samples_seen),
                        machine_columns(device), started_at, data,
                        model_file(spec.trial_id) if weights is not None else None, settings_columns(spec))
    row["resumed_from_step"] = saved["step"] if saved is not None else None  # the recorder's runs row itself
    ckpt.remove()  # the trial ended: its checkpoint has served
    return row


def _start_over(ckpt: Checkpoint, e: BaseException, spec: TrialSpec, data: Dataset, device: torch.device,
                recorder: TrialRecorder) -> dict[str, Any]:
    """A checkpoint of this trial whose state did not fit (raised `e` while restoring): one warning
    line, the file deleted, the rows it put back dropped, and the trial run from step 0."""
    ckpt.unusable(e)
    for rows in recorder.rows.values():
        rows.clear()
    return run_trial(spec, data, device, recorder, ckpt.path, resume=False)


# ----------------------------------------------------------------------------- checkpoints

CHECKPOINT_FORMAT = 3  # what a checkpoint file holds (run_trial); one of another format is not resumed
# 3: only tensors and plain values (read back with weights_only=True); 2 held a pickled BestDev.

# What every checkpoint holds besides its format, trial id and step budget (run_trial's and a fused group's).
CHECKPOINT_KEYS = ("step", "epoch", "samples_seen", "started_at", "model", "sums", "ledgers", "instruments", "clock",
                   "rng")

# An unfinished checkpoint write (Checkpoint.save) is .ckpt-<id>.pt.tmp-<host>-<pid>.
_TMP = re.compile(r"^\.ckpt-.+\.pt\.tmp-(?P<host>.+)-(?P<pid>\d+)$")
TMP_STALE_S = 3600.0  # a temporary file of another host untouched this long is no live write's


def checkpoint_path(results_dir: str | Path, trial_id: str) -> Path:
    """Where a trial's checkpoint lives: DIR/trials/.ckpt-<trial_id>.pt (a hidden file: loaders,
    progress and the damage check skip it), on the folder every worker of the run shares."""
    return trial_dir(results_dir, trial_id).parent / f".ckpt-{trial_id}.pt"


def remove_stale_checkpoint_tmps(results_dir: str | Path) -> int:
    """Delete the temporary files of checkpoint writes that no live process is making (a worker
    killed mid-write leaves one): of this host, those whose pid is dead; of another host, those
    untouched for TMP_STALE_S seconds. Returns how many were deleted."""
    folder, host, n = Path(results_dir) / "trials", socket.gethostname(), 0
    if not folder.is_dir():
        return 0
    for f in folder.glob(".ckpt-*.pt.tmp-*"):
        m = _TMP.match(f.name)
        if m is None:
            continue
        try:
            stale = (not pid_alive(int(m["pid"])) if m["host"] == host
                     else time.time() - f.stat().st_mtime > TMP_STALE_S)
            if stale:
                f.unlink()
                n += 1
        except OSError:
            continue  # gone meanwhile, or not ours to delete: the next run tries again
    return n


def rng_states(device: torch.device) -> dict[str, Any]:
    """Every random state training draws from: the global CPU generator (dropout on a CPU) and, on
    CUDA, the device's (dropout there). Data order has a generator of its own, re-derived from its seed."""
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore_rng(rng: dict[str, Any], device: torch.device) -> None:
    """Put back `rng_states`'s states (byte tensors, on the CPU whatever map_location loaded them to)."""
    torch.set_rng_state(rng["cpu"].cpu())
    if device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"].cpu(), device)


def plain(value: Any, where: str = "checkpoint") -> Any:
    """`value` as what `weights_only=True` reads back: tensors, None, bools, ints, floats, strings,
    and lists, tuples and dicts of them; numpy scalars become Python's (the same number). Anything
    else raises TypeError naming where it is (`where`): a checkpoint must never need a class to load."""
    if isinstance(value, np.generic):  # first: np.float64 is a float, yet pickles as numpy's
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, Tensor)):
        return value
    if isinstance(value, dict):
        return type(value)((k, plain(v, f"{where}[{k!r}]")) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(f"{where} is of type {type(value).__name__}: a checkpoint holds only tensors and plain values")


def _warn(message: str) -> None:
    """One warning line on stderr (the workers are processes of their own: Python's warnings module
    would add a source line, or say nothing at all)."""
    print(f"harness: warning: {message}", file=sys.stderr, flush=True)


class Checkpoint:
    """A trial's checkpoint file (`path`; None: no checkpoints): saved every `every` steps before the
    last (`due`, `save`: atomically, a temporary file then os.replace), read back at the start
    (`load`, `restore`), deleted at the end (`remove`). It holds only tensors and plain values and is
    read with `weights_only=True`: a file in a results folder never runs code. A file that cannot be
    used for any reason is one warning line and the trial starts from step 0 (`unusable`)."""

    def __init__(self, path: Path | None, every: int, trial_id: str, total_steps: int):
        self.path, self.every, self.trial_id, self.total_steps = path, every, trial_id, total_steps

    def due(self, step: int) -> bool:
        """Whether to save after training step `step` (never after the last: the trial ends there)."""
        return self.path is not None and self.every > 0 and step % self.every == 0 and step < self.total_steps

    def save(self, **state: Any) -> None:
        """torch.save `state` (with the format, trial id and step budget that `load` checks) to the
        path atomically: a temporary file beside it (fsynced), then os.replace. A write the machine
        refuses (no space, over quota, no permission, read-only: files.no_room, however torch reports
        it) raises files.NoRoom: the run stops and the trial waits, resuming from the previous
        checkpoint. Any other failure to write is a warning line: the trial goes on without it."""
        assert self.path is not None
        tmp = self.path.with_name(f"{self.path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
        payload = plain({"format": CHECKPOINT_FORMAT, "trial_id": self.trial_id, "total_steps": self.total_steps,
                         **state})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except (OSError, RuntimeError) as e:
            refused = no_room(e, self.path.parent, needed=_nbytes(payload))
            if refused is not None:
                raise refused from None
            _warn(f"checkpoint {self.path} not written ({type(e).__name__}: {one_line(str(e), 200)}); "
                  f"trial {self.trial_id} goes on")
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def load(self, device: torch.device) -> dict[str, Any] | None:
        """The checkpoint of this trial, or None (no path, no file; or a file that cannot be used: not
        readable, not a torch file, holding more than tensors and plain values, of another format,
        another trial's, or missing part of the state: a warning line says so and the trial starts
        from step 0)."""
        if self.path is None or not self.path.is_file():
            return None
        try:
            saved = load_tensors(self.path, map_location=device)
            if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"not a checkpoint of format {CHECKPOINT_FORMAT}")
            if saved.get("trial_id") != self.trial_id or saved.get("total_steps") != self.total_steps:
                raise ValueError(f"it is trial {saved.get('trial_id')}'s of {saved.get('total_steps')} steps, not "
                                 f"{self.trial_id}'s of {self.total_steps}")
            missing = [k for k in CHECKPOINT_KEYS if k not in saved]
            if missing:
                raise ValueError(f"it holds no {', '.join(missing)}")
            step = saved["step"]
            if not (isinstance(step, int) and not isinstance(step, bool) and 0 < step < self.total_steps):
                raise ValueError(f"its step {step!r} is not one of 1..{self.total_steps - 1}")
        except (OSError, NotLoadable, ValueError) as e:
            self.unusable(e, remove=False)
            return None
        return saved

    def resumed(self, step: int) -> None:
        """Say that the trial goes on from its checkpoint (stderr: the worker's log; the runs row records
        it as resumed_from_step), once its state is restored."""
        print(f"harness: trial {self.trial_id} resumed from its checkpoint at step {step} of {self.total_steps}",
              file=sys.stderr, flush=True)

    def unusable(self, e: BaseException, remove: bool = True) -> None:
        """Say in one warning line that the file is not resumed and why; with `remove`, delete it (its
        state did not fit the trial: the next save replaces it anyway)."""
        why = str(e) if isinstance(e, (NotLoadable, ValueError)) else f"{type(e).__name__}: {e}"
        why = why.removeprefix(f"{self.path}: ")
        _warn(f"checkpoint {self.path} not resumed ({one_line(why, 240)}); trial {self.trial_id} starts from step 0")
        if remove and self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)

    @staticmethod
    def restore(saved: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                sums: RunningSums, ledger: TrialLedger, instruments: Instruments, clock: PhaseClock,
                device: torch.device) -> None:
        """Put back what `saved` holds: weights, Adam's state, the running sums, the ledger (with the
        recorder's rows so far), the instruments', the clock's seconds and (last: building the model
        drew from them) the random states."""
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        sums.restore(saved["sums"])
        ledger.restore(saved["ledgers"][0])
        instruments.restore(saved["instruments"])
        clock.restore(saved["clock"])
        restore_rng(saved["rng"], device)

    def remove(self) -> None:
        """Delete the checkpoint (the trial ended); one that cannot be deleted is left (never resumed:
        the trial is done)."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)


def _nbytes(value: Any) -> int:
    """About how many bytes torch.save writes for `value`: its tensors' (the rest is small)."""
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


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


def _test_and_keep(model: torch.nn.Module, state: dict[str, Tensor] | None, save_model: str, test: Split,
                   data: Dataset, batch_size: int, autocast: Autocast, ledger: TrialLedger
                   ) -> tuple[dict[str, Any] | None, dict[str, Tensor] | None]:
    """The end of a trial that did not diverge: the test columns of the best-dev weights `state` (None
    without an evaluation point), and the weights `save_model` keeps as a CPU state_dict: `last` the
    model's as training left them (taken before the test loads `state`), `best` `state`, `none` None."""
    test_cols = None
    weights = cpu_state(model.state_dict()) if save_model == "last" else None
    if state is not None:
        test_cols = _test(model, state, test, data, batch_size, autocast, ledger)
        if save_model == "best":
            weights = cpu_state(state)
    return test_cols, weights


def _test(model: torch.nn.Module, state: dict[str, Tensor], test: Split, data: Dataset, batch_size: int,
          autocast: Autocast, ledger: TrialLedger) -> dict[str, Any]:
    """Load the best-dev weights `state`, evaluate on the test split, record its confusion rows.
    Returns the runs row's test columns."""
    model.load_state_dict(state)
    test_loss, test_acc, pred = evaluate(model, test, batch_size, autocast)
    return ledger.tested(test_loss, test_acc, pred.cpu().numpy(), data)


# ----------------------------------------------------------------------------- one step, evaluation

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
def evaluate(model: torch.nn.Module, split: Split, batch_size: int, autocast: Autocast
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
