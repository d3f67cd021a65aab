"""Trainer vs a plain PyTorch loop written the way the seed's code is, side by side in one run.

The plain loop follows the seed's train_eval.py / utils.py: the data set is a list of Python
(token_ids, label, seq_len) tuples, each batch is turned into tensors with `torch.LongTensor(...)`
per step, the model is the seed's (nn.LSTM/nn.RNN with num_layers=2, bidirectional, dropout,
fc on out[:, -1, :]), and a full dev evaluation runs every 100 steps (with a state_dict copy when dev
loss improves, as the seed saves its checkpoint). The harness side is `harness.train.run_trial`
twice: with every recording on (gradient norms per group, update ratios, the gradient-reach probe,
curves) and with recording off (`train.instrument: false`: curves only).

All variants run the same number of steps on the same encoded data with the same settings (the
Python lists of the plain loop are built once, outside the timing, as the harness's cached encoding
is); each measurement is the wall time of one whole trial (model build, N steps, dev evaluations,
final test evaluation). Variants are interleaved (order rotated every repeat) and repeated; the
table reports median samples/s and the medians of the per-repeat ratios:

- harness (all recording) / plain loop, in samples/s: goal >= 1.0;
- recording cost = time(recording on) / time(recording off) - 1: goal <= 5%.

The probe runs at 2 + probe_points steps whatever the trial's length, so a short benchmark trial
overstates its share. The script therefore also reads, for each trial, the trainer's own split of
its time by phase (the runs row's train_s, eval_s = dev evaluations, probe_s = probe calls and
gradient recording; the rest of the trial's wall time, building and the test evaluation, is counted
as its fixed cost), and projects both ratios to a full trial of the harness's default length (7
epochs of the 18,000 synthetic titles at batch 64 = 1,974 steps, a dev evaluation every 100):
per-step time x steps + evaluations + the fixed costs. The measured columns are the measurement; the
projected ones are that arithmetic.

A second table times single training steps, interleaved (`--step-rounds` rounds, median): the plain
loop's step (list -> tensor conversion included), the harness's step with recording off and with
all per-step recording (the trainer's own `train_step` and `RunningSums.add`, imported), one probe
call and one dev evaluation of each, and adds them up to the same projected trial. Single steps interleaved closely
are much less exposed to a shared machine's drifting load than whole trials minutes apart.

`--flush-denormal harness` runs the harness's single training steps and evaluations (not its probe,
not the plain loop) with `torch.set_flush_denormal(True)`, as `run_trial` itself does on a CPU
(float32 denormals from vanishing gradients slow the CPU's backward pass and the gradient-norm
reductions); whole harness trials flush as the trainer decides, whatever the option. `all` flushes
the plain loop too.

    python benchmarks/throughput.py                       # seed model, LSTM and RNN, pad 32 and 128 (~10 min)
    python benchmarks/throughput.py --repeats 0           # the single-step table only (~3 min)
    python benchmarks/throughput.py --cells lstm --pads 32 --steps 300 --repeats 3
    python benchmarks/throughput.py --device cuda --batches 64 256 --precisions fp32 bf16 --graph off on
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import json
import math
import statistics
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import harness.train as train_mod
from harness import data as data_mod
from harness.config import TrainConfig, config_from_dict, expand_grid
from harness.names import SPLITS
from harness.records import TrialRecorder
from harness.train import ParamGroups, RunningSums, run_trial, sync, train_step
from harness.train_fused import run_fused

FLUSH = "none"  # --flush-denormal: none | harness (the harness's training steps only, not its probe) | all


def _flush(side: str) -> None:
    """Set flush-denormal for the code about to run: 'plain', 'harness' or 'probe'."""
    torch.set_flush_denormal(FLUSH == "all" or (FLUSH == "harness" and side == "harness"))


SEED_STEPS = 7 * math.ceil(18000 / 64)  # 1,974: the default trial (7 epochs of 18,000 titles, batch 64)


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



def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_step(model: nn.Module, optimizer: torch.optim.Optimizer, trains: tuple, labels: torch.Tensor,
              device: torch.device, precision: str) -> torch.Tensor:
    """One training step as the seed's train loop does it; returns the logits (B, C)."""
    with _autocast(device, precision):
        outputs = model(trains)
    model.zero_grad()
    loss = F.cross_entropy(outputs.float(), labels)
    loss.backward()
    optimizer.step()
    return outputs


