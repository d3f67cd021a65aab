"""Statistics for few seeds, censoring and success/failure outcomes: pure functions of counts and
arrays, shared by the report (`harness.report`) and the adaptive-seeding rule (`harness.adaptive`).

Nothing here reads files, prints, plots, or imports torch, matplotlib or another harness package.
Every interval is `(low, high)` at the given confidence; "does not exist" is None, "cannot be
computed from these data" is nan. One job per module:

- `rates`: one success rate (k of n runs) and its Wilson interval;
- `two_rates`: two success rates compared by exact tests, the exact interval of their difference,
  and the exact power of those tests;
- `multiplicity`: Holm's step-down correction and the exact conditional minP adjustment;
- `paired`: paired effects at a few seeds (t interval, sign test, the decision rule, pairs needed);
- `survival`: Kaplan-Meier curve and median time to target with its interval;
- `frontier`: D50, the distance at which half the runs still reach the target;
- `d50_ratio`: the ratio of two groups' D50s with a bootstrap interval;
- `summaries`: interquartile mean, and log10 ratios with underflow counted.

The package's `__init__` imports nothing, so importing one module loads only what it needs.
"""
