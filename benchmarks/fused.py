"""Fused trials vs the same trials one at a time, side by side in one run (what `run.fuse: auto` decides).

`step` (default): training-step throughput of K trials of one shape. "separate": K unfused
`build_model` models (nn.LSTM / nn.RNN: oneDNN on a CPU, cuDNN on a GPU), each with its own
torch.optim.Adam, stepped one after another; "fused": one `FusedClassifier.from_models` of the same K
models with `FusedAdam`, one step for all K. Each step is forward, cross-entropy, backward and Adam on a
per-trial batch (seed model: 2 bidirectional layers, dropout 0.3, read-out last); no recording on either
side. Rounds of `--steps` steps alternate between the two sides; the table reports the median
samples/s (K x batch x steps / seconds) and the median of the per-round ratios fused / separate (> 1:
fusing is faster).

`grid`: the driver gpu.sh uses for "fused K": runs a short grid (cells x K seeds, every trial of one
cell one fused group) through `harness.train_fused.run_fused` in this one process and prints one JSON
line per finished group and a summary line (trials done, wall seconds from process start, trials/hour).
`--cuda-graph` sets train.cuda_graph (the fused step captured in a CUDA graph and replayed; drop_last).

    python benchmarks/fused.py                                     # CPU: K=8, tiny and seed size, LSTM and RNN
    python benchmarks/fused.py step --ks 8 32 128 --device cuda --precisions fp32 bf16
    python benchmarks/fused.py grid --k 32 --steps 200 --device cuda [--cuda-graph]
"""

from __future__ import annotations

import time

T_PROCESS = time.time()

import argparse  # noqa: E402  (the process start is taken before the imports: grid's wall time includes them)
import contextlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from harness.config import ModelConfig  # noqa: E402
from harness.models import build_model  # noqa: E402
from harness.models.fused import FusedAdam, FusedClassifier, per_trial_cross_entropy  # noqa: E402
from harness.train import sync  # noqa: E402

SIZES = {"tiny": (16, 16, 100), "seed": (300, 128, 3000)}  # embed, hidden, vocab



def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_models(k: int, cell: str, size: str, device: torch.device) -> list:
    embed, hidden, vocab = SIZES[size]
    cfg = ModelConfig(cell=cell, embed_dim=embed, hidden_size=hidden, num_layers=2, bidirectional=True,
                      dropout=0.3, readout="last")
    out = []
    for i in range(k):
        torch.manual_seed(i)
        out.append(build_model(cfg, vocab, 10, vocab - 1).to(device).train())
    return out


def batches(k: int, n: int, batch: int, pad: int, vocab: int, device: torch.device) -> list:
    g = torch.Generator().manual_seed(0)
    return [(torch.randint(0, vocab, (k, batch, pad), generator=g).to(device),
             torch.randint(1, pad + 1, (k, batch), generator=g).to(device),
             torch.randint(0, 10, (k, batch), generator=g).to(device)) for _ in range(n)]


