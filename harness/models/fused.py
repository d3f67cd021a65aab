"""Fused trials: K same-shaped classifiers trained as one model with a leading trial dimension.

`FusedClassifier` computes exactly what K separate `harness.models.build_model` models compute
(embedding → stack of one-layer recurrent layers → read-out → [LayerNorm] → linear), trial k with
the k-th slice of every parameter: the embedding is one lookup into a (K·V, E) table, each layer's
input projection for every trial, direction and step is one batched matmul over (K·D, T·B, I), and
each time step one batched matmul over the (K·D, B, H) hidden states (the hand-written loops of
`harness.models.cells`, with the direction batch D widened to K·D). Trials never mix: a non-finite
trial leaves the others' numbers untouched.

Build it with `FusedClassifier.from_models(models)` from K separately initialised unfused models
(so each trial's init is the unfused one, from its own seed); `state_dict_of(k)` / `to_models()`
give trial k back in the unfused model's state_dict format. Also here: `FusedAdam` (per-trial
torch.optim.Adam with a (K,) learning rate and a per-trial active mask), per-trial gradient
clipping, per-trial gradient / parameter norms per group, and the per-trial gradient-reach probe.

Dropout: trial k draws its masks from its own generator (`set_dropout`), one
`bernoulli_(1 - p_k)` per layer after the first over the layer output's (B, T, D·H) elements in the
unfused output's memory order, as `nn.Dropout` does on a CPU; seeded like the unfused run's global
generator, the masks are bit-identical on a CPU (on CUDA the unfused run uses a fused dropout kernel
whose stream cannot be reproduced: there each trial has its own independent stream instead).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.config import ModelConfig
from harness.models import READOUTS, RecurrentClassifier
from harness.models.precision import upcast
from harness.names import cell_entries
from harness.registry import RegistryView

__all__ = ["FusedAdam", "FusedClassifier", "FusedRecurrentLayer", "SHAPE_FIELDS", "clip_per_trial",
           "group_sq_norms", "per_trial_cross_entropy", "probe_grads"]

# ModelConfig fields every fused trial must share; the others (dropout, init, forget_bias) may differ.
SHAPE_FIELDS = ("cell", "layernorm", "embed_dim", "hidden_size", "num_layers", "bidirectional", "readout")
# Registered cell with a fused form (its entry's `fused`) -> its number of H-sized gate blocks (a live view).
GATES: RegistryView[int] = RegistryView(cell_entries, lambda e: e.gates if e.fused else None)
LN_EPS = 1e-5  # nn.LayerNorm's default, used by the hand-written cells and the output LayerNorm


def _lstm_perm(hidden: int) -> Tensor:
    """Gate rows i,f,g,o (PyTorch) <-> i,f,o,g (the loop's order); the permutation is its own inverse."""
    h = hidden
    return torch.cat((torch.arange(2 * h), torch.arange(3 * h, 4 * h), torch.arange(2 * h, 3 * h)))


class FusedRecurrentLayer(nn.Module):
    """K trials x D directions of one recurrent layer: (K, B, T, I) → (K, B, T, D·H).

    Parameters (gate rows in the loop's order, LSTM i,f,o,g): weight_ih (K, D, G, I), weight_hh
    (K, D, G, H), bias_ih / bias_hh (K, D, G); with recurrent LayerNorm also the gains ln_ih / ln_hh
    (K, D, G) and, for the LSTM, ln_c_weight / ln_c_bias (K, D, H). G = gates · H.
    """

    def __init__(self, k: int, cell: str, input_size: int, hidden_size: int, bidirectional: bool,
                 layernorm: bool):
        super().__init__()
        if cell not in GATES or not callable(getattr(self, f"_{cell}", None)):  # the step loop `_<cell>` below
            raise ValueError(f"cell {cell!r} has no fused form (fused cells: {', '.join(GATES)}); train it "
                             f"unfused (run.fuse and train.cuda_graph off)")
        self.k, self.cell, self.input_size, self.hidden_size = k, cell, input_size, hidden_size
        self.directions = 2 if bidirectional else 1
        self.layernorm = layernorm
        self.gates = GATES[cell]
        d, g = self.directions, self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.zeros(k, d, g, input_size))
        self.weight_hh = nn.Parameter(torch.zeros(k, d, g, hidden_size))
        self.bias_ih = nn.Parameter(torch.zeros(k, d, g))
        self.bias_hh = nn.Parameter(torch.zeros(k, d, g))
        if layernorm:
            self.ln_ih = nn.Parameter(torch.ones(k, d, g))
            self.ln_hh = nn.Parameter(torch.ones(k, d, g))
            if cell == "lstm":
                self.ln_c_weight = nn.Parameter(torch.ones(k, d, hidden_size))
                self.ln_c_bias = nn.Parameter(torch.zeros(k, d, hidden_size))

    def unfused_names(self, prefix: str) -> list[tuple[str, int, str, bool]]:
        """(fused attribute, direction, unfused parameter name, gate-permuted?) for every slice."""
        out = []
        for d, sfx in enumerate(("", "_reverse")[:self.directions]):
            for attr in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                out.append((attr, d, f"{prefix}{attr}_l0{sfx}", True))
            if self.layernorm:
                out.append(("ln_ih", d, f"{prefix}ln_ih_l0{sfx}.weight", True))
                out.append(("ln_hh", d, f"{prefix}ln_hh_l0{sfx}.weight", True))
                if self.cell == "lstm":
                    out.append(("ln_c_weight", d, f"{prefix}ln_c_l0{sfx}.weight", False))
                    out.append(("ln_c_bias", d, f"{prefix}ln_c_l0{sfx}.bias", False))
        return out

    def forward(self, x: Tensor) -> Tensor:
        """x (K, B, T, I) → (K, B, T, D·H), the reverse half at position t having read x[:, :, t:]."""
        k, b, t_len, i_size = x.shape
        d, h = self.directions, self.hidden_size
        g, kd = self.gates * h, k * d
        w_ih_t = self.weight_ih.view(kd, g, i_size).transpose(1, 2)  # (KD, I, G)
        w_hh_t = self.weight_hh.view(kd, g, h).transpose(1, 2)  # (KD, H, G)
        b_hh = self.bias_hh.view(kd, 1, g)
        b_ih = self.bias_ih.view(kd, 1, g)
        bias = b_ih if self.cell == "gru" else b_ih + b_hh  # GRU: b_hn stays inside r * (...)
        xt = x.transpose(1, 2)  # (K, T, B, I)
        xd = torch.stack((xt, xt.flip(1)), 1) if d == 2 else xt.unsqueeze(1)  # (K, D, T, B, I)
        xd = xd.reshape(kd, t_len * b, i_size)
        if self.layernorm:
            xp = F.layer_norm(torch.bmm(xd, w_ih_t), (g,), eps=LN_EPS)
            xp = torch.addcmul(bias, xp, self.ln_ih.view(kd, 1, g))
        else:
            xp = torch.baddbmm(bias, xd, w_ih_t)  # (KD, T*B, G)
        xs = xp.view(kd, t_len, b, g).unbind(1)  # T x (KD, B, G)
        h0 = x.new_zeros(kd, b, h)
        loop = getattr(self, f"_{self.cell}")  # the cell's step loop (checked in __init__)
        out = torch.stack(loop(xs, w_hh_t, b_hh, h0), 1).view(k, d, t_len, b, h)  # (K, D, T, B, H)
        if d == 2:
            fwd, rev = out.unbind(1)
            out = torch.cat((fwd, rev.flip(1)), -1)  # (K, T, B, 2H)
        else:
            out = out.squeeze(1)
        return out.transpose(1, 2).contiguous()  # (K, B, T, D*H)

    def _gain(self, name: str) -> Tensor:
        p = getattr(self, name)
        return p.view(p.shape[0] * p.shape[1], 1, p.shape[2])  # (KD, 1, N)

    def _rnn(self, xs: Sequence[Tensor], w_hh_t: Tensor, b_hh: Tensor, h: Tensor) -> list[Tensor]:
        hs = []
        if self.layernorm:
            gain, n = self._gain("ln_hh"), (w_hh_t.shape[-1],)
            for xt in xs:
                h = torch.addcmul(xt, F.layer_norm(torch.bmm(h, w_hh_t), n, eps=LN_EPS), gain).tanh()
                hs.append(h)
        else:
            for xt in xs:
                h = torch.baddbmm(xt, h, w_hh_t).tanh()
                hs.append(h)
        return hs

    def _lstm(self, xs: Sequence[Tensor], w_hh_t: Tensor, b_hh: Tensor, h: Tensor) -> list[Tensor]:
        hsz = self.hidden_size
        c = h
        hs = []
        split = [3 * hsz, hsz]
        if self.layernorm:
            gain_h, gain_c, bias_c = self._gain("ln_hh"), self._gain("ln_c_weight"), self._gain("ln_c_bias")
            n4, n1 = (4 * hsz,), (hsz,)
            for xt in xs:
                gates = torch.addcmul(xt, F.layer_norm(torch.bmm(h, w_hh_t), n4, eps=LN_EPS), gain_h)
                ifo, g = gates.split(split, -1)
                i, f, o = ifo.sigmoid().chunk(3, -1)
                c = torch.addcmul(f * c, i, g.tanh())
                h = o * torch.addcmul(bias_c, F.layer_norm(c, n1, eps=LN_EPS), gain_c).tanh()
                hs.append(h)
        else:
            for xt in xs:
                ifo, g = torch.baddbmm(xt, h, w_hh_t).split(split, -1)
                i, f, o = ifo.sigmoid().chunk(3, -1)
                c = torch.addcmul(f * c, i, g.tanh())
                h = o * c.tanh()
                hs.append(h)
        return hs

    def _gru(self, xs: Sequence[Tensor], w_hh_t: Tensor, b_hh: Tensor, h: Tensor) -> list[Tensor]:
        hsz = self.hidden_size
        hs = []
        gain = self._gain("ln_hh") if self.layernorm else None
        split, n3 = [2 * hsz, hsz], (3 * hsz,)
        for xt in xs:
            if gain is None:
                gh = torch.baddbmm(b_hh, h, w_hh_t)
            else:
                gh = torch.addcmul(b_hh, F.layer_norm(torch.bmm(h, w_hh_t), n3, eps=LN_EPS), gain)
            (x_rz, x_n), (h_rz, h_n) = xt.split(split, -1), gh.split(split, -1)
            r, z = (x_rz + h_rz).sigmoid().chunk(2, -1)
            n = torch.addcmul(x_n, r, h_n).tanh()
            h = torch.addcmul(n, z, h - n)
            hs.append(h)
        return hs


