"""Figures for the report. Each function takes tables computed by `harness.report.stats` and returns
`(fig, axes)` (axes: a 2-D array of Axes); nothing here saves or shows a figure, and nothing here
titles one: the report's catalogue (`harness.report.catalogue`) gives each figure its one-line title.

One visual language across every figure: a colour per cell (rnn red, lstm blue, gru green), a line
style and a marker per layernorm (none solid/circle, output dashed/square, recurrent dotted/
triangle), and — where sequence layouts share a panel — darker shades of the cell's colour for longer
ones. Legends sit outside the panels, below the figure, and name only what varies (`series_label`).
Panels are laid out by their factors (`_factor_panels`): the first factor across, the others down.

With named arms (grid.arm: an `arm` column in the tables) the arm takes the cell's place: a colour,
a panel column and a legend entry per arm (`stats.group_key`); `arm_colors` gives each arm its colour.

No global matplotlib state: figures are `matplotlib.figure.Figure` objects (no pyplot, no backend),
and every figure function draws inside `style()`, a `matplotlib.rc_context`; importing this module
changes no rcParams.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import matplotlib
import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from harness.names import LAYERNORMS, level_rank
from harness.registry import RegistryView, cell_entries
from harness.report.fmt import fmt_setting, fmt_value
from harness.report.outcomes import fits_group_key
from harness.report.stats import ARM, group_key, ordered_levels
from harness.stats.survival import km_median

# One colour per registered cell (its entry's `color`, a live view of the registry) and one line style
# and marker per layernorm.
CELL_COLORS: RegistryView[str] = RegistryView(cell_entries, lambda e: e.color)
LN_STYLES = dict(zip(LAYERNORMS, ("-", "--", ":"), strict=True))
LN_MARKERS = dict(zip(LAYERNORMS, ("o", "s", "^"), strict=True))
GROUP_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# Arms not named after a cell take these (tab10 without the cells' three), in the config's order.
ARM_COLORS = ("#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
_arm_color: dict[str, str] = {}  # set by `arm_colors` for the figures of one report
CHANCE_COLOR = "0.45"
FAIL_MARKER = "X"

# The report's look (sizes in points, dpi in pixels per inch), applied only inside `style()`.
STYLE = {
    "figure.dpi": 100, "savefig.dpi": 200, "font.size": 9.5, "axes.titlesize": 10.5,
    "axes.labelsize": 9.5, "legend.fontsize": 9, "axes.grid": True, "grid.alpha": 0.3,
    "svg.fonttype": "none",
}
# How an axis names a factor it is drawn against.
AXIS_LABELS = {"pad_size": "pad_size (tokens per text)", "lag": "lag (padding steps before the read-out)",
               "lr": "learning rate (Adam)"}

F = TypeVar("F", bound=Callable[..., Any])


# ----------------------------------------------------------------------------- style helpers

def style() -> AbstractContextManager:
    """The report's matplotlib settings (`STYLE`) for the duration of a block: draw and save inside it."""
    return matplotlib.rc_context(STYLE)


def styled(fn: F) -> F:
    """Run a figure function inside `style()`, so its text and grid take the report's look."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


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


def series_label(cell: object, ln: object, cells: Sequence = (), lns: Sequence = ()) -> str:
    """A line's legend label, naming only what varies among `cells` (or arms) and `lns`: 'lstm, LN
    output', 'lstm', 'LN output'; the cell (or arm) alone when neither varies."""
    parts = [str(cell)] * (len(cells) > 1) + [f"LN {ln}"] * (len(lns) > 1)
    return ", ".join(parts) or str(cell)


def _grid(nrows: int, ncols: int, *, panel: tuple[float, float] = (4.2, 3.2), sharex: bool | str = False,
          sharey: bool | str = False, extra_h: float = 0.9, max_w: float = 15.0) -> tuple[Figure, np.ndarray]:
    """A figure of nrows × ncols panels, each about `panel` inches (w, h), at most `max_w` inches wide."""
    w = max(6.4, min(max_w, panel[0] * ncols + 0.4))
    h = panel[1] * nrows + extra_h
    fig = Figure(figsize=(w, h), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    return fig, axes


def _legend_below(fig: Figure, handles: list, ncol: int | None = None) -> None:
    """A frameless legend under the panels, as many columns as the figure's width holds."""
    if not handles:
        return
    widest = max(0.064 * len(h.get_label()) + 0.5 for h in handles)  # inches per entry
    fits = max(1, int(fig.get_figwidth() / widest))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), ncol or 6, fits),
               frameon=False)


def _style_handles(cells: Sequence, lns: Sequence, *, marker: bool = True) -> list:
    """Legend handles: one line per cell × layernorm actually shown, labelled by what varies."""
    return [Line2D([], [], color=cell_color(c), linestyle=ln_style(ln), marker=ln_marker(ln) if marker else None,
                   markersize=5, label=series_label(c, ln, cells, lns)) for c in cells for ln in lns]


def _ln_handles(lns: Sequence) -> list:
    """One grey line per layernorm, only when more than one is shown (a constant needs no legend)."""
    if len(lns) < 2:
        return []
    return [Line2D([], [], color="0.25", linestyle=ln_style(ln), label=f"layernorm {ln}") for ln in lns]