def time_separate(models: list, opts: list, data: list, device: torch.device, precision: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    for tokens, lengths, labels in data:
        for k, (m, opt) in enumerate(zip(models, opts)):
            with _autocast(device, precision):
                logits = m(tokens[k], lengths[k])
            loss = F.cross_entropy(logits.float(), labels[k])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    sync(device)
    return time.perf_counter() - t0


def time_fused(fused: FusedClassifier, opt: FusedAdam, active: torch.Tensor, data: list, device: torch.device,
               precision: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    for tokens, lengths, labels in data:
        with _autocast(device, precision):
            logits = fused(tokens, lengths)
        loss = per_trial_cross_entropy(logits.float(), labels).sum()
        fused.zero_grad(set_to_none=True)
        loss.backward()
        opt.step(active)
    sync(device)
    return time.perf_counter() - t0


def step_bench(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    rows = []
    for size in args.sizes:
        for cell in args.cells:
            for k in args.ks:
                for precision in args.precisions:
                    models = make_models(k, cell, size, device)
                    fused = FusedClassifier.from_models(models)
                    fused.set_dropout([torch.Generator(device).manual_seed(i) for i in range(k)])
                    opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in models]
                    fopt = FusedAdam(list(fused.parameters()), torch.full((k,), 1e-3))
                    active = torch.ones(k, dtype=torch.bool, device=device)
                    data = batches(k, args.steps, args.batch, args.pad, SIZES[size][2], device)
                    time_separate(models, opts, data[:1], device, precision)  # warm-up
                    time_fused(fused, fopt, active, data[:1], device, precision)
                    sep, fus = [], []
                    for r in range(args.rounds):
                        order = (0, 1) if r % 2 == 0 else (1, 0)
                        for side in order:
                            if side == 0:
                                sep.append(time_separate(models, opts, data, device, precision))
                            else:
                                fus.append(time_fused(fused, fopt, active, data, device, precision))
                    samples = k * args.batch * args.steps
                    row = {"size": size, "cell": cell, "k": k, "precision": precision, "pad": args.pad,
                           "batch": args.batch, "separate_sps": samples / statistics.median(sep),
                           "fused_sps": samples / statistics.median(fus),
                           "ratio": statistics.median(s / f for s, f in zip(sep, fus)),
                           "ratio_min": min(s / f for s, f in zip(sep, fus)),
                           "ratio_max": max(s / f for s, f in zip(sep, fus))}
                    rows.append(row)
                    print(f"| {size} | {cell} | {k} | {precision} | {row['separate_sps']:,.0f} | "
                          f"{row['fused_sps']:,.0f} | {row['ratio']:.2f}x ({row['ratio_min']:.2f}-"
                          f"{row['ratio_max']:.2f}) |", flush=True)
                    del models, fused, opts, fopt
    return rows


def grid_bench(args: argparse.Namespace) -> None:
    from harness import data as data_mod
    from harness.config import config_from_dict, expand_grid
    from harness.records import TrialRecorder
    from harness.train_fused import group_specs, run_fused

    embed, hidden, _ = SIZES[args.size]
    raw = {
        "name": "fused-grid",
        "data": {"kind": "synthetic", "pad_size": args.pad, "synth": {"n_train": args.n_train}},
        "model": {"embed_dim": embed, "hidden_size": hidden, "num_layers": 2, "bidirectional": True, "dropout": 0.3},
        "train": {"batch_size": args.batch, "lr": 1e-3, "epochs": 7, "max_steps": args.steps, "eval_every": 100,
                  "precision": args.precision, "cuda_graph": args.cuda_graph},
        "grid": {"cell": args.cells, "seed": list(range(args.k))},
    }
    cfg = config_from_dict(raw)
    cache = args.cache or tempfile.mkdtemp(prefix="fused-grid-")
    _, data_id = data_mod.prepare(cfg.data, cache)
    specs = expand_grid(cfg, data_id)
    ds = data_mod.load(specs[0].data, cache)
    device = torch.device(args.device)
    done = 0
    for group in group_specs(specs, args.k):
        t0 = time.perf_counter()
        rows = run_fused(group, ds, device, [TrialRecorder(s.trial_id) for s in group])
        done += sum(r["status"] == "complete" for r in rows)
        print(json.dumps({"group": group[0].model.cell, "k": len(group), "seconds": time.perf_counter() - t0,
                          "complete": sum(r["status"] == "complete" for r in rows),
                          "mean_test_acc": statistics.mean(r["test_acc"] or 0.0 for r in rows)}), flush=True)
    wall = time.time() - T_PROCESS
    print(json.dumps({"summary": True, "k": args.k, "trials": len(specs), "complete": done, "wall_s": wall,
                      "trials_per_hour": done / wall * 3600}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", choices=("step", "grid"), default="step")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cells", nargs="+", default=["lstm", "rnn"])
    ap.add_argument("--pad", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5, help="step: steps per round; grid: steps per trial")
    # step mode
    ap.add_argument("--sizes", nargs="+", choices=tuple(SIZES), default=["tiny", "seed"])
    ap.add_argument("--ks", nargs="+", type=int, default=[8])
    ap.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="step: also write the rows to this file")
    # grid mode
    ap.add_argument("--k", type=int, default=8, help="grid: trials per fused group (= seeds per cell)")
    ap.add_argument("--size", choices=tuple(SIZES), default="seed")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--n-train", type=int, default=18000)
    ap.add_argument("--cache", help="grid: data cache directory (default: a temporary one)")
    ap.add_argument("--cuda-graph", action="store_true", help="grid: train.cuda_graph (on a CPU: the static "
                    "step, eagerly)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.mode == "grid":
        grid_bench(args)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {args.device}, pad {args.pad}, "
          f"batch {args.batch}, {args.steps} steps x {args.rounds} rounds per side\n")
    print("| size | cell | K | precision | separate samples/s | fused samples/s | fused / separate (min-max) |")
    print("| --- | --- | --- | --- | --- | --- | --- |", flush=True)
    rows = step_bench(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
