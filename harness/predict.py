"""Use a trial's saved model: `load_model(DIR, trial_id)` and `harness predict`.

A trial run with `train.save_model: best | last` keeps DIR/trials/<trial_id>/model.pt in
`harness.model_file`'s format: the weights, the model settings, the vocabulary, the class names,
pad_size, lag and tokenizer. This module rebuilds the model from that file alone (no data set, no
config, no other file of the results folder) and classifies texts as training encoded them: cut to
pad_size tokens, a token outside the vocabulary read as UNK, laid out with the trial's lag.

    model = harness.load_model("results/first", "a1b2c3d4e5")
    model.predict(["some title"])   # [("finance", 0.93)]
    model.module                    # the torch.nn.Module (eval mode, CPU unless device= says otherwise)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import model_file, records
from harness.config import ModelConfig
from harness.data import encode_texts, lag_layout
from harness.data.thucnews import TOKENIZERS
from harness.models import build_model
from harness.records import MODEL_FILE, trial_dir

__all__ = ["LoadedModel", "load_model", "load_file", "best_trial", "saved_trials", "choose_trial"]

BATCH = 256  # texts per forward pass


@dataclass
class LoadedModel:
    """A saved model, ready to classify. `saved`: the file's dict (harness.model_file) without the weights."""

    module: torch.nn.Module
    class_names: list[str]
    vocab: dict[str, int]
    tokenizer: str
    pad_size: int
    lag: int | None
    trial_id: str
    saved: dict[str, Any]
    device: torch.device

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Tokens (N, T), lengths (N,) and, with a lag, starts (N,): as the trainer encoded its data.
        ValueError on an empty text (one with no token)."""
        tokenize = TOKENIZERS[self.tokenizer]
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text or not tokenize(text):
                raise ValueError(f"text {i + 1} is empty: nothing to classify")
        tokens, lengths = encode_texts(list(texts), self.vocab, self.tokenizer, self.pad_size)
        starts = None
        if self.lag is not None:
            tokens, starts = lag_layout(tokens, lengths, self.lag, self.vocab[self.saved["pad_token"]])
        def as_t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

        return as_t(tokens), as_t(lengths), None if starts is None else as_t(starts)

    @torch.no_grad()
    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """(N, classes) softmax probabilities, float32 on the CPU."""
        tokens, lengths, starts = self.encode(texts)
        out = []
        for i in range(0, len(texts), BATCH):
            sl = slice(i, i + BATCH)
            logits = (self.module(tokens[sl], lengths[sl]) if starts is None
                      else self.module(tokens[sl], lengths[sl], starts=starts[sl]))
            out.append(torch.softmax(logits.float(), dim=1).cpu())
        return torch.cat(out) if out else torch.zeros((0, len(self.class_names)))

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """For each text, (the most probable class's name, its probability in [0, 1])."""
        if isinstance(texts, str):
            texts = [texts]
        probs = self.probabilities(list(texts))
        best = probs.argmax(1).tolist()
        return [(self.class_names[k], float(probs[i, k])) for i, k in enumerate(best)]


def load_file(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """The model saved in `path` (a model.pt in harness.model_file's format), in eval mode on `device`.
    ValueError (one line, naming the file) when the file is not a usable saved model."""
    saved = model_file.read(path)
    known = {f.name for f in fields(ModelConfig)}
    cfg = ModelConfig(**{k: v for k, v in saved["model"].items() if k in known})
    vocab = saved["vocab"]
    pad = vocab.get(saved["pad_token"])
    if pad is None or saved["unk_token"] not in vocab:
        raise ValueError(f"{path}: the vocabulary lacks its PAD or UNK token")
    device = torch.device(device)
    module = build_model(cfg, len(vocab), len(saved["class_names"]), pad)
    try:
        module.load_state_dict(saved["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"{path}: the weights do not fit the model its settings describe "
                         f"({str(e).splitlines()[0]})") from None
    module.to(device).eval()
    rest = {k: v for k, v in saved.items() if k != "state_dict"}
    return LoadedModel(module, list(saved["class_names"]), dict(vocab), saved["tokenizer"], int(saved["pad_size"]),
                       saved["lag"], str(saved["trial_id"]), rest, device)


def saved_trials(results_dir: str | Path) -> list[dict[str, Any]]:
    """The runs rows (trial_id, best_dev_acc, model_file) of the trials that kept a model file."""
    runs = records.load(results_dir).runs
    if "model_file" not in runs.columns:
        return []
    kept = runs[runs["model_file"].notna()]
    return kept[["trial_id", "best_dev_acc", "model_file"]].to_dict("records")


def best_trial(results_dir: str | Path) -> str:
    """The trial with the highest dev accuracy (best_dev_acc; never the test split's) among those that
    kept a model; ties go to the smallest trial id. ValueError when none kept one."""
    rows = saved_trials(results_dir)
    if not rows:
        raise ValueError(f"{results_dir}: no trial saved a model (run it with train.save_model: best)")

    def score(row: dict[str, Any]) -> float:
        acc = row["best_dev_acc"]
        return -math.inf if acc is None or acc != acc else float(acc)  # no evaluation point: last

    top = max(score(r) for r in rows)
    return str(min(r["trial_id"] for r in rows if score(r) == top))


def choose_trial(results_dir: str | Path, trial_id: str | None, best: bool) -> str:
    """The trial `harness predict` uses: `trial_id`, the best (`best_trial`), or the only one that kept a
    model. ValueError (one line) otherwise."""
    if trial_id is not None:
        return trial_id
    if best:
        return best_trial(results_dir)
    rows = saved_trials(results_dir)
    if len(rows) == 1:
        return str(rows[0]["trial_id"])
    if not rows:
        raise ValueError(f"{results_dir}: no trial saved a model (run it with train.save_model: best)")
    raise ValueError(f"{results_dir}: {len(rows)} trials saved a model: choose one with --trial ID or --best")


def load_model(results_dir: str | Path, trial_id: str, device: str | torch.device = "cpu") -> LoadedModel:
    """Trial `trial_id`'s saved model in the results folder `results_dir` (DIR/trials/<id>/model.pt),
    ready to `predict(texts)`. ValueError (one line) for an unknown trial, a trial that saved no model,
    or a file that is not a usable saved model."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"{results_dir}: no such results folder")
    folder = trial_dir(results_dir, trial_id)
    if not (folder / "runs.parquet").is_file():
        raise ValueError(f"{results_dir}: no finished trial {trial_id!r}")
    path = folder / MODEL_FILE
    if not path.is_file():
        raise ValueError(f"trial {trial_id} saved no model (run it with train.save_model: best or last)")
    return load_file(path, device)
