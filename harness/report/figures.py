"""Figures for the report. Each function takes tables computed by `harness.report.stats` and returns
`(fig, axes)` (axes: a 2-D array of Axes); nothing here saves or shows a figure.

One visual language across every figure: a colour per cell (rnn red, lstm blue, gru green), a line
style and a marker per layernorm (none solid/circle, output dashed/square, recurrent dotted/
triangle), and — where pad sizes share a panel — darker shades of the cell's colour for longer
sequences. Legends sit outside the panels, below the figure.

With named arms (grid.arm: an `arm` column in the tables) the arm takes the cell's place: a colour,
a panel column and a legend entry per arm (`stats.group_key`); `arm_colors` gives each arm its colour.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from harness.names import CELLS, LAYERNORMS, level_rank
from harness.report.fmt import fmt_setting, fmt_value
from harness.report.outcomes import fits_group_key
from harness.report.stats import ARM, group_key, ordered_levels
from harness.stats.survival import km_median

# One colour per cell and one line style and marker per layernorm, in the names' registry order.
CELL_COLORS = dict(zip(CELLS, ("#d62728", "#1f77b4", "#2ca02c"), strict=True))
LN_STYLES = dict(zip(LAYERNORMS, ("-", "--", ":"), strict=True))
LN_MARKERS = dict(zip(LAYERNORMS, ("o", "s", "^"), strict=True))
GROUP_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# Arms not named after a cell take these (tab10 without the cells' three), in the config's order.
ARM_COLORS = ("#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
_arm_color: dict[str, str] = {}  # set by `arm_colors` for the figures of one report
CHANCE_COLOR = "0.45"
FAIL_MARKER = "X"

plt.rcParams.update({
    "figure.dpi": 100, "savefig.dpi": 100, "font.size": 9.5, "axes.titlesize": 10.5,
    "axes.labelsize": 9.5, "legend.fontsize": 9, "axes.grid": True, "grid.alpha": 0.3,
    "svg.fonttype": "none",
})


# ----------------------------------------------------------------------------- style helpers

def cell_color(cell: object) -> str:
    """The colour of a cell, or of an arm inside `arm_colors`; grey for anything else."""
    return CELL_COLORS.get(str(cell)) or _arm_color.get(str(cell), "0.3")


@contextmanager
def arm_colors(names: Sequence[str]) -> Iterator[None]:
    """Within the block, `cell_color` gives each arm of `names` (grid.arm, in the config's order) a
    colour of its own, the same in every figure: an arm named after a cell keeps the cell's colour,
    every other arm takes the next of ARM_COLORS."""
    others = [n for n in dict.fromkeys(map(str, names)) if n not in CELL_COLORS]
    saved = dict(_arm_color)
    _arm_color.clear()
    _arm_color.update({n: ARM_COLORS[i % len(ARM_COLORS)] for i, n in enumerate(others)})
    try:
        yield
    finally:
        _arm_color.clear()
        _arm_color.update(saved)


def ln_style(ln: object) -> str:
    return LN_STYLES.get(str(ln), "-.")


def ln_marker(ln: object) -> str:
    return LN_MARKERS.get(str(ln), "D")


def shade(color: str, i: int, n: int) -> tuple:
    """The i-th of n shades of `color`, light to dark (n == 1: the colour itself)."""
    if n <= 1:
        return mcolors.to_rgb(color)
    rgb = np.array(mcolors.to_rgb(color))
    t = i / (n - 1)  # 0 light … 1 dark
    light, dark = rgb + (1 - rgb) * 0.55, rgb * 0.6
    return tuple(light + (dark - light) * t)


def line_label(cell: object, ln: object) -> str:
    """'lstm / LN none' — or, for an arm, 'lstm-fb0 / LN none'."""
    return f"{cell} / LN {ln}"


def _grid(nrows: int, ncols: int, *, panel: tuple[float, float] = (4.2, 3.2), sharex: bool | str = False,
          sharey: bool | str = False, extra_h: float = 0.9, max_w: float = 15.0):
    w = max(6.4, min(max_w, panel[0] * ncols + 0.4))
    h = panel[1] * nrows + extra_h
    fig, axes = plt.subplots(nrows, ncols, figsize=(w, h), squeeze=False, sharex=sharex, sharey=sharey,
                             layout="constrained")
    return fig, axes


def _legend_below(fig: plt.Figure, handles: list, ncol: int | None = None) -> None:
    """A frameless legend under the panels, as many columns as the figure's width holds."""
    if not handles:
        return
    widest = max(0.064 * len(h.get_label()) + 0.5 for h in handles)  # inches per entry
    fits = max(1, int(fig.get_figwidth() / widest))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), ncol or 6, fits),
               frameon=False)


def _style_handles(cells: Sequence, lns: Sequence, *, marker: bool = True) -> list:
    """Legend handles: one line per cell × layernorm actually shown."""
    return [Line2D([], [], color=cell_color(c), linestyle=ln_style(ln), marker=ln_marker(ln) if marker else None,
                   markersize=5, label=line_label(c, ln)) for c in cells for ln in lns]


def _pad_axis(ax: plt.Axes, pads: Sequence) -> None:
    pads = sorted(set(pads))
    if len(pads) > 1 and max(pads) / max(min(pads), 1) >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(pads)
    ax.set_xticklabels([str(p) for p in pads])
    ax.minorticks_off()


