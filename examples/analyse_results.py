# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Analysing a results folder with the public API
#
# A percent-format script: it runs as a script
# (`python examples/analyse_results.py results/bench [figure.png]`) and opens as a notebook in
# Jupyter (with jupytext: `jupytext --to notebook examples/analyse_results.py`) or in VS Code
# (cells marked `# %%`). In a notebook, set the results folder with the environment variable
# `HARNESS_RESULTS` (and the figure's path with `HARNESS_FIGURE`) or edit the next cell.
#
# It redraws one figure (test accuracy against `pad_size`, one line per cell) and computes one
# paired effect (LSTM minus RNN test accuracy, paired on every other setting and the seed) with a
# t-interval.

# %%
import os
import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # a script: draw to a file, no window
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from harness.records import load

args = [a for a in sys.argv[1:] if not a.startswith("-")] if "ipykernel" not in sys.modules else []
RESULTS = Path(args[0] if args else os.environ.get("HARNESS_RESULTS", "results/bench"))
FIGURE = Path(args[1] if len(args) > 1 else os.environ.get("HARNESS_FIGURE", RESULTS / "figures" / "analysis.png"))
CELL_A, CELL_B = "lstm", "rnn"  # the effect is CELL_A minus CELL_B

# %% [markdown]
# ## Load the tables
#
# `harness.records.load(DIR)` reads every finished trial's shards (it also works while a run is
# going) into a `Results`: the tables as pandas DataFrames (`.runs`, `.curves`, `.grad_norms`,
# `.grad_time`, `.confusion`), their schemas (`.schema(name)`, `.columns_doc(name)`) and the run's
# resolved config (`.config`).

# %%
tables = load(RESULTS)
runs = tables.runs
print(f"{RESULTS}: {len(runs)} trials; by status: {runs['status'].value_counts().to_dict()}")
runs[["trial_id", "cell", "pad_size", "seed", "status", "test_acc"]].head()

# %% [markdown]
# ## Test accuracy against pad_size, one line per cell
#
# Each seed is a dot; the line joins the means over seeds. Failed trials have no test accuracy and
# are not drawn (the report counts them; so should an analysis that makes a claim).

# %%
done = runs[np.isfinite(runs["test_acc"].astype(float))]
fig, ax = plt.subplots(figsize=(5, 3.5))
for cell, part in done.groupby("cell"):
    mean = part.groupby("pad_size")["test_acc"].mean()
    line = ax.plot(mean.index, mean.values, marker="o", label=cell)[0]
    ax.scatter(part["pad_size"], part["test_acc"], color=line.get_color(), alpha=0.4, s=12)
ax.set_xscale("log", base=2)
ax.set_xlabel("pad_size (tokens)")
ax.set_ylabel("test accuracy")
ax.legend(title="cell")
fig.tight_layout()
FIGURE.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(FIGURE, dpi=120)
print(f"figure: {FIGURE}")

# %% [markdown]
# ## A paired effect: CELL_A minus CELL_B test accuracy
#
# Trials are paired when every other setting that varies (LayerNorm, batch size, pad_size,
# learning rate, seed, ...) is equal; the interval is Student's t over the paired differences
# (it treats the pairs as independent draws, which holds across seeds, less so across settings).

# %%
settings = [c for c in ("layernorm", "batch_size", "pad_size", "lr", "seed") if c in done and done[c].nunique() > 1]
pairs = done.pivot_table(index=settings or None, columns="cell", values="test_acc", aggfunc="mean")
diff = (pairs[CELL_A] - pairs[CELL_B]).dropna()
n = len(diff)
mean = float(diff.mean())
if n >= 2:
    low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=stats.sem(diff))
    interval = f"95% t-interval [{low:+.3f}, {high:+.3f}]"
else:
    interval = "no interval (fewer than 2 pairs)"
print(f"effect {CELL_A} - {CELL_B} test accuracy: {mean:+.4f} ({interval}, {n} pairs over {', '.join(settings)})")
