"""Did a run learn at all? Its test accuracy against chance by an exact one-sided binomial test.

Chance is the accuracy of always predicting the test split's most common class (its share of the
split, a fraction); a run that learned nothing can reach it, none can beat it by luck by much on
1,000 test titles. The test asks whether k correct of n is more than that: the p-value is
P(X >= k) for X ~ Binomial(n, chance), summed exactly (scipy's binomial survival function, which
evaluates the regularised incomplete beta function, exact to floating point).

Why p < 0.001 (`LEARNED_ALPHA`): a report counts "learned" over some hundred runs at once; at 0.001
a run at chance is called learned about once in a thousand, so a count of runs above chance is not
made of false alarms. At 1,000 test examples and chance 0.1 the smallest k it calls learned is 131
(13.1%), three points above chance: a run that learned anything usable clears it.
"""

from __future__ import annotations

import math

from scipy.stats import binom

LEARNED_ALPHA = 0.001


def above_chance_p(k: int, n: int, chance: float) -> float:
    """Exact one-sided p-value P(X >= k), X ~ Binomial(n, chance): the chance that a predictor right
    with probability `chance` on each of n test examples gets k or more right. 1.0 for k <= 0.
    ValueError for n < 1, k outside 0 … n or chance outside [0, 1]."""
    if n < 1:
        raise ValueError(f"above_chance_p: n must be at least 1, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"above_chance_p: k must lie in 0 … n = {n}, got {k}")
    if not 0.0 <= chance <= 1.0 or math.isnan(chance):
        raise ValueError(f"above_chance_p: chance must lie in [0, 1], got {chance}")
    if k <= 0:
        return 1.0
    return float(min(1.0, max(0.0, binom.sf(k - 1, n, chance))))


def learned_at_all(acc: float, n: int, chance: float, alpha: float = LEARNED_ALPHA) -> tuple[int, float, bool]:
    """(k, p, learned) for a test accuracy `acc` (fraction) on n examples: k = round(acc · n) correct,
    p = `above_chance_p(k, n, chance)`, learned = p < alpha."""
    k = int(round(acc * n))
    p = above_chance_p(min(max(k, 0), n), n, chance)
    return k, p, p < alpha
