"""Read-outs pick the right positions; the classifier's layers, init and groups."""

import numpy as np
import torch

from harness import names
from harness.config import ModelConfig
from harness.models import CELLS, READOUTS, build_model, param_groups, read_positions
from harness.models.cells import _CELLS as HAND_WRITTEN_CELLS


def outputs():
    # (B=2, T=4, D*H=4): value = 10*t + feature for example 0, negated for example 1.
    t = torch.arange(4).view(1, 4, 1) * 10.0
    f = torch.arange(4).view(1, 1, 4) * 1.0
    out = (t + f).repeat(2, 1, 1)
    out[1] = -out[1]
    return out, torch.tensor([2, 4])


def test_last_reads_the_final_padded_position():
    out, lengths = outputs()
    assert READOUTS["last"](out, lengths, 2).tolist() == [[30, 31, 32, 33], [-30, -31, -32, -33]]


def test_last_valid_handles_both_directions():
    out, lengths = outputs()
    got = READOUTS["last_valid"](out, lengths, 2)
    # forward half (features 0,1) at position length-1; reverse half (2,3) at position 0.
    assert got.tolist() == [[10, 11, 2, 3], [-30, -31, -2, -3]]
    assert READOUTS["last_valid"](out, lengths, 1).tolist() == [[10, 11, 12, 13], [-30, -31, -32, -33]]


def test_mean_and_max_ignore_padding():
    out, lengths = outputs()
    assert READOUTS["mean"](out, lengths, 2).tolist() == [[5, 6, 7, 8], [-15, -16, -17, -18]]
    assert READOUTS["max"](out, lengths, 2).tolist() == [[10, 11, 12, 13], [0, -1, -2, -3]]


def test_read_positions():
    assert read_positions("last", np.array([2, 5]), 8).tolist() == [7, 7]
    assert read_positions("last_valid", np.array([2, 9]), 8).tolist() == [1, 7]


def small(**kw) -> ModelConfig:
    return ModelConfig(**{"embed_dim": 6, "hidden_size": 5, "num_layers": 2, **kw})


def test_layers_groups_and_shapes():
    torch.manual_seed(0)
    m = build_model(small(layernorm="output"), vocab_size=11, n_classes=3, pad_index=10)
    names, idx = param_groups(m)
    assert names == ["embedding", "rnn.l0", "rnn.l1", "norm", "fc"]
    assert len(idx) == len(list(m.parameters()))
    tokens = torch.randint(0, 11, (4, 7))
    logits, hidden = m(tokens, torch.tensor([7, 3, 1, 5]), return_hidden=True)
    assert logits.shape == (4, 3)
    assert [tuple(h.shape) for h in hidden] == [(4, 7, 6), (4, 7, 10), (4, 7, 10)]
    # The padding row of the embedding is zero and gets no gradient.
    assert m.embedding.weight[10].abs().sum() == 0


def test_xavier_init_zero_biases_and_forget_bias():
    torch.manual_seed(0)
    m = build_model(small(cell="lstm", forget_bias=1.0), vocab_size=11, n_classes=3, pad_index=10)
    h = 5
    b_ih, b_hh = m.rnn[0].bias_ih_l0, m.rnn[0].bias_hh_l0
    assert torch.all(b_ih[h:2 * h] == 1.0) and torch.all(b_hh[h:2 * h] == 0.0)
    assert torch.all(b_ih[:h] == 0) and torch.all(m.fc.bias == 0)
    d = build_model(small(cell="gru", init="default"), vocab_size=11, n_classes=3, pad_index=10)
    assert d.rnn[0].bias_ih_l0.abs().sum() > 0  # PyTorch's default init keeps random biases


def test_recurrent_layernorm_uses_custom_cells():
    m = build_model(small(cell="gru", layernorm="recurrent"), vocab_size=11, n_classes=3, pad_index=10)
    assert not isinstance(m.rnn[0], torch.nn.GRU)
    assert any("ln_" in n for n, _ in m.named_parameters())
    out = m(torch.randint(0, 11, (2, 5)), torch.tensor([5, 2]))
    assert out.shape == (2, 3)


def test_registries_hold_exactly_the_shared_names():
    assert tuple(CELLS) == names.CELLS and tuple(HAND_WRITTEN_CELLS) == names.CELLS
    assert tuple(READOUTS) == names.READOUTS


def test_pretrained_embeddings_are_copied_not_shared():
    """Training a model must not change the data set's embedding array (the next trial's init)."""
    emb = np.zeros((10, 4), np.float32)
    model = build_model(ModelConfig(embed_dim=4, hidden_size=3), 10, 2, 9, emb)
    with torch.no_grad():
        model.embedding.weight.add_(1.0)
    assert emb.sum() == 0.0
