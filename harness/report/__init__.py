"""`harness report DIR`: the results' tables → DIR/figures/*.png (+ .svg) and DIR/report.md.

Reads what the run wrote (the trial shards, config.yaml, and the Optuna storage for study plots),
so it works while a run is still going. It writes only its own files, and the shards of trials run
by workers elsewhere, fetched into DIR/trials/ (`download_remote_shards`). `compute` reads only;
`build_figures` and `render` depend on their arguments alone (each takes what the one before
returned); saving happens in `write_report`. The estimators live in `harness.stats`, per-run
outcomes (success, censoring, D50, machines) in `outcomes`, group against group at each distance (the
section the findings lead with) in `contrasts`, corrected paired effects in `effects`, tables in
`stats`, figures in `figures` (functions that return figures), sentences in `findings`, markdown
sections in `sections`, number formats in `fmt`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.config import ARM, ConfigError, ExperimentConfig, arm_keys, short_axis_name
from harness.files import atomic_path, atomic_write_text
from harness.report import figures, findings, stats
from harness.report import outcomes as O
from harness.report.effects import EffectRow, compute_effects, holm_note
from harness.report.effects import mark_near_frontier as mark_effects_near_frontier
from harness.report.fmt import fmt_setting
from harness.report.sections import (
    adaptive_markdown,
    effects_markdown,
    frontier_markdown,
    md_table,
    provenance_markdown,
    read_adaptive,
    success_markdown,
    summary_markdown,
)

__all__ = ["write_report", "download_remote_shards", "compute", "build_figures", "render", "ReportData", "Figures",
           "FIGURE_NAMES"]

FIGURE_NAMES = ("frontier_fit", "survival", "frontier", "heatmap", "curves_step", "curves_samples", "gradient_reach",
                "weights_moving", "convergence", "confusion", "study_history", "study_importance", "study_parallel")


@dataclass
class ReportData:
    """Everything the report shows, computed once from a results directory."""

    dir: Path
    cfg: ExperimentConfig | None
    config_text: str | None
    tables: dict[str, pd.DataFrame]
    runs: pd.DataFrame
    keys: list[str]
    varying: list[str]
    summary: pd.DataFrame
    effects: list[EffectRow]
    chance: float | None
    target: float | None
    planned: int | None
    max_seeds: int
    outcomes: pd.DataFrame = field(default_factory=pd.DataFrame)   # runs + reached, time, last_step
    success: pd.DataFrame = field(default_factory=pd.DataFrame)    # per configuration: k of n, median time
    fits: list[O.FrontierFit] = field(default_factory=list)        # D50 per cell × layernorm (× other factors)
    mixed: pd.DataFrame = field(default_factory=pd.DataFrame)      # configurations run on several machine kinds
    adaptive: dict | None = None                                   # DIR/adaptive.json, when the runner wrote it
    group: str = "cell"             # the factor that names a group (colour, legend, sentences): cell, or arm
    arms: list[str] = field(default_factory=list)                  # grid.arm's names, in the config's order


def download_remote_shards(results_dir: str | Path) -> int:
    """Write into DIR/trials/ the shards of trials that workers elsewhere finished (fetched from the
    artifact store named in DIR/run.yaml; nothing without one). Returns how many trials arrived."""
    d = Path(results_dir)
    if not (d / "config.yaml").is_file():
        return 0
    from harness.storage import download_artifacts

    return download_artifacts(d)


def compute(results_dir: str | Path) -> ReportData:
    """Load the tables of a results directory and compute the summary and effects (reads only)."""
    d = Path(results_dir)
    if not d.is_dir():
        raise ConfigError(f"{d} is not a results directory (it does not exist)")
    cfg, text = _load_config(d)
    if cfg is None and not (d / "trials").is_dir():
        raise ConfigError(f"{d} is not a results directory (no config.yaml and no trials/)")
    tables = _load_tables(d)
    runs = stats.prepare_runs(tables["runs"])
    if cfg is not None and cfg.study is not None and "phase" in runs.columns:
        # Configurations are compared at their own best settings: the re-runs, once they exist.
        phase = "rerun" if (runs["phase"] == "rerun").any() else "search"
        runs = runs[runs["phase"] == phase]
    grid_axes = list(cfg.to_dict()["grid"]) if cfg else [c for c in runs.columns if "." in c]
    implied = stats.arm_settings(runs, grid_axes, [short_axis_name(k) for k in arm_keys(cfg.arms)] if cfg else None)
    keys = stats.config_keys(runs, grid_axes, implied)
    varying = [k for k in stats.varying(runs, keys) if k not in implied]  # an arm implies its settings
    n_classes = cfg.data.synth.n_classes if cfg and cfg.data.kind == "synthetic" else None
    target = _single(runs, "target_dev_acc")
    if target is None and cfg is not None:
        target = cfg.train.target_dev_acc
    planned = int(np.prod([len(v) for v in cfg.grid.values()])) if cfg and cfg.grid else None
    adaptive = read_adaptive(d)
    if cfg is not None and cfg.adaptive is not None:
        # The grid has no seed axis: the trials planned are those adaptive seeding has asked for so far.
        planned = int(adaptive["trials"]["needed"]) if adaptive and "trials" in adaptive else None
    outcomes = O.run_outcomes(runs, tables["curves"])
    success = O.mark_near_frontier(O.success_table(outcomes, keys), keys, O.distance_column(outcomes))
    effects = mark_effects_near_frontier(compute_effects(outcomes, keys), outcomes, success, keys)
    return ReportData(
        dir=d, cfg=cfg, config_text=text, tables=tables, runs=runs, keys=keys, varying=varying,
        summary=stats.summarize(runs, keys), effects=effects,
        chance=stats.chance_level(tables["confusion"], n_classes), target=target, planned=planned,
        max_seeds=stats.n_seeds(runs, keys), outcomes=outcomes, success=success,
        fits=O.frontier_fits(outcomes, varying), mixed=O.mixed_machines(runs, keys), adaptive=adaptive,
        group=stats.group_key(runs), arms=_arm_names(cfg, runs))


def _arm_names(cfg: ExperimentConfig | None, runs: pd.DataFrame) -> list[str]:
    """The arms in the config's order (without a config: as the runs name them, in level order)."""
    names = list(cfg.grid.get(ARM, [])) if cfg is not None else []
    if stats.group_key(runs) == ARM:
        names += [a for a in stats.ordered_levels(runs[ARM]) if a not in names]
    return names