def _hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def _panels(df: pd.DataFrame, panel_keys: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) for each combination of panel_keys (one untitled panel when there are none)."""
    if not panel_keys or df.empty:
        return [("", df)]
    out = []
    for key, g in df.groupby(list(panel_keys), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append((", ".join(fmt_setting(k, v) for k, v in zip(panel_keys, key)), g))
    return out


# ----------------------------------------------------------------------------- 1. frontier

def frontier(summary: pd.DataFrame, panel_keys: Sequence[str] = (), chance: float | None = None,
             *, ncols: int = 3):
    """Test accuracy against pad_size: one line per cell × layernorm (mean over seeds, band: min–max
    over seeds — a description of the runs, not a confidence interval), one panel per setting of
    `panel_keys` (the other factors that vary), the chance level as a grey dashed line. Runs with
    no test accuracy (diverged, failed) are drawn as ✕ on the x axis with their count, so no run
    disappears from the picture."""
    panels = _panels(summary, panel_keys)
    ncols = min(ncols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = _grid(nrows, ncols, panel=(4.6, 3.4), sharey=True)
    gk = group_key(summary)
    cells = ordered_levels(summary[gk]) if len(summary) else []
    lns = ordered_levels(summary["layernorm"]) if len(summary) else []
    any_fail = False
    for ax, (title, d) in zip(axes.flat, panels):
        for k, (cell, ln) in enumerate((c, ln) for c in cells for ln in lns):
            g = d[(d[gk] == cell) & (d["layernorm"] == ln)].sort_values("pad_size")
            if g.empty:
                continue
            ok = g[g["acc_n"] > 0]
            color = cell_color(cell)
            ax.plot(ok["pad_size"], ok["acc_mean"], color=color, linestyle=ln_style(ln),
                    marker=ln_marker(ln), markersize=5, label=line_label(cell, ln))
            band = ok[ok["acc_n"] > 1]
            if len(band):
                ax.fill_between(band["pad_size"], band["acc_min"], band["acc_max"], color=color,
                                alpha=0.12, linewidth=0)
            bad = g[(g["diverged"] + g["failed"]) > 0]
            for _, r in bad.iterrows():
                any_fail = True
                what = ", ".join(f"{int(r[s])} {'div.' if s == 'diverged' else s}"
                                 for s in ("diverged", "failed") if r[s])
                y = 0.03 + 0.05 * k  # stacked per line, so markers of different lines never overlap
                ax.plot([r["pad_size"]], [y], linestyle="none", marker=FAIL_MARKER, color=color,
                        markersize=7, label="_fail")
                right = r["pad_size"] == d["pad_size"].max() and d["pad_size"].nunique() > 1
                ax.annotate(what, (r["pad_size"], y), xytext=(-7 if right else 7, 0), textcoords="offset points",
                            fontsize=7.5, color=color, va="center", ha="right" if right else "left")
        if chance is not None:
            ax.axhline(chance, color=CHANCE_COLOR, linestyle=(0, (4, 3)), linewidth=1.2, label="_chance")
        _pad_axis(ax, d["pad_size"] if len(d) else [])
        ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.set_xlabel("pad_size (tokens per text)")
        ax.set_ylabel("test accuracy (fraction correct)")
        ax.label_outer()
    _hide_unused(axes, len(panels))
    handles = _style_handles(cells, lns)
    if chance is not None:
        handles.append(Line2D([], [], color=CHANCE_COLOR, linestyle=(0, (4, 3)), label=f"chance ({chance:.2g})"))
    if any_fail:
        handles.append(Line2D([], [], color="0.3", linestyle="none", marker=FAIL_MARKER, markersize=7,
                              label="runs that diverged/failed (no test accuracy)"))
    _legend_below(fig, handles)
    fig.suptitle("Where the RNN vanishes: test accuracy against sequence length\n"
                 "(mean over seeds; band: min–max over seeds)")
    return fig, axes


# ----------------------------------------------------------------------------- 2. heatmaps

def heatmaps(summary: pd.DataFrame, row_keys: Sequence[str] = ("pad_size",), col_key: str = "lr",
             chance: float | None = None, *, ncols: int = 2):
    """Mean test accuracy over (row_keys × col_key) — pad_size (and batch size, and other axes) in
    rows, the learning rate in columns — one panel per cell × layernorm, the number written in each
    cell. A cell with runs but no accuracy says how they ended (div./fail); one with no runs is
    blank."""
    d = summary.copy()
    row_keys = [k for k in row_keys if k in d.columns] or ["pad_size"]
    gk = group_key(d)
    pairs = [(c, ln) for c in ordered_levels(d[gk]) for ln in ordered_levels(d["layernorm"])
             if ((d[gk] == c) & (d["layernorm"] == ln)).any()] if len(d) else []
    n = max(len(pairs), 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    rows = sorted({tuple(r) for r in d[row_keys].itertuples(index=False)}) if len(d) else []
    cols = sorted(d[col_key].dropna().unique()) if len(d) and col_key in d.columns else []
    panel_h = max(2.2, 0.45 * len(rows) + 1.2)
    panel_w = max(3.0, 1.0 * len(cols) + 2.4)
    fig, axes = _grid(nrows, ncols, panel=(panel_w, panel_h), extra_h=0.8)
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.92")
    image = None
    for ax, (cell, ln) in zip(axes.flat, pairs):
        g = d[(d[gk] == cell) & (d["layernorm"] == ln)]
        m = np.full((len(rows), len(cols)), np.nan)
        text = [["" for _ in cols] for _ in rows]
        for _, r in g.iterrows():
            i = rows.index(tuple(r[k] for k in row_keys))
            j = cols.index(r[col_key])
            bad = int(r["diverged"] + r["failed"])
            if r["acc_n"] > 0:
                m[i, j] = r["acc_mean"]
                text[i][j] = f"{r['acc_mean']:.2f}" + (f"\n({bad}✕)" if bad else "")
            else:
                text[i][j] = "div." if r["diverged"] else ("fail" if r["failed"] else "—")
        image = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=0, vmax=1, aspect="auto")
        for i in range(len(rows)):
            for j in range(len(cols)):
                if text[i][j]:
                    dark = not np.isnan(m[i, j]) and m[i, j] < 0.6
                    ax.text(j, i, text[i][j], ha="center", va="center", fontsize=8.5,
                            color="white" if dark else "black")
        ax.set_xticks(range(len(cols)), [fmt_value(c) for c in cols])
        ax.set_yticks(range(len(rows)), [" · ".join(fmt_setting(k, v) for k, v in zip(row_keys, r))
                                         for r in rows])
        ax.set_xlabel(f"{col_key} (Adam learning rate)" if col_key == "lr" else col_key)
        ax.set_title(line_label(cell, ln), color=cell_color(cell))
        ax.grid(False)
    _hide_unused(axes, len(pairs))
    if image is not None:
        cb = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
        cb.set_label("test accuracy (mean over seeds)")
        if chance is not None:
            cb.ax.axhline(chance, color="red", linewidth=1.5)
            cb.ax.text(1.6, chance, " chance", transform=cb.ax.get_yaxis_transform(), va="center",
                       fontsize=8, color="red")
    fig.suptitle("Test accuracy over sequence length × learning rate")
    return fig, axes


# ----------------------------------------------------------------------------- 3. curves

def training_curves(loss: pd.DataFrame, acc: pd.DataFrame, x: str = "step", *, target: float | None = None,
                    chance: float | None = None, note: str = ""):
    """Dev loss and dev accuracy against `x` (step or samples_seen): one row per pad_size, the
    columns [loss | accuracy] × cells side by side, layernorm settings overlaid by line style, the
    band the min–max over seeds. `loss`/`acc` are `stats.curve_bands` tables by (cell, layernorm,
    pad_size)."""
    both = pd.concat([loss, acc]) if len(loss) or len(acc) else loss
    pads = sorted(both["pad_size"].unique()) if len(both) else [None]
    gk = group_key(both)
    cells = ordered_levels(both[gk]) if len(both) else []
    lns = ordered_levels(both["layernorm"]) if len(both) else []
    ncols = 2 * max(len(cells), 1)
    fig, axes = _grid(len(pads), ncols, panel=(3.4, 2.6), sharex=True, sharey=False, max_w=16)
    metrics = [("dev_loss", loss, "dev loss (cross-entropy, nats)"), ("dev_acc", acc, "dev accuracy (fraction)")]
    for r, pad in enumerate(pads):
        for m, (_, table, ylabel) in enumerate(metrics):
            for c, cell in enumerate(cells):
                ax = axes[r, m * len(cells) + c]
                t = table[(table["pad_size"] == pad) & (table[gk] == cell)] if len(table) else table
                _curve_lines(ax, t, cell, lns, x)
                if m == 1:
                    _reference_lines(ax, target, chance)
                ax.set_title(f"{cell}: {'dev loss' if m == 0 else 'dev acc'}, pad_size={pad}",
                             color=cell_color(cell))
                if r == len(pads) - 1:
                    ax.set_xlabel("training step" if x == "step" else "training samples seen")
                if c == 0:
                    ax.set_ylabel(ylabel)
        # Share y within a metric and row: the cells side by side are compared on one scale.
        for m in range(2):
            _share_ylim(axes[r, m * len(cells):(m + 1) * len(cells)])
    handles = [Line2D([], [], color="0.25", linestyle=ln_style(ln), label=f"layernorm {ln}") for ln in lns]
    handles += [Patch(color=cell_color(c), alpha=0.5, label=f"{c} (band: min–max over seeds)") for c in cells]
    if target is not None:
        handles.append(Line2D([], [], color="black", linestyle=(0, (1, 2)), label=f"target dev acc {target:g}"))
    if chance is not None:
        handles.append(Line2D([], [], color=CHANCE_COLOR, linestyle=(0, (4, 3)), label=f"chance ({chance:.2g})"))
    _legend_below(fig, handles, ncol=min(len(handles), 4))
    what = "step" if x == "step" else "samples seen"
    fig.suptitle(f"Training curves: dev loss and accuracy against {what}, with and without LayerNorm"
                 + (f"\n{note}" if note else ""))
    return fig, axes


def _curve_lines(ax: plt.Axes, t: pd.DataFrame, cell: object, lns: Sequence, x: str) -> None:
    """One cell's curve-band rows `t`: a line per layernorm, the min–max band where n > 1."""
    for ln in lns:
        g = t[t["layernorm"] == ln].sort_values(x) if len(t) else t
        if g.empty:
            continue
        color = cell_color(cell)
        ax.plot(g[x], g["mean"], color=color, linestyle=ln_style(ln), linewidth=1.6, label=line_label(cell, ln))
        spread = g[g["n"] > 1]
        if len(spread):
            ax.fill_between(spread[x], spread["low"], spread["high"], color=color, alpha=0.15, linewidth=0)


