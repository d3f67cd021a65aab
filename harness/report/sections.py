"""The report's markdown tables, one function per section; each reads `ReportData` only."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from harness.adaptive import stopping_coverage
from harness.report import outcomes as O
from harness.report.effects import STOP_AT_TARGET_NOTE, stopped_at_target
from harness.report.findings import d50_text, describe, label_keys, verdict
from harness.report.fmt import fmt_setting, fmt_value, interval, md_table, pct, points
from harness.report.targets import learned_counts, learned_sentence

if TYPE_CHECKING:
    from harness.report.data import ReportData

ADAPTIVE_FILE = "adaptive.json"   # written by the adaptive-seeds runner: {config key: {seeds, reason}}


def _shown(data: ReportData, table: pd.DataFrame) -> list[str]:
    return data.varying or [k for k in (data.group, "layernorm") if k in table.columns]


def _steps(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:g}"


# ----------------------------------------------------------------------------- success

def adaptive_seeds(data: ReportData) -> tuple[int, int] | None:
    """(min_seeds, max_seeds) when adaptive seeding chose the seed counts (config or adaptive.json)."""
    a = getattr(data.cfg, "adaptive", None) if data.cfg is not None else None
    if a is not None:
        return int(a.min_seeds), int(a.max_seeds)
    info = data.adaptive if isinstance(data.adaptive, dict) else {}
    lo, hi = info.get("min_seeds"), info.get("max_seeds")
    return (int(lo), int(hi)) if isinstance(lo, int) and isinstance(hi, int) else None


def exploratory_note(data: ReportData) -> str:
    """Under adaptive seeding: why every row's interval is exploratory, with the coverage it has."""
    seeds = adaptive_seeds(data)
    if seeds is None:
        return ""
    lo, hi = seeds
    a = getattr(data.cfg, "adaptive", None) if data.cfg is not None else None
    info = data.adaptive if isinstance(data.adaptive, dict) else {}
    batch = int(a.batch) if a is not None else int(info.get("batch", 1))
    cover = stopping_coverage(0.5, lo, hi, batch=batch)
    step = f"{batch} at a time" if batch > 1 else "one at a time"
    return (f"**Exploratory.** Adaptive seeding chose each configuration's number of seeds ({lo} to {hi}) from "
            f"its outcomes, adding seeds ({step}) while the Wilson interval held 0.5, so these intervals do not "
            f"cover at 95%: at a true rate of 0.5 the interval a configuration stops with covers it {cover:.0%} of "
            f"the time (`harness.adaptive.stopping_coverage`). The contrasts that lead the findings use only seeds "
            f"0–{lo - 1}, which every configuration ran whatever its outcomes.\n\n")


def success_markdown(data: ReportData) -> str:
    """Per configuration: k of n runs reached the target, the rate with its Wilson interval, the
    Kaplan-Meier median steps to target with its interval, the runs' budgets, and how many runs learned
    at all (`targets.learned_counts`: test accuracy above chance, whatever the target). Under adaptive
    seeding each row says it is exploratory (`exploratory_note`)."""
    s = data.success
    if s.empty:
        return "_(no trial has results yet)_\n"
    keys = [k for k in data.keys if k in s.columns]
    s = s.merge(learned_counts(data.outcomes, keys, data.tables.get("confusion")), on=keys, how="left")
    note = exploratory_note(data)
    near = "near the frontier" if data.question.has_frontier else "mixed outcomes"
    rows = []
    for _, r in s.iterrows():
        budget = (_steps(r["last_min"]) if r["last_min"] == r["last_max"]
                  else f"{_steps(r['last_min'])}–{_steps(r['last_max'])}")
        rows.append({**{k: fmt_value(r[k]) for k in _shown(data, s)}, "reached": f"{int(r['k'])} of {int(r['n'])}",
                     "rate [95% Wilson]": f"{pct(r['rate'], 0)} {interval(r['low'], r['high'], lambda v: pct(v, 0))}"
                     if r["n"] else "—",
                     "median steps to target [95% CI]": _median_text(r),
                     "learned (above chance)": f"{int(r['learned_k'])} of {int(r['learned_n'])}"
                     if pd.notna(r["learned_n"]) else "—",
                     "last evaluated step": budget, "no outcome (failed)": int(r["missing"]),
                     near: "†" if r.get("near_frontier", False) else "",
                     **({"seeds": "chosen adaptively: exploratory"} if note else {})})
    return note + learned_sentence() + "\n\n" + md_table(pd.DataFrame(rows))