def _load_tables(d: Path, attempts: int = 3) -> dict[str, pd.DataFrame]:
    """records.load, retried: while a run is going, a retried trial's shard folder can be swapped
    out between listing it and reading it."""
    from harness.records import load

    for i in range(attempts):
        try:
            return load(d)
        except (FileNotFoundError, OSError):
            if i == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _load_config(d: Path) -> tuple[ExperimentConfig | None, str | None]:
    path = d / "config.yaml"
    if not path.is_file():
        return None, None
    from harness.plan import load_results_config, results_config_raw

    results_config_raw(d)  # not UTF-8, not YAML, not a mapping: a ConfigError naming the file and the way out
    text = path.read_text(encoding="utf-8")
    try:
        return load_results_config(d), text
    except ConfigError:
        return None, text  # a config this version cannot read: still show it, report from the tables


def _single(runs: pd.DataFrame, col: str) -> float | None:
    if col not in runs.columns:
        return None
    v = runs[col].dropna().unique()
    return float(v[0]) if len(v) == 1 else None


# ----------------------------------------------------------------------------- figures

@dataclass
class Figures:
    """What `build_figures` made: the figures with their captions, why any figure was left out
    (figure name -> reason, in the order the figures are built), and the study section's markdown
    ("" for a config without `study:`)."""

    figures: list[tuple[str, Any, str]] = field(default_factory=list)  # (name, figure, caption)
    notes: dict[str, str] = field(default_factory=dict)
    study_md: str = ""

    def add(self, name: str, build: Callable[[], tuple[Any, Any]], caption: str, when: bool = True,
            why: str = "") -> None:
        """Build and keep figure `name` when `when`; else note `why` it is missing."""
        if not when:
            self.notes[name] = why
            return
        fig, _ = build()
        self.figures.append((name, fig, caption))