class _Holder(nn.Module):
    """A named place for fused parameters (embedding.weight, norm.weight, fc.weight, …)."""

    def __init__(self, **params: Tensor):
        super().__init__()
        for name, value in params.items():
            self.register_parameter(name, nn.Parameter(value))


class FusedClassifier(nn.Module):
    """K `RecurrentClassifier`s of one shape as one module. forward: tokens (K, B, T), lengths
    (K, B) → logits (K, B, C). Parameters: embedding.weight (K, V, E), rnn.{i}.* (see
    `FusedRecurrentLayer`), norm.weight / norm.bias (K, F) for `layernorm: output`, fc.weight
    (K, C, F), fc.bias (K, C); F = D·H. Group names as `harness.models.param_groups`."""

    def __init__(self, cfg: ModelConfig, k: int, vocab_size: int, embed_dim: int, n_classes: int,
                 padding_idx: int | None, dropout: Sequence[float]):
        super().__init__()
        if len(dropout) != k:
            raise ValueError(f"dropout: need one rate per trial ({k}), got {len(dropout)}")
        self.cfg, self.k, self.vocab_size, self.padding_idx = cfg, k, vocab_size, padding_idx
        self.directions = 2 if cfg.bidirectional else 1
        width = cfg.hidden_size * self.directions
        self.embedding = _Holder(weight=torch.zeros(k, vocab_size, embed_dim))
        self.rnn = nn.ModuleList(
            FusedRecurrentLayer(k, cfg.cell, embed_dim if i == 0 else width, cfg.hidden_size, cfg.bidirectional,
                                cfg.layernorm == "recurrent")
            for i in range(cfg.num_layers))
        self.norm = (_Holder(weight=torch.ones(k, width), bias=torch.zeros(k, width))
                     if cfg.layernorm == "output" else None)
        self.fc = _Holder(weight=torch.zeros(k, n_classes, width), bias=torch.zeros(k, n_classes))
        self.readout = READOUTS[cfg.readout]
        self.dropout_p = [float(p) for p in dropout]
        self.generators: list[torch.Generator | None] = [None] * k
        self.dropout_on = True  # the probe turns dropout off while staying in train mode
        self._templates: list[RecurrentClassifier] = []  # (kept in a list: not a submodule)
        self._cfgs: list[ModelConfig] = [cfg] * k
        self._pad_row: Tensor | None = None  # [padding_idx] on the device, made once (no copy while capturing)
        if padding_idx is not None:  # nn.Embedding(padding_idx=...): the PAD row gets no gradient
            self.embedding.weight.register_hook(self._zero_pad_grad)

    def _zero_pad_grad(self, grad: Tensor) -> Tensor:
        if self._pad_row is None or self._pad_row.device != grad.device:
            self._pad_row = torch.tensor([self.padding_idx], device=grad.device)
        return grad.index_fill(1, self._pad_row, 0.0)

    # ------------------------------------------------------------------------- unfused <-> fused
    def _slices(self) -> list[tuple[Tensor, int, str, bool]]:
        """(fused parameter, direction or -1, unfused name, gate-permuted?) for every unfused parameter."""
        out: list[tuple[Tensor, int, str, bool]] = [(self.embedding.weight, -1, "embedding.weight", False)]
        for i, layer in enumerate(self.rnn):
            out += [(getattr(layer, a), d, n, p) for a, d, n, p in layer.unfused_names(f"rnn.{i}.")]
        if self.norm is not None:
            out += [(self.norm.weight, -1, "norm.weight", False), (self.norm.bias, -1, "norm.bias", False)]
        out += [(self.fc.weight, -1, "fc.weight", False), (self.fc.bias, -1, "fc.bias", False)]
        return out

    def _perm(self, permute: bool, device: torch.device) -> Tensor | None:
        return _lstm_perm(self.cfg.hidden_size).to(device) if permute and self.cfg.cell == "lstm" else None

    @classmethod
    def from_models(cls, models: Sequence[nn.Module]) -> FusedClassifier:
        """Fuse K `RecurrentClassifier`s of one shape (their weights copied, on their device)."""
        if not models:
            raise ValueError("from_models: no models")
        first = models[0]
        for i, m in enumerate(models):
            if not isinstance(m, RecurrentClassifier):
                raise TypeError(f"models[{i}] is a {type(m).__name__}, not a RecurrentClassifier")
            for f in SHAPE_FIELDS:
                if getattr(m.cfg, f) != getattr(first.cfg, f):
                    raise ValueError(f"models[{i}]: model.{f} = {getattr(m.cfg, f)!r} differs from models[0]'s "
                                     f"{getattr(first.cfg, f)!r}; fused trials must share every shape")
        emb = first.embedding
        fused = cls(first.cfg, len(models), emb.num_embeddings, emb.embedding_dim, first.fc.out_features,
                    emb.padding_idx, [m.cfg.dropout for m in models])
        device = emb.weight.device
        fused.to(device)
        states = [m.state_dict() for m in models]
        with torch.no_grad():
            for p, d, name, permute in fused._slices():
                perm = fused._perm(permute, device)
                for k, state in enumerate(states):
                    src = state[name]
                    if src.shape != (p[k] if d < 0 else p[k, d]).shape:
                        raise ValueError(f"models[{k}]: {name} has shape {tuple(src.shape)}, expected "
                                         f"{tuple((p[k] if d < 0 else p[k, d]).shape)}")
                    src = src if perm is None else src.index_select(0, perm)
                    (p[k] if d < 0 else p[k, d]).copy_(src)
        fused._templates = [copy.deepcopy(first).cpu()]
        fused._cfgs = [m.cfg for m in models]
        return fused

    def state_dict_of(self, k: int) -> dict[str, Tensor]:
        """Trial k's weights as the unfused model's state_dict (same keys and order; clones)."""
        out: dict[str, Tensor] = {}
        for p, d, name, permute in self._slices():
            t = (p[k] if d < 0 else p[k, d]).detach()
            perm = self._perm(permute, t.device)
            out[name] = t.clone() if perm is None else t.index_select(0, perm)
        if self._templates:
            order = list(self._templates[0].state_dict())
            out = {name: out[name] for name in order}
        return out

    def to_models(self) -> list[RecurrentClassifier]:
        """K unfused models holding the trials' current weights (on this model's device)."""
        if not self._templates:
            raise RuntimeError("to_models needs a FusedClassifier built by from_models")
        device = self.embedding.weight.device
        models = []
        for k in range(self.k):
            m = copy.deepcopy(self._templates[0]).to(device)
            m.cfg = self._cfgs[k]
            m.dropout.p = self.dropout_p[k]
            m.load_state_dict(self.state_dict_of(k))
            models.append(m.train(self.training))
        return models

    # ------------------------------------------------------------------------- forward
    def set_dropout(self, generators: Sequence[torch.Generator | None]) -> None:
        """One generator per trial for its dropout masks (on the model's device); None = the global one."""
        if len(generators) != self.k:
            raise ValueError(f"set_dropout: need {self.k} generators, got {len(generators)}")
        self.generators = list(generators)

    def _dropout(self, x: Tensor) -> Tensor:
        """Per-trial dropout of x (K, B, T, F), as nn.Dropout(p_k) on each trial's (B, T, F)."""
        if not (self.training and self.dropout_on) or all(p == 0.0 for p in self.dropout_p):
            return x
        _, b, t_len, f = x.shape
        # The unfused mask is empty_like(layer output).bernoulli_(): in the output's memory order, which
        # for nn.RNN/LSTM/GRU (batch_first) is time-major (T, B, F), for the hand-written cells (B, T, F).
        time_major = self.cfg.layernorm != "recurrent"
        shape = (t_len, b, f) if time_major else (b, t_len, f)
        masks = []
        for p, gen in zip(self.dropout_p, self.generators):
            if p == 0.0:
                mask = x.new_ones(shape)
            elif p == 1.0:
                mask = x.new_zeros(shape)
            else:
                mask = x.new_empty(shape).bernoulli_(1 - p, generator=gen).div_(1 - p)
            masks.append(mask.transpose(0, 1) if time_major else mask)
        return x * torch.stack(masks)

    def forward(self, tokens: Tensor, lengths: Tensor, return_hidden: bool = False, starts: Tensor | None = None
                ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """tokens (K, B, T) int64, lengths (K, B) [, starts (K, B): each text's first position, None = 0]
        → logits (K, B, C); with return_hidden also [embedding output (K, B, T, E), layer 0 output
        (K, B, T, F), …] for the probe. The read-out is the unfused model's, on the K·B texts at once."""
        k, b, t_len = tokens.shape
        if k != self.k:
            raise ValueError(f"tokens: expected {self.k} trials on dim 0, got shape {tuple(tokens.shape)}")
        w = self.embedding.weight
        offsets = (torch.arange(k, device=tokens.device) * self.vocab_size).view(k, 1, 1)
        x = F.embedding(tokens + offsets, w.view(k * self.vocab_size, w.shape[2]))  # (K, B, T, E)
        hidden = [x]
        for i, layer in enumerate(self.rnn):
            if i > 0:
                x = self._dropout(x)
            x = layer(x)
            hidden.append(x)
        f = x.shape[3]
        flat, flat_lengths = x.reshape(k * b, t_len, f), lengths.reshape(k * b)
        if starts is None:  # the reference layout; a read-out need not know of starts
            v = self.readout(flat, flat_lengths, self.directions)
        else:
            v = self.readout(flat, flat_lengths, self.directions, starts.reshape(k * b))
        v = v.view(k, b, f)
        if self.norm is not None:
            v = torch.addcmul(self.norm.bias.unsqueeze(1), F.layer_norm(v, (f,), eps=LN_EPS),
                              self.norm.weight.unsqueeze(1))
        logits = torch.baddbmm(self.fc.bias.unsqueeze(1), v, self.fc.weight.transpose(1, 2))  # (K, B, C)
        return (logits, hidden) if return_hidden else logits


# ----------------------------------------------------------------------------- loss, norms, probe

def per_trial_cross_entropy(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """logits (K, B, C), labels (K, B) → (K,) each trial's cross-entropy (mean or sum over B)."""
    k, b, c = logits.shape
    losses = F.cross_entropy(logits.reshape(k * b, c), labels.reshape(k * b), reduction="none").view(k, b)
    return losses.mean(1) if reduction == "mean" else losses.sum(1)


def _bview(v: Tensor, like: Tensor) -> Tensor:
    """A (K,) tensor viewed to broadcast against a (K, ...) tensor."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def group_sq_norms(tensors: Sequence[Tensor], group_idx: Tensor, n_groups: int) -> Tensor:
    """(G, K) squared L2 norms per parameter group and trial of K-leading tensors (parameters or
    gradients, in `param_groups` order); `group_idx` (P,) the group of each tensor."""
    norms = torch.stack([torch.linalg.vector_norm(t.detach().flatten(1), dim=1) for t in tensors])  # (P, K)
    return torch.zeros(n_groups, norms.shape[1], device=norms.device, dtype=norms.dtype).index_add_(
        0, group_idx, norms ** 2)


def clip_per_trial(grads: Sequence[Tensor], max_norm: Tensor, total_norm: Tensor) -> None:
    """In place, as torch.nn.utils.clip_grads_with_norm_ per trial: scale trial k's gradients by
    min(1, max_norm[k] / (total_norm[k] + 1e-6)); a trial with max_norm inf is left as is."""
    coef = torch.where(torch.isinf(max_norm), torch.ones_like(total_norm),
                       (max_norm / (total_norm + 1e-6)).clamp(max=1.0))
    for g in grads:
        g.mul_(_bview(coef, g).to(g.dtype))


def probe_grads(model: FusedClassifier, tokens: Tensor, lengths: Tensor, labels: Tensor,
                autocast: Callable[[], Any], starts: Tensor | None = None) -> list[Tensor]:
    """The gradient-reach probe for every trial on one batch (tokens (B, T), lengths (B,), labels (B,)
    [, starts (B,)], the same for all trials): per layer (input, rnn.l0, …) ‖∂L_b/∂x_{b,t}‖ as (K, B, T)
    float tensors, L_b trial k's cross-entropy of example b. Dropout off; the model stays in train mode."""
    k = model.k
    model.dropout_on = False
    try:
        with torch.enable_grad(), autocast():
            logits, hidden = model(tokens.expand(k, -1, -1), lengths.expand(k, -1), return_hidden=True,
                                   starts=None if starts is None else starts.expand(k, -1))
            loss = per_trial_cross_entropy(upcast(logits), labels.expand(k, -1), "sum").sum()
        grads = torch.autograd.grad(loss, hidden)
    finally:
        model.dropout_on = True
    return [upcast(g).norm(dim=3) for g in grads]


# ----------------------------------------------------------------------------- optimizer

class FusedAdam:
    """torch.optim.Adam (defaults: betas (0.9, 0.999), eps 1e-8, no weight decay) for K trials at
    once: `lr` (K,) per trial; `step(active)` updates only the trials where active (K,) bool is True
    (the others' parameters stay exactly as they are). Per-trial step counts; all state on the device,
    no host reads (safe to capture in a CUDA graph)."""

    def __init__(self, params: Sequence[Tensor], lr: Tensor, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = list(params)
        if not self.params:
            raise ValueError("FusedAdam: no parameters")
        device = self.params[0].device
        self.lr = lr.to(device=device, dtype=torch.float64)
        k = self.lr.numel()
        for p in self.params:
            if p.shape[0] != k:
                raise ValueError(f"FusedAdam: a parameter of shape {tuple(p.shape)} has no leading trial dim {k}")
        self.beta1, self.beta2, self.eps = betas[0], betas[1], eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = torch.zeros(k, dtype=torch.float64, device=device)

    @torch.no_grad()
    def step(self, active: Tensor) -> None:
        """One Adam step for the active trials (active: (K,) bool on the device)."""
        self.steps += active.to(self.steps.dtype)
        bc1 = 1 - self.beta1 ** self.steps
        bc2 = 1 - self.beta2 ** self.steps
        step_size = torch.where(active, self.lr / bc1.clamp(min=1e-300), 0.0).to(self.params[0].dtype)  # (K,)
        bc2_sqrt = torch.where(active, bc2.clamp(min=1e-300).sqrt(), 1.0).to(self.params[0].dtype)
        params = [p for p in self.params if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        m = [s for p, s in zip(self.params, self.exp_avg) if p.grad is not None]
        v = [s for p, s in zip(self.params, self.exp_avg_sq) if p.grad is not None]
        torch._foreach_lerp_(m, grads, 1 - self.beta1)
        torch._foreach_mul_(v, self.beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - self.beta2)
        for p, mi, vi in zip(params, m, v):
            denom = (vi.sqrt() / _bview(bc2_sqrt, vi)).add_(self.eps)
            p.sub_(mi * _bview(step_size, mi) / denom)