def _factor_axis(ax: Axes, values: Sequence, key: str) -> None:
    """Ticks at the values tested of `key` (pad_size, lag, lr, …): log2 for pad sizes spanning 4× or
    more, log(1 + D) for lags from 0 spanning 8 or more, log10 for learning rates."""
    vals = sorted({float(v) for v in values if pd.notna(v)})
    if not vals:
        return
    lo, hi = vals[0], vals[-1]
    if key == "lr" and lo > 0 and len(vals) > 1:
        ax.set_xscale("log")
    elif lo > 0 and len(vals) > 1 and hi / lo >= 4:
        ax.set_xscale("log", base=2)
    elif lo >= 0 and hi >= 8 and len(vals) > 1:
        ax.set_xscale("function", functions=(_log1p_safe, _expm1_safe))
    ax.set_xticks(vals, [fmt_value(int(v) if v.is_integer() and key != "lr" else v) for v in vals])
    ax.minorticks_off()
    if len(vals) > 1 and ax.get_xscale() == "function":
        ax.set_xlim(*_log1p_limits(lo, hi, 0.06))


def _factor_panels(df: pd.DataFrame, keys: Sequence[str], *, wrap: int = 4
                   ) -> tuple[int, int, list[tuple[int, str, pd.DataFrame]]]:
    """Panels laid out by their factors: the first key's levels across, one row per combination of
    the other keys (one key: up to `wrap` across, then the next row). Returns (nrows, ncols, panels),
    each panel (flat index into the nrows × ncols grid, title, its rows of `df`); no keys or no rows:
    one untitled panel of everything."""
    keys = [k for k in keys if k in df.columns]
    if not keys or df.empty:
        return 1, 1, [(0, "", df)]
    across = ordered_levels(df[keys[0]])
    if len(keys) == 1:
        ncols = min(len(across), wrap)
        panels = [(i, fmt_setting(keys[0], v), df[df[keys[0]] == v]) for i, v in enumerate(across)]
        return math.ceil(len(across) / ncols), ncols, panels
    down = sorted({tuple(r) for r in df[keys[1:]].itertuples(index=False)},
                  key=lambda t: tuple(_level_sort(v, df[k]) for v, k in zip(t, keys[1:])))
    panels = []
    for r, combo in enumerate(down):
        for c, v in enumerate(across):
            mask = df[keys[0]] == v
            for k, w in zip(keys[1:], combo):
                mask &= df[k] == w
            if mask.any():
                title = ", ".join(fmt_setting(k, x) for k, x in zip(keys, (v, *combo)))
                panels.append((r * len(across) + c, title, df[mask]))
    return len(down), len(across), panels


def _level_sort(v: object, column: pd.Series) -> int:
    """A level's position among its column's `ordered_levels`."""
    levels = ordered_levels(column)
    return levels.index(v) if v in levels else len(levels)


def _show_panels(axes: np.ndarray, used: Sequence[int]) -> None:
    """Hide every panel of `axes` whose flat index is not in `used`."""
    for i, ax in enumerate(axes.flat):
        ax.set_visible(i in set(used))


def _label_edges(axes: np.ndarray, xlabel: str, ylabel: str, *, inner_y_ticks: bool = True) -> None:
    """Axis labels on the outside only: the x label on the lowest visible panel of each column, the y
    label on the first visible panel of each row (and, with `inner_y_ticks` False, y tick labels too)."""
    vis = np.array([[ax.get_visible() for ax in row] for row in axes])
    for (r, c), ax in np.ndenumerate(axes):
        if not vis[r, c]:
            continue
        ax.set_xlabel(xlabel if not vis[r + 1:, c].any() else "")
        first = not vis[r, :c].any()
        ax.set_ylabel(ylabel if first else "")
        if not first and not inner_y_ticks:
            ax.tick_params(labelleft=False)


def _hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


# ----------------------------------------------------------------------------- 1. accuracy against a factor

@styled
def frontier(summary: pd.DataFrame, panel_keys: Sequence[str] = (), chance: float | None = None,
             *, x: str = "pad_size"):
    """Test accuracy against `x` (the distance, pad_size or lag; or the learning rate): one line per
    cell × layernorm (mean over seeds, band: min–max over seeds — a description of the runs, not a
    confidence interval), one panel per setting of `panel_keys` (the other factors that vary, laid
    out by factor), the chance level as a grey dashed line. Runs with no test accuracy (diverged,
    failed) are drawn as ✕ on the x axis with their count, so no run disappears from the picture."""
    nrows, ncols, panels = _factor_panels(summary, panel_keys, wrap=3)
    fig, axes = _grid(nrows, ncols, panel=(4.6, 3.4), sharey=True)
    gk = group_key(summary)
    cells = ordered_levels(summary[gk]) if len(summary) else []
    lns = ordered_levels(summary["layernorm"]) if len(summary) else []
    any_fail = False
    for i, title, d in panels:
        ax = axes.flat[i]
        for k, (cell, ln) in enumerate((c, ln) for c in cells for ln in lns):
            g = d[(d[gk] == cell) & (d["layernorm"] == ln)].sort_values(x)
            if not g.empty:
                any_fail |= _accuracy_line(ax, g, x, cell, series_label(cell, ln, cells, lns), ln, k,
                                           right=d[x].max() if d[x].nunique() > 1 else None)
        if chance is not None:
            ax.axhline(chance, color=CHANCE_COLOR, linestyle=(0, (4, 3)), linewidth=1.2, label="_chance")
        _factor_axis(ax, d[x] if len(d) else [], x)
        ax.set_ylim(0, 1)
        ax.set_title(title)
    _show_panels(axes, [i for i, _, _ in panels])
    _label_edges(axes, AXIS_LABELS.get(x, x), "test accuracy (fraction correct)")
    handles = _style_handles(cells, lns)
    if chance is not None:
        handles.append(Line2D([], [], color=CHANCE_COLOR, linestyle=(0, (4, 3)), label=f"chance ({chance:.2g})"))
    if any_fail:
        handles.append(Line2D([], [], color="0.3", linestyle="none", marker=FAIL_MARKER, markersize=7,
                              label="runs that diverged/failed (no test accuracy)"))
    _legend_below(fig, handles)
    return fig, axes