def build_figures(data: ReportData) -> Figures:
    """Every figure the data allows, with its caption, and a note for each one left out."""
    out = Figures()
    if data.runs.empty:
        out.notes["all"] = "no trial has finished yet"
        return out
    panel_keys = [k for k in data.varying if k not in (data.group, "layernorm", "pad_size")]
    choice_note = _choice_note(panel_keys, data.group)
    chosen = stats.best_settings(data.runs, data.keys)
    with figures.arm_colors(data.arms):  # each arm its own colour, the same in every figure
        _add_outcome_figures(out, data)
        _add_accuracy_figures(out, data, panel_keys)
        _add_curve_figures(out, data, chosen, choice_note)
        _add_gradient_figures(out, data, chosen, choice_note)
        _add_convergence_figure(out, data)
        _add_confusion_figure(out, data)
    if data.cfg is not None and data.cfg.study is not None:
        _add_search_studies(out, data)
    else:
        _add_study(out, data)
    return out


def _add_outcome_figures(out: Figures, data: ReportData) -> None:
    """The frontier fit (success against distance) and the Kaplan-Meier curves (time to target)."""
    dist = data.fits[0].distance if data.fits else "pad_size"
    out.add("frontier_fit", lambda: figures.frontier_fit(data.fits, distance=dist, target=data.target),
            f"Share of runs that reached the target dev accuracy against the distance ({dist}), per {data.group} × "
            "layernorm, with Wilson 95% intervals; the curve is the logistic fit in log(1 + D) and the ◆ on the "
            "0.5 line its D50 with a bootstrap interval (somewhat optimistic at few seeds per distance); a "
            "wide pale bar is a bracket where the outcomes split perfectly (no finite fit)."
            + (" pad_size mixes the padding distance with truncation." if dist == "pad_size" else ""),
            bool(data.fits), "no run has an outcome yet")
    curves, marks = O.km_curves(data.outcomes, data.keys)
    panel_keys = [dist] * (dist in data.keys) + [k for k in data.varying if k not in (data.group, "layernorm", dist)]
    out.add("survival", lambda: figures.survival(curves, marks, panel_keys, target=data.target),
            "Kaplan–Meier curves of time to target: the share of a configuration's runs that had reached the "
            "target dev accuracy by each step, each run censored at its own last evaluated step (+); a "
            "diverged run never reaches it and stays in until the end. One panel per "
            f"{' × '.join(panel_keys)}.", len(curves) > 0, "no run has an outcome yet")


def _add_accuracy_figures(out: Figures, data: ReportData, panel_keys: list[str]) -> None:
    summary = data.summary
    out.add("frontier", lambda: figures.frontier(summary, panel_keys, data.chance),
            f"Test accuracy against pad_size, one line per {data.group} × layernorm: the mean over seeds with a band "
            "from the lowest to the highest seed (a description of the runs, not a confidence interval: the "
            "accuracies are bimodal, so read success and time to target above); the dashed grey line is chance. "
            "✕ on the axis marks configurations with diverged or failed runs (their count beside it).")
    row_keys = [k for k in data.keys if k not in (data.group, "layernorm", "lr")
                and (k == "pad_size" or k in data.varying)]
    out.add("heatmap", lambda: figures.heatmaps(summary, row_keys, "lr", data.chance),
            f"Mean test accuracy over {' × '.join(row_keys)} (rows) and learning rate (columns), one panel per "
            f"{data.group} × layernorm; (n✕) counts diverged/failed runs, 'div.' a setting where every run diverged.",
            "lr" in data.varying or "pad_size" in data.varying, "neither pad_size nor the learning rate varies (the "
            "Summary table gives the same means)")


