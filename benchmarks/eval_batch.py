"""Rows per evaluation batch on a CPU: one dev evaluation of the reference-size model (emb 300, hidden
128, 2 bidirectional layers) and of the bench's (emb 32, hidden 32, 1 layer), LSTM and RNN, pad 32, at
64, 256 and 1,024 rows per batch, interleaved (order reversed every other repeat), median of 5, one
torch thread (a bench worker's), float32 denormals flushed as the trainer does on a CPU. What
`harness.train.CPU_EVAL_BATCH` was chosen by (benchmarks/README §12).

    python benchmarks/eval_batch.py
"""

from __future__ import annotations

import statistics
import time

import torch

from harness.config import ModelConfig
from harness.models import build_model

BATCHES = (64, 256, 1024)
SIZES = {"reference size (emb 300, hidden 128, 2 layers)": ({"embed_dim": 300, "hidden_size": 128, "num_layers": 2},
                                                             1024),
         "bench size (emb 32, hidden 32, 1 layer)": ({"embed_dim": 32, "hidden_size": 32, "num_layers": 1}, 2048)}


def seconds(model: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor, batch: int) -> float:
    """Wall seconds of one evaluation pass (forward and argmax) over every row of x, `batch` rows at a time."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            model(x[i:i + batch], lengths[i:i + batch]).argmax(1)
    return time.perf_counter() - t0


def main() -> None:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    print("| model | cell | " + " | ".join(f"batch {b} (ms per 1,000 titles)" for b in BATCHES)
          + " | " + " | ".join(f"{b} / 1,024" for b in BATCHES[:-1]) + " |")
    print("| --- " * (2 + 2 * len(BATCHES) - 1) + "|")
    for name, (size, n) in SIZES.items():
        for cell in ("lstm", "rnn"):
            model = build_model(ModelConfig(cell=cell, bidirectional=True, dropout=0.5, **size), 5000, 10, 0).eval()
            x = torch.randint(1, 5000, (n, 32), generator=torch.Generator().manual_seed(0))
            lengths = torch.full((n,), 32)
            times: dict[int, list[float]] = {b: [] for b in BATCHES}
            for r in range(5):
                for b in BATCHES if r % 2 == 0 else BATCHES[::-1]:
                    times[b].append(seconds(model, x, lengths, b))
            med = {b: statistics.median(v) for b, v in times.items()}
            print(f"| {name} | {cell} | " + " | ".join(f"{1e6 * med[b] / n:.0f}" for b in BATCHES) + " | "
                  + " | ".join(f"{med[b] / med[1024]:.2f}" for b in BATCHES[:-1]) + " |", flush=True)


if __name__ == "__main__":
    main()