def _reference_lines(ax: plt.Axes, target: float | None, chance: float | None) -> None:
    """The target dev accuracy (dotted black) and chance (dashed grey), where given."""
    if target is not None:
        ax.axhline(target, color="black", linewidth=0.9, linestyle=(0, (1, 2)), label="_target")
    if chance is not None:
        ax.axhline(chance, color=CHANCE_COLOR, linewidth=1.0, linestyle=(0, (4, 3)), label="_chance")


def _share_ylim(row_axes: Sequence[plt.Axes]) -> None:
    lo = min(a.get_ylim()[0] for a in row_axes)
    hi = max(a.get_ylim()[1] for a in row_axes)
    for a in row_axes:
        a.set_ylim(lo, hi)


# ----------------------------------------------------------------------------- 4. gradient reach

def gradient_reach(reach: pd.DataFrame, *, xlabel: str = "distance from the read-out position (tokens)",
                   layer: str = "input", note: str = ""):
    """‖∂L/∂x_t‖ against distance from the read-out, log scale: one column per cell, rows at step 0
    and at the end of training; a line per layernorm (style) × sequence layout
    (pad_size × lag; shade: darker = longer).
    `reach` is a `stats.reach_table`. A gradient that underflowed to exactly 0 has no place on a log
    axis: where every seed's did, the point is a ▼ on the axis floor (below every real value), and
    where only some seeds' did, a hollow ○ on the line (the geometric mean of the others) — never
    a made-up value."""
    gk = group_key(reach)
    cells = ordered_levels(reach[gk]) if len(reach) else []
    lns = ordered_levels(reach["layernorm"]) if len(reach) else []
    layouts = _reach_layouts(reach)
    phases = [p for p in ("start", "end") if len(reach) and (reach["phase"] == p).any()] or ["start"]
    floor = _reach_floor(reach)
    fig, axes = _grid(len(phases), max(len(cells), 1), panel=(4.6, 3.2), sharex=True, sharey=True)
    marks = set()
    for r, phase in enumerate(phases):
        for c, cell in enumerate(cells):
            ax = axes[r, c]
            for ln in lns:
                for i, (label, mask) in enumerate(layouts):
                    g = reach[mask & (reach[gk] == cell) & (reach["layernorm"] == ln)
                              & (reach["phase"] == phase)].sort_values("distance")
                    marks |= _reach_line(ax, g, shade(cell_color(cell), i, len(layouts)), ln_style(ln), floor,
                                         f"{line_label(cell, ln)}, {label}")
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())  # decades are enough; minor ticks cost draw time
            ax.set_title(f"{cell}: {'at step 0 (init)' if phase == 'start' else 'at the end of training'}",
                         color=cell_color(cell))
            if r == len(phases) - 1:
                ax.set_xlabel(xlabel)
            if c == 0:
                ax.set_ylabel(f"‖∂L/∂x_t‖ at layer '{layer}'\n(geometric mean over seeds)")
    if floor is not None and marks:
        for ax in axes.flat:
            ax.set_ylim(bottom=floor)
    _legend_below(fig, _reach_handles(lns, [label for label, _ in layouts], marks), ncol=5)
    fig.suptitle("Gradient reach: how much of the loss gradient arrives at each input position\n"
                 "(x = 0 is the position the classifier reads; a steep fall means it vanishes on the way)"
                 + (f"\n{note}" if note else ""))
    return fig, axes


