"""Trainer vs a plain PyTorch loop written the way the seed's code is, side by side in one run.

The plain loop follows the seed's train_eval.py / utils.py: the data set is a list of Python
(token_ids, label, seq_len) tuples, each batch is turned into tensors with `torch.LongTensor(...)`
per step, the model is the seed's (nn.LSTM/nn.RNN with num_layers=2, bidirectional, dropout,
fc on out[:, -1, :]), and a full dev evaluation runs every 100 steps (with a state_dict copy when dev
loss improves, as the seed saves its checkpoint). The harness side is `harness.train.run_trial` with
every recording on (gradient norms per group, update ratios, the gradient-reach probe, curves), and
optionally with recording reduced (`--variants`).

Both run the same number of steps on the same encoded data with the same settings; each
measurement is the wall time of one whole trial (model build, N steps, dev evaluations, final test
evaluation). Variants are interleaved and repeated; the table reports median samples/s and the
ratio harness / plain.

    python benchmarks/throughput.py                       # seed model, LSTM and RNN, pad 32 and 128
    python benchmarks/throughput.py --cells lstm --pads 32 --steps 300 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness import data as data_mod
from harness.config import config_from_dict, expand_grid
from harness.records import TrialRecorder
from harness.train import run_trial


class SeedModel(nn.Module):
    """The seed's model: embedding → nn.LSTM/nn.RNN(num_layers, bidirectional, dropout) → fc(out[:, -1])."""

    def __init__(self, cell: str, n_vocab: int, embed: int, hidden: int, layers: int, dropout: float,
                 n_classes: int):
        super().__init__()
        self.embedding = nn.Embedding(n_vocab, embed, padding_idx=n_vocab - 1)
        rnn = {"lstm": nn.LSTM, "rnn": nn.RNN, "gru": nn.GRU}[cell]
        self.rnn = rnn(embed, hidden, layers, bidirectional=True, batch_first=True, dropout=dropout)
        self.fc = nn.Linear(hidden * 2, n_classes)

    def forward(self, x):
        out = self.embedding(x[0])
        out, _ = self.rnn(out)
        return self.fc(out[:, -1, :])


def seed_init(model: nn.Module) -> None:
    """The seed's init_network: xavier-normal weights, zero biases, embedding excluded."""
    for name, w in model.named_parameters():
        if "embedding" not in name:
            if "weight" in name:
                nn.init.xavier_normal_(w)
            elif "bias" in name:
                nn.init.constant_(w, 0)


class DatasetIterater:
    """The seed's iterator: Python lists turned into tensors per batch, fixed order."""

    def __init__(self, batches: list, batch_size: int, device: torch.device):
        self.batch_size, self.batches, self.device = batch_size, batches, device
        self.n_batches = len(batches) // batch_size
        self.residue = len(batches) % self.n_batches != 0 if self.n_batches else False
        self.index = 0

    def _to_tensor(self, datas):
        x = torch.LongTensor([_[0] for _ in datas]).to(self.device)
        y = torch.LongTensor([_[1] for _ in datas]).to(self.device)
        seq_len = torch.LongTensor([_[2] for _ in datas]).to(self.device)
        return (x, seq_len), y

    def __next__(self):
        if self.residue and self.index == self.n_batches:
            batches = self.batches[self.index * self.batch_size: len(self.batches)]
            self.index += 1
            return self._to_tensor(batches)
        if self.index >= self.n_batches + (1 if self.residue else 0):
            self.index = 0
            raise StopIteration
        batches = self.batches[self.index * self.batch_size: (self.index + 1) * self.batch_size]
        self.index += 1
        return self._to_tensor(batches)

    def __iter__(self):
        return self


def as_lists(split: data_mod.EncodedSplit) -> list:
    return [(t.tolist(), int(y), int(n)) for t, y, n in zip(split.tokens, split.labels, split.lengths)]