def _accuracy_line(ax: Axes, g: pd.DataFrame, x: str, cell: object, label: str, ln: object, k: int,
                   right: float | None) -> bool:
    """One line of the accuracy figure: the mean with its min–max band, and a ✕ with its count on the
    axis (stacked per line `k`) where runs diverged or failed. Returns whether any did."""
    ok = g[g["acc_n"] > 0]
    color = cell_color(cell)
    ax.plot(ok[x], ok["acc_mean"], color=color, linestyle=ln_style(ln), marker=ln_marker(ln), markersize=5,
            label=label)
    band = ok[ok["acc_n"] > 1]
    if len(band):
        ax.fill_between(band[x], band["acc_min"], band["acc_max"], color=color, alpha=0.12, linewidth=0)
    bad = g[(g["diverged"] + g["failed"]) > 0]
    for _, r in bad.iterrows():
        what = ", ".join(f"{int(r[s])} {'div.' if s == 'diverged' else s}" for s in ("diverged", "failed") if r[s])
        y = 0.03 + 0.05 * k  # stacked per line, so markers of different lines never overlap
        ax.plot([r[x]], [y], linestyle="none", marker=FAIL_MARKER, color=color, markersize=7, label="_fail")
        at_right = right is not None and r[x] == right
        ax.annotate(what, (r[x], y), xytext=(-7 if at_right else 7, 0), textcoords="offset points",
                    fontsize=7.5, color=color, va="center", ha="right" if at_right else "left")
    return len(bad) > 0


# ----------------------------------------------------------------------------- 2. heatmaps