def _add_curve_figures(out: Figures, data: ReportData, chosen: pd.DataFrame, choice_note: str) -> None:
    curves = data.tables["curves"]
    by = [data.group, "layernorm", "pad_size"]
    have_curves = len(curves) > 0 and len(chosen) > 0
    for x, name in (("step", "curves_step"), ("samples_seen", "curves_samples")):
        when = have_curves and (x == "step" or "batch_size" in data.varying)
        why = ("no evaluation points recorded yet" if not have_curves else
               "batch_size does not vary, so it is the step figure with the x axis rescaled")
        out.add(name, lambda x=x: figures.training_curves(
            stats.curve_bands(curves, chosen, by, x, "dev_loss"), stats.curve_bands(curves, chosen, by, x, "dev_acc"),
            x, target=data.target, chance=data.chance, note=choice_note),
            f"Dev loss (left columns) and dev accuracy (right columns) against "
            f"{'step' if x == 'step' else 'samples seen'}, one row per pad_size, cells side by side, "
            f"layernorm by line style; band: min–max over seeds. {choice_note}".strip(), when, why)


def _add_gradient_figures(out: Figures, data: ReportData, chosen: pd.DataFrame, choice_note: str) -> None:
    runs, t = data.runs, data.tables
    readout = _single_str(runs, "readout")
    only_last = readout is None and "readout" in runs.columns and bool((runs["readout"] == "last").any())
    reach_runs, reach_note = chosen, choice_note
    if only_last or "lag" in data.varying:
        # Distance from the read-out is defined for `last` alone (the others read a different position
        # per text), and each lag is a sequence layout of its own: one line per lag, `last` only.
        sub = runs[runs["readout"] == "last"] if only_last else runs
        readout = _single_str(sub, "readout")
        by = (data.group, "layernorm", "pad_size") + (("lag",) if "lag" in data.varying else ())
        reach_runs = stats.best_settings(sub, data.keys, by=by)
        others = [k for k in data.varying if k not in (*by, "readout", "model.readout")]
        reach_note = ("Read-out `last` only (the others read a different position per text). " if only_last
                      else "") + (f"Each line shows the {' × '.join(others)} setting with the best mean dev "
                                  f"accuracy for its {data.group}, layernorm and layout (chosen on dev data only, "
                                  "never on test)." if others else "")
    reach = stats.reach_table(t["grad_time"], reach_runs)
    out.add("gradient_reach", lambda: figures.gradient_reach(
        reach, xlabel="distance from the read-out position (tokens)" if readout == "last"
        else "input position (read-out position varies per text)"),
        ("‖∂L/∂x_t‖ (mean over the probe batch, geometric mean over seeds) for the embedding output, "
        "against distance from the position the classifier reads, at step 0 and at the end of training. "
        "A gradient that underflowed to exactly 0 (below 1e-38) is never clipped to a made-up value: ▼ on the "
        "axis floor where every seed's did, ○ where some seeds' did (the line then shows the others). "
        + reach_note).strip(), len(reach) > 0, "no gradient probe recorded yet")
    longest = runs["pad_size"].max()
    gnorms = stats.group_norm_table(t["grad_norms"], chosen[chosen["pad_size"] == longest])
    out.add("weights_moving", lambda: figures.weights_moving(gnorms, note=f"pad_size={longest}. {choice_note}".strip()),
            f"Per parameter group, gradient norm and update ratio ‖Δθ‖/‖θ‖ against step at pad_size {longest} "
            f"(geometric mean over seeds). {choice_note}".strip(), len(gnorms) > 0, "no gradient norms recorded yet")


def _add_convergence_figure(out: Figures, data: ReportData) -> None:
    conv = stats.convergence_table(data.outcomes, data.keys)
    conv_x = "samples" if "batch_size" in data.varying else "steps"
    conv_rows = [k for k in data.varying if k != "pad_size"] or [data.group, "layernorm"]
    out.add("convergence", lambda: figures.convergence(conv, conv_rows, x=conv_x, target=data.target),
            f"{'Samples' if conv_x == 'samples' else 'Steps'} to the target dev accuracy {data.target:g} per run "
            f"(one panel per pad_size); runs that never reached it sit in the grey zone right of every budget "
            f"(censored), diverged runs as ✕ (failed: hollow ✕); the black bar is the Kaplan–Meier median (each "
            f"run censored at its own last evaluated step; in the grey zone when fewer than half reached it)."
            if data.target is not None else "Steps to target per run.", len(conv) > 0,
            "no run has trained yet")


