"""One dtype rule shared by the trainers: losses and norms are computed in at least float32."""

from __future__ import annotations

import torch
from torch import Tensor


def upcast(x: Tensor) -> Tensor:
    """x in float32 when it is a half type (bf16 autocast output), else unchanged: a float64 model
    (the parity tests' reference) keeps float64 all the way through."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x
