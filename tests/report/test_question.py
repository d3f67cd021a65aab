"""The question a report answers (harness.report.question): read off what the results vary, it decides
the opening sentence, whether there is a frontier, and whether cells are compared."""

from pathlib import Path

import pytest
from conftest import tiny_raw
from report_tables import grid, write_results

from harness.config import config_from_dict
from harness.report import compute, render
from harness.report.question import Question, and_list, from_config


def opening(md: str) -> str:
    return md.split("\n\n")[1]


def test_a_distance_over_two_values_asks_where_learning_stops():
    q = Question("pad_size", (8, 16), "cell", ("rnn", "lstm"), ("cell", "layernorm", "pad_size", "lr"),
                 ("none", "output"), 0.5)
    assert q.has_frontier and q.compares_groups and q.lines_by == "cell × layernorm"
    assert q.opening() == ("How far does the RNN still reach the target as sequences get longer (pad_size), and "
                            "how much "
                           "further does the LSTM get? And what do LayerNorm and the learning rate change about it?")
    arms = Question("lag", (0, 8, 16), "arm", ("rnn", "lstm-fb0", "lstm"), ("arm", "lag"), ("none",), 0.3)
    assert arms.lines_by == "arm"
    assert arms.opening() == ("How far does arm rnn still reach the target as the "
                            "distance between a text's end and the "
                              "read-out grows (lag), and how much further do arm lstm-fb0 and arm lstm get?")
    one_cell = Question("pad_size", (8, 16), "cell", ("lstm",), ("pad_size",), ("none",), 0.5)
    assert one_cell.opening() == "How far does the LSTM still reach the target as sequences get longer (pad_size)?"
    assert one_cell.lines_by == ""


def test_without_a_varying_distance_there_is_no_frontier_in_the_question():
    lr = Question("pad_size", (12,), "cell", ("lstm",), ("lr",), ("none",), 0.5)
    assert not lr.has_frontier and not lr.compares_groups
    assert lr.opening() == "Which learning rate lets the LSTM reach dev accuracy 0.5 (pad_size 12), and how fast?"
    cells = Question("pad_size", (12,), "cell", ("rnn", "lstm"), ("cell",), ("none",), None)
    assert cells.opening() == ("Which of the RNN or the LSTM can reach the target dev accuracy (pad_size 12), "
                               "and how fast?")
    ln = Question("lag", (4,), "cell", ("gru",), ("layernorm", "batch_size"), ("none", "output"), 0.5)
    assert ln.opening() == ("What do LayerNorm and the batch size change about whether the GRU can reach dev "
                            "accuracy 0.5 (lag 4), and how fast?")
    assert Question("pad_size", (12,), "cell", ("gru",), (), ("none",), 0.5).opening() == \
        "Does the GRU reach dev accuracy 0.5 (pad_size 12), and how fast?"


def test_a_study_that_searches_the_learning_rate_asks_for_the_best_one():
    study = Question("pad_size", (32,), "cell", ("lstm",), (), ("none",), 0.3, searched=("lr",))
    assert study.opening() == "Which learning rate lets the LSTM reach dev accuracy 0.3 (pad_size 32), and how fast?"
    per_cell = Question("pad_size", (32,), "cell", ("rnn", "lstm"), ("cell",), ("none",), 0.3, searched=("lr",))
    assert per_cell.opening() == ("Which of the RNN or the LSTM can reach dev accuracy 0.3 (pad_size 32) at its best "
                                  "learning rate, and how fast?")


def test_before_any_run_the_question_comes_from_the_config():
    raw = tiny_raw("q", {"cell": ["rnn", "lstm"], "pad_size": [8, 16], "seed": [0, 1]})
    q = from_config(config_from_dict(raw), 0.5)
    assert q.has_frontier and q.groups == ("rnn", "lstm") and q.varying == ("cell", "pad_size")
    assert and_list(["a", "b", "c"]) == "a, b and c" and and_list(["a", "b"], "or") == "a or b"


def test_a_cell_comparison_at_one_pad_size_mentions_no_frontier(tmp_path):
    md = render(compute(write_results(tmp_path / "r", grid(pads=(8,), seeds=(0, 1)))))
    assert opening(md).startswith("Which of the RNN or the LSTM can reach dev accuracy 0.5 (pad_size 8)")
    assert "frontier" not in md.lower() and "## Frontier" not in md
    assert "| mixed outcomes |" in md


def test_the_learning_rate_alone_varies_opens_with_the_learning_rate(tmp_path):
    points = grid(cells=("lstm",), lns=("none",), pads=(8,), lrs=(1e-3, 1e-2), seeds=(0, 1))
    md = render(compute(write_results(tmp_path / "r", points)))
    assert opening(md).startswith("Which learning rate lets the LSTM reach dev accuracy 0.5 (pad_size 8), and how "
                                  "fast?")
    assert "LSTM/GRU" not in md and "vanilla RNN" not in md


@pytest.fixture(scope="module")
def lr_run(tmp_path_factory) -> Path:
    """A real run of a learning-rate-only grid (the cell fixed), two tiny trials trained on the CPU."""
    from harness import runner

    raw = tiny_raw("lronly", grid={"lr": [1e-3, 1e-2], "seed": [0]})
    raw["train"]["target_dev_acc"] = 0.2
    out = tmp_path_factory.mktemp("lronly")
    runner.run(config_from_dict(raw), out, workers=1, device="cpu", threads=1, progress=False)
    return out


def test_a_real_learning_rate_only_run_reports_no_frontier(lr_run):
    from harness.cli import main

    assert main(["report", str(lr_run)]) == 0
    md = (lr_run / "report.md").read_text(encoding="utf-8")
    assert opening(md).startswith("Which learning rate lets the LSTM reach dev accuracy 0.2 (pad_size 32)")
    assert "frontier" not in md.lower() and "D50" not in md
    assert "figures/accuracy_lr.png" in md and (lr_run / "figures" / "accuracy_lr.png").is_file()
    assert not list((lr_run / "figures").glob("frontier*")) and not list((lr_run / "figures").glob("heatmap*"))
    assert "**lr 0.01 vs 0.001**" in md  # the one factor that varies is compared
