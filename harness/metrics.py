"""Metrics as pure functions over arrays (NumPy in, numbers or arrays out). No I/O, no torch."""

from __future__ import annotations

import math

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts; row = true label, column = predicted label."""
    idx = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def majority_share(y_true: np.ndarray) -> float:
    """The share (fraction) of the most common label in `y_true`: the accuracy of always predicting
    that class, the chance level a classifier must beat. nan for no labels."""
    y = np.asarray(y_true, dtype=np.int64)
    if y.size == 0:
        return math.nan
    return float(np.bincount(y).max() / y.size)


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean over classes of F1 = 2·TP / (2·TP + FP + FN); a class with no true and no
    predicted examples counts as F1 = 0 (as scikit-learn's zero_division=0)."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    denom = 2 * tp + (cm.sum(0) - tp) + (cm.sum(1) - tp)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def vanishing_ratio(grad_norms: np.ndarray, read_pos: np.ndarray, source_pos: int | np.ndarray = 0) -> float:
    """log10( mean_b ‖∂L/∂x_{b,s_b}‖ / mean_b ‖∂L/∂x_{b,r_b}‖ ).

    grad_norms: (B, T) per-example gradient norm at each input position; read_pos: (B,) the position
    each example's classifier reads; source_pos: the position whose gradient is compared with it,
    one for all or (B,): 0 (the first position of the sequence) in the seed's layout; with
    `data.lag` D the trainer passes pad_size-1, the texts' last token, so that the ratio spans
    exactly the D steps to a `last` read-out. About 0 when gradient reaches the source position
    undiminished, very negative when it vanishes on the way; -inf when nothing reaches it, nan when
    the read position itself gets no gradient.
    """
    g = np.asarray(grad_norms, dtype=np.float64)
    rows = np.arange(g.shape[0])
    first = g[rows, np.broadcast_to(np.asarray(source_pos), rows.shape)].mean()
    read = g[rows, np.asarray(read_pos)].mean()
    if read <= 0:
        return math.nan
    if first <= 0:
        return -math.inf
    return float(math.log10(first / read))


def pad_fraction(lengths: np.ndarray, seq_len: int, starts: np.ndarray | None = None) -> np.ndarray:
    """(T,) share of the examples whose position t (0 … seq_len-1) is padding: outside the text's
    span [start, start + length) (starts None: all 0, so padding is t >= length)."""
    positions = np.arange(seq_len)[None, :]
    lengths = np.asarray(lengths)[:, None]
    if starts is None:
        return (positions >= lengths).mean(0)
    s = np.asarray(starts)[:, None]
    return ((positions < s) | (positions >= s + lengths)).mean(0)


def log_spaced_steps(total: int, n: int) -> list[int]:
    """Up to n distinct integer steps spaced evenly in log between 1 and total (exclusive of 0
    and of total); the probe also runs at step 0 and at the end."""
    if total <= 2 or n <= 0:
        return []
    points = np.unique(np.round(np.geomspace(1, total, n + 2)[1:-1]).astype(int))
    return [int(p) for p in points if 0 < p < total]


def update_ratio(delta_sq: float, param_sq: float) -> float:
    """‖Δθ‖ / ‖θ‖ given the squared norms; nan for a group whose weights are all zero."""
    return math.sqrt(delta_sq) / math.sqrt(param_sq) if param_sq > 0 else math.nan
