"""The saved-model format: what `train.save_model` writes as DIR/trials/<trial_id>/model.pt.

One `torch.save`d dict of plain data (tensors, dicts, lists, strings, numbers, None), loadable with
`torch.load(path, weights_only=True)` (`harness.files.load_tensors`): nothing in it runs code.

    format        "harness-model"
    version       1
    state_dict    {parameter name: tensor}: the weights (CPU tensors, in the dtype they were trained in)
    weights       "best" (the lowest-dev-loss weights, those test_acc was measured with) or "last"
    model         the model settings (`harness.config.ModelConfig` as a dict: cell, layernorm,
                  embed_dim, hidden_size, num_layers, bidirectional, dropout, readout, init, forget_bias);
                  embed_dim is the embedding table's width (a pretrained table's, where one was used)
    vocab         {token: index}, the PAD and UNK tokens included
    pad_token     "<PAD>";  unk_token "<UNK>"
    class_names   [name of class 0, name of class 1, …]: the classifier's outputs in order
    tokenizer     "char" or "word" (harness.data.thucnews.TOKENIZERS)
    pad_size      tokens a text is cut to
    lag           PAD positions after the text (null: the text from position 0, PAD after it)
    trial_id, data_id

To use one: `harness.load_model(DIR, trial_id)` (harness.predict) or `harness predict DIR --trial ID TEXT`.
A token outside the vocabulary is read as the UNK token. Files written before this format (a bare
state_dict) are still recognised as weights (`is_bare_state_dict`) but carry nothing to rebuild the model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.data.thucnews import PAD, UNK
from harness.files import NotLoadable, load_tensors

if TYPE_CHECKING:
    from torch import Tensor

    from harness.config import TrialSpec
    from harness.data import Dataset

__all__ = ["FORMAT", "VERSION", "bundle", "read", "is_bare_state_dict"]

FORMAT = "harness-model"
VERSION = 1
KEYS = ("format", "version", "state_dict", "weights", "model", "vocab", "pad_token", "unk_token", "class_names",
        "tokenizer", "pad_size", "lag", "trial_id", "data_id")


def bundle(state: dict[str, Tensor], spec: TrialSpec, data: Dataset, weights: str) -> dict[str, Any]:
    """The saved-model dict of a trial's CPU state_dict `state` (`weights`: "best" or "last")."""
    if data.vocab is None:
        raise ValueError(f"trial {spec.trial_id}: the data set carries no vocabulary; its weights cannot be saved")
    model = dataclasses.asdict(spec.model)
    emb = state.get("embedding.weight")
    if emb is not None:  # a pretrained table sets the width, whatever model.embed_dim says
        model["embed_dim"] = int(emb.shape[1])
    return {"format": FORMAT, "version": VERSION, "state_dict": state, "weights": weights, "model": model,
            "vocab": dict(data.vocab), "pad_token": PAD, "unk_token": UNK, "class_names": list(data.class_names),
            "tokenizer": data.tokenizer, "pad_size": int(data.pad_size), "lag": data.lag,
            "trial_id": spec.trial_id, "data_id": data.data_id}


def is_bare_state_dict(obj: Any) -> bool:
    """A mapping of parameter names to tensors (what model.pt held before this format)."""
    import torch  # torch: only here, so reading the format's fields needs no torch

    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items())


def read(path: str | Path) -> dict[str, Any]:
    """A saved model's dict, checked; ValueError (one line, naming the file) when it is not one."""
    path = Path(path)
    try:
        obj = load_tensors(path, map_location="cpu")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except NotLoadable as e:
        raise ValueError(str(e)) from None
    if is_bare_state_dict(obj):
        raise ValueError(f"{path}: weights only (written before saved models kept their settings); "
                         f"rerun the trial with train.save_model to use it")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path}: not a harness saved model (no format '{FORMAT}')")
    if obj.get("version") != VERSION:
        raise ValueError(f"{path}: saved-model version {obj.get('version')!r}; this harness reads version {VERSION}")
    missing = [k for k in KEYS if k not in obj]
    if missing or not is_bare_state_dict(obj["state_dict"]):
        raise ValueError(f"{path}: a damaged saved model (missing: {', '.join(missing) or 'state_dict tensors'})")
    return obj
