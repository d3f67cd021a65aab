"""An example harness plugin: one object per entry-point group (see this folder's pyproject.toml).

- `minimal_gru` (`harness.cells`): the minimal gated unit (Zhou et al. 2016), a GRU with a single
  forget gate f: h_t = (1 - f) * h_{t-1} + f * tanh(W x_t + U (f * h_{t-1}) + b).
- `readout_first` (`harness.readouts`): the outputs at position 0 (for a bidirectional layer the
  reverse direction there has read the whole text).
- `tiny_topics` (`harness.datasets`): a small three-topic data set in the THUCNews format.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from torch import Tensor, nn

from harness.files import staged_dir


class MinimalGatedLayer(nn.Module):
    """(B, T, I) -> (B, T, D*H), batch first, D = 2 when bidirectional (reverse runs T-1 .. 0)."""

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.directions = 2 if bidirectional else 1
        # Per direction: input and recurrent weights of the gate f and the candidate (2H rows).
        self.weight_ih = nn.Parameter(torch.empty(self.directions, input_size, 2 * hidden_size))
        self.weight_hh = nn.Parameter(torch.empty(self.directions, hidden_size, 2 * hidden_size))
        self.bias = nn.Parameter(torch.zeros(self.directions, 2 * hidden_size))
        nn.init.xavier_uniform_(self.weight_ih)
        nn.init.xavier_uniform_(self.weight_hh)

    def _run(self, x: Tensor, d: int) -> Tensor:
        h = x.new_zeros(x.size(0), self.hidden_size)
        wf_h, wc_h = self.weight_hh[d].split(self.hidden_size, dim=1)
        proj = x @ self.weight_ih[d] + self.bias[d]  # (B, T, 2H)
        outs = []
        for t in range(x.size(1)):
            pf, pc = proj[:, t].split(self.hidden_size, dim=1)
            f = torch.sigmoid(pf + h @ wf_h)
            h = (1 - f) * h + f * torch.tanh(pc + (f * h) @ wc_h)
            outs.append(h)
        return torch.stack(outs, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        out = [self._run(x, 0)]
        if self.directions == 2:
            out.append(self._run(x.flip(1), 1).flip(1))
        return torch.cat(out, dim=2)


def minimal_gru(input_size: int, hidden_size: int, bidirectional: bool, layernorm: bool) -> nn.Module:
    """The `harness.cells` factory."""
    if layernorm:
        raise ValueError("minimal_gru has no recurrent-LayerNorm form; use model.layernorm none or output")
    return MinimalGatedLayer(input_size, hidden_size, bidirectional)


def readout_first(out: Tensor, lengths: Tensor, directions: int) -> Tensor:
    """The `harness.readouts` function: (B, T, D*H), (B,), D -> (B, D*H)."""
    return out[:, 0, :]


TOPICS = {"weather": "雨雪风云晴", "sport": "球赛跑跳泳", "money": "钱股银债税"}
FILLER = "的了是在我有他这中大来上国个到说们为子和你地出道也时年"


def tiny_topics(cfg, cache_dir: Path) -> Path:
    """The `harness.datasets` function: writes (once) and returns a THUCNews-format folder of
    short texts whose topic shows in a few characters; sizes and seed from data.synth."""
    s = cfg.synth
    out = Path(cache_dir) / f"tiny_topics-{s.seed}-{s.n_train}-{s.n_dev}-{s.n_test}"
    if (out / "class.txt").is_file():
        return out
    rng = random.Random(s.seed)
    names = list(TOPICS)
    with staged_dir(out) as tmp:
        (tmp / "class.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
        for split, n in (("train", s.n_train), ("dev", s.n_dev), ("test", s.n_test)):
            lines = []
            for _ in range(n):
                y = rng.randrange(len(names))
                text = [rng.choice(TOPICS[names[y]] if rng.random() < 0.3 else FILLER)
                        for _ in range(rng.randint(4, 10))]
                lines.append(f"{''.join(text)}\t{y}")
            (tmp / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
