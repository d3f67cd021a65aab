"""harness.stats.rates: the Wilson interval against its closed form and Newcombe's published values,
its edges, and its coverage at the few runs a configuration has."""

import math

import numpy as np
import pytest
from scipy import stats

from harness.stats import rates as R

Z = stats.norm.ppf(0.975)


def wilson_by_hand(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson (1927): (k + z²/2 ± z sqrt(k(n-k)/n + z²/4)) / (n + z²), in float64."""
    centre = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4)
    return centre - half, centre + half


@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_is_the_closed_form(confidence):
    z = stats.norm.ppf(0.5 + confidence / 2)
    for n in range(1, 41):
        for k in range(1, n):
            # Closed form, a few roundings either way: 1e-12 relative.
            assert R.wilson_interval(k, n, confidence) == pytest.approx(wilson_by_hand(k, n, z), rel=1e-12)


def test_wilson_edges_are_exact():
    z2 = Z * Z
    assert R.wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2), rel=1e-12))
    assert R.wilson_interval(10, 10) == (pytest.approx(10 / (10 + z2), rel=1e-12), 1.0)
    assert R.wilson_interval(0, 0) == (0.0, 1.0)               # no runs: no information
    with pytest.raises(ValueError):
        R.wilson_interval(3, 2)
    with pytest.raises(ValueError):
        R.wilson_interval(-1, 2)
    with pytest.raises(ValueError, match="confidence"):
        R.wilson_interval(1, 2, 1.0)


def test_wilson_matches_newcombes_published_values():
    # Newcombe (1998), Stat. Med. 17:857, table I, method 3 (score interval without continuity
    # correction), printed to 4 decimals.
    published = {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605), (0, 20): (0.0, 0.1611),
                 (1, 29): (0.0061, 0.1718)}
    for (k, n), ends in published.items():
        assert R.wilson_interval(k, n) == pytest.approx(ends, abs=5e-5)


def test_undecided_is_wilson_containing_one_half():
    assert R.undecided(0, 0) and R.undecided(5, 10) and R.undecided(8, 10)   # 8/10: low 0.490
    assert not R.undecided(9, 10) and not R.undecided(10, 10) and not R.undecided(0, 6)
    assert not R.undecided(0, 4) and R.undecided(0, 3)                      # 0 of 3: [0, 0.56]


def test_decided_rates_elementwise():
    k = np.array([[0, 1, 2, 3, 5], [4, 5, 9, 0, 2]])
    n = np.array([5, 5, 11, 5, 5])
    learned, stopped = R.decided_rates(k, n)
    for i in range(k.shape[0]):
        for j in range(k.shape[1]):
            kk, nn = int(k[i, j]), int(n[j])
            low, high = R.wilson_interval(kk, nn)
            assert learned[i, j] == (kk == nn or low > 0.5) and stopped[i, j] == (kk == 0 or high < 0.5)
    # 2 of 11 ([5%, 48%]) is decided below half, 2 of 5 is not.
    assert R.decided_rates(np.array([2, 2]), np.array([11, 5]))[1].tolist() == [True, False]
    assert R.decided_rates(np.array([], dtype=int), np.array([], dtype=int))[0].shape == (0,)


# ----------------------------------------------------------------------------- coverage

def exact_coverage(n: int, p: float) -> float:
    """P(the Wilson interval of k/n holds p), k ~ Binomial(n, p), summed exactly."""
    return sum(stats.binom.pmf(k, n, p) for k in range(n + 1)
               if R.wilson_interval(k, n)[0] <= p <= R.wilson_interval(k, n)[1])


def test_wilson_coverage_at_fifty_runs():
    assert 0.93 <= exact_coverage(50, 0.3) <= 0.97                  # 0.957


def test_wilson_average_coverage_at_the_few_runs_a_configuration_has():
    # Averaged over true rates 0.05..0.95: ~95.5% at every n; the worst single rate is ~83%, near 0 or 1.
    ps = np.linspace(0.05, 0.95, 91)
    for n in (2, 5, 10):
        assert 0.93 <= np.mean([exact_coverage(n, p) for p in ps]) <= 0.97, n