def plain_loop(lists: dict, ds: data_mod.Dataset, cell: str, steps: int, batch: int, device: torch.device,
               precision: str = "fp32", eval_every: int = 100) -> dict:
    """One seed-style trial of `steps` steps (dev eval every `eval_every`, test at the end).
    Returns {"total": s, "dev_eval": s (all dev evaluations), "n_dev": count, "test_eval": s}."""
    _flush("plain")
    t0 = time.perf_counter()
    torch.manual_seed(1)
    model = SeedModel(cell, ds.vocab_size, 300, 128, 2, 0.3, len(ds.class_names)).to(device)
    seed_init(model)
    train_iter = DatasetIterater(lists["train"], batch, device)
    dev_iter = DatasetIterater(lists["dev"], batch, device)
    test_iter = DatasetIterater(lists["test"], batch, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    total, best, best_state = 0, float("inf"), None
    dev_s, n_dev = 0.0, 0
    model.train()
    while total < steps:
        for trains, labels in train_iter:
            outputs = seed_step(model, optimizer, trains, labels, device, precision)
            total += 1
            if total % eval_every == 0:
                te = time.perf_counter()
                true = labels.data.cpu()
                predic = torch.max(outputs.data, 1)[1].cpu()
                _ = (true == predic).float().mean().item()
                with _autocast(device, precision):
                    dev_acc, dev_loss = seed_evaluate(model, dev_iter)
                if dev_loss < best:
                    best, best_state = dev_loss, copy.deepcopy(model.state_dict())
                model.train()
                dev_s += time.perf_counter() - te
                n_dev += 1
            if total >= steps:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    te = time.perf_counter()
    with _autocast(device, precision):
        seed_evaluate(model, test_iter)
    sync(device)
    t1 = time.perf_counter()
    return {"total": t1 - t0, "dev_eval": dev_s, "n_dev": n_dev, "test_eval": t1 - te}


def harness_trial(cfg_raw: dict, cache: str, device: torch.device) -> dict:
    """One run_trial (with train.cuda_graph: run_fused of one trial). Returns {"total", "dev_eval" (all
    dev evaluations), "n_dev", "test_eval" (the rest outside training, dev evaluations and probes:
    building and the test evaluation), "probe" (all probe calls and gradient recording), "n_probe"},
    seconds, from the trainer's phase timing."""
    cfg = config_from_dict(cfg_raw)
    _, data_id = data_mod.prepare(cfg.data, cache)
    spec = expand_grid(cfg, data_id)[0]
    ds = data_mod.load(spec.data, cache)
    _flush("harness")
    rec = TrialRecorder(spec.trial_id)
    t0 = time.perf_counter()
    # train.cuda_graph captures the fused step: the runner trains such a trial as a fused group of one.
    row = run_fused([spec], ds, device, [rec])[0] if spec.train.cuda_graph else run_trial(spec, ds, device, rec)
    total = time.perf_counter() - t0
    n_probe = len({r["step"] for r in rec.rows["grad_time"]})
    return {"total": total, "dev_eval": row["eval_s"], "n_dev": len(rec.rows["curves"]),
            "test_eval": total - row["train_s"] - row["eval_s"] - row["probe_s"], "probe": row["probe_s"],
            "n_probe": n_probe}


def config(cell: str, pad: int, steps: int, batch: int, probe_points: int, n_train: int, instrument: bool = True,
           precision: str = "fp32", graph: bool = False) -> dict:
    train = {"batch_size": batch, "max_steps": steps, "epochs": 100, "eval_every": 100,
             "require_improvement": 10 ** 9, "probe_points": probe_points, "shuffle": False,
             "instrument": instrument, "precision": precision}
    if graph:  # a CUDA graph needs static shapes: the last partial batch is dropped
        train.update(cuda_graph=True, drop_last=True)
    return {
        "name": "throughput",
        "data": {"kind": "synthetic", "pad_size": pad, "synth": {"n_train": n_train}},
        "model": {"cell": cell, "embed_dim": 300, "hidden_size": 128, "num_layers": 2, "bidirectional": True,
                  "dropout": 0.3},
        "train": train,
        "grid": {"seed": [0]},
    }


def graph_supported() -> bool:
    return "cuda_graph" in {f.name for f in dataclasses.fields(TrainConfig)}


def project(m: dict, steps: int, target: int, eval_every: int = 100, fixed_probe: bool = True) -> float:
    """Seconds of a `target`-step trial from a `steps`-step measurement `m`: per-step training time
    (total minus evaluations and probes, over the steps) x target, plus a dev evaluation every
    `eval_every` steps, the test evaluation and the probe calls (a fixed number per trial)."""
    probe = m.get("probe", 0.0)
    per_step = (m["total"] - m["dev_eval"] - m["test_eval"] - probe) / steps
    per_dev = m["dev_eval"] / m["n_dev"] if m["n_dev"] else 0.0
    n_dev = target // eval_every
    if "probe" in m and target % eval_every:
        n_dev += 1  # the harness also evaluates at the last step
    return per_step * target + per_dev * n_dev + m["test_eval"] + (probe if fixed_probe else 0.0)


def step_costs(ds: data_mod.Dataset, lists: dict, cell: str, pad: int, batch: int, device: torch.device,
               precision: str, pairs: int, n_train: int) -> dict:
    """Single training steps, interleaved: the plain loop's (list -> tensor conversion included), the
    harness's with recording off and with all per-step recording (the trainer's `train_step` and
    `RunningSums.add`), and one gradient-reach probe. Median seconds of each."""
    from harness.models import build_model

    cfg = config_from_dict(config(cell, pad, 1, batch, 0, n_train, precision=precision))
    torch.manual_seed(0)
    model = build_model(cfg.model, ds.vocab_size, len(ds.class_names), ds.pad_index).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    groups = ParamGroups.of(model, device)
    tokens, lengths, labels = (torch.from_numpy(a).to(device) for a in (ds.train.tokens, ds.train.lengths,
                                                                         ds.train.labels))
    sums = RunningSums.start(len(groups.names), device)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def harness_step(b: int, record: bool) -> None:
        _flush("harness")
        idx = torch.arange(b * batch, (b + 1) * batch, device=device)
        out = train_step(model, opt, (tokens[idx], lengths[idx], labels[idx]), autocast,
                         groups=groups if record else None)
        sums.add(out, batch)

    torch.manual_seed(1)
    seed_model = SeedModel(cell, ds.vocab_size, 300, 128, 2, 0.3, len(ds.class_names)).to(device)
    seed_init(seed_model)
    seed_opt = torch.optim.Adam(seed_model.parameters(), lr=1e-3)
    it = DatasetIterater(lists["train"], batch, device)

    def plain_step(b: int) -> None:
        _flush("plain")
        it.index = b
        trains, y = next(it)
        seed_step(seed_model, seed_opt, trains, y, device, precision)

    n_probe = min(256, len(ds.dev.labels))
    probe_batch = tuple(torch.from_numpy(a[:n_probe]).to(device) for a in (ds.dev.tokens, ds.dev.lengths,
                                                                              ds.dev.labels))
    fns = {"plain": plain_step, "off": lambda b: harness_step(b, False), "on": lambda b: harness_step(b, True),
           "probe": lambda b: (_flush("probe"), train_mod._probe(model, *probe_batch, autocast))}
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(pairs + 2):  # the first two rounds warm up
        for k in names[r % 4:] + names[:r % 4]:
            sync(device)
            t = time.perf_counter()
            fns[k](r)
            sync(device)
            if r >= 2:
                times[k].append(time.perf_counter() - t)
    out = {k: statistics.median(v) for k, v in times.items()}
    dev_split, dev_iter = train_mod.Split(ds.dev, device), DatasetIterater(lists["dev"], batch, device)
    evals: dict[str, list[float]] = {"plain_eval": [], "eval": []}
    for _ in range(2):
        _flush("plain")
        t = time.perf_counter()
        with _autocast(device, precision):
            seed_evaluate(seed_model, dev_iter)
        sync(device)
        evals["plain_eval"].append(time.perf_counter() - t)
        seed_model.train()
        _flush("harness")
        t = time.perf_counter()
        train_mod.evaluate(model, dev_split, train_mod.eval_batch(TrainConfig(), device), autocast)  # as run_trial
        evals["eval"].append(time.perf_counter() - t)
    out.update({k: statistics.median(v) for k, v in evals.items()})
    return out


def project_steps(c: dict, target: int, probes: int, eval_every: int = 100) -> dict:
    """A `target`-step trial from single-step costs: steps, a dev evaluation every `eval_every` (the
    harness also at the last step), the test evaluation (as long as a dev one: same size) and, with
    all recording, `probes` probe calls."""
    plain = target * c["plain"] + (target // eval_every + 1) * c["plain_eval"]
    n_eval = target // eval_every + (1 if target % eval_every else 0) + 1
    off = target * c["off"] + n_eval * c["eval"]
    on = target * c["on"] + n_eval * c["eval"] + probes * c["probe"]
    return {"plain": plain, "off": off, "on": on}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", default=["lstm", "rnn"])
    ap.add_argument("--pads", nargs="+", type=int, default=[32, 128])
    ap.add_argument("--batches", nargs="+", type=int, default=[64])
    ap.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32"])
    ap.add_argument("--graph", nargs="+", choices=("off", "on"), default=["off"],
                    help="'on' adds a harness variant with train.cuda_graph (skipped if the config has no such key)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=1, help="whole-trial repeats (0: only the single-step table)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=18000)
    ap.add_argument("--probe-points", type=int, default=4)
    ap.add_argument("--target-steps", type=int, default=SEED_STEPS, help="trial length of the projection")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--step-rounds", type=int, default=15,
                    help="interleaved rounds of single-step timings (0: skip that table)")
    ap.add_argument("--json", help="also write every measurement to this file")
    ap.add_argument("--flush-denormal", choices=("none", "harness", "all"), default="none",
                    help="torch.set_flush_denormal(True) for: nobody (the default), the harness's training steps "
                         "and evaluations (not its probe, not the plain loop: the proposed trainer change), or all")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global FLUSH
    FLUSH = args.flush_denormal
    if FLUSH != "none" and not torch.set_flush_denormal(False):
        print("--flush-denormal: not supported on this CPU\n")
    device = torch.device(args.device)
    graph = "on" in args.graph
    if graph and not graph_supported():
        print("graph on: skipped: this harness has no train.cuda_graph key\n")
        graph = False
    cache = tempfile.mkdtemp(prefix="throughput-")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"{args.steps} steps per trial, dev evaluation every 100 steps, {args.repeats} repeats (median), "
          f"projection to {args.target_steps}-step trials"
          f"{'' if FLUSH == 'none' else ', denormals flushed to zero for: ' + FLUSH}\n")
    cols = ["cell", "pad", "batch", "precision", "plain loop (samples/s)", "harness, all recording (samples/s)",
            "harness, recording off (samples/s)"]
    if graph:
        cols.append("harness, all recording, CUDA graph (samples/s)")
    cols += ["all recording / plain", "recording cost", "projected: all recording / plain",
             "projected: recording cost"]
    if args.repeats:
        print("| " + " | ".join(cols) + " |")
        print("|" + " --- |" * len(cols))
    results, step_lines = [], []
    for cell in args.cells:
        for pad in args.pads:
            ds = data_mod.load(config_from_dict(config(cell, pad, 1, 64, 0, args.n_train)).data, cache)
            lists = {s: as_lists(getattr(ds, s)) for s in SPLITS}
            for batch in args.batches:
                for prec in args.precisions:
                    plain = functools.partial(plain_loop, lists, ds, cell, args.steps, batch, device, prec)
                    variants = {"plain": plain}
                    for name, instr, g in (("on", True, False), ("off", False, False), ("graph", True, True)):
                        if g and not graph:
                            continue
                        raw = config(cell, pad, args.steps, batch, args.probe_points, args.n_train, instr, prec, g)
                        variants[name] = functools.partial(harness_trial, raw, cache, device)
                    if args.repeats:  # warm-up: a few steps of each (kernels, allocator), not timed
                        plain_loop(lists, ds, cell, 3, batch, device, prec)
                        harness_trial(config(cell, pad, 3, batch, 0, args.n_train, False, prec), cache, device)
                    runs: dict[str, list[dict]] = {k: [] for k in variants}
                    names = list(variants)
                    for r in range(args.repeats):
                        for name in names[r % len(names):] + names[:r % len(names)]:
                            runs[name].append(variants[name]())
                    row = summarise(runs, args.steps, batch, args.target_steps) if args.repeats else {}
                    row.update(cell=cell, pad=pad, batch=batch, precision=prec, device=str(device),
                               flush_denormal=args.flush_denormal,
                               threads=torch.get_num_threads(), steps=args.steps, repeats=args.repeats)
                    results.append(row)
                    if args.repeats:
                        cells = [cell, pad, batch, prec, f"{row['sps_plain']:,.0f}", f"{row['sps_on']:,.0f}",
                                 f"{row['sps_off']:,.0f}"]
                        if graph:
                            cells.append(f"{row['sps_graph']:,.0f}")
                        cells += [f"{row['ratio_on_plain']:.2f}", f"{row['cost']:+.1%}",
                                  f"{row['proj_ratio_on_plain']:.2f}", f"{row['proj_cost']:+.1%}"]
                        print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
                    if args.step_rounds:
                        c = step_costs(ds, lists, cell, pad, batch, device, prec, args.step_rounds, args.n_train)
                        pr = project_steps(c, args.target_steps, 2 + args.probe_points)
                        row["steps_s"], row["steps_projection_s"] = c, pr
                        step_lines.append(
                            f"| {cell} | {pad} | {batch} | {prec} | {c['plain'] * 1e3:.1f} | {c['off'] * 1e3:.1f} | "
                            f"{c['on'] * 1e3:.1f} | {c['on'] / c['off'] - 1:+.1%} | {c['probe'] * 1e3:.0f} | "
                            f"{c['plain_eval']:.2f} / {c['eval']:.2f} | {pr['plain'] / pr['on']:.2f} | "
                            f"{pr['plain'] / pr['off']:.2f} | {pr['on'] / pr['off'] - 1:+.1%} |")
    if step_lines:
        print(f"\nSingle steps, interleaved ({args.step_rounds} rounds, median), and the {args.target_steps}-step "
              f"trial they add up to ({2 + args.probe_points} probes, a dev evaluation every 100 steps):\n")
        print("| cell | pad | batch | precision | plain step (ms) | harness step, recording off (ms) | "
              "harness step, all recording (ms) | per-step recording | one probe (ms) | dev evaluation, "
              "plain / harness (s) | projected: all recording / plain | projected: recording off / plain "
              "| projected: recording cost |")
        print("|" + " --- |" * 13)
        print("\n".join(step_lines), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def summarise(runs: dict[str, list[dict]], steps: int, batch: int, target: int) -> dict:
    med = statistics.median
    t = {k: [m["total"] for m in v] for k, v in runs.items()}
    row = {f"sps_{k}": steps * batch / med(v) for k, v in t.items()}
    # Ratios paired within a repeat (the machine's load drifts between repeats), then the median.
    row["ratio_on_plain"] = med(p / o for p, o in zip(t["plain"], t["on"]))
    row["cost"] = med(o / f for o, f in zip(t["on"], t["off"])) - 1
    proj = {k: [project(m, steps, target) for m in v] for k, v in runs.items()}
    row["proj_ratio_on_plain"] = med(p / o for p, o in zip(proj["plain"], proj["on"]))
    row["proj_cost"] = med(o / f for o, f in zip(proj["on"], proj["off"])) - 1
    for k, v in runs.items():
        for part in ("total", "dev_eval", "test_eval", "probe"):
            if part in v[0]:
                row[f"{k}_{part}_s"] = med(m[part] for m in v)
    return row


if __name__ == "__main__":
    main()