def _reach_layouts(reach: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """The sequence layouts of a reach table, shortest first, each as (legend label, row mask): one
    per pad_size × lag; the label names what varies ('lag 8' when lag does, else 'pad_size 32')."""
    if reach.empty:
        return []
    lag = reach["lag"] if "lag" in reach.columns else pd.Series(np.nan, index=reach.index)
    pairs = sorted({(int(p), None if pd.isna(g) else int(g)) for p, g in zip(reach["pad_size"], lag)},
                   key=lambda t: (t[1] if t[1] is not None else -1, t[0]))
    lags_vary = len({g for _, g in pairs}) > 1
    pads_vary = len({p for p, _ in pairs}) > 1
    out = []
    for pad, g in pairs:
        mask = (reach["pad_size"] == pad) & (lag.isna() if g is None else lag == g)
        parts = ([f"pad_size {pad}"] if pads_vary or not lags_vary else []) + ([f"lag {g}"] if lags_vary else [])
        out.append((", ".join(parts), mask))
    return out


def _reach_floor(reach: pd.DataFrame) -> float | None:
    """The axis floor for underflowed points: a decade below the smallest real value drawn."""
    v = pd.to_numeric(reach["grad_norm"], errors="coerce") if len(reach) else pd.Series(dtype=float)
    v = v[v > 0]
    return None if v.empty else 10.0 ** (math.floor(math.log10(float(v.min()))) - 1)


def _reach_line(ax: plt.Axes, g: pd.DataFrame, color: tuple, style: str, floor: float | None,
                label: str) -> set[str]:
    """One line of the reach figure, with its underflowed points marked; returns the kinds of mark
    drawn ('all' and/or 'some')."""
    if g.empty:
        return set()
    ok = g[g["grad_norm"].notna()]
    ax.plot(ok["distance"], ok["grad_norm"], color=color, linestyle=style, linewidth=1.6, label=label)
    drawn = set()
    some = ok[ok["n_zero"] > 0]
    if len(some):
        ax.plot(some["distance"], some["grad_norm"], linestyle="none", marker="o", markerfacecolor="white",
                color=color, markersize=5, label="_underflow_some")
        drawn.add("some")
    every = g[g["grad_norm"].isna() & (g["n_zero"] > 0)]
    if len(every) and floor is not None:
        ax.plot(every["distance"], np.full(len(every), floor), linestyle="none", marker="v", color=color,
                markersize=6, clip_on=False, label="_underflow_all")
        drawn.add("all")
    return drawn


def _reach_handles(lns: Sequence, layouts: Sequence[str], marks: set[str]) -> list:
    handles = [Line2D([], [], color="0.25", linestyle=ln_style(ln), label=f"layernorm {ln}") for ln in lns]
    handles += [Line2D([], [], color=shade("0.35", i, len(layouts)), linewidth=3, label=label)
                for i, label in enumerate(layouts)]
    if "all" in marks:
        handles.append(Line2D([], [], color="0.3", marker="v", linestyle="none",
                              label="▼ on the floor: 0 in every seed (below 1e-38, underflow)"))
    if "some" in marks:
        handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="none",
                              label="○: 0 (underflow) in some seeds; the others' mean"))
    return handles


