"""A trial's saved model used from its file alone: harness.model_file's format, harness.load_model and
`harness predict` (train.save_model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_specs

import harness
from harness import cli, model_file, predict, records
from harness.config import config_from_dict
from harness.data import prepare
from harness.data.thucnews import PAD, UNK, read_split
from harness.records import TrialRecorder
from harness.train import run_trial

CPU = torch.device("cpu")
TRAIN = {"epochs": 3, "batch_size": 32, "eval_every": 3, "lr": 0.01}


def _trained(tmp_path: Path, save_model: str = "best", grid: dict | None = None, out: Path | None = None):
    """One tiny trial trained with train.save_model and published into tmp_path/res (or `out`)."""
    specs, ds = tiny_specs(tmp_path, grid or {"cell": ["rnn"], "pad_size": [12]}, **TRAIN, save_model=save_model)
    spec = specs[0]
    recorder = TrialRecorder(spec.trial_id)
    row = run_trial(spec, ds, CPU, recorder)
    out = out or tmp_path / "res"
    records.write_trial(out, spec.trial_id, recorder.tables(), recorder.weights)
    return spec, ds, row, out


def _test_split(tmp_path: Path, spec, ds) -> list[tuple[str, int]]:
    """The test split's (text, label) rows, read from the data folder the trial was trained on."""
    from conftest import tiny_raw

    data_dir, _ = prepare(config_from_dict(tiny_raw()).data, tmp_path / "cache")
    assert spec.data.kind == "synthetic"
    return read_split(data_dir / "test.txt", len(ds.class_names))


@pytest.fixture
def saved(tmp_path):
    return (*_trained(tmp_path), tmp_path)


def test_the_file_holds_plain_data_with_what_it_takes_to_use_the_weights(saved):
    spec, ds, row, out, _ = saved
    obj = torch.load(out / row["model_file"], weights_only=True)  # nothing in it runs code
    assert obj["format"] == model_file.FORMAT and obj["version"] == model_file.VERSION
    assert obj["weights"] == "best" and obj["trial_id"] == spec.trial_id and obj["data_id"] == ds.data_id
    assert obj["class_names"] == ds.class_names and obj["tokenizer"] == "char"
    assert (obj["pad_size"], obj["lag"]) == (12, None)
    assert obj["vocab"] == ds.vocab and len(obj["vocab"]) == ds.vocab_size
    assert obj["vocab"][obj["pad_token"]] == ds.pad_index and (obj["pad_token"], obj["unk_token"]) == (PAD, UNK)
    assert obj["model"]["cell"] == "rnn" and obj["model"]["hidden_size"] == 8
    assert set(obj["state_dict"]) >= {"embedding.weight", "fc.weight"}


def test_load_model_gives_back_the_trials_test_accuracy(saved):
    spec, ds, row, out, tmp_path = saved
    rows = _test_split(tmp_path, spec, ds)
    model = harness.load_model(out, spec.trial_id)
    assert isinstance(model.module, torch.nn.Module) and not model.module.training
    got = model.predict([t for t, _ in rows])
    names = [ds.class_names[y] for _, y in rows]
    acc = sum(c == n for (c, _), n in zip(got, names)) / len(rows)
    assert acc == row["test_acc"]
    assert all(0.0 < p <= 1.0 and p >= 1 / len(ds.class_names) for _, p in got)
    # the probability is the softmax of the winning class
    probs = model.probabilities([rows[0][0]])
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-6) and got[0][1] == pytest.approx(probs.max().item())


def test_a_character_outside_the_vocabulary_reads_as_unk(saved):
    spec, ds, row, out, _ = saved
    model = predict.load_model(out, spec.trial_id)
    outside = "\u2603"  # a snowman: not in the synthetic titles' vocabulary
    assert outside not in model.vocab
    tokens, lengths, starts = model.encode([outside * 3])
    assert tokens[0, :3].tolist() == [model.vocab[UNK]] * 3 and lengths.tolist() == [3] and starts is None
    assert tokens[0, 3:].eq(model.vocab[PAD]).all()
    assert model.predict([outside]) == model.predict(["\u2604"])  # both are UNK: the same input


