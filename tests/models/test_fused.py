"""Fused trials (harness.models.fused) against K separate unfused models: weights round-trip, forward,
training steps with per-trial Adam / lr / dropout / clipping, masks, per-trial norms and the probe."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import PARITY_RTOL

from harness.config import ModelConfig
from harness.models import build_model, param_groups
from harness.models.fused import (
    FusedAdam,
    FusedClassifier,
    clip_per_trial,
    group_sq_norms,
    per_trial_cross_entropy,
    probe_grads,
)

# Fused against unfused in float64 (conftest.float64: why, and PARITY_RTOL).
pytestmark = pytest.mark.usefixtures("float64")

V, C, B, T = 23, 3, 4, 7
PAD = V - 1


def cfg(**over) -> ModelConfig:
    base = dict(cell="lstm", layernorm="none", embed_dim=6, hidden_size=5, num_layers=2, bidirectional=True,
                dropout=0.0, readout="last_valid", init="xavier", forget_bias=1.0)
    base.update(over)
    return ModelConfig(**base)


def models(cfgs: list[ModelConfig], seeds: list[int]) -> list:
    out = []
    for c, s in zip(cfgs, seeds):
        torch.manual_seed(s)
        out.append(build_model(c, V, C, PAD))
    return out


def batches(k: int, steps: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per step: tokens (K, B, T) right-padded with PAD, lengths (K, B), labels (K, B)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        lengths = torch.randint(1, T + 1, (k, B), generator=g)
        tokens = torch.randint(0, V - 1, (k, B, T), generator=g)
        tokens = tokens.masked_fill(torch.arange(T).view(1, 1, T) >= lengths.unsqueeze(2), PAD)
        out.append((tokens, lengths, torch.randint(0, C, (k, B), generator=g)))
    return out


CELL_LN = [(c, ln) for c in ("rnn", "lstm", "gru") for ln in ("none", "output", "recurrent")]


@pytest.mark.parametrize("cell,layernorm", CELL_LN)
def test_state_dict_round_trips_exactly(cell, layernorm):
    cfgs = [cfg(cell=cell, layernorm=layernorm, init=i) for i in ("xavier", "default", "xavier")]
    ms = models(cfgs, [1, 2, 3])
    fused = FusedClassifier.from_models(ms)
    for k, m in enumerate(ms):
        sd, ref = fused.state_dict_of(k), m.state_dict()
        assert list(sd) == list(ref)
        for name in ref:
            assert torch.equal(sd[name], ref[name]), name
    back = fused.to_models()
    assert [m.cfg.init for m in back] == ["xavier", "default", "xavier"]
    for m, ref in zip(back, ms):
        for (n1, p1), (n2, p2) in zip(m.named_parameters(), ref.named_parameters()):
            assert n1 == n2 and torch.equal(p1, p2)


@pytest.mark.parametrize("readout", ["last", "last_valid", "mean", "max"])
@pytest.mark.parametrize("cell,layernorm,bidirectional", [
    ("rnn", "none", True), ("lstm", "output", False), ("gru", "recurrent", True), ("lstm", "recurrent", True)])
def test_forward_matches_unfused(cell, layernorm, bidirectional, readout):
    c = cfg(cell=cell, layernorm=layernorm, bidirectional=bidirectional, readout=readout)
    ms = models([c, c], [5, 6])
    fused = FusedClassifier.from_models(ms)
    (tokens, lengths, _), = batches(2, 1)
    logits = fused(tokens, lengths)
    for k, m in enumerate(ms):
        torch.testing.assert_close(logits[k], m(tokens[k], lengths[k]), atol=1e-12, rtol=PARITY_RTOL)


def unfused_run(model, lr, drop_seed, data, k, clip=None, steps=None):
    """The trainer's step on one trial: CE mean, backward, [clip], Adam. Returns the losses."""
    torch.manual_seed(drop_seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for tokens, lengths, labels in data[:steps]:
        loss = F.cross_entropy(model(tokens[k], lengths[k]), labels[k])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(loss.item())
    return losses


def fused_run(fused, lrs, drop_seeds, data, clips=None, active=None):
    fused.set_dropout([torch.Generator().manual_seed(s) for s in drop_seeds])
    opt = FusedAdam(list(fused.parameters()), torch.tensor(lrs))
    names, index = param_groups(fused)
    gidx = torch.tensor(index)
    losses = []
    for step, (tokens, lengths, labels) in enumerate(data):
        loss = per_trial_cross_entropy(fused(tokens, lengths), labels)
        fused.zero_grad(set_to_none=True)
        loss.sum().backward()
        if clips is not None:
            grads = [p.grad for p in fused.parameters()]
            total = group_sq_norms(grads, gidx, len(names)).sum(0).sqrt()
            clip_per_trial(grads, torch.tensor(clips), total)
        opt.step(torch.ones(fused.k, dtype=torch.bool) if active is None else active(step))
        losses.append(loss.detach())
    return torch.stack(losses)  # (steps, K)


@pytest.mark.parametrize("cell,layernorm", CELL_LN)
@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_five_steps_match_separate_runs(cell, layernorm, dropout):
    """3 trials differing in seed, lr, dropout (one at 0), init and forget bias: losses and weights
    after 5 steps match 3 unfused runs (dropout > 0 included: per-trial generators reproduce the
    CPU's dropout masks bit for bit)."""
    cfgs = [cfg(cell=cell, layernorm=layernorm, dropout=dropout),
            cfg(cell=cell, layernorm=layernorm, dropout=0.0, init="default"),
            cfg(cell=cell, layernorm=layernorm, dropout=dropout / 2, forget_bias=0.0)]
    seeds, drop_seeds, lrs = [11, 12, 13], [101, 102, 103], [1e-2, 3e-3, 5e-3]
    data = batches(3, 5)
    fused = FusedClassifier.from_models(models(cfgs, seeds))
    fl = fused_run(fused, lrs, drop_seeds, data)
    for k, m in enumerate(models(cfgs, seeds)):
        ul = unfused_run(m, lrs[k], drop_seeds[k], data, k)
        torch.testing.assert_close(fl[:, k], torch.tensor(ul), atol=1e-12, rtol=PARITY_RTOL)
        sd = fused.state_dict_of(k)
        for name, p in m.state_dict().items():
            torch.testing.assert_close(sd[name], p, atol=1e-12, rtol=PARITY_RTOL, msg=f"trial {k} {name}")


def test_per_trial_clipping_matches_clip_grad_norm():
    cfgs = [cfg(cell="gru")] * 3
    data = batches(3, 4)
    fused = FusedClassifier.from_models(models(cfgs, [1, 2, 3]))
    clips = [0.05, float("inf"), 0.5]  # inf: no clipping for trial 1
    fl = fused_run(fused, [1e-2] * 3, [0] * 3, data, clips=clips)
    for k, m in enumerate(models(cfgs, [1, 2, 3])):
        ul = unfused_run(m, 1e-2, 0, data, k, clip=None if clips[k] == float("inf") else clips[k])
        torch.testing.assert_close(fl[:, k], torch.tensor(ul), atol=1e-12, rtol=PARITY_RTOL)
        for name, p in m.state_dict().items():
            torch.testing.assert_close(fused.state_dict_of(k)[name], p, atol=1e-12, rtol=PARITY_RTOL)


def test_masked_trial_stops_changing_while_others_go_on():
    cfgs = [cfg(cell="lstm", dropout=0.2)] * 3
    data = batches(3, 6)
    fused = FusedClassifier.from_models(models(cfgs, [1, 2, 3]))
    snapshot: dict = {}

    def active(step):
        if step == 3:  # trial 1 stops after 3 steps
            snapshot.update(fused.state_dict_of(1))
        return torch.tensor([True, step < 3, True])

    fused_run(fused, [1e-2] * 3, [7, 8, 9], data, active=active)
    after = fused.state_dict_of(1)
    assert all(torch.equal(after[n], snapshot[n]) for n in snapshot)
    # Trial 1 stopped after its first 3 steps = an unfused run of 3 steps; the others ran 6.
    m = models(cfgs, [1, 2, 3])
    unfused_run(m[1], 1e-2, 8, data, 1, steps=3)
    unfused_run(m[2], 1e-2, 9, data, 2)
    for name, p in m[1].state_dict().items():
        torch.testing.assert_close(after[name], p, atol=1e-12, rtol=PARITY_RTOL)
    for name, p in m[2].state_dict().items():
        torch.testing.assert_close(fused.state_dict_of(2)[name], p, atol=1e-12, rtol=PARITY_RTOL)


def test_a_nan_trial_does_not_touch_the_others():
    cfgs = [cfg(cell="rnn")] * 2
    fused = FusedClassifier.from_models(models(cfgs, [1, 2]))
    with torch.no_grad():
        fused.fc.weight[0].fill_(float("nan"))
    (tokens, lengths, labels), = batches(2, 1)
    loss = per_trial_cross_entropy(fused(tokens, lengths), labels)
    loss.sum().backward()
    assert torch.isnan(loss[0]) and torch.isfinite(loss[1])
    assert all(torch.isfinite(p.grad[1]).all() for p in fused.parameters())


def test_group_norms_and_probe_match_unfused():
    c = cfg(cell="lstm", layernorm="recurrent")
    ms = models([c, c], [3, 4])
    fused = FusedClassifier.from_models(ms)
    (tokens, lengths, labels), = batches(2, 1)
    per_trial_cross_entropy(fused(tokens, lengths), labels).sum().backward()
    names, index = param_groups(fused)
    sq = group_sq_norms([p.grad for p in fused.parameters()], torch.tensor(index), len(names))  # (G, K)
    psq = group_sq_norms(list(fused.parameters()), torch.tensor(index), len(names))
    assert names == ["embedding", "rnn.l0", "rnn.l1", "fc"]
    probe = probe_grads(fused, tokens[0], lengths[0], labels[0], _no_autocast)
    for k, m in enumerate(ms):
        F.cross_entropy(m(tokens[k], lengths[k]), labels[k]).backward()
        un, ui = param_groups(m)
        assert un == names
        ref = torch.zeros(len(un)).index_add_(0, torch.tensor(ui), torch.stack(
            [p.grad.norm() ** 2 for p in m.parameters()]))
        torch.testing.assert_close(sq[:, k], ref, atol=1e-12, rtol=PARITY_RTOL)
        pref = torch.zeros(len(un)).index_add_(0, torch.tensor(ui), torch.stack(
            [p.detach().norm() ** 2 for p in m.parameters()]))
        torch.testing.assert_close(psq[:, k], pref, rtol=PARITY_RTOL, atol=1e-12)
        logits, hidden = m(tokens[0], lengths[0], return_hidden=True)
        grads = torch.autograd.grad(F.cross_entropy(logits, labels[0], reduction="sum"), hidden)
        assert len(grads) == len(probe) == 3
        for g, pg in zip(grads, probe):
            torch.testing.assert_close(pg[k], g.norm(dim=2), atol=1e-12, rtol=PARITY_RTOL)


def _no_autocast():
    return torch.autocast("cpu", enabled=False)


def test_from_models_refuses_different_shapes():
    a, b = models([cfg(), dataclasses.replace(cfg(), hidden_size=7)], [1, 2])
    with pytest.raises(ValueError, match="model.hidden_size"):
        FusedClassifier.from_models([a, b])


def test_pretrained_embedding_row_for_pad_is_trained_without_padding_idx():
    """With pretrained embeddings the unfused model has no padding_idx: the PAD row learns too."""
    import numpy as np
    emb = np.random.default_rng(0).normal(size=(V, 6)).astype(np.float32)
    c = cfg(cell="rnn")
    ms = []
    for s in (1, 2):
        torch.manual_seed(s)
        ms.append(build_model(c, V, C, PAD, emb))
    fused = FusedClassifier.from_models(ms)
    assert fused.padding_idx is None
    data = batches(2, 2)
    fl = fused_run(fused, [1e-2, 1e-2], [0, 0], data)
    for k, m in enumerate(ms):
        ul = unfused_run(m, 1e-2, 0, data, k)
        torch.testing.assert_close(fl[:, k], torch.tensor(ul), atol=1e-12, rtol=PARITY_RTOL)
        torch.testing.assert_close(fused.state_dict_of(k)["embedding.weight"], m.embedding.weight.detach(),
                                   atol=1e-12, rtol=PARITY_RTOL)
