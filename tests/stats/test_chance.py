"""The learned-at-all test: an exact one-sided binomial tail, checked against hand-computed sums."""

import math

import pytest

from harness.stats.chance import LEARNED_ALPHA, above_chance_p, learned_at_all


def test_tail_by_hand():
    # n = 4, chance 1/2: P(X >= 3) = (C(4,3) + C(4,4)) / 16 = 5/16; P(X >= 4) = 1/16.
    assert above_chance_p(3, 4, 0.5) == pytest.approx(5 / 16, rel=1e-12)
    assert above_chance_p(4, 4, 0.5) == pytest.approx(1 / 16, rel=1e-12)
    # n = 5, chance 0.1: P(X >= 2) = 1 - 0.9^5 - 5 * 0.1 * 0.9^4 = 0.08146
    assert above_chance_p(2, 5, 0.1) == pytest.approx(1 - 0.9 ** 5 - 5 * 0.1 * 0.9 ** 4, rel=1e-12)
    assert above_chance_p(0, 5, 0.1) == 1.0


def test_tail_equals_the_exact_sum_at_the_bench_size():
    n, p = 1000, 0.1
    for k in (100, 120, 131, 189):
        exact = sum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k, n + 1))
        assert above_chance_p(k, n, p) == pytest.approx(exact, rel=1e-9)


def test_learned_threshold_at_the_bench_size():
    # chance 0.1 on 1,000 test titles: 131 correct is the first count below p = 0.001.
    assert learned_at_all(0.131, 1000, 0.1)[2] and not learned_at_all(0.130, 1000, 0.1)[2]
    k, p, learned = learned_at_all(0.189, 1000, 0.1)   # the RNN at lag 8's median in issue 28
    assert k == 189 and p < 1e-15 and learned
    # at chance exactly: about one half, never learned
    assert 0.4 < learned_at_all(0.1, 1000, 0.1)[1] < 0.6
    assert LEARNED_ALPHA == 0.001


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="n must"):
        above_chance_p(0, 0, 0.1)
    with pytest.raises(ValueError, match="k must"):
        above_chance_p(5, 4, 0.1)
    with pytest.raises(ValueError, match="chance must"):
        above_chance_p(1, 4, 1.5)