def test_bad_input_is_one_line(saved, tmp_path):
    spec, ds, row, out, _ = saved
    with pytest.raises(ValueError, match="no finished trial 'nope'"):
        predict.load_model(out, "nope")
    with pytest.raises(ValueError, match="no such results folder"):
        predict.load_model(tmp_path / "missing", spec.trial_id)
    model = predict.load_model(out, spec.trial_id)
    with pytest.raises(ValueError, match="text 2 is empty"):
        model.predict(["abc", ""])
    bare = out / "trials" / spec.trial_id / "model.pt"  # a file from before the format: weights only
    torch.save(torch.load(bare, weights_only=True)["state_dict"], bare)
    with pytest.raises(ValueError, match="weights only"):
        predict.load_model(out, spec.trial_id)


def test_a_trial_that_saved_none(tmp_path):
    spec, ds, row, out = _trained(tmp_path, "none")
    with pytest.raises(ValueError, match=f"trial {spec.trial_id} saved no model"):
        predict.load_model(out, spec.trial_id)
    with pytest.raises(ValueError, match="no trial saved a model"):
        predict.choose_trial(out, None, best=True)


def test_best_goes_by_dev_accuracy_never_test(monkeypatch):
    rows = [{"trial_id": "b", "best_dev_acc": 0.8, "test_acc": 0.1}, {"trial_id": "c", "best_dev_acc": 0.5},
            {"trial_id": "a", "best_dev_acc": 0.8}, {"trial_id": "d", "best_dev_acc": float("nan")}]
    monkeypatch.setattr(predict, "saved_trials", lambda d: rows)
    assert predict.best_trial("x") == "a"  # the highest dev accuracy; a tie goes to the smallest id
    assert predict.choose_trial("x", "c", best=False) == "c"
    with pytest.raises(ValueError, match="4 trials saved a model: choose one with --trial ID or --best"):
        predict.choose_trial("x", None, best=False)


def test_cli_prints_class_and_probability(saved, capsys):
    spec, ds, row, out, _ = saved
    model = predict.load_model(out, spec.trial_id)
    texts = ["abcd", "zz y"]
    want = model.predict(texts)
    assert cli.main(["predict", str(out), *texts]) == 0  # the only trial that saved one
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{c}\t{p:.4f}\t{t}" for t, (c, p) in zip(texts, want)]
    assert cli.main(["predict", str(out), "--best", "--json", "abcd"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["trial_id"] == spec.trial_id
    assert doc["predictions"] == [{"text": "abcd", "class": want[0][0], "probability": want[0][1]}]


@pytest.mark.parametrize("argv, said", [
    (["--trial", "nope", "abc"], "no finished trial 'nope'"),
    (["abc", ""], "text 2 is empty"),
    ([], "no text to classify"),
    (["--file", "missing.txt"], "--file missing.txt: cannot read it"),
])
def test_cli_bad_input_exits_2_with_one_line(saved, capsys, argv, said):
    spec, ds, row, out, _ = saved
    assert cli.main(["predict", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err and err.startswith("harness: error: ")


@pytest.mark.slow
def test_a_fresh_process_predicts_the_test_split_from_the_saved_files_alone(saved):
    """The results folder holds the model; the data folder only supplies the texts to classify."""
    spec, ds, row, out, tmp_path = saved
    rows = _test_split(tmp_path, spec, ds)
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"{t}\n" for t, _ in rows), encoding="utf-8")
    alone = tmp_path / "alone"  # only the trial's model file: no shards, no config, no data cache
    (alone / "trials" / spec.trial_id).mkdir(parents=True)
    os.link(out / row["model_file"], alone / "trials" / spec.trial_id / "model.pt")
    code = ("import json, sys; from harness.predict import load_file; m = load_file(sys.argv[1]); "
            "print(json.dumps(m.predict(open(sys.argv[2], encoding='utf-8').read().splitlines())))")
    done = subprocess.run([sys.executable, "-c", code, str(alone / "trials" / spec.trial_id / "model.pt"), str(texts)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    acc = sum(c == ds.class_names[y] for (c, _), (_, y) in zip(got, rows)) / len(rows)
    assert acc == row["test_acc"]
    # ... and the command line, from the results folder
    done = subprocess.run([sys.executable, "-m", "harness", "predict", str(out), "--trial", spec.trial_id,
                           "--file", str(texts), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    preds = json.loads(done.stdout)["predictions"]
    assert [p["class"] for p in preds] == [c for c, _ in got]
