"""The fused training step, run eagerly or replayed from a CUDA graph (`train.cuda_graph`).

`FusedStep(...)(tokens, lengths, labels[, starts])` is one training step of a `FusedClassifier` on a
batch of tokens (K, B, T), lengths (K, B), labels (K, B) and, for data with a lag, each text's first
position starts (K, B): forward, each trial's mean cross-entropy,
backward, the per-group gradient norms and per-trial clipping (`norms_and_clip`), and the
`FusedAdam` step of the trials where `active` (K,) is True. It returns a `StepOut`.

One body, three ways to run it:
- plain (`static=False`): the body on the tensors given (the fused trainer's default);
- static (`static=True`, `capture=False`): the batch is copied into static buffers and the body runs
  eagerly on them: exactly what the graph replays, on any device (tests/test_fused_step.py checks on
  a CPU that it trains exactly as the plain step does);
- graph (`static=True`, `capture=True`, CUDA only): the first `WARMUP` steps run the body eagerly on
  a side stream (cuBLAS handles, the allocator and the padding index warm up there; they are real
  training steps), the next step is captured into a `torch.cuda.CUDAGraph` on that stream (the
  per-trial dropout generators registered, so each replay draws fresh masks from each trial's own
  stream) and replayed, and every later step copies its batch into the buffers and replays.

What the graph relies on (kept by harness.train_fused): the batch shape never changes (drop_last);
parameters, optimizer state, the learning rates, clip limits and the `active` mask are device
tensors updated in place, never replaced; gradients are set to None before the captured backward,
which then allocates them from the graph's pool, and each replay writes them again. A `StepOut` of
static or graph mode holds the buffers the next step overwrites: read it (or clone) before then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from harness.models.fused import FusedAdam, FusedClassifier, per_trial_cross_entropy
from harness.models.precision import upcast

__all__ = ["WARMUP", "FusedStep", "StepOut"]

WARMUP = 3  # eager steps on the side stream before the capture (the PyTorch recipe uses a few)


class StepOut(NamedTuple):
    """A step's results: losses (K,) float32; logits (K, B, C) detached; group_sq (G, K) squared
    per-group gradient norms and total_norm (K,) before clipping (None when nothing needs them)."""

    losses: Tensor
    logits: Tensor
    group_sq: Tensor | None
    total_norm: Tensor | None


class FusedStep:
    """One fused training step, plain, static or replayed from a CUDA graph (see the module doc)."""

    def __init__(self, model: FusedClassifier, optimizer: FusedAdam, active: Tensor,
                 norms_and_clip: Callable[[], tuple[Tensor | None, Tensor | None]],
                 autocast: Callable[[], Any], *, static: bool = False, capture: bool = False):
        if capture and not static:
            raise ValueError("FusedStep: capture needs static=True (a graph replays static buffers)")
        if capture and active.device.type != "cuda":
            raise ValueError(f"FusedStep: a CUDA graph needs a CUDA device, got {active.device}")
        self.model, self.optimizer, self.active = model, optimizer, active
        self.norms_and_clip, self.autocast = norms_and_clip, autocast
        self.static, self.capture = static, capture
        self.buffers: tuple[Tensor, ...] | None = None  # tokens, lengths, labels[, starts]
        self.calls = 0
        self.graph: Any = None  # torch.cuda.CUDAGraph once captured
        self.out: StepOut | None = None  # the graph's outputs
        self.stream: Any = torch.cuda.Stream(active.device) if capture else None

    def __call__(self, *batch: Tensor) -> StepOut:
        """One step on batch = (tokens, lengths, labels[, starts])."""
        if not self.static:
            return self.body(*batch)
        self._load(batch)
        self.calls += 1
        if self.graph is not None:
            self.graph.replay()
        elif not self.capture:
            return self.body(*self._buffers())
        elif self.calls <= WARMUP:
            return self._on_side_stream()
        else:
            self._capture()
            self.graph.replay()
        assert self.out is not None
        return self.out

    def body(self, tokens: Tensor, lengths: Tensor, labels: Tensor, starts: Tensor | None = None) -> StepOut:
        """Forward, loss, backward, norms and clipping, Adam: what is captured and replayed."""
        self.model.zero_grad(set_to_none=True)  # backward allocates (from the graph's pool when capturing)
        with self.autocast():
            logits = self.model(tokens, lengths, starts=starts)  # (K, B, C)
        losses = per_trial_cross_entropy(upcast(logits), labels)  # (K,)
        losses.sum().backward()
        group_sq, total_norm = self.norms_and_clip()
        self.optimizer.step(self.active)
        return StepOut(losses.detach(), logits.detach(), group_sq, total_norm)

    def _buffers(self) -> tuple[Tensor, ...]:
        assert self.buffers is not None
        return self.buffers

    def _load(self, batch: tuple[Tensor, ...]) -> None:
        """Copy the batch into the static buffers (made on the first call, with its shapes)."""
        if self.buffers is None:
            self.buffers = tuple(t.clone() for t in batch)
            return
        if len(batch) != len(self.buffers):
            raise ValueError(f"FusedStep: a batch of {len(batch)} tensors, the static buffers hold {len(self.buffers)}")
        for buf, new, name in zip(self.buffers, batch, ("tokens", "lengths", "labels", "starts")):
            if new.shape != buf.shape:
                raise ValueError(f"train.cuda_graph: the step's {name} have shape {tuple(new.shape)}, but the "
                                 f"static buffers {tuple(buf.shape)}; a CUDA graph needs every batch the same size "
                                 "(drop_last)")
            buf.copy_(new)

    def _on_side_stream(self) -> StepOut:
        """A warm-up step: the body, eagerly, on the capture stream."""
        current = torch.cuda.current_stream(self.active.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            out = self.body(*self._buffers())
        current.wait_stream(self.stream)
        return out

    def _capture(self) -> None:
        """Capture the body on the static buffers into a CUDA graph (nothing runs until replay)."""
        graph = torch.cuda.CUDAGraph()
        for gen in self.model.generators:  # the dropout streams advance on every replay
            if gen is not None and gen.device.type == "cuda":
                graph.register_generator_state(gen)
        self.stream.wait_stream(torch.cuda.current_stream(self.active.device))
        with torch.cuda.graph(graph, stream=self.stream):
            self.out = self.body(*self._buffers())
        torch.cuda.current_stream(self.active.device).wait_stream(self.stream)
        self.graph = graph