def seed_evaluate(model, data_iter):
    model.eval()
    loss_total, predict_all, labels_all = 0.0, np.array([], dtype=int), np.array([], dtype=int)
    with torch.no_grad():
        for texts, labels in data_iter:
            outputs = model(texts)
            loss_total += F.cross_entropy(outputs, labels)
            labels_all = np.append(labels_all, labels.data.cpu().numpy())
            predict_all = np.append(predict_all, torch.max(outputs.data, 1)[1].cpu().numpy())
    acc = float((labels_all == predict_all).mean())
    return acc, float(loss_total) / max(len(data_iter.batches) // data_iter.batch_size, 1)


def plain_loop(ds: data_mod.Dataset, cell: str, steps: int, batch: int, device: torch.device,
               eval_every: int = 100) -> float:
    """Seconds for one seed-style trial of `steps` steps (dev eval every 100, test at the end)."""
    t0 = time.perf_counter()
    torch.manual_seed(1)
    model = SeedModel(cell, ds.vocab_size, 300, 128, 2, 0.3, len(ds.class_names)).to(device)
    seed_init(model)
    train_iter = DatasetIterater(as_lists(ds.train), batch, device)
    dev_iter = DatasetIterater(as_lists(ds.dev), batch, device)
    test_iter = DatasetIterater(as_lists(ds.test), batch, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    total, best, best_state = 0, float("inf"), None
    model.train()
    while total < steps:
        for trains, labels in train_iter:
            outputs = model(trains)
            model.zero_grad()
            loss = F.cross_entropy(outputs, labels)
            loss.backward()
            optimizer.step()
            total += 1
            if total % eval_every == 0:
                true = labels.data.cpu()
                predic = torch.max(outputs.data, 1)[1].cpu()
                _ = (true == predic).float().mean().item()
                dev_acc, dev_loss = seed_evaluate(model, dev_iter)
                if dev_loss < best:
                    best, best_state = dev_loss, copy.deepcopy(model.state_dict())
                model.train()
            if total >= steps:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    seed_evaluate(model, test_iter)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def harness_trial(cfg_raw: dict, cache: str, device: torch.device) -> float:
    cfg = config_from_dict(cfg_raw)
    _, data_id = data_mod.prepare(cfg.data, cache)
    spec = expand_grid(cfg, data_id)[0]
    ds = data_mod.load(spec.data, cache)
    t0 = time.perf_counter()
    run_trial(spec, ds, device, TrialRecorder(spec.trial_id))
    return time.perf_counter() - t0


def config(cell: str, pad: int, steps: int, batch: int, probe_points: int, n_train: int) -> dict:
    return {
        "name": "throughput",
        "data": {"kind": "synthetic", "pad_size": pad, "synth": {"n_train": n_train}},
        "model": {"cell": cell, "embed_dim": 300, "hidden_size": 128, "num_layers": 2, "bidirectional": True,
                  "dropout": 0.3},
        "train": {"batch_size": batch, "max_steps": steps, "epochs": 100, "eval_every": 100,
                  "require_improvement": 10 ** 9, "probe_points": probe_points, "shuffle": False},
        "grid": {"seed": [0]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", default=["lstm", "rnn"])
    ap.add_argument("--pads", nargs="+", type=int, default=[32, 128])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=18000)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cache = tempfile.mkdtemp(prefix="throughput-")
    print(f"torch {torch.__version__}, {args.threads} threads, device {device}, batch {args.batch}, "
          f"{args.steps} steps per trial, dev evaluation every 100 steps, {args.repeats} repeats (median)\n")
    print("| cell | pad | plain loop (samples/s) | harness, all recording (samples/s) | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for cell in args.cells:
        for pad in args.pads:
            raw = config(cell, pad, args.steps, args.batch, 4, args.n_train)
            ds = data_mod.load(config_from_dict(raw).data, cache, pad)
            harness_trial(raw, cache, device)  # warm-up (also writes the cache)
            plain, ours = [], []
            for _ in range(args.repeats):
                plain.append(plain_loop(ds, cell, args.steps, args.batch, device))
                ours.append(harness_trial(raw, cache, device))
            sp = args.steps * args.batch / statistics.median(plain)
            so = args.steps * args.batch / statistics.median(ours)
            print(f"| {cell} | {pad} | {sp:,.0f} | {so:,.0f} | {so / sp:.2f} |", flush=True)


if __name__ == "__main__":
    main()
