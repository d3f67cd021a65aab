"""Ablation benchmark harness for recurrent networks: config → trials → training → records → report."""

from __future__ import annotations

from typing import Any

__all__ = ["__version__", "load_model"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`harness.load_model` (harness.predict), imported on first use: `import harness` stays torch-free."""
    if name == "load_model":
        from harness.predict import load_model  # torch: `import harness` stays torch-free

        return load_model
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
