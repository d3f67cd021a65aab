"""Hand-made results tables with the documented columns (harness.schema), for the report tests (no training)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pandas as pd
import yaml

from harness.config import config_from_dict
from harness.records import frame, write_trial

CLASSES = ["finance", "realty", "stocks", "sports"]
STEPS = 40
EVAL_EVERY = 10
BATCH = 32


def trial_tables(cell: str, ln: str, pad: int, lr: float, seed: int, status: str = "complete",
                 extra: dict | None = None) -> dict[str, pd.DataFrame]:
    """One trial's five tables. The LSTM beats the RNN by far, more so at long pad sizes;
    layernorm=output adds 2 points; each seed adds 1 point. The RNN reaches the target (0.5)
    only at pad_size <= 8, after 30 steps; the LSTM after 20 steps everywhere."""
    tid = f"{cell}-{ln}-{pad}-{lr:g}-{seed}" + "".join(f"-{v}" for v in (extra or {}).values())
    acc = (0.8 if cell != "rnn" else max(0.25, 0.6 - 0.02 * pad)) + (0.02 if ln != "none" else 0) + 0.01 * seed
    reach = 20 if cell != "rnn" else (30 if pad <= 8 else None)
    steps = STEPS if status in ("complete", "pruned") else 5
    row = {
        "trial_id": tid, "status": status, "error": None, "cell": cell, "layernorm": ln, "batch_size": BATCH,
        "pad_size": pad, "lr": lr, "seed": seed, "readout": "last", "bidirectional": True, "num_layers": 2,
        "hidden_size": 8, "embed_dim": 8, "dataset": "synthetic", "test_acc": acc, "test_macro_f1": acc - 0.05,
        "test_loss": 1.0 - acc, "best_dev_acc": acc, "best_step": STEPS, "steps": steps, "epochs": 2.0,
        "target_dev_acc": 0.5, "steps_to_target": reach, "samples_to_target": reach * BATCH if reach else None,
        "seconds_to_target": reach / 10 if reach else None, "grad_norm_init": 1.0, "grad_norm_final": 0.5,
        "vanishing_ratio_init": -0.1 * pad * (2 if cell == "rnn" else 1), "vanishing_ratio_final": -0.05 * pad,
        "wall_s": 2.0, "train_s": 1.5, "samples_per_s": 1000.0 + 10 * pad, "device": "cpu",
        "torch_version": "2.13.0+cpu", "started_at": "2026-01-01T00:00:00+00:00", "schema_version": 2,
        "git_commit": "0123abcd", "worker": "host:1", **(extra or {}),
    }
    rows: dict[str, list[dict]] = {"curves": [], "grad_norms": [], "grad_time": [], "confusion": []}
    if status == "failed":
        row.update(error="RuntimeError: boom", test_acc=None, test_macro_f1=None, test_loss=None, best_dev_acc=None,
                   best_step=None, steps=None, steps_to_target=None, samples_to_target=None, seconds_to_target=None)
        return {"runs": frame("runs", [row]), **{t: frame(t, []) for t in rows}}
    if status == "diverged":
        row.update(error="non-finite training loss at step 5", test_acc=None, test_macro_f1=None, test_loss=None,
                   best_dev_acc=None, best_step=None, steps_to_target=None, samples_to_target=None,
                   seconds_to_target=None, vanishing_ratio_final=None)
    last = STEPS if status != "diverged" else 0
    for step in range(EVAL_EVERY, last + 1, EVAL_EVERY):
        f = step / STEPS
        rows["curves"].append({"trial_id": tid, "step": step, "epoch": 2 * f, "samples_seen": step * BATCH,
                               "elapsed_s": f, "train_loss": 2.0 - f, "train_acc": acc * f, "dev_loss": 2.2 - f,
                               "dev_acc": acc * f + 0.005 * seed, "grad_norm": 1.0 / (1 + f)})
        groups = ["embedding", "rnn.l0", "rnn.l1"] + (["norm"] if ln != "none" else []) + ["fc"]
        for i, g in enumerate(groups):
            rows["grad_norms"].append({"trial_id": tid, "step": step, "group": g, "grad_norm": 0.1 * (i + 1),
                                       "update_ratio": 0.01 / (1 + f) * (i + 1)})
    for step in sorted({0, last}):
        for layer in ("input", "rnn.l0"):
            for pos in range(pad):
                dist = pad - 1 - pos
                decay = 0.5 if cell == "rnn" else 0.1
                rows["grad_time"].append({"trial_id": tid, "step": step, "layer": layer, "position": pos,
                                          "pad_fraction": max(0.0, (pos - 5) / pad),
                                          "grad_norm": math.exp(-decay * dist)})
    if status != "diverged":
        for i, j in itertools.product(range(len(CLASSES)), repeat=2):
            rows["confusion"].append({"trial_id": tid, "true_label": i, "pred_label": j,
                                      "count": 20 if i == j else 2, "true_name": CLASSES[i],
                                      "pred_name": CLASSES[j]})
    return {"runs": frame("runs", [row]), **{t: frame(t, r) for t, r in rows.items()}}


def grid(cells=("rnn", "lstm"), lns=("none", "output"), pads=(8, 16), lrs=(1e-3,), seeds=(0, 1)):
    return list(itertools.product(cells, lns, pads, lrs, seeds))


def results_tables(points, statuses: dict | None = None) -> dict[str, pd.DataFrame]:
    """The five tables (as records.load returns them) for the given grid points."""
    statuses = statuses or {}
    parts = [trial_tables(*p, status=statuses.get(p, "complete")) for p in points]
    return {t: pd.concat([p[t] for p in parts if len(p[t])] or [frame(t, [])], ignore_index=True)
            for t in ("runs", "curves", "grad_norms", "grad_time", "confusion")}


def write_results(out: Path, points, statuses: dict | None = None, *, grid_axes: dict | None = None,
                  name: str = "handmade") -> Path:
    """A results directory: config.yaml (whose grid may plan more than `points`) and one shard
    folder per trial, written with harness.records.write_trial."""
    out.mkdir(parents=True, exist_ok=True)
    axes = grid_axes or {"cell": sorted({p[0] for p in points}), "layernorm": sorted({p[1] for p in points}),
                         "pad_size": sorted({p[2] for p in points}), "lr": sorted({p[3] for p in points}),
                         "seed": sorted({p[4] for p in points})}
    raw = {"name": name, "data": {"kind": "synthetic", "synth": {"n_classes": len(CLASSES)}},
           "model": {"embed_dim": 8, "hidden_size": 8}, "train": {"batch_size": BATCH, "target_dev_acc": 0.5},
           "grid": axes}
    cfg = config_from_dict(raw)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
    statuses = statuses or {}
    for p in points:
        tables = trial_tables(*p, status=statuses.get(p, "complete"))
        write_trial(out, tables["runs"]["trial_id"].iloc[0], tables)
    return out