def _add_confusion_figure(out: Figures, data: ReportData) -> None:
    items = []
    for _, r in stats.best_trials(data.runs).iterrows():
        m = stats.confusion_matrix(data.tables["confusion"], r["trial_id"])
        if len(m):
            extra = ", ".join(fmt_setting(k, r[k]) for k in data.varying if k not in (data.group, "layernorm"))
            items.append((f"{r[data.group]} / LN {r['layernorm']}: dev acc {r['best_dev_acc']:.3f}, "
                          f"test acc {r['test_acc']:.3f}\n"
                          f"{extra}{', ' if extra else ''}seed {int(r['seed'])}", r[data.group], m))
    out.add("confusion", lambda: figures.confusion_matrices(items),
            f"Confusion matrices (test set) of the trial with the best dev accuracy for each {data.group} × layernorm "
            "(chosen on dev data only, never on test); colour: share of the true class, numbers: counts.",
            len(items) > 0, "no trial has a confusion table yet")


def _choice_note(panel_keys: list[str], group: str = "cell") -> str:
    if not panel_keys:
        return ""
    return (f"Each line shows the {' × '.join(panel_keys)} setting with the best mean dev accuracy "
            f"for its {group}, layernorm and pad_size (chosen on dev data only, never on test).")


def _single_str(runs: pd.DataFrame, col: str) -> str | None:
    if col not in runs.columns:
        return "last"
    v = runs[col].dropna().unique()
    return str(v[0]) if len(v) == 1 else None


def _add_search_studies(out: Figures, data: ReportData) -> None:
    """For a config with `study:`: each search study's plots, and the best-settings table."""
    import optuna

    from harness import study as study_mod
    from harness.report.study import best_table, study_figures
    from harness.storage import open_storage, read_run_settings

    cfg = data.cfg
    storage = open_storage(data.dir, cfg.run.storage or read_run_settings(data.dir).storage)
    studies, labels = {}, {}
    plans = study_mod.search_studies(cfg)
    for i, s in enumerate(plans):
        try:
            studies[s.name] = optuna.load_study(study_name=s.name, storage=storage)
        except KeyError:
            continue
        labels[s.name] = s.label
        slug = str(i) if len(plans) > 1 else "all"
        out.figures += study_figures(studies[s.name], cfg, slug, s.label)
    if not studies:
        out.notes["study"] = "no search study in the storage yet"
        return
    table = best_table(studies, labels, cfg)
    out.study_md = (f"Sampler {cfg.study.sampler}, pruner {cfg.study.pruner}, {cfg.study.n_trials} trials per "
                    f"study; objectives: {', '.join(f'{o.direction} {o.metric}' for o in cfg.study.objectives)}."
                    f" Each study's best setting"
                    + (" was re-run once per seed; the sections above compare those re-runs.\n\n"
                       if cfg.study.rerun_best else ".\n\n") + md_table(table) + "\n")


_STUDY_CAPTIONS = {"study_history": "Optuna optimisation history of the sampled trials.",
                   "study_importance": "Hyperparameter importance (Optuna's default evaluator).",
                   "study_parallel": "Parallel coordinates of the sampled trials."}


def _add_study(out: Figures, data: ReportData) -> None:
    """Optuna's plots, only for a study with sampled trials (trials without a 'trial_id' user attr,
    or a study marked 'study'); an enumerated grid has nothing for them to show."""
    figs, why = _study_plots(data)
    out.figures += [(name, fig, _STUDY_CAPTIONS[name]) for name, fig in figs]
    if why:
        out.notes["study"] = why


def _study_plots(data: ReportData) -> tuple[list[tuple[str, Any]], str]:
    """(name, figure) for each of Optuna's plots of the run's study, and why there are none."""
    cfg = data.cfg
    if cfg is None:
        return [], "no config.yaml, so no study name"
    url = cfg.run.storage
    if not url and not (data.dir / "optuna.journal").is_file():
        return [], "no Optuna storage in the results directory"
    try:
        import optuna

        from harness.storage import open_storage

        study = optuna.load_study(study_name=cfg.name, storage=open_storage(data.dir, url))
        trials = study.get_trials(deepcopy=False)
    except Exception as e:  # the study plots are optional; say why they are missing
        return [], f"the Optuna study could not be read ({type(e).__name__}: {e})"
    sampled = [t for t in trials if "trial_id" not in t.user_attrs]
    if not sampled and "study" not in study.user_attrs:
        return [], "the study is an enumerated grid (every trial enqueued), so Optuna's plots are skipped"
    figs = figures.study_figures(study)
    if not figs:
        return [], "Optuna could not draw its plots for this study (too few finished trials)"
    return figs, ""


