"""How hard is the synthetic data set? A bag-of-characters linear classifier's accuracy per `signal`.

Generates data with the default `SynthConfig` (the `signal` replaced by each value given), fits a
multinomial logistic regression on character counts (full-batch L-BFGS, small fixed L2, trained on
train only; nothing is chosen on dev or test) and prints train/dev/test accuracy.

    python benchmarks/synth_difficulty.py              # the default signal
    python benchmarks/synth_difficulty.py 0.1 0.15 0.2 0.25 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def count_matrix(texts: list[str], index: dict[str, int]) -> torch.Tensor:
    """Sparse (n_texts × len(index)) character-count matrix; characters not in `index` are dropped."""
    rows, cols = [], []
    for i, text in enumerate(texts):
        for ch in text:
            j = index.get(ch)
            if j is not None:
                rows.append(i)
                cols.append(j)
    idx = torch.tensor([rows, cols], dtype=torch.long)
    vals = torch.ones(len(rows), dtype=torch.float32)
    return torch.sparse_coo_tensor(idx, vals, (len(texts), len(index)),
                                   check_invariants=False).coalesce()


def fit_bag_of_chars(train: list[tuple[str, int]], n_classes: int, l2: float = 1e-3,
                     max_iter: int = 200) -> tuple[dict[str, int], torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on character counts. Returns (char index, W, b)."""
    index = {ch: i for i, ch in enumerate(sorted({ch for text, _ in train for ch in text}))}
    x = count_matrix([t for t, _ in train], index)
    y = torch.tensor([lab for _, lab in train])
    w = torch.zeros(len(index), n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(torch.sparse.mm(x, w) + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return index, w.detach(), b.detach()


def accuracy(data: list[tuple[str, int]], index: dict[str, int], w: torch.Tensor, b: torch.Tensor) -> float:
    x = count_matrix([t for t, _ in data], index)
    y = torch.tensor([lab for _, lab in data])
    pred = (torch.sparse.mm(x, w) + b).argmax(1)
    return float((pred == y).float().mean())


def main(argv: list[str] | None = None) -> None:
    from harness.config import SynthConfig
    from harness.data.synth import generate
    from harness.names import SPLITS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("signals", nargs="*", type=float, help="signal values (default: the config's)")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="generator seeds (default: config's)")
    ap.add_argument("--keywords", type=int, default=None, help="override keywords_per_class")
    ap.add_argument("--l2", type=float, default=1e-3, help="L2 penalty on the weights")
    args = ap.parse_args(argv)

    base = SynthConfig()
    if args.keywords is not None:
        base = dataclasses.replace(base, keywords_per_class=args.keywords)
    signals = args.signals or [base.signal]
    seeds = args.seeds if args.seeds is not None else [base.seed]
    torch.manual_seed(0)
    print(f"SynthConfig defaults: {dataclasses.asdict(base)}")
    print(f"{'signal':>7} {'seed':>5} {'gen_s':>6} {'fit_s':>6} {'train':>7} {'dev':>7} {'test':>7}")
    for signal in signals:
        tests = []
        for seed in seeds:
            cfg = dataclasses.replace(base, signal=signal, seed=seed)
            t0 = time.perf_counter()
            data = generate(cfg)
            t1 = time.perf_counter()
            index, w, b = fit_bag_of_chars(data["train"], cfg.n_classes, l2=args.l2)
            t2 = time.perf_counter()
            accs = [accuracy(data[s], index, w, b) for s in SPLITS]
            tests.append(accs[2])
            print(f"{signal:7.3f} {seed:5d} {t1 - t0:6.2f} {t2 - t1:6.1f} "
                  + " ".join(f"{a:7.4f}" for a in accs), flush=True)
        if len(seeds) > 1:
            print(f"{signal:7.3f}  mean test accuracy {np.mean(tests):.4f} ± {np.std(tests):.4f}")


if __name__ == "__main__":
    main()