# ----------------------------------------------------------------------------- 5. weights moving

def weights_moving(table: pd.DataFrame, *, note: str = ""):
    """Per parameter group: gradient norm (top row) and update ratio ‖Δθ‖/‖θ‖ (bottom row) against
    step, log scale, one column per cell; groups by shade and marker, layernorm by line style.
    `table` is a `stats.group_norm_table`."""
    gk = group_key(table)
    cells = ordered_levels(table[gk]) if len(table) else []
    lns = ordered_levels(table["layernorm"]) if len(table) else []
    groups = _group_order(table["group"].unique()) if len(table) else []
    fig, axes = _grid(2, max(len(cells), 1), panel=(4.6, 3.0), sharex=True, sharey="row")
    rows = [("grad_norm", "gradient norm ‖∂L/∂θ‖ (per group)"),
            ("update_ratio", "update ratio ‖Δθ‖/‖θ‖\n(per evaluation interval)")]
    for r, (col, ylabel) in enumerate(rows):
        for c, cell in enumerate(cells):
            ax = axes[r, c]
            for gi, group in enumerate(groups):
                for ln in lns:
                    g = table[(table[gk] == cell) & (table["group"] == group) & (table["layernorm"] == ln)]
                    g = g[g[col].notna() & (g[col] > 0)].sort_values("step")
                    if g.empty:
                        continue
                    ax.plot(g["step"], g[col], color=shade(cell_color(cell), gi, len(groups)),
                            linestyle=ln_style(ln), marker=GROUP_MARKERS[gi % len(GROUP_MARKERS)],
                            markersize=3.5, markevery=max(1, len(g) // 8), linewidth=1.3,
                            label=f"{group}, LN {ln}")
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())  # decades are enough; minor ticks cost draw time
            ax.set_title(f"{cell}: {'gradient norm' if r == 0 else 'update ratio'}", color=cell_color(cell))
            if r == 1:
                ax.set_xlabel("training step")
            if c == 0:
                ax.set_ylabel(ylabel)
    handles = [Line2D([], [], color=shade("0.35", gi, len(groups)), marker=GROUP_MARKERS[gi % len(GROUP_MARKERS)],
                      linestyle="-", label=group) for gi, group in enumerate(groups)]
    handles += [Line2D([], [], color="0.25", linestyle=ln_style(ln), label=f"layernorm {ln}") for ln in lns]
    _legend_below(fig, handles, ncol=min(len(handles), 6))
    fig.suptitle("Are the weights moving? Gradient norm and update ratio per parameter group"
                 + (f"\n{note}" if note else ""))
    return fig, axes


def _group_order(groups: Sequence[str]) -> list[str]:
    """embedding, rnn.l0, rnn.l1, …, norm, fc (input to output), then anything else."""
    def key(g: str) -> tuple:
        if g == "embedding":
            return (0, 0, g)
        if g.startswith("rnn.l") and g[5:].isdigit():
            return (1, int(g[5:]), g)
        return ({"norm": 2, "fc": 3}.get(g, 4), 0, g)
    return sorted(groups, key=key)


# ----------------------------------------------------------------------------- 6. convergence

def convergence(table: pd.DataFrame, row_keys: Sequence[str], *, x: str = "steps", target: float | None = None,
                panel_key: str = "pad_size"):
    """Steps (or samples) to the target dev accuracy for each run: one row per configuration
    (`row_keys`), one panel per `panel_key` value. Runs that reached it are filled markers (colour:
    cell, shape: layernorm), the black bar the censored median; runs that did not are drawn in the
    grey "not reached" zone to the right of every budget — never as zero, never left out — and
    diverged runs there as ✕. `table` is a `stats.convergence_table`."""
    col = "steps_to_target" if x == "steps" else "samples_to_target"
    budget_col = "steps" if x == "steps" else "samples"
    panels = sorted(table[panel_key].unique()) if len(table) and panel_key in table.columns else [None]
    row_keys = [k for k in row_keys if k in table.columns and k != panel_key]
    rows = sorted({tuple(r) for r in table[row_keys].itertuples(index=False)}, key=_row_sort_key) \
        if len(table) else []
    budget = float(pd.to_numeric(table[budget_col], errors="coerce").max()) if len(table) else 1.0
    budget = budget if math.isfinite(budget) and budget > 0 else 1.0
    zone = (budget * 1.04, budget * 1.32)
    height = max(3.0, 0.32 * len(rows) + 1.6)
    ncols = len(panels)
    fig, axes = _grid(1, ncols, panel=(4.4 if row_keys else 3.4, height), sharey=True, extra_h=0.9)
    rng = np.random.default_rng(0)
    any_failed = any_diverged = False
    for ax, pad in zip(axes.flat, panels):
        d = table[table[panel_key] == pad] if pad is not None else table
        ax.axvspan(*zone, color="0.88", zorder=0)
        ax.text(sum(zone) / 2, -0.85, "not reached", ha="center", va="center", fontsize=7.5, color="0.3")
        for i, key in enumerate(rows):
            mask = np.ones(len(d), dtype=bool)
            for k, v in zip(row_keys, key):
                mask &= (d[k] == v).to_numpy()
            g = d[mask]
            if g.empty:
                continue
            cell = dict(zip(row_keys, key)).get(group_key(g), g[group_key(g)].iloc[0])
            ln = dict(zip(row_keys, key)).get("layernorm", g["layernorm"].iloc[0])
            failed, diverged = _convergence_row(ax, g, i, cell, ln, col, zone, rng)
            any_failed |= failed
            any_diverged |= diverged
        ax.set_xlim(0, zone[1])
        ax.set_xticks([t for t in ax.get_xticks() if 0 <= t <= budget])
        ax.set_ylim(len(rows) - 0.5, -1.2)
        ax.set_yticks(range(len(rows)), [_row_label(row_keys, r) for r in rows])
        ax.set_xlabel(f"{'training steps' if x == 'steps' else 'training samples'} to reach dev acc "
                      f"{target:g}" if target is not None else f"{x} to target")
        ax.set_title(f"{panel_key}={fmt_value(pad)}" if pad is not None else "")
        ax.grid(axis="y", alpha=0)
    _legend_below(fig, _convergence_handles(table, any_diverged, any_failed), ncol=4)
    fig.suptitle("Convergence speed: how long each run took to reach the target dev accuracy")
    return fig, axes


