"""How the report writes numbers and settings, in one place (tables, sentences and figure labels), and
its markdown tables (`md_table`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd


def fmt_value(v: object) -> str:
    """A setting's value: floats in the shortest form (0.001 -> '0.001', 8.0 -> '8'), else str."""
    if isinstance(v, (float, np.floating)):
        return f"{v:g}"
    return str(v)


def fmt_setting(key: str, value: object) -> str:
    """'lr=0.001'."""
    return f"{key}={fmt_value(value)}"


def pct(x: float | None, digits: int = 1) -> str:
    """An accuracy as a percentage: 0.1234 -> '12.3%'; None or nan -> 'n/a'."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}%"


def points(x: float | None, digits: int = 1) -> str:
    """A difference of accuracies in percentage points, signed: 0.05 -> '+5.0'."""
    if x is None or math.isnan(x):
        return "n/a"
    return f"{100 * x:+.{digits}f}"


def interval(low: float, high: float, fmt: Callable[[float], str] = pct) -> str:
    """'[low, high]' with each end written by `fmt`; 'no interval' when either end is nan."""
    if math.isnan(low) or math.isnan(high):
        return "no interval"
    return f"[{fmt(low)}, {fmt(high)}]"


def md_table(df: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (a "|" in a cell escaped); "_(no rows)_" when it is empty."""
    if df.empty:
        return "_(no rows)_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"
