"""`harness report DIR`: the results' tables → DIR/figures/*.png (+ .svg) and DIR/report.md.

Reads what the run wrote (the trial shards, config.yaml, and the Optuna storage for study plots),
so it works while a run is still going. It writes only its own files, and the shards of trials run
by workers elsewhere, fetched into DIR/trials/ (`download_remote_shards`). `compute` reads only;
`build_figures` and `render` depend on their arguments alone (each takes what the one before
returned); saving happens in `write_report`. The question the results ask (what varies: a distance,
the groups, other factors) is `question`; it decides the opening, the frontier section and, through
the figure table `catalogue`, which figures are drawn. The estimators live in `harness.stats`, per-run
outcomes (success, censoring, D50, machines) in `outcomes`, group against group at each distance (the
section the findings lead with) in `contrasts`, corrected paired effects in `effects`, tables in
`stats`, figures in `figures` (functions that return figures) listed in `catalogue`, sentences in `findings`, markdown
sections in `sections`, number formats in `fmt`, the HTML page in `html`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.config import ARM, ConfigError, ExperimentConfig, arm_keys, short_axis_name
from harness.files import atomic_path, atomic_write_text
from harness.records import load, quarantine_damaged
from harness.report import figures, findings, stats
from harness.report import outcomes as O
from harness.report import question as Q
from harness.report import targets as T
from harness.report.answer import answer_markdown
from harness.report.budget import budget_markdown, split_tables
from harness.report.catalogue import CATALOGUE, Drawn, draw, figure_names
from harness.report.contrasts import report_section
from harness.report.data import ReportData
from harness.report.effects import compute_effects, holm_note
from harness.report.effects import mark_near_frontier as mark_effects_near_frontier
from harness.report.html import report_html
from harness.report.mechanism import mechanism_markdown
from harness.report.question import Question
from harness.report.sections import (
    accuracy_intro,
    adaptive_markdown,
    effects_markdown,
    frontier_markdown,
    md_table,
    provenance_markdown,
    read_adaptive,
    success_markdown,
    summary_markdown,
)
from harness.report.targets import frontier_targets_markdown
from harness.results_dir import load_results_config, read_run_settings, results_config_raw

__all__ = ["write_report", "download_remote_shards", "compute", "build_figures", "render", "ReportData", "Figures",
           "FIGURE_NAMES", "CATALOGUE"]

FIGURE_NAMES = figure_names()  # the catalogue's figures, in the report's order


def download_remote_shards(results_dir: str | Path) -> int:
    """Write into DIR/trials/ the shards of trials that workers elsewhere finished (fetched from the
    artifact store named in DIR/run.yaml; nothing without one). Returns how many trials arrived."""
    d = Path(results_dir)
    if not (d / "config.yaml").is_file():
        return 0
    from harness.storage import download_artifacts  # imports Optuna: only for a folder with a config.yaml

    return download_artifacts(d)


def compute(results_dir: str | Path) -> ReportData:
    """Load the tables of a results directory and compute the summary and effects (reads only)."""
    d = Path(results_dir)
    if not d.is_dir():
        raise ConfigError(f"{d} is not a results directory (it does not exist)")
    cfg, text = _load_config(d)
    if cfg is None and not (d / "trials").is_dir():
        raise ConfigError(f"{d} is not a results directory (no config.yaml and no trials/)")
    # headline.budget_check's runs are not the grid's: taken out of every table here, kept apart for their section.
    tables, checks = split_tables(_load_tables(d))
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
    arms = _arm_names(cfg, runs)
    question = Q.from_runs(runs, varying, target, arms, cfg) if len(runs) else Q.from_config(cfg, target)
    return ReportData(
        dir=d, cfg=cfg, config_text=text, tables=tables, runs=runs, keys=keys, varying=varying,
        summary=stats.summarize(runs, keys), effects=effects,
        chance=stats.chance_level(tables["confusion"], n_classes), target=target, planned=planned,
        max_seeds=stats.n_seeds(runs, keys), outcomes=outcomes, success=success,
        fits=O.frontier_fits(outcomes, varying), mixed=O.mixed_machines(runs, keys), adaptive=adaptive,
        group=stats.group_key(runs), arms=arms, question=question,
        budget_checks=O.run_outcomes(stats.prepare_runs(checks["runs"]), checks["curves"]))


def _arm_names(cfg: ExperimentConfig | None, runs: pd.DataFrame) -> list[str]:
    """The arms in the config's order (without a config: as the runs name them, in level order)."""
    names = list(cfg.grid.get(ARM, [])) if cfg is not None else []
    if stats.group_key(runs) == ARM:
        names += [a for a in stats.ordered_levels(runs[ARM]) if a not in names]
    return names


