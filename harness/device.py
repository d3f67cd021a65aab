"""The device a worker trains on: resolving `--device`, and the settings a device cannot run.

Imports torch; the planner (`harness.plan.check_devices`, also `--dry-run`) imports this module only when
the device or the config needs a look at CUDA, the runner and the trainers always.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from harness.config import ConfigError, ExperimentConfig

__all__ = ["check_cuda_graph", "resolve_device"]


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' → CUDA when present, else CPU; 'cuda' / 'cuda:K' / 'cpu' as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: not a device; use auto, cpu, cuda or cuda:K") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: torch sees no CUDA device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: torch sees only {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_cuda_graph(cfg: ExperimentConfig, devices: Sequence[torch.device]) -> None:
    """Raise ConfigError when `cfg` asks for train.cuda_graph (the key, a value of its grid axis or an arm's)
    and one of the resolved `devices` is not a CUDA device."""
    wanted = True in cfg.setting_values("train.cuda_graph")
    other = [str(d) for d in devices if d.type != "cuda"]
    if wanted and other:
        raise ConfigError(f"config key 'train.cuda_graph': true needs a CUDA device (it captures the fused "
                          f"training step in a CUDA graph), but the device is {', '.join(other)}; run on a GPU "
                          f"(--device cuda) or set train.cuda_graph: false")