@styled
def heatmaps(summary: pd.DataFrame, row_keys: Sequence[str] = ("pad_size",), col_key: str = "lr",
             chance: float | None = None, *, ncols: int = 2):
    """Mean test accuracy over (row_keys × col_key) — the distance (and batch size, and other axes) in
    rows, the learning rate in columns — one panel per cell × layernorm, the number written in each
    cell. A cell with runs but no accuracy says how they ended (div./fail); one with no runs is
    blank."""
    d = summary.copy()
    row_keys = [k for k in row_keys if k in d.columns] or ["pad_size"]
    gk = group_key(d)
    cells = ordered_levels(d[gk]) if len(d) else []
    lns = ordered_levels(d["layernorm"]) if len(d) else []
    pairs = [(c, ln) for c in cells for ln in lns if ((d[gk] == c) & (d["layernorm"] == ln)).any()]
    n = max(len(pairs), 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    rows = sorted({tuple(r) for r in d[row_keys].itertuples(index=False)}) if len(d) else []
    cols = sorted(d[col_key].dropna().unique()) if len(d) and col_key in d.columns else []
    panel_h = max(2.2, 0.45 * len(rows) + 1.2)
    panel_w = max(3.0, 1.0 * len(cols) + 2.4)
    fig, axes = _grid(nrows, ncols, panel=(panel_w, panel_h), extra_h=0.8)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.92")
    image = None
    for ax, (cell, ln) in zip(axes.flat, pairs):
        m, text = _heat_cells(d[(d[gk] == cell) & (d["layernorm"] == ln)], row_keys, rows, col_key, cols)
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
        ax.set_xlabel(AXIS_LABELS.get(col_key, col_key))
        ax.set_title(series_label(cell, ln, cells, lns) if len(pairs) > 1 else "", color=cell_color(cell))
        ax.grid(False)
    _hide_unused(axes, len(pairs))
    if image is not None:
        cb = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
        chance_note = f"; red line: chance ({chance:.2g})" if chance is not None else ""
        cb.set_label(f"test accuracy (mean over seeds){chance_note}")
        if chance is not None:  # named in the label: a text beside the bar would sit on the label
            cb.ax.axhline(chance, color="red", linewidth=1.5)
    return fig, axes


def _heat_cells(g: pd.DataFrame, row_keys: Sequence[str], rows: list, col_key: str, cols: list
                ) -> tuple[np.ndarray, list[list[str]]]:
    """One heatmap panel's values (nan where no run has an accuracy) and texts ('0.42', '0.42\\n(1✕)',
    'div.', 'fail')."""
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
    return m, text


# ----------------------------------------------------------------------------- 3. curves

@styled
def training_curves(loss: pd.DataFrame, acc: pd.DataFrame, x: str = "step", *, target: float | None = None,
                    chance: float | None = None, row_key: str = "pad_size"):
    """Dev loss and dev accuracy against `x` (step or samples_seen): one row per `row_key` level (the
    distance), the columns [loss | accuracy] × cells side by side, layernorm settings overlaid by line
    style, the band the min–max over seeds. `loss`/`acc` are `stats.curve_bands` tables by (cell,
    layernorm, row_key)."""
    both = pd.concat([loss, acc]) if len(loss) or len(acc) else loss
    row_levels = ordered_levels(both[row_key]) if len(both) and row_key in both.columns else [None]
    gk = group_key(both)
    cells = ordered_levels(both[gk]) if len(both) else []
    lns = ordered_levels(both["layernorm"]) if len(both) else []
    ncols = 2 * max(len(cells), 1)
    fig, axes = _grid(len(row_levels), ncols, panel=(3.4, 2.6), sharex=True, sharey=False, max_w=16)
    metrics = [("dev loss", loss, "dev loss (cross-entropy, nats)"), ("dev acc", acc, "dev accuracy (fraction)")]
    for r, level in enumerate(row_levels):
        where = f", {fmt_setting(row_key, level)}" if len(row_levels) > 1 else ""
        for m, (what, table, ylabel) in enumerate(metrics):
            for c, cell in enumerate(cells):
                ax = axes[r, m * len(cells) + c]
                t = table[table[gk] == cell] if len(table) else table
                if len(t) and level is not None:
                    t = t[t[row_key] == level]
                _curve_lines(ax, t, cell, lns, x)
                if m == 1:
                    _reference_lines(ax, target, chance)
                head = f"{cell}: " if len(cells) > 1 else ""
                ax.set_title(f"{head}{what}{where}", color=cell_color(cell))
                if r == len(row_levels) - 1:
                    ax.set_xlabel("training step" if x == "step" else "training samples seen")
                if c == 0:
                    ax.set_ylabel(ylabel)
        # Share y within a metric and row: the cells side by side are compared on one scale.
        for m in range(2):
            _share_ylim(axes[r, m * len(cells):(m + 1) * len(cells)])
    handles = _ln_handles(lns)
    handles += [Patch(color=cell_color(c), alpha=0.5, label=f"{c} (band: min–max over seeds)" if len(cells) > 1
                      else "band: min–max over seeds") for c in cells]
    if target is not None:
        handles.append(Line2D([], [], color="black", linestyle=(0, (1, 2)), label=f"target dev acc {target:g}"))
    if chance is not None:
        handles.append(Line2D([], [], color=CHANCE_COLOR, linestyle=(0, (4, 3)), label=f"chance ({chance:.2g})"))
    _legend_below(fig, handles, ncol=min(len(handles), 4))
    return fig, axes


def _curve_lines(ax: Axes, t: pd.DataFrame, cell: object, lns: Sequence, x: str) -> None:
    """One cell's curve-band rows `t`: a line per layernorm, the min–max band where n > 1."""
    for ln in lns:
        g = t[t["layernorm"] == ln].sort_values(x) if len(t) else t
        if g.empty:
            continue
        color = cell_color(cell)
        ax.plot(g[x], g["mean"], color=color, linestyle=ln_style(ln), linewidth=1.6,
                label=series_label(cell, ln, [cell], lns))
        spread = g[g["n"] > 1]
        if len(spread):
            ax.fill_between(spread[x], spread["low"], spread["high"], color=color, alpha=0.15, linewidth=0)


def _reference_lines(ax: Axes, target: float | None, chance: float | None) -> None:
    """The target dev accuracy (dotted black) and chance (dashed grey), where given."""
    if target is not None:
        ax.axhline(target, color="black", linewidth=0.9, linestyle=(0, (1, 2)), label="_target")
    if chance is not None:
        ax.axhline(chance, color=CHANCE_COLOR, linewidth=1.0, linestyle=(0, (4, 3)), label="_chance")


def _share_ylim(row_axes: Sequence[Axes]) -> None:
    lo = min(a.get_ylim()[0] for a in row_axes)
    hi = max(a.get_ylim()[1] for a in row_axes)
    for a in row_axes:
        a.set_ylim(lo, hi)


# ----------------------------------------------------------------------------- 4. gradient reach

@styled
def gradient_reach(reach: pd.DataFrame, *, xlabel: str = "distance from the read-out position (tokens)",
                   layer: str = "input"):
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
                    name = ", ".join([series_label(cell, ln, cells, lns)] * (len(cells) > 1 or len(lns) > 1)
                                     + [label] * (len(layouts) > 1)) or str(cell)
                    marks |= _reach_line(ax, g, shade(cell_color(cell), i, len(layouts)), ln_style(ln), floor, name)
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())  # decades are enough; minor ticks cost draw time
            head = f"{cell}: " if len(cells) > 1 else ""
            ax.set_title(f"{head}{'at step 0 (init)' if phase == 'start' else 'at the end of training'}",
                         color=cell_color(cell))
            if r == len(phases) - 1:
                ax.set_xlabel(xlabel)
            if c == 0:
                ax.set_ylabel(f"‖∂L/∂x_t‖ at layer '{layer}'\n(geometric mean over seeds)")
    if floor is not None and marks:
        for ax in axes.flat:
            ax.set_ylim(bottom=floor)
    _legend_below(fig, _reach_handles(lns, [label for label, _ in layouts], marks), ncol=5)
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


def _reach_line(ax: Axes, g: pd.DataFrame, color: tuple, style: str, floor: float | None,
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
    handles = _ln_handles(lns)
    if len(layouts) > 1:
        handles += [Line2D([], [], color=shade("0.35", i, len(layouts)), linewidth=3, label=label)
                    for i, label in enumerate(layouts)]
    if "all" in marks:
        handles.append(Line2D([], [], color="0.3", marker="v", linestyle="none",
                              label="on the floor: 0 in every seed (below 1e-38, underflow)"))
    if "some" in marks:
        handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="none",
                              label="0 (underflow) in some seeds; the others' mean"))
    return handles


# ----------------------------------------------------------------------------- 5. weights moving

@styled
def weights_moving(table: pd.DataFrame):
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
                            label=group + (f", LN {ln}" if len(lns) > 1 else ""))
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())  # decades are enough; minor ticks cost draw time
            head = f"{cell}: " if len(cells) > 1 else ""
            ax.set_title(f"{head}{'gradient norm' if r == 0 else 'update ratio'}", color=cell_color(cell))
            if r == 1:
                ax.set_xlabel("training step")
            if c == 0:
                ax.set_ylabel(ylabel)
    handles = [Line2D([], [], color=shade("0.35", gi, len(groups)), marker=GROUP_MARKERS[gi % len(GROUP_MARKERS)],
                      linestyle="-", label=group) for gi, group in enumerate(groups)]
    _legend_below(fig, handles + _ln_handles(lns), ncol=6)
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