def _load_tables(d: Path, attempts: int = 3) -> dict[str, pd.DataFrame]:
    """records.load, retried: while a run is going, a retried trial's shard folder can be swapped
    out between listing it and reading it."""
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
    """What `build_figures` made: the figures drawn (`catalogue.Drawn`: name, figure, caption, title),
    why any figure the data could not draw yet was left out (figure title -> reason, in catalogue
    order), and the study section's markdown ("" for a config without `study:`)."""

    figures: list[Drawn] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    study_md: str = ""


def build_figures(data: ReportData) -> Figures:
    """Every figure of the catalogue whose needs the data meet, with its caption and title; a note for
    each one left out for want of data (none for one that does not fit the question)."""
    out = Figures()
    if data.runs.empty:
        out.notes["All figures"] = "no trial has finished yet"
        return out
    with figures.arm_colors(data.arms):  # each arm its own colour, the same in every figure
        for e in CATALOGUE:
            need = e.missing(data)
            if need is None:
                out.figures.append(draw(e, data))
            elif not need.quiet:
                out.notes[e.heading(data)] = need.why(data)
    if data.cfg is not None and data.cfg.study is not None:
        _add_search_studies(out, data)
    return out


def _add_search_studies(out: Figures, data: ReportData) -> None:
    """For a config with `study:`: each search study's plots, and the best-settings table."""
    import optuna  # Optuna, and the modules below that import it: only for a config with a study

    from harness import study as study_mod
    from harness.report.study import best_table, study_figures
    from harness.storage import open_storage

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
        out.notes["Optuna study plots"] = "no search study in the storage yet"
        return
    table = best_table(studies, labels, cfg)
    out.study_md = (f"Sampler {cfg.study.sampler}, pruner {cfg.study.pruner}, {cfg.study.n_trials} trials per "
                    f"study; objectives: {', '.join(f'{o.direction} {o.metric}' for o in cfg.study.objectives)}."
                    f" Each study's best setting"
                    + (" was re-run once per seed; the sections above compare those re-runs.\n\n"
                       if cfg.study.rerun_best else ".\n\n") + md_table(table) + "\n")


# ----------------------------------------------------------------------------- markdown

def render(data: ReportData, built: Figures | None = None) -> str:
    """report.md: the question the results ask, findings (the group contrasts and the frontier first,
    where a distance varies), success and time to target, the frontier's D50 (only where a distance
    varies), corrected effects and the accuracy summary from `data`; a section per figure in `built`
    (its title, caption, and links to figures/<name>.png and .svg), the notes on figures left out, the
    study section when `built` has one, adaptive seeds when the runner recorded them, and provenance."""
    built = built or Figures()
    q = data.question
    name = data.cfg.name if data.cfg else data.dir.name
    fs = findings.findings(data.runs, fits=data.fits, effects=data.effects, varying=data.varying,
                           target=data.target, planned=data.planned, max_seeds=data.max_seeds, mixed=data.mixed,
                           frontier=q.has_frontier)
    target = f" {data.target:g}" if data.target is not None else ""
    lead = report_section(data)
    answer = answer_markdown(data)
    parts = [f"# Report: {name}\n", f"{q.opening()} {_INTRO}", *([answer] if answer else []),
             "## Findings\n", *([lead] if lead else []),
             "\n".join(f"- {f}" for f in fs) + "\n",
             "## Success: reaching the target\n", _fits(q, _SUCCESS_INTRO.format(target=target)),
             success_markdown(data)]
    if q.has_frontier:
        parts += ["## Frontier: how far each reaches the target (D50)\n", _FRONTIER_INTRO, frontier_markdown(data)]
        parts += ["## Frontier at every target\n", frontier_targets_markdown(T.of(data))]
        mechanism = mechanism_markdown(data)  # only where a lag varies
        if mechanism:
            parts += ["## Mechanism: gradient reach against learning\n", mechanism]
    budget = budget_markdown(data)  # only with headline.budget_check
    if budget:
        parts += ["## Budget check\n", budget]
    parts += ["## Effects\n", _fits(q, _EFFECTS_INTRO) + (f" {holm_note(data.effects)}.\n" if data.effects else "\n"),
              effects_markdown(data),
              "## Summary per configuration: test accuracy (secondary)\n", _fits(q, accuracy_intro(data)),
              summary_markdown(data),
              "## Figures\n"]
    for d in built.figures:
        parts.append(f"### {d.title}\n\n![{d.title}](figures/{d.name}.png)\n\n{d.caption} "
                     f"([SVG](figures/{d.name}.svg))\n")
    for title, why in built.notes.items():
        parts.append(f"- Not drawn: {title} — {why}.\n")
    if built.study_md:
        parts += ["## Study: best setting per configuration\n", built.study_md]
    if data.adaptive:
        parts += ["## Adaptive seeds\n", adaptive_markdown(data)]
    parts += ["## Provenance\n", provenance_markdown(data)]
    return "\n".join(parts)