# ----------------------------------------------------------------------------- markdown

def render(data: ReportData, built: Figures | None = None) -> str:
    """report.md: findings (the frontier first), success and time to target, the frontier's D50,
    corrected effects and the accuracy summary from `data`; a section per figure in `built` (with
    its caption, linking figures/<name>.png and .svg), the notes on figures left out, the study
    section when `built` has one, adaptive seeds when the runner recorded them, and provenance."""
    built = built or Figures()
    name = data.cfg.name if data.cfg else data.dir.name
    fs = findings.findings(data.runs, fits=data.fits, effects=data.effects, varying=data.varying,
                           target=data.target, planned=data.planned, max_seeds=data.max_seeds, mixed=data.mixed)
    target = f" {data.target:g}" if data.target is not None else ""
    from harness.report.contrasts import report_section  # group against group at each distance: leads the findings

    lead = report_section(data)
    parts = [f"# Report: {name}\n", _INTRO, "## Findings\n", *([lead] if lead else []),
             "\n".join(f"- {f}" for f in fs) + "\n",
             "## Success: reaching the target\n", _SUCCESS_INTRO.format(target=target), success_markdown(data),
             "## Frontier: where learning stops (D50)\n", _FRONTIER_INTRO, frontier_markdown(data),
             "## Effects\n", _EFFECTS_INTRO + (f" {holm_note(data.effects)}.\n" if data.effects else "\n"),
             effects_markdown(data),
             "## Summary per configuration: test accuracy (secondary)\n", _ACC_INTRO, summary_markdown(data),
             "## Figures\n"]
    for name_, _, caption in built.figures:
        parts.append(f"### {_title(name_)}\n\n![{_title(name_)}](figures/{name_}.png)\n\n{caption} "
                     f"([SVG](figures/{name_}.svg))\n")
    for name_, why in built.notes.items():
        parts.append(f"- Not drawn: {_title(name_)} — {why}.\n")
    if built.study_md:
        parts += ["## Study: best setting per configuration\n", built.study_md]
    if data.adaptive:
        parts += ["## Adaptive seeds\n", adaptive_markdown(data)]
    parts += ["## Provenance\n", provenance_markdown(data)]
    return "\n".join(parts)


_INTRO = ("Where does the vanilla RNN stop learning as sequences get longer, and what do the LSTM/GRU, "
          "LayerNorm, batch size and learning rate change about it? Generated by `harness report` from the "
          "tables in this directory; every number below comes from them. A run near the edge of learning is "
          "chaotic (another seed or CPU kernel set can flip it), so the report counts outcomes — reached the "
          "target or not, and when — and claims a difference only where the data decide it "
          "(docs/statistics.md).\n")
_SUCCESS_INTRO = (
    "A run succeeds when its dev accuracy reaches the target{target}. The rate's interval is Wilson's (95%). "
    "Time to target is survival data: a run that did not reach the target is censored at its own last "
    "evaluated step (a diverged run at the longest one: it never gets there); the median is the "
    "Kaplan–Meier median with its Brookmeyer–Crowley interval ('open' / '> N': beyond what the runs "
    "observed), and 'not reached by half the runs' where fewer than half got there. † marks a "
    "configuration near the frontier: its runs are mixed, or the next distance tested (every other factor "
    "the same) has another outcome. Whether such a configuration is decided, and an effect its runs could "
    "undo by flipping (marked in the Effects table), can differ on another machine or CPU kernel set, "
    "whose floating-point order flips runs at the edge of learning. The marks are a caution, not a test: "
    "whether two results folders agree is tested by benchmarks/compare_conclusions.py (exact tests of the "
    "counts; benchmarks/README.md §8).\n")
