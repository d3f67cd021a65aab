"""The hand-written recurrent cells (harness.models.cells) against nn.LSTM / nn.GRU / nn.RNN.

One bidirectional single-layer module of each kind, forward + backward (the gradient of the input
too, as in the classifier where the input is the embedding output), at the seed's size
(B=64, T=32, I=300, H=128) and optionally others, with 1 and 2 torch threads. Three variants per
cell: the built-in `nn.*` module (oneDNN's fused RNN kernel on CPU, cuDNN on a GPU), the custom
layer with LayerNorm off (the same maths as nn.*; its cost is the Python time loop) and the custom
layer with `layernorm: recurrent` (what the harness builds for that setting). Variants are
interleaved within every repeat (order rotated); the table reports the median time per
forward+backward and the median of the per-repeat ratios custom / built-in. Goal: `layernorm:
recurrent` at most 3x the built-in cell's time.

    python benchmarks/cells.py                       # seed size, 1 and 2 threads
    python benchmarks/cells.py --sizes seed bench long --repeats 30
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from harness.models.cells import make_layer

SIZES = {  # name: (B, T, I, H)
    "seed": (64, 32, 300, 128),   # the seed's model: emb 300, hidden 128, pad 32, batch 64
    "long": (64, 128, 300, 128),  # the seed's model at pad 128
    "bench": (64, 32, 32, 32),    # configs/bench.yaml's width
}
BUILTIN = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def make(kind: str, cell: str, i: int, h: int) -> nn.Module:
    if kind == "builtin":
        return BUILTIN[cell](i, h, num_layers=1, batch_first=True, bidirectional=True)
    return make_layer(cell, i, h, bidirectional=True, layernorm=kind == "custom+LN")


def step_time(module: nn.Module, x: torch.Tensor, g: torch.Tensor, iters: int) -> float:
    """Seconds per forward+backward (mean over `iters` back-to-back calls)."""
    t0 = time.perf_counter()
    for _ in range(iters):
        out = module(x)
        if isinstance(out, tuple):
            out = out[0]
        out.backward(g)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", default=["lstm", "gru", "rnn"])
    ap.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["seed", "bench"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--iters", type=int, default=3, help="forward+backward calls per timed sample")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    kinds = ["builtin", "custom", "custom+LN"]
    print(f"torch {torch.__version__}, device {device}, forward+backward of one bidirectional layer, median of "
          f"{args.repeats} interleaved repeats x {args.iters} calls\n")
    print("| size (B, T, I, H) | threads | cell | nn.* (ms) | custom, LN off (ms) | custom, LN recurrent (ms) "
          "| LN off / nn.* | LN recurrent / nn.* | goal <= 3x |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in args.sizes:
        b, t, i, h = SIZES[size]
        for threads in args.threads:
            torch.set_num_threads(threads)
            for cell in args.cells:
                torch.manual_seed(0)
                mods = {k: make(k, cell, i, h).to(device) for k in kinds}
                x = torch.randn(b, t, i, device=device, requires_grad=True)
                g = torch.randn(b, t, 2 * h, device=device)
                for m in mods.values():  # warm-up
                    step_time(m, x, g, 2)
                times: dict[str, list[float]] = {k: [] for k in kinds}
                for r in range(args.repeats):
                    for k in kinds[r % 3:] + kinds[:r % 3]:
                        times[k].append(step_time(mods[k], x, g, args.iters))
                med = {k: statistics.median(v) for k, v in times.items()}
                ratio = {k: statistics.median(c / n for c, n in zip(times[k], times["builtin"])) for k in kinds[1:]}
                ok = "met" if ratio["custom+LN"] <= 3 else "not met"
                print(f"| {size} ({b}, {t}, {i}, {h}) | {threads} | {cell} | {med['builtin'] * 1e3:.1f} | "
                      f"{med['custom'] * 1e3:.1f} | {med['custom+LN'] * 1e3:.1f} | {ratio['custom']:.2f} | "
                      f"{ratio['custom+LN']:.2f} | {ok} |", flush=True)


if __name__ == "__main__":
    main()