def _convergence_row(ax: plt.Axes, g: pd.DataFrame, i: int, cell: object, ln: object, col: str,
                     zone: tuple[float, float], rng: np.random.Generator) -> tuple[bool, bool]:
    """Row `i` of a convergence panel: each run of `g` at its steps (samples) to target, or jittered
    in the "not reached" `zone`; the censored median as a black bar. Returns (any failed, any
    diverged)."""
    color = cell_color(cell)
    jitter = rng.uniform(-0.18, 0.18, len(g))
    reached = g["reached"].to_numpy(dtype=bool)
    values = pd.to_numeric(g[col], errors="coerce").to_numpy(dtype=float)
    xs = np.where(reached, values, zone[0] + (zone[1] - zone[0]) * rng.uniform(0.25, 0.75, len(g)))
    diverged = (g["status"] == "diverged").to_numpy()
    failed = (g["status"] == "failed").to_numpy()
    ax.scatter(xs[reached], i + jitter[reached], color=color, marker=ln_marker(ln), s=26, zorder=3)
    ok = ~reached & ~diverged & ~failed
    ax.scatter(xs[ok], i + jitter[ok], facecolors="none", edgecolors=color, marker=ln_marker(ln), s=26, zorder=3)
    ax.scatter(xs[~reached & diverged], i + jitter[~reached & diverged], color=color, marker=FAIL_MARKER,
               s=34, zorder=3)
    ax.scatter(xs[failed], i + jitter[failed], facecolors="none", edgecolors=color, marker=FAIL_MARKER,
               s=34, zorder=3)
    med = _km_median_of(g, col)
    if med is not None:
        mx = med if math.isfinite(med) else sum(zone) / 2
        ax.plot([mx, mx], [i - 0.32, i + 0.32], color="black", linewidth=2, zorder=4)
    return bool(failed.any()), bool(diverged.any())


def _km_median_of(g: pd.DataFrame, col: str) -> float | None:
    """The Kaplan-Meier median of `col` (steps or samples to target) over the runs of `g` with an
    outcome, each censored at its own budget; inf when fewer than half reached it, None when no run
    has an outcome."""
    known = g[g["time"].notna()] if "time" in g.columns else g.iloc[0:0]
    if known.empty:
        return None
    reached = known["reached"].to_numpy(dtype=bool)
    scale = 1.0 if col == "steps_to_target" else float(known["batch_size"].iloc[0]) if "batch_size" in known else 1.0
    med = km_median(known["time"].to_numpy(dtype=float) * scale, reached).median
    return math.inf if med is None else med


def _convergence_handles(table: pd.DataFrame, any_diverged: bool, any_failed: bool) -> list:
    handles = [Line2D([], [], color="0.3", marker=ln_marker(ln), linestyle="none", label=f"reached, LN {ln}")
               for ln in (ordered_levels(table["layernorm"]) if len(table) else [])]
    handles += [Line2D([], [], color="0.3", marker="o", markerfacecolor="none", linestyle="none",
                       label="not reached within its budget (censored)"),
                *([Line2D([], [], color="0.3", marker=FAIL_MARKER, linestyle="none", label="diverged")]
                  if any_diverged else []),
                *([Line2D([], [], color="0.3", marker=FAIL_MARKER, markerfacecolor="none", linestyle="none",
                          label="failed (error; not in the median)")] if any_failed else []),
                Line2D([], [], color="black", linewidth=2,
                       label="Kaplan–Meier median (each run censored at its budget)")]
    handles += [Patch(color=cell_color(c), label=c) for c in (ordered_levels(table[group_key(table)]) if len(table)
                                                               else [])]
    return handles


def _row_label(keys: Sequence[str], row: tuple) -> str:
    """'rnn/none lr=0.01' (with arms: 'lstm-fb0/none lr=0.01') for a configuration row."""
    named = dict(zip(keys, row))
    head = "/".join(str(named.pop(k)) for k in (ARM, "cell", "layernorm") if k in named)
    return " ".join([head] * bool(head) + [fmt_setting(k, v) for k, v in named.items()])


def _row_sort_key(row: tuple) -> tuple:
    """Cells and layernorms in registry order, other names alphabetically, numbers ascending."""
    return tuple((level_rank(v, 9), str(v)) if isinstance(v, str) else (0, v) for v in row)