_FRONTIER_INTRO = (
    "D50 is the distance at which half the runs still reach the target: a logistic fit of success on "
    "log(1 + D) per cell × layernorm (× any other varied factor), with a stratified bootstrap interval "
    "(somewhat optimistic at few seeds per distance). Where the outcomes split perfectly the fit has no "
    "finite slope and the table gives the bracket the data show instead.\n")
_EFFECTS_INTRO = (
    "Each row switches one factor from its first level to another, holding every other factor and the seed "
    "fixed (matched pairs). The seed is the unit: each seed's paired differences are averaged over the "
    "settings of the other factors, and the interval is Student's t over the seeds. Test acc: difference in "
    "percentage points. Steps to target: difference of restricted mean steps spent below the target within "
    "the first τ steps (τ: the earliest step at which a run of the comparison that did not reach the target "
    "was censored; negative = the new level gets there sooner). A difference is claimed ('decided') only "
    "when the corrected interval excludes zero and there are at least 5 seeds (where every seed's difference "
    "is the same there is no t interval, and the exact sign test decides); otherwise the row says how many "
    "seeds would decide at 80% power if the true difference and spread were those seen. A decision marked † may "
    "not reproduce on another machine or with other seeds: a replication would claim it again with "
    "probability under 80%, because its interval only just clears zero, or because runs of the "
    "configurations near the frontier that it pools (marked † in the Success table) flip often enough to "
    "undo it (simulated: each such run drawn anew at its configuration's rate). An unmarked decision can "
    "still fail to reproduce; benchmarks/compare_conclusions.py tests two folders against each other.")
_ACC_INTRO = (
    "Test accuracy after the fixed budget, for the runs that finished (diverged and failed runs have none "
    "but are counted). It is bimodal near the frontier (a run learns or stays at chance), so it is shown as "
    "the runs' values (2 runs), or the interquartile mean with the range (4 runs and more), without an "
    "interval.\n")


_TITLES = {"frontier_fit": "Frontier: success against distance, with D50", "survival": "Time to target (Kaplan–Meier)",
           "frontier": "Test accuracy against pad_size", "heatmap": "Test accuracy heatmaps",
           "curves_step": "Training curves (against step)", "curves_samples": "Training curves (against samples)",
           "gradient_reach": "Gradient reach", "weights_moving": "Are the weights moving",
           "convergence": "Convergence speed", "confusion": "Confusion matrices",
           "study_history": "Study: optimisation history", "study_importance": "Study: hyperparameter importance",
           "study_parallel": "Study: parallel coordinates", "study": "Optuna study plots", "all": "all figures"}


def _title(name: str) -> str:
    return _TITLES.get(name, name)


# ----------------------------------------------------------------------------- entry point

def write_report(results_dir: str | Path) -> Path:
    """Write DIR/figures/<name>.png and .svg and DIR/report.md (linking every figure); return the
    path of report.md. First fetches into DIR/trials/ the shards of trials run elsewhere
    (`download_remote_shards`). Works on a finished run, a run still going, a single trial, and a
    run with failed or diverged trials."""
    import matplotlib.pyplot as plt

    download_remote_shards(results_dir)
    from harness.records import quarantine_damaged

    quarantine_damaged(results_dir, again="the next `harness run` runs it again")  # to DIR/quarantine/
    data = compute(results_dir)
    fig_dir = data.dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    try:
        built = build_figures(data)
        for name, fig, _ in built.figures:
            _save_figure(fig, fig_dir / f"{name}.png")
            try:  # the layout is settled by the first save; do not solve it again for the SVG
                fig.set_layout_engine("none")
            except RuntimeError:
                pass
            _save_figure(fig, fig_dir / f"{name}.svg")
            plt.close(fig)
    finally:
        plt.close("all")
    drawn = {n for n, _, _ in built.figures}
    for name in FIGURE_NAMES:  # a figure this run no longer has must not be shown as current
        if name not in drawn:
            for ext in ("png", "svg"):
                (fig_dir / f"{name}.{ext}").unlink(missing_ok=True)
    path = data.dir / "report.md"
    atomic_write_text(path, render(data, built))
    return path


def _save_figure(fig: Any, path: Path) -> None:
    """Save `fig` atomically, in the format its suffix names."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:])
