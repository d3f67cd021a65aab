"""Loading is never executing (issue 29): a file in a results folder, an artifact store or a user's
data folder may come from anyone, so every loader of such a file reads it without running code:
torch files with `weights_only=True`, arrays with `allow_pickle=False`, vocab.pkl with an unpickler
that imports nothing. Each test plants a payload (a pickle whose `__reduce__` writes a marker file)
in one kind of file the harness reads, lets the harness read it, and checks that the marker never
appears and the harness says what it did with the file in one line."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, tiny_specs

from harness.data import DataError
from harness.data.thucnews import load_embeddings, load_vocab_pickle
from harness.files import NotLoadable, load_tensors, weights_problem
from harness.records import TrialRecorder
from harness.train import CHECKPOINT_FORMAT, checkpoint_path, run_trial

CPU = torch.device("cpu")


class Payload:
    """Unpickled, it creates the file `marker` (what an attacker's code would do first)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.fixture
def marker(tmp_path) -> Path:
    m = tmp_path / "PAYLOAD_RAN"
    yield m
    assert not m.exists(), "a payload in a file the harness read ran"


def torch_payload(path: Path, marker: Path, **extra) -> Path:
    """A torch.save file whose dict holds `extra` and a payload."""
    torch.save({**extra, "x": Payload(marker)}, path)
    return path


def pickle_payload(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps(Payload(marker)))
    return path


def test_the_payload_runs_when_loaded_as_a_full_pickle(tmp_path):
    """The payload is real: loaded the unsafe way, it writes its marker (so the other tests mean something)."""
    m = tmp_path / "ran"
    path = torch_payload(tmp_path / "p.pt", m)
    torch.load(path, weights_only=False)
    assert m.exists()


@pytest.mark.parametrize("plant", ["torch", "pickle"])
def test_load_tensors_refuses_a_payload_in_one_line_naming_the_file(tmp_path, marker, plant):
    path = (torch_payload if plant == "torch" else pickle_payload)(tmp_path / "f.pt", marker)
    with pytest.raises(NotLoadable) as e:
        load_tensors(path)
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)


@pytest.mark.parametrize("plant", ["torch", "pickle", "garbage"])
def test_a_checkpoint_with_a_payload_is_not_resumed_and_the_trial_starts_from_step_0(tmp_path, marker, capsys,
                                                                                      plant):
    specs, ds = tiny_specs(tmp_path, {"cell": ["rnn"], "pad_size": [12]}, epochs=2, batch_size=32,
                           checkpoint_every=3)
    spec = specs[0]
    plain = TrialRecorder(spec.trial_id)
    run_trial(spec, ds, CPU, plain)
    ckpt = checkpoint_path(tmp_path / "res", spec.trial_id)
    ckpt.parent.mkdir(parents=True)
    if plant == "torch":  # this trial's id and budget, so only the payload is wrong
        torch_payload(ckpt, marker, format=CHECKPOINT_FORMAT, trial_id=spec.trial_id, total_steps=16, step=3)
    elif plant == "pickle":
        pickle_payload(ckpt, marker)
    else:
        ckpt.write_bytes(b"PK\x03\x04" + bytes(range(256)))
    capsys.readouterr()
    again = TrialRecorder(spec.trial_id)
    row = run_trial(spec, ds, CPU, again, checkpoint=ckpt)
    warned = capsys.readouterr().err.splitlines()
    assert len(warned) == 1 and warned[0].startswith(f"harness: warning: checkpoint {ckpt} not resumed (")
    assert warned[0].endswith("starts from step 0")
    assert row["status"] == "complete" and row["steps"] == plain.rows["runs"][0]["steps"]
    assert again.tables()["curves"]["dev_loss"].tolist() == plain.tables()["curves"]["dev_loss"].tolist()
    assert not ckpt.exists()  # removed at the trial's end


def test_a_fused_groups_checkpoint_with_a_payload_is_not_resumed(tmp_path, marker, capsys):
    from harness.train_fused import run_fused

    specs, ds = tiny_specs(tmp_path, {"cell": ["rnn"], "pad_size": [12], "seed": [0, 1]}, epochs=2, batch_size=32,
                           checkpoint_every=3)
    ckpt = checkpoint_path(tmp_path / "res", specs[0].trial_id)
    ckpt.parent.mkdir(parents=True)
    torch_payload(ckpt, marker, format=CHECKPOINT_FORMAT, trial_id=",".join(s.trial_id for s in specs),
                  total_steps=16, step=3)
    rows = run_fused(specs, ds, CPU, [TrialRecorder(s.trial_id) for s in specs], checkpoint=ckpt)
    assert [r["status"] for r in rows] == ["complete", "complete"]
    warned = capsys.readouterr().err.splitlines()
    assert len(warned) == 1 and "not resumed (" in warned[0]


def test_a_model_file_with_a_payload_is_reported_not_loaded(tmp_path, marker):
    path = torch_payload(tmp_path / "model.pt", marker)
    problem = weights_problem(path)
    assert problem is not None and problem.startswith("not loaded: it holds more than tensors and plain values")
    pickle_payload(path, marker)
    assert weights_problem(path) == "not a torch file (not the zip archive torch.save writes)"


def test_export_skips_a_model_file_with_a_payload_in_one_line(tmp_path, marker, capsys):
    from harness.export.trials import TrialView

    (tmp_path / "trials" / "t1").mkdir(parents=True)
    torch_payload(tmp_path / "trials" / "t1" / "model.pt", marker)
    view = TrialView("t1", "t1", "all", "grid", "complete", "grid", {}, {}, {}, None,
                     model_file="trials/t1/model.pt")
    assert view.model_path(tmp_path) is None
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"harness: warning: trial t1's weights {tmp_path}/trials/t1/model.pt "
                                               f"are not loaded: it holds more than tensors")
    assert err[0].endswith("exported without them")


def test_a_vocab_pickle_with_a_payload_is_refused(tmp_path, marker):
    path = pickle_payload(tmp_path / "vocab.pkl", marker)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: refusing to load builtins.exec"):
        load_vocab_pickle(path)


def test_an_embedding_file_with_an_object_array_is_refused(tmp_path, marker):
    path = tmp_path / "emb.npz"
    np.savez(path, embeddings=np.array([Payload(marker), 1.0], dtype=object))
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: not a readable .npz without pickles"):
        load_embeddings(path, 2)


def test_an_encoded_data_cache_with_an_object_array_is_encoded_again(tmp_path, marker):
    from harness import data as data_mod

    specs, ds = tiny_specs(tmp_path, {"cell": ["rnn"], "pad_size": [12]})
    (cache,) = (tmp_path / "cache").glob("encoded-*.npz")
    arrays = dict(np.load(cache, allow_pickle=False))
    np.savez(cache, **{**arrays, "train_labels": np.array([Payload(marker)], dtype=object)})
    again = data_mod.load(specs[0].data, tmp_path / "cache")
    np.testing.assert_array_equal(again.train.labels, ds.train.labels)
    assert np.load(cache, allow_pickle=False)["train_labels"].dtype == np.int64  # replaced


def test_no_loader_in_the_package_reads_a_full_pickle():
    """The rule in the source: no torch.load without weights_only=True, no np.load with pickles, no
    pickle.load / pickle.loads (vocab.pkl's unpickler imports nothing)."""
    bad = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                bad.append(f"{path.name}: {m.group(0)}")
        bad += [f"{path.name}: {m.group(0)}" for m in re.finditer(r"allow_pickle=True|pickle\.loads?\(|"
                                                                      r"weights_only=False", text)]
    assert not bad, bad