def _median_text(r: pd.Series) -> str:
    if r["n"] == 0:
        return "—"
    if math.isnan(r["median"]):
        return f"not reached by half the runs ({int(r['k'])} of {int(r['n'])})"
    low = "open" if math.isnan(r["median_low"]) else _steps(r["median_low"])
    high = f"> {_steps(r['last_max'])}" if math.isnan(r["median_high"]) else _steps(r["median_high"])
    return f"{_steps(r['median'])} [{low}, {high}]"


# ----------------------------------------------------------------------------- frontier

_KIND = {"fit": "logistic fit, bootstrap interval", "separated": "bracket (outcomes split perfectly)",
         "all_reached": "every run reached the target", "none_reached": "no run reached the target",
         "no_decline": "success does not fall with distance", "one_distance": "one distance only"}


def d50_kind(fit: O.D50Fit | None, distance: str, within: str = "its budget") -> str:
    """What kind of statement a D50 is: a bracket only where the outcomes split perfectly; a split with
    one mixed distance is 'not estimable' with the reason; 'no run reached the target within `within`'."""
    if fit is None:
        return "—"
    if fit.status == "separated" and not fit.perfect:
        return f"not estimable: {O.unsplit_reason(fit, distance)}"
    if fit.status == "none_reached":
        return f"no run reached the target within {within}"
    return _KIND.get(fit.status, fit.status)


def frontier_markdown(data: ReportData) -> str:
    """Per group: successes per distance, D50 and what kind of statement it is."""
    if not data.fits:
        return "_(no run has an outcome yet)_\n"
    rows = []
    within = O.steps_text(O.budget_steps(data.outcomes if len(data.outcomes) else data.runs))
    shown = label_keys(data.fits)   # the group and what varies between fits: no column of 'none's
    for f in data.fits:
        dist = f.distance
        per = ", ".join(f"{int(p['k'])}/{int(p['n'])} at {fmt_value(p[dist])}" for _, p in f.points.iterrows())
        kind = d50_kind(f.fit, dist, within)
        if f.fit is not None and f.fit.n_boot_undefined:
            kind += f"; {f.fit.n_boot_undefined} resamples without a D50 widen it"
        if adaptive_seeds(data) is not None:
            kind += "; exploratory (seeds chosen adaptively)"
        rows.append({**{k: fmt_value(v) for k, v in f.group.items() if k in shown}, f"reached per {dist}": per,
                     f"D50 (half the runs reach the target within {within})":
                         d50_text(f.fit, [float(x) for x in f.points[dist]]).split(" (")[0],
                     "kind": kind})
    return md_table(pd.DataFrame(rows))


# ----------------------------------------------------------------------------- effects

def effects_markdown(data: ReportData) -> str:
    """Every effect row with its corrected interval, level, adjusted p-value and decision; first, when
    runs stopped at the target, why there are no test-accuracy rows (`effects.STOP_AT_TARGET_NOTE`)."""
    stop = f"{STOP_AT_TARGET_NOTE}\n\n" if stopped_at_target(data.runs) else ""
    if not data.effects:
        return stop + ("_No factor varies with matched pairs in these results, so there are no paired effects._\n"
                       if len(data.runs) else "_(no trial has results yet)_\n")
    rows = []
    for e in data.effects:
        d = e.decision
        fmt = points if e.measure == "acc" else (lambda x: f"{x:+.0f}")
        delta = f"{fmt(d.mean)} {interval(d.low, d.high, fmt)}" + (" (clamped)" if e.clamped else "")
        if e.never is not None:
            never = fmt_value(e.level if e.never == "level" else e.baseline)
            delta = f"censored: {never} did not reach the target within {O.steps_text(e.never_within)}"
        rows.append({"factor": e.factor, "comparison": f"{fmt_value(e.level)} − {fmt_value(e.baseline)}",
                     "within": e.within,
                     "measure": "test acc (points)" if e.measure == "acc" else f"steps to target (RMST, τ={e.tau:g})",
                     "seeds (pairs)": f"{e.seeds} ({e.pairs})",
                     "Δ [corrected CI]": delta, "test": e.test,
                     "level": f"{100 * d.confidence:.2f}%",
                     "p (Holm)": "n/a" if math.isnan(d.p_adjusted) else f"{d.p_adjusted:.3g}",
                     "decision": verdict(e)})
    return stop + md_table(pd.DataFrame(rows))


# ----------------------------------------------------------------------------- accuracy (secondary)

