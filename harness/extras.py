"""Optional libraries (trackers, the cluster launcher): imported only when a command needs them.

A missing library is a usage error (exit 2) that names the extra to install, e.g.
`pip install 'rnn-ablation-harness[mlflow]'`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from harness.config import ConfigError
from harness.shipped import DISTRIBUTION  # the name the extras are declared under in pyproject.toml

# extra name -> the modules it provides
EXTRAS: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard",),
    "mlflow": ("mlflow",),
    "wandb": ("wandb",),
    "slurm": ("submitit",),
    "postgres": ("psycopg",),
}


def install_hint(extra: str) -> str:
    """The pip command that installs an extra, e.g. pip install 'rnn-ablation-harness[wandb]'."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or raise ConfigError naming the extra that provides it.
    `purpose` says what needs it (e.g. "harness export --to mlflow")."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{purpose} needs the '{module}' library, which is not installed ({e}); "
                          f"install it with: {install_hint(extra)}") from e