# ----------------------------------------------------------------------------- 7. confusion

def confusion_matrices(items: Sequence[tuple[str, str, pd.DataFrame]], *, ncols: int = 2):
    """One confusion matrix per (title, cell, matrix): rows the true class, columns the predicted
    class, labelled with class names; colour is the row share (recall), numbers are counts."""
    n = max(len(items), 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    k = max((len(m) for _, _, m in items), default=2)
    side = max(3.4, 0.3 * k + 1.5)
    fig, axes = _grid(nrows, ncols, panel=(side + 0.6, side), extra_h=0.6)
    image = None
    for ax, (title, cell, m) in zip(axes.flat, items):
        counts = m.to_numpy(dtype=float)
        share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        if len(m) <= 16:
            for i in range(counts.shape[0]):
                for j in range(counts.shape[1]):
                    if counts[i, j]:
                        ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7.5,
                                color="white" if share[i, j] > 0.5 else "black")
        ax.set_xticks(range(m.shape[1]), [str(c) for c in m.columns], rotation=45, ha="right")
        ax.set_yticks(range(m.shape[0]), [str(c) for c in m.index])
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title, color=cell_color(cell), fontsize=9.5)
        ax.grid(False)
    _hide_unused(axes, len(items))
    if image is not None:
        cb = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6)
        cb.set_label("share of the true class (recall)")
    fig.suptitle("Confusion matrices (test set) of the trial with the best dev accuracy per cell × layernorm")
    return fig, axes


# ----------------------------------------------------------------------------- 9. survival

def survival(curves: pd.DataFrame, censored: pd.DataFrame, panel_keys: Sequence[str] = (), *,
             target: float | None = None, ncols: int = 3):
    """Time to target as survival data: the Kaplan-Meier share of runs that have reached the target
    dev accuracy by each step (1 - S(t), a step curve), one line per cell × layernorm, one panel per
    setting of `panel_keys` (the distance, and any other factor that varies); a run that did not
    reach the target is a + at its own last evaluated step (censored there). `curves`, `censored`:
    `outcomes.km_curves`."""
    panels = _panels(curves, panel_keys)
    ncols = min(ncols, len(panels))
    fig, axes = _grid(math.ceil(len(panels) / ncols), ncols, panel=(4.4, 3.2), sharex=True, sharey=True)
    gk = group_key(curves)
    cells = ordered_levels(curves[gk]) if len(curves) else []
    lns = ordered_levels(curves["layernorm"]) if len(curves) else []
    for ax, (title, d) in zip(axes.flat, panels):
        never = []
        for cell in cells:
            for ln in lns:
                g = d[(d[gk] == cell) & (d["layernorm"] == ln)]
                if g.empty:
                    continue
                style = dict(color=cell_color(cell), linestyle=ln_style(ln))
                if (g["share"] == 0).all():      # drawn once, as a list: flat lines at 0 would hide each other
                    never.append(f"{cell}/{ln} (0 of {int(g['n'].iloc[0])})")
                    ax.plot(g["time"], g["share"], linewidth=1.0, alpha=0.5, label="_never", **style)
                else:
                    ax.step(g["time"], g["share"], where="post", linewidth=1.7, label=line_label(cell, ln), **style)
                c = _rows_like(censored, g.iloc[0], [*panel_keys, gk, "layernorm"])
                ax.plot(c["time"], c["share"], linestyle="none", marker="+", markersize=9, mew=1.5,
                        color=style["color"], label="_censored")
        if never:
            ax.text(0.03, 0.06, "never reached:\n" + "\n".join(never), transform=ax.transAxes, fontsize=7.5,
                    va="bottom", color="0.25")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.set_ylabel("share of runs that reached the target")
        ax.label_outer()
    _hide_unused(axes, len(panels))
    handles = _style_handles(cells, lns, marker=False)
    handles.append(Line2D([], [], color="0.3", marker="+", markersize=9, mew=1.5, linestyle="none",
                          label="run censored at its last evaluation (not reached)"))
    _legend_below(fig, handles, ncol=min(len(handles), 5))
    what = f"dev accuracy {target:g}" if target is not None else "the target"
    fig.suptitle(f"Time to target: share of runs that have reached {what} by each step\n"
                 "(Kaplan–Meier; each run censored at its own last evaluated step)")
    return fig, axes


def _rows_like(table: pd.DataFrame, row: pd.Series, keys: Sequence[str]) -> pd.DataFrame:
    """The rows of `table` that agree with `row` on every key of `keys` both have."""
    mask = np.ones(len(table), dtype=bool)
    for k in keys:
        if k in table.columns and k in row.index:
            mask &= (table[k] == row[k]).to_numpy()
    return table[mask]


# ----------------------------------------------------------------------------- 10. frontier fit

