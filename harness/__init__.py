"""Ablation benchmark harness for recurrent networks: config → trials → training → records → report."""

__all__ = ["__version__"]
__version__ = "0.1.0"
