"""Adaptive seeds (racing, as irace / F-race do for configurations): which seeds each configuration
needs, as a pure function of the config and the finished runs.

A configuration is a grid point without its seed. Each starts with seeds 0 .. min_seeds-1. Once all
the seeds it has are finished, it gets the next seed (one per round) while its outcome is undecided:

- its success rate (reached the target dev accuracy in k of n runs; failed, diverged and pruned
  runs count as not reached) has a Wilson interval that contains 0.5 (`harness.stats.rates.undecided`), or
- it takes part in a requested paired effect (`adaptive.effects`) that is still undecided.

and stops at max_seeds. Effects are decided in rounds of their own: at level L (starting at
min_seeds), once every configuration an effect compares has finished seeds 0 .. L-1, each effect's
differences in best dev accuracy (level minus baseline, paired on the other factors and the seed,
seeds below L) get a t interval at Holm-corrected levels across the requested effects
(`harness.stats.paired.corrected_effects`); an effect whose interval excludes zero on at least
paired.MIN_PAIRS pairs is decided for good, and the configurations of the others need L + 1
seeds. Dev accuracy, not test: deciding how many seeds to run is a choice made on dev data.

Repeated looks spend alpha. The effects are tested again at every level from min_seeds to max_seeds,
and testing each look at the full 1 - confidence would let an effect that is truly zero be "decided"
far more often than 5% of the time. Each look therefore gets an equal share of the error rate, alpha /
(max_seeds - min_seeds + 1) (a Bonferroni split over the planned looks, `effect_alpha`), and Holm's
correction across the requested effects works within that share: by the union bound, the chance that
any zero effect is ever decided stays at most 1 - confidence. Chosen over an alpha-spending function
(O'Brien-Fleming, Pocock) because it needs no assumption about how the looks' statistics correlate and
is one line; it is conservative (wider intervals at every look).

Exploratory only. The success-rate rule stops a configuration as soon as its Wilson interval leaves
0.5, so the interval it stops with does not cover at its nominal level: at a true rate of 0.5, with
5 to 16 seeds, the Wilson 95% interval reported at the stop covers 0.5 in 83.7% of configurations
(`stopping_coverage`, exact; a simulation of `decide` agrees in the tests). The report marks the
configurations whose seed count was chosen this way as exploratory; pre-registered headline
estimands run at a fixed number of seeds.

`adaptive.batch` seeds per round (default 1). With 1 the rules are checked after every seed, so a
configuration stops as soon as it can (0 of 4 and 4 of 4 are decided at 95%, 0 of 3 is not: its
Wilson interval is [0, 0.56]). With batch b a configuration is looked at only at min_seeds,
min_seeds + b, ... and max_seeds (`AdaptiveConfig.looks`): it may run up to b - 1 seeds more than
it needed, and the effects split their alpha over fewer looks. It changes which trials run (always
the same ones for the same config and results), not when: a round is a barrier only for the
configurations that wait for it, because a worker that runs out tops the queue up itself and,
while trials that could add work are still running, waits for them instead of exiting
(`harness.runner.worker_loop`). Larger batches keep more workers busy at the end of a round.

Everything is a function of which trials have finished and how, so every process (each worker,
another command, another machine) computes the same seeds, and re-running the command after an
interrupt continues where the rounds stopped. Nothing here reads files or imports torch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.config import ExperimentConfig, TrialSpec, make_spec, short_axis_name
from harness.config.adaptive_config import SEED_KEY, AdaptiveConfig

# harness.stats is imported where it is used: it loads scipy.stats (about 0.7 s), which planning a run
# that is not adaptive should not pay for.

RUNS_COLUMNS = ("trial_id", "status", "steps_to_target", "best_dev_acc")  # what the decisions read
SEED = short_axis_name(SEED_KEY)


@dataclass(frozen=True)
class ConfigDecision:
    """One configuration: its grid values (seed excluded), the seeds it needs so far (0 .. seeds-1),
    how many of those finished and reached the target, and why it stands where it stands.
    state: 'running' (seeds still to finish, or waiting for an effect round), 'decided' or
    'max_seeds'."""

    factors: dict[str, Any]
    seeds: int
    finished: int
    reached: int
    state: str
    reason: str


@dataclass(frozen=True)
class EffectStatus:
    """A requested paired effect: best dev accuracy at `level` minus at `baseline`, over `pairs`
    matched pairs from seeds 0 .. seeds-1; its corrected interval at `confidence`.
    state: 'decided', 'undecided' (more seeds coming), 'max_seeds' (undecided at max_seeds) or
    'running' (its first round has not finished)."""

    factor: str
    baseline: Any
    level: Any
    seeds: int
    pairs: int
    mean: float
    low: float
    high: float
    confidence: float
    state: str


@dataclass
class Decision:
    """What the finished runs say: per configuration and per effect, and the trials needed so far."""

    configs: list[ConfigDecision]
    effects: list[EffectStatus]
    needed: list[TrialSpec]
    reserve: list[TrialSpec]   # the seeds up to max_seeds not needed (yet)

    @property
    def max_trials(self) -> int:
        return len(self.needed) + len(self.reserve)


# ----------------------------------------------------------------------------- error rates

def effect_alpha(a: AdaptiveConfig) -> float:
    """The family-wise error rate each look at the requested effects may spend: (1 - confidence)
    split evenly over the planned looks, one per level in a.looks() (Bonferroni)."""
    return (1.0 - a.confidence) / len(a.looks())


def stopping_coverage(rate: float, min_seeds: int, max_seeds: int, confidence: float = 0.95,
                      batch: int = 1) -> float:
    """The probability that the Wilson interval a configuration stops with covers its true success
    `rate`, under the success-rate rule alone (`batch` seeds more while the interval at `confidence`
    contains 0.5, from min_seeds to max_seeds). Exact: the distribution of (seeds, successes) is
    carried forward look by look, and every path that stops adds its probability when its interval
    covers `rate`. At rate 0.5, 5 to 16 seeds, 95%, batch 1: 0.837 (fixed 16 seeds: 0.923)."""
    from harness.stats.rates import wilson_interval  # SciPy: only here (plan and status import this module)

    if not (1 <= min_seeds <= max_seeds and 0.0 <= rate <= 1.0 and batch >= 1):
        raise ValueError(f"need 1 <= min_seeds <= max_seeds, a rate in [0, 1] and batch >= 1, got {min_seeds}, "
                         f"{max_seeds}, {rate}, {batch}")
    looks = AdaptiveConfig(min_seeds, max_seeds, confidence, batch=batch).looks()
    dist = {k: _binom(k, min_seeds, rate) for k in range(min_seeds + 1)}
    covered = 0.0
    for n, after in zip(looks, [*looks[1:], None]):
        grow: dict[int, float] = {}
        for succ, prob in dist.items():
            low, high = wilson_interval(succ, n, confidence)
            if low <= 0.5 <= high and after is not None:
                for more in range(after - n + 1):
                    grow[succ + more] = grow.get(succ + more, 0.0) + prob * _binom(more, after - n, rate)
            elif low <= rate <= high:
                covered += prob
        dist = grow
    return float(covered)


def _binom(k: int, n: int, p: float) -> float:
    return math.comb(n, k) * p ** k * (1 - p) ** (n - k)


# ----------------------------------------------------------------------------- the trials

@dataclass
class _Config:
    key: tuple
    factors: dict[str, Any]
    seeds: list[TrialSpec] = field(default_factory=list)  # index = seed


def pool(cfg: ExperimentConfig, data_id: str) -> list[TrialSpec]:
    """Every trial adaptive seeding may ask for: each grid point × seeds 0 .. max_seeds-1 (the seed as
    a grid axis, so the trial ids are those a `grid.seed` list would give)."""
    axes = [*cfg.grid, SEED_KEY]
    values = [*cfg.grid.values(), list(range(_settings(cfg).max_seeds))]
    return [make_spec(cfg, data_id, dict(zip(axes, combo))) for combo in itertools.product(*values)]


def trial_bounds(cfg: ExperimentConfig) -> tuple[int, int]:
    """(fewest, most) trials the config can run: configurations × min_seeds, × max_seeds."""
    a = _settings(cfg)
    configs = math.prod(len(v) for v in cfg.grid.values())
    return configs * a.min_seeds, configs * a.max_seeds


def _settings(cfg: ExperimentConfig) -> AdaptiveConfig:
    if cfg.adaptive is None:
        raise ValueError(f"config {cfg.name!r} has no adaptive section")
    return cfg.adaptive


def _configs(specs: Sequence[TrialSpec], axes: Sequence[str]) -> list[_Config]:
    """The pool grouped by configuration, in grid order, each with its seeds in order. A
    configuration's key holds its value of each grid axis in `axes` (short names; an arm by its name
    alone, not the settings it implies, so two arms pair like two values of an axis)."""
    out: dict[tuple, _Config] = {}
    for s in specs:
        factors = {k: v for k, v in s.factors.items() if k != SEED}
        key = tuple((a, factors[a]) for a in axes if a != SEED)
        out.setdefault(key, _Config(key, factors)).seeds.append(s)
    for c in out.values():
        c.seeds.sort(key=lambda s: s.factors[SEED])
    return list(out.values())


def _outcomes(runs: pd.DataFrame) -> dict[str, tuple[bool, float]]:
    """trial id -> (reached the target, best dev accuracy or nan), for every finished run."""
    out = {}
    for tid, status, stt, dev in zip(runs["trial_id"], runs["status"], runs["steps_to_target"],
                                     runs["best_dev_acc"]):
        reached = status == "complete" and not pd.isna(stt)
        out[tid] = (bool(reached), math.nan if pd.isna(dev) else float(dev))
    return out


# ----------------------------------------------------------------------------- the rounds

@dataclass
class _State:
    n: dict[tuple, int]                       # seeds each configuration needs
    level: int                                # the effects' round
    decided: dict[int, int] = field(default_factory=dict)   # effect index -> level it was decided at
    last: list[Any] = field(default_factory=list)           # the last evaluated family (EffectDecision)
    evaluated_at: int = 0                                   # the level `last` was evaluated at


class _Racing:
    """The fixed point of the rounds over one snapshot of finished runs."""

    def __init__(self, a: AdaptiveConfig, configs: list[_Config], outcomes: dict[str, tuple[bool, float]]):
        self.a, self.configs, self.out = a, configs, outcomes
        self.by_key = {c.key: c for c in configs}
        self.effects = [(short_axis_name(f), b, lv) for f, b, lv in a.effects]
        self.state = _State({c.key: a.min_seeds for c in configs}, a.min_seeds)
        self.members = [{c.key for c in configs if c.factors[f] in (b, lv)} for f, b, lv in self.effects]

    def complete(self, c: _Config, n: int) -> bool:
        return all(s.trial_id in self.out for s in c.seeds[:n])

    def counts(self, c: _Config, n: int) -> tuple[int, int]:
        """(finished, reached) among seeds 0 .. n-1."""
        done = [self.out[s.trial_id] for s in c.seeds[:n] if s.trial_id in self.out]
        return len(done), sum(r for r, _ in done)

    def rate_undecided(self, c: _Config, n: int) -> bool:
        from harness.stats.rates import undecided  # SciPy: only when seeds are decided

        return undecided(self.counts(c, n)[1], n, self.a.confidence)

    def involved(self, e: int) -> list[_Config]:
        """The configurations effect `e` compares (its baseline's and its level's)."""
        return [c for c in self.configs if c.key in self.members[e]]

    def run(self) -> _State:
        while self._grow_rates() | self._effect_round():
            pass
        return self.state

    def _grow_rates(self) -> bool:
        grew = False
        for c in self.configs:
            n = self.state.n[c.key]
            while n < self.a.max_seeds and self.complete(c, n) and self.rate_undecided(c, n):
                n = self.a.next_look(n)
                grew = True
            self.state.n[c.key] = n
        return grew

    def _effect_round(self) -> bool:
        """Evaluate the effects at the current level once all their configurations finished it;
        the undecided ones' configurations then need one seed more. Returns whether any grew."""
        from harness.stats.paired import corrected_effects, effect_undecided  # SciPy: only when seeds are decided

        st = self.state
        pending = [e for e in range(len(self.effects)) if e not in st.decided]
        if not pending or not all(self.complete(c, st.level) for e in pending for c in self.involved(e)):
            return False  # (a decided effect's configurations may have stopped below this level)
        st.last = corrected_effects([self.diffs(e, st.decided.get(e, st.level)) for e in range(len(self.effects))],
                                    alpha=effect_alpha(self.a))
        st.evaluated_at = st.level
        for e, d in enumerate(st.last):
            if e not in st.decided and d.claimed and not effect_undecided(d.low, d.high):
                st.decided[e] = st.level
        pending = [e for e in pending if e not in st.decided]
        if not pending or st.level >= self.a.max_seeds:
            return False
        st.level = self.a.next_look(st.level)
        for e in pending:
            for c in self.involved(e):
                st.n[c.key] = max(st.n[c.key], st.level)
        return True

    def diffs(self, e: int, level: int) -> np.ndarray:
        """Best dev accuracy at the effect's level minus at its baseline, per pair (same other
        factors, same seed below `level`); pairs with a run without a dev accuracy are left out."""
        factor, b, lv = self.effects[e]
        out = []
        for c in self.configs:
            if c.factors[factor] != b:
                continue
            partner = self.by_key.get(tuple((k, lv if k == factor else v) for k, v in c.key))
            if partner is None:
                continue
            for sa, sb in zip(c.seeds[:level], partner.seeds[:level]):
                da, db = self.out.get(sa.trial_id), self.out.get(sb.trial_id)
                if da is not None and db is not None and not (math.isnan(da[1]) or math.isnan(db[1])):
                    out.append(db[1] - da[1])
        return np.asarray(out, dtype=np.float64)