def _acc_text(r: pd.Series) -> str:
    n = int(r["acc_n"])
    if n == 0:
        return "—"
    if n == 1:
        return f"{pct(r['acc_mean'])} (one run)"
    if n == 2:
        return f"{pct(r['acc_min'])}, {pct(r['acc_max'])}"
    centre = f"IQM {pct(r['acc_iqm'])}" if not math.isnan(r["acc_iqm"]) else f"mean {pct(r['acc_mean'])}"
    return f"{centre} (min {pct(r['acc_min'])}, max {pct(r['acc_max'])}, {n} runs)"


def stops_at_target(data: ReportData) -> bool:
    """`train.stop_at_target` as run (the config in the results folder); without a config, whether any
    run ended because it reached the target."""
    if data.cfg is not None:
        return bool(data.cfg.train.stop_at_target)
    return stopped_at_target(data.runs)


def accuracy_intro(data: ReportData) -> str:
    """What the test accuracies are, worded after `train.stop_at_target` as run: after each run's whole
    budget, or, where runs stop at the target, when each run ended (an early model for those that
    reached it)."""
    runs = data.runs
    steps = pd.to_numeric(runs["steps"], errors="coerce") if "steps" in runs.columns else pd.Series(dtype=float)
    budget = O.steps_text(float(steps.max()) if steps.notna().any() else None)
    plateau = "stop_reason" in runs.columns and bool((runs["stop_reason"] == "early_stop").any())
    early = (", or earlier where dev loss stopped improving (`train.require_improvement`: stop_reason "
             "early_stop)") if plateau else ""
    if stops_at_target(data):
        when = (f"Test accuracy when each run ended: at the first evaluation that reached the target for a run that "
                f"reached it (`train.stop_at_target` is on: an early model, so these accuracies are not compared), "
                f"after the budget of {budget}{early} for one that did not")
    else:
        when = (f"Test accuracy after each run's budget of {budget}{early} (`train.stop_at_target` is off: a run "
                f"that reached the target trained on)")
    return (when + ", for the runs that finished (diverged and failed runs have none but are counted). It is bimodal "
            "near the frontier (a run learns or stays at chance), so it is shown as the runs' values (2 runs), or "
            "the interquartile mean with the range (4 runs and more), without an interval.\n")


def summary_markdown(data: ReportData) -> str:
    s = data.summary
    if s.empty:
        return "_(no trial has results yet)_\n"
    rows = []
    for _, r in s.iterrows():
        rows.append({**{k: fmt_value(r[k]) for k in _shown(data, s)}, "runs": int(r["runs"]),
                     "complete": int(r["complete"]), "diverged": int(r["diverged"]), "failed": int(r["failed"]),
                     "pruned": int(r["pruned"]), "test acc": _acc_text(r),
                     "samples/s": "—" if math.isnan(r["samples_per_s"]) else f"{r['samples_per_s']:.0f}"})
    shown = _shown(data, s)
    fixed = [k for k in data.keys if k not in shown and k in data.runs.columns and data.runs[k].notna().any()]
    head = ""
    if fixed:
        head = "Fixed in these results: " + ", ".join(
            fmt_setting(k, data.runs[k].dropna().iloc[0]) for k in fixed) + ".\n\n"
    if stopped_at_target(data.runs):
        head += ("Runs stopped at the first evaluation that reached the target (`train.stop_at_target`): these "
                 "are the test accuracies of models stopped there, not of trained ones; do not compare them.\n\n")
    return head + md_table(pd.DataFrame(rows))


# ----------------------------------------------------------------------------- adaptive seeds

def read_adaptive(d: Path) -> dict | None:
    """DIR/adaptive.json, written by the adaptive-seeds runner, or None when absent or unreadable.
    Its `per_configuration` list ({factors, seeds, finished, reached, state, reason}), `trials` and
    `effects` are shown; a plain {config key: {seeds, reason}} mapping is read too."""
    path = d / ADAPTIVE_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def _adaptive_rows(info: dict) -> list[dict]:
    """One row per configuration, from either form of adaptive.json."""
    if isinstance(info.get("per_configuration"), list):
        return [{"configuration": " ".join(f"{k}={fmt_value(v)}" for k, v in (c.get("factors") or {}).items()),
                 "seeds": c.get("seeds", "?"), "reached": c.get("reached", "?"), "state": c.get("state", "?"),
                 "why it stopped": c.get("reason", "?")}
                for c in info["per_configuration"] if isinstance(c, dict)]
    return [{"configuration": str(k), "seeds": v.get("seeds", "?"), "why it stopped": v.get("reason", "?")}
            for k, v in info.items() if isinstance(v, dict)]