def _fits(q: Question, text: str) -> str:
    """`text` as it reads where no distance varies: what it says of the frontier said of mixed runs."""
    if q.has_frontier:
        return text
    for frontier_words, plain in _NO_FRONTIER.items():
        text = text.replace(frontier_words, plain)
    return text


_INTRO = ("Generated by `harness report` from the tables in this directory; every number below comes from "
          "them. A run near the edge of learning is chaotic (another seed or CPU kernel set can flip it), so the "
          "report counts outcomes — reached the target or not, and when — and claims a difference only where the "
          "data decide it (docs/statistics.md).\n")
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

_NO_FRONTIER = {
    "configuration near the frontier: its runs are mixed, or the next distance tested (every other factor the "
    "same) has another outcome": "configuration whose runs are mixed (some reached the target, some did not)",
    "configurations near the frontier that it pools": "configurations with mixed outcomes that it pools",
    "It is bimodal near the frontier": "It can be bimodal",
}


# ----------------------------------------------------------------------------- entry point

def write_report(results_dir: str | Path, *, html: bool = False) -> Path:
    """Write DIR/figures/<name>.png and .svg and DIR/report.md (linking every figure), and with `html`
    DIR/report.html (the same content, figures inline: `harness.report.html`); return the path of
    report.md. First fetches into DIR/trials/ the shards of trials run elsewhere
    (`download_remote_shards`). Works on a finished run, a run still going, a single trial, and a
    run with failed or diverged trials."""
    download_remote_shards(results_dir)
    quarantine_damaged(results_dir, again="the next `harness run` runs it again")  # to DIR/quarantine/
    data = compute(results_dir)
    fig_dir = data.dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    try:
        built = build_figures(data)
        for d in built.figures:
            _save_both(d.figure, fig_dir / d.name)
    finally:
        import matplotlib.pyplot as plt  # pyplot only here: the figures are drawn without it

        plt.close("all")  # Optuna's plots are pyplot figures; the catalogue's are not registered there
    _remove_stale(fig_dir, {d.name for d in built.figures})
    path = data.dir / "report.md"
    md = render(data, built)
    atomic_write_text(path, md)
    if html:
        atomic_write_text(data.dir / "report.html", report_html(md, data.dir, title=f"Report: {data.dir.name}"))
    return path


def _save_both(fig: Any, stem: Path) -> None:
    """Save `fig` as stem.png and stem.svg, in the report's style."""
    with figures.style():
        _save_figure(fig, stem.with_suffix(".png"))
        try:  # the layout is settled by the first save; do not solve it again for the SVG
            fig.set_layout_engine("none")
        except RuntimeError:
            pass
        _save_figure(fig, stem.with_suffix(".svg"))


def _remove_stale(fig_dir: Path, drawn: set[str]) -> None:
    """Delete the catalogue's (and the study plots') files that this report did not draw: a figure the
    run no longer has must not be shown as current."""
    for f in [*fig_dir.glob("*.png"), *fig_dir.glob("*.svg")]:
        if f.stem not in drawn and (f.stem in FIGURE_NAMES or f.stem.startswith("study_")):
            f.unlink(missing_ok=True)


def _save_figure(fig: Any, path: Path) -> None:
    """Save `fig` atomically, in the format its suffix names."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:])
