"""`harness data check DIR` refuses every data folder `harness run` would refuse for it (issue 29):
the same broken folders, both commands, the same answer (exit 2, one line naming the file), and a
sound folder passes both. Embedding files included: check reads every .npz in the folder."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.cli import main

CLASSES = ["a", "b"]
TEXTS = ["xy", "yz", "zx", "xx"]
N_VOCAB = 5  # x, y, z, <UNK>, <PAD>: the vocabulary train.txt gives with the default settings


def data_folder(root: Path) -> Path:
    d = root / "data"
    d.mkdir()
    (d / "class.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    for split in ("train", "dev", "test"):
        (d / f"{split}.txt").write_text("".join(f"{t}\t{i % 2}\n" for i, t in enumerate(TEXTS)), encoding="utf-8")
    return d


def write_npz(path: Path, **arrays) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


GOOD = np.ones((N_VOCAB, 3), dtype=np.float32)
BROKEN = {
    "nan": lambda p: write_npz(p, embeddings=np.full((N_VOCAB, 3), np.nan)),
    "complex": lambda p: write_npz(p, embeddings=GOOD.astype(np.complex64)),
    "strings": lambda p: write_npz(p, embeddings=np.full((N_VOCAB, 3), "x")),
    "objects": lambda p: write_npz(p, embeddings=np.array([[1.0, None, 2]] * N_VOCAB, dtype=object)),
    "garbage": lambda p: p.write_bytes(b"\x93NUMPY not really" + bytes(range(200))),
    "no key": lambda p: write_npz(p, vectors=GOOD),
    "1-D": lambda p: write_npz(p, embeddings=np.ones(N_VOCAB)),
    "rows": lambda p: write_npz(p, embeddings=np.ones((N_VOCAB + 2, 3))),
    "pickle": lambda p: p.write_bytes(pickle.dumps({"embeddings": GOOD})),
}


def run_dry(tmp_path: Path, data: Path, embedding: str) -> int:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "chk", "data": {"kind": "thucnews", "dir": str(data), "embedding": embedding},
        "model": {"embed_dim": 3, "hidden_size": 4}, "grid": {"cell": ["rnn"], "pad_size": [4], "seed": [0]}}))
    return main(["run", str(config), "--out", str(tmp_path / "out"), "--device", "cpu", "--dry-run"])


def test_a_sound_folder_with_embeddings_passes_both(tmp_path, capsys):
    data = data_folder(tmp_path)
    write_npz(data / "embedding_good.npz", embeddings=GOOD)
    assert main(["data", "check", str(data), "--json"]) == 0
    assert '"embedding_good.npz": "5 x 3"' in capsys.readouterr().out
    assert run_dry(tmp_path, data, "embedding_good.npz") == 0


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_data_check_refuses_each_embedding_file_that_run_refuses(tmp_path, capsys, broken):
    data = data_folder(tmp_path)
    name = "embedding_bad.npz"
    BROKEN[broken](data / name)
    capsys.readouterr()
    assert run_dry(tmp_path, data, name) == 2
    run_err = capsys.readouterr().err.strip().splitlines()
    assert main(["data", "check", str(data)]) == 2
    check_err = capsys.readouterr().err.strip().splitlines()
    assert len(run_err) == 1 and len(check_err) == 1, (run_err, check_err)
    assert str(data / name) in check_err[0] and str(data / name) in run_err[0]
    assert check_err[0] == run_err[0]  # the same answer, word for word
