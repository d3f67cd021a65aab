"""Helpers shared by the `harness.stats` modules: the default confidence, argument checks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95

RngLike = np.random.Generator | int | None
ArrayLike = Sequence[float] | np.ndarray


def check_confidence(confidence: float) -> float:
    """`confidence` itself, or ValueError unless it lies strictly between 0 and 1."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return confidence


def as_rng(seed: RngLike) -> np.random.Generator:
    """`seed` when it is a Generator, else a new Generator seeded with it."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def vector(values: ArrayLike, name: str) -> np.ndarray:
    """`values` as a float64 array of shape (n,); ValueError for any other shape."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {x.shape}")
    return x