# ----------------------------------------------------------------------------- the decision

def decide(cfg: ExperimentConfig, specs: Sequence[TrialSpec], runs: pd.DataFrame) -> Decision:
    """The seeds every configuration needs given the finished `runs` (columns RUNS_COLUMNS; rows of
    trials outside `specs` are ignored). `specs` is `pool(cfg, data_id)`."""
    a = _settings(cfg)
    configs = _configs(specs, [short_axis_name(a) for a in cfg.grid])
    racing = _Racing(a, configs, _outcomes(runs))
    st = racing.run()
    needed, reserve = [], []
    for c in configs:
        needed += c.seeds[:st.n[c.key]]
        reserve += c.seeds[st.n[c.key]:]
    pending = {e for e in range(len(racing.effects)) if e not in st.decided}
    rows = [_config_decision(racing, c, st.n[c.key], pending) for c in configs]
    return Decision(rows, _effect_statuses(racing, pending), needed, reserve)


def _config_decision(r: _Racing, c: _Config, n: int, pending: set[int]) -> ConfigDecision:
    finished, reached = r.counts(c, n)
    waits = [e for e in pending if c.key in r.members[e]]
    in_effects = any(c.key in m for m in r.members)
    if finished < n:
        return ConfigDecision(c.factors, n, finished, reached, "running", f"running: {finished}/{n} seeds finished")
    rate = f"reached in {reached}/{n}" if reached / n > 0.5 else f"failed in {n - reached}/{n}"
    if not r.rate_undecided(c, n) and not waits:
        tail = "; its effects decided" if in_effects else ""
        return ConfigDecision(c.factors, n, finished, reached, "decided", f"decided: {rate}{tail}")
    if n >= r.a.max_seeds:
        why = "effect undecided" if waits and not r.rate_undecided(c, n) else "rate undecided"
        return ConfigDecision(c.factors, n, finished, reached, "max_seeds",
                              f"max_seeds reached: {rate}, {why}")
    return ConfigDecision(c.factors, n, finished, reached, "running",
                          f"running: {rate}; waiting for the effect round at {r.state.level} seeds")