def adaptive_markdown(data: ReportData) -> str:
    """How many seeds each configuration got and why the runner stopped adding seeds."""
    info = data.adaptive
    if not info:
        return ""
    head = f"Seeds were added per configuration only while its outcome was undecided (`{ADAPTIVE_FILE}`)"
    t = info.get("trials")
    if isinstance(t, dict) and t.get("max"):
        head += (f"; {t.get('needed', '?')} trials were needed of the {t['max']} that "
                 f"{info.get('max_seeds', 'max_seeds')} seeds everywhere would take")
    out = head + ".\n\n" + md_table(pd.DataFrame(_adaptive_rows(info)))
    effects = [e for e in info.get("effects") or [] if isinstance(e, dict)]
    if effects:
        out += "\nRequested effects:\n\n" + md_table(pd.DataFrame(
            [{"effect": f"{e.get('factor')} {e.get('level')} vs {e.get('baseline')}", "seeds": e.get("seeds", "?"),
              "state": e.get("state", "?")} for e in effects]))
    return out


# ----------------------------------------------------------------------------- provenance

def machines_markdown(data: ReportData) -> list[str]:
    """Lines: the kinds of machine and kernel set the runs came from, which provenance columns are
    missing, and a warning per configuration whose runs mix kinds."""
    r = data.runs
    missing = [c for c in O.PROVENANCE_COLUMNS if c not in r.columns or r[c].isna().all()]
    kinds = O.machine_kinds(r).replace("", "not recorded").value_counts()
    lines = ["- Machines and kernel sets: " + "; ".join(f"{n} run{'s' if n != 1 else ''} on `{k}`"
                                                       for k, n in kinds.items())]
    if missing:
        lines.append(f"- Not recorded in these results (older runs): {', '.join(f'`{c}`' for c in missing)}")
    for _, m in data.mixed.iterrows():
        lines.append(f"- **Warning**: the {m['runs']} runs of {describe(m, data.varying or data.keys)} come from "
                     f"{len(m['kinds'])} kinds of machine: " + " | ".join(f"`{k}`" for k in m["kinds"]))
    return lines


def provenance_markdown(data: ReportData) -> str:
    r = data.runs
    lines = []

    def values(col: str) -> str:
        if col not in r.columns or r[col].dropna().empty:
            return "not recorded"
        v = [str(x) for x in pd.unique(r[col].dropna())]
        return ", ".join(f"`{x}`" for x in v[:6]) + (f" and {len(v) - 6} more" if len(v) > 6 else "")

    lines.append(f"- Results directory: `{data.dir}`")
    if data.cfg is not None:
        source = f" (config from `{data.cfg.source}`)" if data.cfg.source else ""
        lines.append(f"- Experiment: `{data.cfg.name}`{source}")
    lines.append(f"- Harness: {values('harness_version')}; git commit: {values('git_commit')}"
                 + (" (with uncommitted changes)" if _any_true(data, "git_dirty") else ""))
    lines.append(f"- Device: {values('device')}; torch {values('torch_version')}")
    lines += machines_markdown(data)
    if "worker" in r.columns:
        hosts = pd.unique(r["worker"].dropna().astype(str).str.split(":").str[0])
        lines.append(f"- Hosts: {', '.join(f'`{h}`' for h in hosts) or 'not recorded'}")
    if "started_at" in r.columns and r["started_at"].notna().any():
        started = pd.to_datetime(r["started_at"], errors="coerce", utc=True).dropna()
        if len(started):
            lines.append(f"- Ran: first trial started {started.min():%Y-%m-%d %H:%M} UTC, last started "
                         f"{started.max():%Y-%m-%d %H:%M} UTC")
    if "wall_s" in r.columns and r["wall_s"].notna().any():
        lines.append(f"- Trial time: {r['wall_s'].sum() / 60:.1f} min in total over {len(r)} trials")
    lines.append(f"- Report written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    out = "\n".join(lines) + "\n"
    if data.config_text:
        out += ("\n<details><summary>config.yaml (the resolved config, as run)</summary>\n\n```yaml\n"
                + data.config_text.rstrip() + "\n```\n\n</details>\n")
    else:
        out += "\nNo config.yaml in the results directory.\n"
    return out


def _any_true(data: ReportData, column: str) -> bool:
    """Whether any run has `column` true (a column older runs lack counts as false)."""
    runs = data.runs
    return column in runs and bool(runs[column].fillna(False).astype(bool).any())
