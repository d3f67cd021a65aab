"""Shared fixtures: a tiny experiment and one finished smoke run per test session."""

import signal
from pathlib import Path

import pytest
import torch

from harness.config import config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)


def sigint_default() -> None:
    """preexec_fn for a subprocess a test interrupts with SIGINT: a process started in the background
    by a non-interactive shell (`.ci/run … &`) inherits SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler, so the interrupt would be lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def tiny_raw(name: str = "tiny", grid: dict | None = None) -> dict:
    """A config that trains in well under a second per trial."""
    return {
        "name": name,
        "data": {"kind": "synthetic", "synth": {"n_train": 256, "n_dev": 64, "n_test": 64, "seed": 3}},
        "model": {"embed_dim": 8, "hidden_size": 8, "num_layers": 2, "dropout": 0.1},
        "train": {"epochs": 1, "eval_every": 2, "probe_size": 16, "probe_points": 1, "target_dev_acc": 0.0},
        "grid": grid or {"cell": ["rnn", "lstm"], "pad_size": [12], "seed": [0]},
    }


@pytest.fixture
def tiny_cfg():
    return config_from_dict(tiny_raw())


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """configs/smoke.yaml run once into a temporary results directory."""
    from harness import runner

    out = tmp_path_factory.mktemp("smoke")
    counts = runner.run(load_config(ROOT / "configs" / "smoke.yaml"), out, workers=1, device="cpu",
                        threads=1, progress=False)
    assert counts["missing"] == 0
    return out


def tiny_specs(tmp_path: Path, grid: dict, **train) -> tuple[list, object]:
    """The TrialSpecs of a tiny_raw grid (train settings overridden) and its encoded data set
    (encoded at the first spec's pad_size, cached under tmp_path/cache)."""
    from harness import data as data_mod
    from harness.config import expand_grid

    raw = tiny_raw(grid=grid)
    raw["train"].update(train)
    cfg = config_from_dict(raw)
    cache = tmp_path / "cache"
    _, data_id = data_mod.prepare(cfg.data, cache)
    out = expand_grid(cfg, data_id)
    return out, data_mod.load(out[0].data, cache)



# Fused-vs-plain parity tests run in float64. In float32 the two paths' different matmul batching
# rounds differently, and LayerNorm of near-constant pre-activations amplifies that to 3e-3 relative
# in a gradient norm on one CPU and more on another (the kernel set decides). In float64 the same
# amplification of eps = 2.2e-16 stays below 1e-10 (measured worst: 3.5e-14), so PARITY_RTOL = 1e-9
# holds on any CPU and kernel set, while a real defect (a wrong mask, a skipped or extra step, a
# wrong seed) moves values by 1e-4 or more.
PARITY_RTOL = 1e-9


@pytest.fixture
def float64():
    """Default dtype float64 for the test (models, inputs and Adam state built in it), then restored."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