def frontier_fit(fits: Sequence, *, distance: str = "pad_size", target: float | None = None, ncols: int = 3):
    """Success rate against distance with the fitted frontier: per group (`outcomes.FrontierFit`),
    the share of runs that reached the target at each distance with its Wilson 95% interval, the
    fitted logistic curve in log(1 + D) where the fit is finite, and D50 on the 0.5 line — a dot
    with its bootstrap interval, or, for perfectly separated outcomes, the bracket between the last
    distance where every run learned and the first where none did (a hollow bar). Colour: cell;
    line style: layernorm; one panel per setting of any other varied factor."""
    panel_of = [_panel_title(f) for f in fits]
    titles = list(dict.fromkeys(panel_of)) or [""]
    ncols = min(ncols, len(titles))
    fig, axes = _grid(math.ceil(len(titles) / ncols), ncols, panel=(4.6, 3.4), sharey=True)
    dists = sorted({float(d) for f in fits for d in f.points[distance]}) or [0.0, 1.0]
    lo_x, hi_x = math.log1p(dists[0]), math.log1p(dists[-1])
    span = max(hi_x - lo_x, 0.5)
    xlim = (math.expm1(max(0.0, lo_x - 0.15 * span)), math.expm1(hi_x + 0.15 * span))
    for k, (f, title) in enumerate(zip(fits, panel_of)):
        ax = axes.flat[titles.index(title)]
        _frontier_group(ax, f, distance, shift=0.025 * span * (k % 4 - 1.5), lane=0.012 * (k % 4 - 1.5), xlim=xlim)
    for ax, title in zip(axes.flat, titles):
        ax.axhline(0.5, color=CHANCE_COLOR, linewidth=0.8, linestyle=(0, (2, 2)), label="_half")
        ax.set_xscale("function", functions=(_log1p_safe, np.expm1))
        ax.set_xlim(*xlim)
        ax.set_xticks(dists, [fmt_value(int(d) if float(d).is_integer() else d) for d in dists])
        ax.set_ylim(-0.04, 1.04)
        ax.set_title(title)
        ax.set_xlabel(f"distance: {distance} (log(1 + D) scale)")
        ax.set_ylabel("share of runs that reached the target")
        ax.label_outer()
    _hide_unused(axes, len(titles))
    cells = ordered_levels(pd.Series([f.group.get(fits_group_key(fits)) for f in fits])) if fits else []
    lns = ordered_levels(pd.Series([f.group.get("layernorm") for f in fits])) if fits else []
    handles = _style_handles(cells, lns) + [
        Line2D([], [], color="0.3", marker="D", linestyle="none", label="D50 with its bootstrap interval"),
        Line2D([], [], color="0.3", linewidth=5, alpha=0.35, label="D50 bracket (separated outcomes)")]
    _legend_below(fig, handles, ncol=4)
    what = f"dev accuracy {target:g}" if target is not None else "the target"
    fig.suptitle(f"The frontier: share of runs that reached {what},\nagainst distance "
                 "(bars: Wilson 95%; curve: logistic fit; D50 on the 0.5 line)")
    return fig, axes


def _log1p_safe(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(x, 0.0))


def _panel_title(fit) -> str:
    return ", ".join(fmt_setting(k, v) for k, v in fit.group.items() if k not in (fits_group_key([fit]), "layernorm"))


def _frontier_group(ax: plt.Axes, f, distance: str, *, shift: float, lane: float,
                    xlim: tuple[float, float]) -> None:
    """One group of the frontier figure: rates with Wilson bars (shifted by `shift` on the log(1 + D)
    scale so groups do not hide each other), the fit, and D50 (its bar `lane` above 0.5)."""
    cell, ln = f.group.get(fits_group_key([f])), f.group.get("layernorm")
    color, pts = cell_color(cell), f.points
    x = np.expm1(np.log1p(pts[distance].to_numpy(float)) + shift)
    y = pts["rate"].to_numpy(float)
    err = np.vstack([y - pts["low"].to_numpy(float), pts["high"].to_numpy(float) - y])
    ax.errorbar(x, y, yerr=err, color=color, linestyle="none", marker=ln_marker(ln), markersize=5,
                capsize=2.5, elinewidth=1, label="_rates")
    fit = f.fit
    if fit is None:
        return
    grid_d = np.expm1(np.linspace(math.log1p(xlim[0]), math.log1p(xlim[1]), 200))
    p = fit_curve_values(fit, grid_d)
    if p is not None:
        ax.plot(grid_d, p, color=color, linestyle=ln_style(ln), linewidth=1.6, label=line_label(cell, ln))
    else:
        ax.plot(x, y, color=color, linestyle=ln_style(ln), linewidth=1.0, alpha=0.6, label=line_label(cell, ln))
    lo = fit.low if fit.low is not None else xlim[0]
    hi = fit.high if fit.high is not None else xlim[1]
    y50 = 0.5 + lane
    if fit.separated:
        ax.plot([lo, hi], [y50, y50], color=color, linewidth=5, alpha=0.35, solid_capstyle="butt", label="_bracket")
    elif fit.d50 is not None:
        ax.plot([lo, hi], [y50, y50], color=color, linewidth=1.6, label="_d50_ci")
        ax.plot([fit.d50], [y50], color=color, marker="D", markersize=6, linestyle="none", label="_d50")


def fit_curve_values(fit, distances: np.ndarray) -> np.ndarray | None:
    """The fitted P(reach) at `distances`: expit(b0 + b1 log(1 + D)); None without coefficients."""
    if fit.coefficients is None:
        return None
    b0, b1 = fit.coefficients
    return 1.0 / (1.0 + np.exp(-(b0 + b1 * np.log1p(distances))))


# ----------------------------------------------------------------------------- 8. optuna studies

def study_figures(study) -> list[tuple[str, plt.Figure]]:
    """Optuna's own matplotlib plots of a sampled study: optimisation history, hyperparameter
    importance (Optuna's default evaluator) and parallel coordinates. A plot Optuna cannot draw
    (too few trials, a single parameter) is left out."""
    from optuna.visualization import matplotlib as ovm

    from harness.report.study import optuna_figure

    out = []
    for name, fn in (("study_history", ovm.plot_optimization_history),
                     ("study_importance", ovm.plot_param_importances),
                     ("study_parallel", ovm.plot_parallel_coordinate)):
        fig = optuna_figure(fn, study)
        if fig is not None:
            out.append((name, fig))
    return out