@styled
def convergence(table: pd.DataFrame, row_keys: Sequence[str], *, x: str = "steps", target: float | None = None,
                panel_key: str = "pad_size"):
    """Steps (or samples) to the target dev accuracy for each run: one row per configuration
    (`row_keys`), one panel per `panel_key` value (titled only when it varies). Runs that reached it
    are filled markers (colour: cell, shape: layernorm), the black bar the censored median; runs that
    did not are drawn in the grey "not reached" zone to the right of every budget — never as zero,
    never left out — and diverged runs there as ✕. `table` is a `stats.convergence_table`."""
    col = "steps_to_target" if x == "steps" else "samples_to_target"
    budget_col = "steps" if x == "steps" else "samples"
    panels = ordered_levels(table[panel_key]) if len(table) and panel_key in table.columns else [None]
    row_keys = [k for k in row_keys if k in table.columns and k != panel_key]
    rows = sorted({tuple(r) for r in table[row_keys].itertuples(index=False)}, key=_row_sort_key) \
        if len(table) else []
    budget = float(pd.to_numeric(table[budget_col], errors="coerce").max()) if len(table) else 1.0
    budget = budget if math.isfinite(budget) and budget > 0 else 1.0
    zone = (budget * 1.04, budget * 1.32)
    height = max(3.0, 0.32 * len(rows) + 1.6)
    fig, axes = _grid(1, len(panels), panel=(4.4 if row_keys else 3.4, height), sharey=True, extra_h=0.9)
    rng = np.random.default_rng(0)
    any_failed = any_diverged = False
    for ax, level in zip(axes.flat, panels):
        d = table[table[panel_key] == level] if level is not None else table
        ax.axvspan(*zone, color="0.88", zorder=0)
        ax.text(sum(zone) / 2, -0.85, "not reached", ha="center", va="center", fontsize=7.5, color="0.3")
        for i, key in enumerate(rows):
            failed, diverged = _convergence_config(ax, d, row_keys, key, i, col, zone, rng)
            any_failed |= failed
            any_diverged |= diverged
        ax.set_xlim(0, zone[1])
        ax.set_xticks([t for t in ax.get_xticks() if 0 <= t <= budget])
        ax.set_ylim(len(rows) - 0.5, -1.2)
        ax.set_yticks(range(len(rows)), [_row_label(row_keys, r) for r in rows])
        ax.set_xlabel(f"{'training steps' if x == 'steps' else 'training samples'} to reach dev acc "
                      f"{target:g}" if target is not None else f"{x} to target")
        ax.set_title(fmt_setting(panel_key, level) if level is not None and len(panels) > 1 else "")
        ax.grid(axis="y", alpha=0)
    _legend_below(fig, _convergence_handles(table, any_diverged, any_failed), ncol=4)
    return fig, axes


def _convergence_config(ax: Axes, d: pd.DataFrame, row_keys: Sequence[str], key: tuple, i: int, col: str,
                        zone: tuple[float, float], rng: np.random.Generator) -> tuple[bool, bool]:
    """Row `i` of a convergence panel: the runs of `d` whose `row_keys` equal `key`."""
    mask = np.ones(len(d), dtype=bool)
    for k, v in zip(row_keys, key):
        mask &= (d[k] == v).to_numpy()
    g = d[mask]
    if g.empty:
        return False, False
    named = dict(zip(row_keys, key))
    gk = group_key(g)
    return _convergence_row(ax, g, i, named.get(gk, g[gk].iloc[0]), named.get("layernorm", g["layernorm"].iloc[0]),
                            col, zone, rng)