def _effect_statuses(r: _Racing, pending: set[int]) -> list[EffectStatus]:
    st = r.state
    out = []
    for e, (factor, b, lv) in enumerate(r.effects):
        d = st.last[e] if st.last else None
        level = st.decided.get(e, st.evaluated_at)
        if d is None:
            state = "running"
        elif e not in pending:
            state = "decided"
        else:
            ready = all(r.complete(c, st.level) for c in r.involved(e))
            state = "max_seeds" if ready and st.level >= r.a.max_seeds else "undecided"
        nan = math.nan
        out.append(EffectStatus(factor, b, lv, level, d.n_pairs if d else 0, d.mean if d else nan,
                                d.low if d else nan, d.high if d else nan, d.confidence if d else nan, state))
    return out


def summary(cfg: ExperimentConfig, decision: Decision) -> dict[str, Any]:
    """`DIR/adaptive.json`: the settings, the trial counts, and per configuration and per effect
    how many seeds it got and why it stopped (plain JSON types; nan written as null)."""
    a = _settings(cfg)

    def num(x: float) -> float | None:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    states = [c.state for c in decision.configs]
    return {
        "min_seeds": a.min_seeds, "max_seeds": a.max_seeds, "confidence": a.confidence, "batch": a.batch,
        "trials": {"needed": len(decision.needed), "max": decision.max_trials,
                   "finished": sum(c.finished for c in decision.configs)},
        "configurations": {s: states.count(s) for s in ("decided", "max_seeds", "running")},
        "per_configuration": [{"factors": c.factors, "seeds": c.seeds, "finished": c.finished, "reached": c.reached,
                               "state": c.state, "reason": c.reason} for c in decision.configs],
        "effects": [{"factor": e.factor, "baseline": e.baseline, "level": e.level, "seeds": e.seeds,
                     "pairs": e.pairs, "mean": num(e.mean), "low": num(e.low), "high": num(e.high),
                     "confidence": num(e.confidence), "state": e.state} for e in decision.effects],
    }


def summary_line(info: dict[str, Any]) -> str:
    """One line for `harness status` from `summary(...)`."""
    c, t = info["configurations"], info["trials"]
    return (f"adaptive seeds ({info['min_seeds']}..{info['max_seeds']}): {c['decided']} configurations decided, "
            f"{c['max_seeds']} at max_seeds, {c['running']} running; {t['needed']} trials needed so far "
            f"(up to {t['max']})")