def _convergence_row(ax: Axes, g: pd.DataFrame, i: int, cell: object, ln: object, col: str,
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
    lns = ordered_levels(table["layernorm"]) if len(table) else []
    handles = [Line2D([], [], color="0.3", marker=ln_marker(ln), linestyle="none",
                      label="reached" + (f", LN {ln}" if len(lns) > 1 else "")) for ln in lns]
    handles += [Line2D([], [], color="0.3", marker="o", markerfacecolor="none", linestyle="none",
                       label="not reached within its budget (censored)"),
                *([Line2D([], [], color="0.3", marker=FAIL_MARKER, linestyle="none", label="diverged")]
                  if any_diverged else []),
                *([Line2D([], [], color="0.3", marker=FAIL_MARKER, markerfacecolor="none", linestyle="none",
                          label="failed (error; not in the median)")] if any_failed else []),
                Line2D([], [], color="black", linewidth=2,
                       label="Kaplan–Meier median (each run censored at its budget)")]
    cells = ordered_levels(table[group_key(table)]) if len(table) else []
    handles += [Patch(color=cell_color(c), label=c) for c in cells] if len(cells) > 1 else []
    return handles


def _row_label(keys: Sequence[str], row: tuple) -> str:
    """'rnn lr=0.01', 'lstm-fb0 lr=0.01' (an arm names its cell), 'lstm/output' where LayerNorm is on: a
    plain label, with the LayerNorm only where it is not none."""
    named = dict(zip(keys, row))
    arm, cell, ln = (named.pop(k, None) for k in (ARM, "cell", "layernorm"))
    head = str(arm if arm is not None else cell if cell is not None else "")
    if ln is not None and str(ln) != "none":
        head = f"{head}/{ln}" if head else str(ln)
    return " ".join([head] * bool(head) + [fmt_setting(k, v) for k, v in named.items()])


def _row_sort_key(row: tuple) -> tuple:
    """Cells and layernorms in registry order, other names alphabetically, numbers ascending."""
    return tuple((level_rank(v, 9), str(v)) if isinstance(v, str) else (0, v) for v in row)


# ----------------------------------------------------------------------------- 7. confusion

@styled
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
    return fig, axes


# ----------------------------------------------------------------------------- 9. survival

@styled
def survival(curves: pd.DataFrame, censored: pd.DataFrame, panel_keys: Sequence[str] = ()):
    """Time to target as survival data: the Kaplan-Meier share of runs that have reached the target
    dev accuracy by each step (1 - S(t), a step curve), one line per cell × layernorm, one panel per
    setting of `panel_keys` (the distance across, any other factor that varies down), each panel
    with its own step axis (the runs of one panel may take 50 steps, those of another 3000); a run
    that did not reach the target is a + at its own last evaluated step (censored there). Groups
    that never reached it are named in the panel's title, not drawn over each other at 0.
    `curves`, `censored`: `outcomes.km_curves`."""
    nrows, ncols, panels = _factor_panels(curves, panel_keys)
    fig, axes = _grid(nrows, ncols, panel=(3.9, 3.0), sharey=True)
    gk = group_key(curves)
    cells = ordered_levels(curves[gk]) if len(curves) else []
    lns = ordered_levels(curves["layernorm"]) if len(curves) else []
    for i, title, d in panels:
        ax = axes.flat[i]
        never = [_survival_line(ax, d, censored, panel_keys, gk, cell, ln, cells, lns) for cell in cells for ln in lns]
        never = [n for n in never if n]
        ax.set_ylim(-0.03, 1.03)
        end = float(d["time"].max()) if len(d) else 1.0
        ax.set_xlim(0, max(end, 1.0) * 1.05)
        note = _wrap_items("never reached: ", never) if never else ""
        ax.set_title("\n".join(s for s in (title, note) if s), fontsize=9.5)
    _show_panels(axes, [i for i, _, _ in panels])
    _label_edges(axes, "training step", "share of runs that reached the target", inner_y_ticks=False)
    handles = _style_handles(cells, lns, marker=False)
    handles.append(Line2D([], [], color="0.3", marker="+", markersize=9, mew=1.5, linestyle="none",
                          label="run censored at its last evaluation (not reached)"))
    _legend_below(fig, handles, ncol=min(len(handles), 5))
    return fig, axes


def _survival_line(ax: Axes, d: pd.DataFrame, censored: pd.DataFrame, panel_keys: Sequence[str], gk: str,
                   cell: object, ln: object, cells: Sequence, lns: Sequence) -> str:
    """One group's Kaplan-Meier step curve and censored marks in a survival panel; returns
    'rnn 0/12' when none of its runs reached the target (its flat line is then drawn faint), else ''."""
    g = d[(d[gk] == cell) & (d["layernorm"] == ln)]
    if g.empty:
        return ""
    label = series_label(cell, ln, cells, lns)
    style = dict(color=cell_color(cell), linestyle=ln_style(ln))
    never = bool((g["share"] == 0).all())
    if never:  # flat lines at 0 would hide each other: named in the title instead
        ax.plot(g["time"], g["share"], linewidth=1.0, alpha=0.5, label="_never", **style)
    else:
        ax.step(g["time"], g["share"], where="post", linewidth=1.7, label=label, **style)
    c = _rows_like(censored, g.iloc[0], [*panel_keys, gk, "layernorm"])
    ax.plot(c["time"], c["share"], linestyle="none", marker="+", markersize=9, mew=1.5, color=style["color"],
            label="_censored")
    return f"{label} 0/{int(g['n'].iloc[0])}" if never else ""


def _wrap_items(head: str, items: Sequence[str], width: int = 48) -> str:
    """'head a; b' on lines of at most about `width` characters, never breaking inside an item."""
    lines = [head.rstrip()]
    for k, item in enumerate(items):
        piece = item + (";" if k < len(items) - 1 else "")
        if len(lines[-1]) + 1 + len(piece) > width and lines[-1] != head.rstrip():
            lines.append(piece)
        else:
            lines[-1] += " " + piece
    return "\n".join(lines)


def _rows_like(table: pd.DataFrame, row: pd.Series, keys: Sequence[str]) -> pd.DataFrame:
    """The rows of `table` that agree with `row` on every key of `keys` both have."""
    mask = np.ones(len(table), dtype=bool)
    for k in keys:
        if k in table.columns and k in row.index:
            mask &= (table[k] == row[k]).to_numpy()
    return table[mask]


# ----------------------------------------------------------------------------- 10. frontier fit

@styled
def frontier_fit(fits: Sequence, *, distance: str = "pad_size"):
    """Success rate against distance with the fitted frontier: per group (`outcomes.FrontierFit`),
    the share of runs that reached the target at each distance with its Wilson 95% interval, the
    fitted logistic curve in log(1 + D) where the fit is finite, and D50 on the 0.5 line — a dot
    with its bootstrap interval, or, for perfectly separated outcomes, the bracket between the last
    distance where every run learned and the first where none did (a wide pale bar). Colour: cell;
    line style: layernorm; one panel per setting of any other varied factor (laid out by factor)."""
    gk = fits_group_key(fits)
    others = [k for k in (fits[0].group if fits else {}) if k not in (gk, "layernorm")]
    index = pd.DataFrame([{**{k: f.group.get(k) for k in others}, "_fit": i} for i, f in enumerate(fits)])
    nrows, ncols, panels = _factor_panels(index, others, wrap=3)
    fig, axes = _grid(nrows, ncols, panel=(4.6, 3.4), sharey=True)
    dists = sorted({float(d) for f in fits for d in f.points[distance]}) or [0.0, 1.0]
    span = max(math.log1p(dists[-1]) - math.log1p(dists[0]), 0.5)
    xlim = _log1p_limits(dists[0], dists[-1], 0.12)
    cells = ordered_levels(pd.Series([f.group.get(gk) for f in fits])) if fits else []
    lns = ordered_levels(pd.Series([f.group.get("layernorm") for f in fits])) if fits else []
    for i, title, rows in panels:
        ax = axes.flat[i]
        members = [fits[int(j)] for j in rows["_fit"]] if "_fit" in rows.columns else []
        for j, f in enumerate(members):
            lane = j - (len(members) - 1) / 2
            _frontier_group(ax, f, distance, series_label(f.group.get(gk), f.group.get("layernorm"), cells, lns),
                            shift=0.025 * span * lane, lane=0.012 * lane, xlim=xlim)
        ax.axhline(0.5, color=CHANCE_COLOR, linewidth=0.8, linestyle=(0, (2, 2)), label="_half")
        ax.set_xscale("function", functions=(_log1p_safe, _expm1_safe))
        ax.set_xlim(*xlim)
        ax.set_xticks(dists, [fmt_value(int(d) if float(d).is_integer() else d) for d in dists])
        ax.minorticks_off()
        ax.set_ylim(-0.04, 1.04)
        ax.set_title(title)
    _show_panels(axes, [i for i, _, _ in panels])
    _label_edges(axes, f"{distance} (log(1 + D) scale)", "share of runs that reached the target")
    handles = _style_handles(cells, lns) + [
        Line2D([], [], color="0.3", marker="D", linestyle="none", label="D50 with its bootstrap interval"),
        Line2D([], [], color="0.3", linewidth=5, alpha=0.35, label="D50 bracket (outcomes split perfectly)")]
    _legend_below(fig, handles, ncol=4)
    return fig, axes


def _log1p_safe(x: np.ndarray) -> np.ndarray:
    """sign(x) log(1 + |x|): the log(1 + D) scale, continued below 0 so points at D = 0 are not cut."""
    return np.sign(x) * np.log1p(np.abs(x))


def _expm1_safe(y: np.ndarray) -> np.ndarray:
    """The inverse of `_log1p_safe`."""
    return np.sign(y) * np.expm1(np.abs(y))


def _log1p_limits(lo: float, hi: float, margin: float) -> tuple[float, float]:
    """Axis limits on the log(1 + D) scale for distances lo…hi, `margin` of the span (at least 0.5)
    beyond each end."""
    a, b = math.log1p(lo), math.log1p(hi)
    pad = margin * max(b - a, 0.5)
    return float(_expm1_safe(np.array(a - pad))), math.expm1(b + pad)


def _frontier_group(ax: Axes, f, distance: str, label: str, *, shift: float, lane: float,
                    xlim: tuple[float, float]) -> None:
    """One group of the frontier figure: rates with Wilson bars (shifted by `shift` on the log(1 + D)
    scale so groups do not hide each other), the fit, and D50 (its bar `lane` above 0.5)."""
    cell, ln = f.group.get(fits_group_key([f])), f.group.get("layernorm")
    color, pts = cell_color(cell), f.points
    x = _expm1_safe(_log1p_safe(pts[distance].to_numpy(float)) + shift)
    y = pts["rate"].to_numpy(float)
    err = np.vstack([y - pts["low"].to_numpy(float), pts["high"].to_numpy(float) - y])
    ax.errorbar(x, y, yerr=err, color=color, linestyle="none", marker=ln_marker(ln), markersize=5,
                capsize=2.5, elinewidth=1, label="_rates")
    fit = f.fit
    if fit is None:
        return
    grid_d = np.expm1(np.linspace(math.log1p(max(xlim[0], 0.0)), math.log1p(xlim[1]), 200))
    p = fit_curve_values(fit, grid_d)
    if p is not None:
        ax.plot(grid_d, p, color=color, linestyle=ln_style(ln), linewidth=1.6, label=label)
    else:
        ax.plot(x, y, color=color, linestyle=ln_style(ln), linewidth=1.0, alpha=0.6, label=label)
    lo = fit.low if fit.low is not None else xlim[0]
    hi = fit.high if fit.high is not None else xlim[1]
    y50 = 0.5 + lane
    if fit.separated and getattr(fit, "perfect", True):
        ax.plot([lo, hi], [y50, y50], color=color, linewidth=5, alpha=0.35, solid_capstyle="butt", label="_bracket")
    elif fit.separated:  # mixed at one distance: a range the data leave, not a bracket and not an estimate
        ax.plot([lo, hi], [y50, y50], color=color, linewidth=1.2, linestyle=":", label="_range")
    elif fit.d50 is not None:
        ax.plot([lo, hi], [y50, y50], color=color, linewidth=1.6, label="_d50_ci")
        ax.plot([fit.d50], [y50], color=color, marker="D", markersize=6, linestyle="none", label="_d50")


def fit_curve_values(fit, distances: np.ndarray) -> np.ndarray | None:
    """The fitted P(reach) at `distances`: expit(b0 + b1 log(1 + D)); None without coefficients."""
    if fit.coefficients is None:
        return None
    b0, b1 = fit.coefficients
    return 1.0 / (1.0 + np.exp(-(b0 + b1 * np.log1p(distances))))


# ----------------------------------------------------------------------------- 11. frontier at every target

@styled
def frontier_targets(d50s: pd.DataFrame, group: str, *, distance: str = "lag", by: Sequence[str] = (),
                     distances: Sequence[float] = (), headline_target: float | None = None):
    """D50 against the target dev accuracy (`harness.report.targets.d50_at_targets`'s d50 table), one
    line per group (colour): a fitted D50 as a dot with its bootstrap interval (a thin vertical bar), a
    bracket (or the range a split with one mixed distance leaves) as a pale vertical span without a
    point (the line joins fitted D50s only), ▲ at the top where every run reached
    the target at every distance (D50 beyond the longest), ▼ at the bottom where none did (hollow: a
    fitted D50 outside the distances tested, extrapolated); the dashed
    line is the headline's target. y on the log(1 + D) scale, ticks at the `distances` tested; one panel
    per level of `by`. The legend names only what is drawn."""
    by = [k for k in by if k in d50s.columns]
    nrows, ncols, panels = _factor_panels(d50s, by, wrap=3)
    fig, axes = _grid(nrows, ncols, panel=(4.8, 3.4), sharey=True)
    lo_d = float(d50s["shortest"].min()) if len(d50s) else 0.0
    hi_d = float(d50s["longest"].max()) if len(d50s) else 1.0
    ylim = _log1p_limits(lo_d, hi_d, 0.08)
    groups = ordered_levels(d50s[group]) if len(d50s) else []
    drawn: set[str] = set()
    for i, title, rows in panels:
        ax = axes.flat[i]
        for name in groups:
            g = rows[rows[group] == name].sort_values("target")
            if not g.empty:
                _target_line(ax, g, cell_color(name), ylim, drawn)
        if headline_target is not None:
            ax.axvline(headline_target, color="0.25", linestyle="--", linewidth=1.0, label="_headline")
            drawn.add("headline")
        ax.set_yscale("function", functions=(_log1p_safe, _expm1_safe))
        ax.set_ylim(*ylim)
        ticks = sorted({float(x) for x in (lo_d, hi_d, *distances)})
        ax.set_yticks(ticks, [fmt_value(int(t) if t.is_integer() else t) for t in ticks])
        ax.minorticks_off()
        ax.set_title(title)
    _show_panels(axes, [i for i, _, _ in panels])
    _label_edges(axes, "target dev accuracy", f"D50 ({distance}, log(1 + D) scale)")
    handles = [Line2D([], [], color=cell_color(c), marker="o", markersize=4, label=str(c)) for c in groups]
    extra = {"interval": Line2D([], [], color="0.3", linewidth=1.0, label="D50 bootstrap interval (95%)"),
             "bracket": Line2D([], [], color="0.3", linewidth=6, alpha=0.3,
                               label="D50 range, no finite fit (outcomes separate)"),
             "beyond": Line2D([], [], color="0.3", marker="^", linestyle="none",
                              label="every run reached it: D50 beyond the longest distance"),
             "below": Line2D([], [], color="0.3", marker="v", linestyle="none",
                             label="no run reached it: D50 below the shortest distance"),
             "fit_beyond": Line2D([], [], color="0.3", marker="^", markerfacecolor="none", linestyle="none",
                                  label="fitted D50 beyond the longest distance (extrapolated)"),
             "fit_below": Line2D([], [], color="0.3", marker="v", markerfacecolor="none", linestyle="none",
                                 label="fitted D50 below the shortest distance (extrapolated)"),
             "headline": Line2D([], [], color="0.25", linestyle="--", label=f"the headline's target {headline_target:g}"
                                if headline_target is not None else "")}
    _legend_below(fig, handles + [h for k, h in extra.items() if k in drawn], ncol=3)
    return fig, axes


def _target_line(ax: Axes, g: pd.DataFrame, color: str, ylim: tuple[float, float], drawn: set[str]) -> None:
    """One group of `frontier_targets`: its D50s joined by a line (broken where there is none), intervals,
    brackets and the ▲ / ▼ marks; adds to `drawn` the kinds of mark it drew."""
    x = g["target"].to_numpy(float)
    width = 0.35 * float(np.median(np.diff(x))) if len(x) > 1 else 0.005   # the grid's spacing, not the
    # gap to the headline's target, which can sit next to a grid point
    y = np.full(len(g), np.nan)
    for j, (_, r) in enumerate(g.iterrows()):
        low = ylim[0] if r["low"] is None or pd.isna(r["low"]) else float(r["low"])
        high = ylim[1] if r["high"] is None or pd.isna(r["high"]) else float(r["high"])
        fit = r["status"] == "fit" and r["d50"] is not None and pd.notna(r["d50"])
        if fit and float(r["shortest"]) <= float(r["d50"]) <= float(r["longest"]):
            y[j] = float(r["d50"])
            ax.plot([x[j], x[j]], [low, high], color=color, linewidth=1.0, alpha=0.8, label="_interval")
            drawn.add("interval")
        elif fit:   # the fitted crossing lies outside the distances tested: marked as beyond / below them
            above = float(r["d50"]) > float(r["longest"])
            ax.plot([x[j]], [float(r["longest"] if above else r["shortest"])], color=color,
                    marker="^" if above else "v", markerfacecolor="none", linestyle="none", label="_outside")
            drawn.add("fit_beyond" if above else "fit_below")
        elif r["status"] == "separated":
            ax.fill_between([x[j] - width, x[j] + width], low, high, color=color, alpha=0.25, linewidth=0,
                            label="_bracket")   # a range, not an estimate: no point, the line breaks here
            drawn.add("bracket")
        elif r["status"] == "all_reached":
            ax.plot([x[j]], [float(r["longest"])], color=color, marker="^", linestyle="none", label="_beyond")
            drawn.add("beyond")
        elif r["status"] == "none_reached":
            ax.plot([x[j]], [float(r["shortest"])], color=color, marker="v", linestyle="none", label="_below")
            drawn.add("below")
    ax.plot(x, y, color=color, marker="o", markersize=3.5, linewidth=1.4, label="_d50")
