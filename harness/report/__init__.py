"""`harness report DIR`: the results' tables → DIR/figures/*.png (+ .svg) and DIR/report.md.

Reads what the run wrote (the trial shards, config.yaml, and the Optuna storage for study plots),
so it works while a run is still going. It writes only its own files, and the shards of trials run
by workers elsewhere, fetched into DIR/trials/ (`download_remote_shards`). `compute` reads only;
`build_figures` and `render` depend on their arguments alone (each takes what the one before
returned); saving happens in `write_report`. Statistics live in `stats`, figures in `figures`
(functions that return figures), sentences in `findings`, number formats in `fmt`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.config import ConfigError, ExperimentConfig
from harness.files import atomic_path, atomic_write_text
from harness.report import figures, findings, stats
from harness.report.fmt import change, fmt_setting, fmt_value, pct, points

__all__ = ["write_report", "download_remote_shards", "compute", "build_figures", "render", "ReportData", "Figures",
           "FIGURE_NAMES"]

FIGURE_NAMES = ("frontier", "heatmap", "curves_step", "curves_samples", "gradient_reach", "weights_moving",
                "convergence", "confusion", "study_history", "study_importance", "study_parallel")


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
    effects: list[stats.Effect]
    chance: float | None
    target: float | None
    planned: int | None
    max_seeds: int


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
    keys = stats.config_keys(runs, grid_axes)
    varying = stats.varying(runs, keys)
    n_classes = cfg.data.synth.n_classes if cfg and cfg.data.kind == "synthetic" else None
    target = _single(runs, "target_dev_acc")
    if target is None and cfg is not None:
        target = cfg.train.target_dev_acc
    planned = int(np.prod([len(v) for v in cfg.grid.values()])) if cfg and cfg.grid else None
    return ReportData(
        dir=d, cfg=cfg, config_text=text, tables=tables, runs=runs, keys=keys, varying=varying,
        summary=stats.summarize(runs, keys), effects=stats.effects(runs, keys),
        chance=stats.chance_level(tables["confusion"], n_classes), target=target, planned=planned,
        max_seeds=stats.n_seeds(runs, keys))


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
    from harness.plan import load_results_config

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
    panel_keys = [k for k in data.varying if k not in ("cell", "layernorm", "pad_size")]
    choice_note = _choice_note(panel_keys)
    chosen = stats.best_settings(data.runs, data.keys)
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


def _add_accuracy_figures(out: Figures, data: ReportData, panel_keys: list[str]) -> None:
    summary = data.summary
    out.add("frontier", lambda: figures.frontier(summary, panel_keys, data.chance),
            "Test accuracy against pad_size, one line per cell × layernorm: the mean over seeds with a 95% "
            "bootstrap band; the dashed grey line is chance. ✕ on the axis marks configurations with "
            "diverged or failed runs (their count beside it).")
    row_keys = [k for k in data.keys if k not in ("cell", "layernorm", "lr")
                and (k == "pad_size" or k in data.varying)]
    out.add("heatmap", lambda: figures.heatmaps(summary, row_keys, "lr", data.chance),
            f"Mean test accuracy over {' × '.join(row_keys)} (rows) and learning rate (columns), one panel per "
            "cell × layernorm; (n✕) counts diverged/failed runs, 'div.' a setting where every run diverged.")


def _add_curve_figures(out: Figures, data: ReportData, chosen: pd.DataFrame, choice_note: str) -> None:
    curves = data.tables["curves"]
    by = ["cell", "layernorm", "pad_size"]
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
    reach = stats.reach_table(t["grad_time"], chosen)
    out.add("gradient_reach", lambda: figures.gradient_reach(
        reach, xlabel="distance from the read-out position (tokens)" if readout == "last"
        else "input position (read-out position varies per text)"),
        "‖∂L/∂x_t‖ (mean over the probe batch, geometric mean over seeds) for the embedding output, "
        "against distance from the position the classifier reads, at step 0 and at the end of training. "
        + choice_note, len(reach) > 0, "no gradient probe recorded yet")
    longest = runs["pad_size"].max()
    gnorms = stats.group_norm_table(t["grad_norms"], chosen[chosen["pad_size"] == longest])
    out.add("weights_moving", lambda: figures.weights_moving(gnorms, note=f"pad_size={longest}. {choice_note}".strip()),
            f"Per parameter group, gradient norm and update ratio ‖Δθ‖/‖θ‖ against step at pad_size {longest} "
            f"(geometric mean over seeds). {choice_note}".strip(), len(gnorms) > 0, "no gradient norms recorded yet")


def _add_convergence_figure(out: Figures, data: ReportData) -> None:
    conv = stats.convergence_table(data.runs, data.keys)
    conv_x = "samples" if "batch_size" in data.varying else "steps"
    conv_rows = [k for k in data.varying if k != "pad_size"] or ["cell", "layernorm"]
    out.add("convergence", lambda: figures.convergence(conv, conv_rows, x=conv_x, target=data.target),
            f"{'Samples' if conv_x == 'samples' else 'Steps'} to the target dev accuracy {data.target:g} per run "
            f"(one panel per pad_size); runs that never reached it sit in the grey zone right of every budget "
            f"(censored), diverged runs as ✕ (failed: hollow ✕); the black bar is the median with censored runs "
            f"as ∞." if data.target is not None else "Steps to target per run.", len(conv) > 0,
            "no run has trained yet")


def _add_confusion_figure(out: Figures, data: ReportData) -> None:
    items = []
    for _, r in stats.best_trials(data.runs).iterrows():
        m = stats.confusion_matrix(data.tables["confusion"], r["trial_id"])
        if len(m):
            extra = ", ".join(fmt_setting(k, r[k]) for k in data.varying if k not in ("cell", "layernorm"))
            items.append((f"{r['cell']} / LN {r['layernorm']}: test acc {r['test_acc']:.3f}\n"
                          f"{extra}{', ' if extra else ''}seed {int(r['seed'])}", r["cell"], m))
    out.add("confusion", lambda: figures.confusion_matrices(items),
            "Confusion matrices (test set) of the trial with the best test accuracy for each cell × layernorm; "
            "colour: share of the true class, numbers: counts.", len(items) > 0, "no trial has a confusion table yet")


def _choice_note(panel_keys: list[str]) -> str:
    if not panel_keys:
        return ""
    return (f"Each line shows the {' × '.join(panel_keys)} setting with the best mean test accuracy "
            f"for its cell, layernorm and pad_size.")


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

def md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(no rows)_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


def summary_markdown(data: ReportData) -> str:
    s = data.summary
    if s.empty:
        return "_(no trial has results yet)_\n"
    show = data.varying or [k for k in ("cell", "layernorm") if k in s.columns]
    rows = []
    for _, r in s.iterrows():
        acc = "—"
        if r["acc_n"]:
            acc = pct(r["acc_mean"])
            acc += " (one seed)" if math.isnan(r["acc_low"]) else f" [{pct(r['acc_low'])}, {pct(r['acc_high'])}]"
        if r["speed_n"] == 0:
            steps = "—"
        elif math.isinf(r["steps_median"]):
            steps = (f"not reached ({r['reached']}/{r['speed_n']})" if r["reached"] == 0 else
                     f"∞: most did not reach it ({r['reached']}/{r['speed_n']} reached)")
        else:
            steps = f"{r['steps_median']:g} ({r['reached']}/{r['speed_n']} reached)"
        rows.append({**{k: fmt_value(r[k]) for k in show}, "runs": int(r["runs"]),
                     "complete": int(r["complete"]), "diverged": int(r["diverged"]), "failed": int(r["failed"]),
                     "pruned": int(r["pruned"]), "test acc, mean [95% CI]": acc,
                     "median steps to target": steps,
                     "samples/s": "—" if math.isnan(r["samples_per_s"]) else f"{r['samples_per_s']:.0f}"})
    fixed = [k for k in data.keys if k not in show and k in data.runs.columns]
    head = ""
    if fixed:
        head = "Fixed in these results: " + ", ".join(
            fmt_setting(k, data.runs[k].dropna().iloc[0]) for k in fixed if data.runs[k].notna().any()) + ".\n\n"
    return head + md_table(pd.DataFrame(rows))


def effects_markdown(data: ReportData) -> str:
    if not data.effects:
        return ("_No factor varies with matched pairs in these results, so there are no paired effects._\n"
                if len(data.runs) else "_(no trial has results yet)_\n")
    rows = []
    for e in data.effects:
        p, lo, hi = e.acc
        acc = "—" if e.acc_pairs == 0 else points(p) + (" (no CI: one seed)" if math.isnan(lo)
                                                           else f" [{points(lo)}, {points(hi)}]")
        sp, slo, shi = e.steps
        if e.steps_pairs == 0:
            steps = "— (neither reached)"
        elif math.isinf(sp):
            steps = f"{'faster' if sp < 0 else 'slower'} (censored)"
        else:
            steps = change(sp) + ("" if math.isnan(slo) else f" [{change(slo)}, {change(shi)}]")
        both = e.steps_pairs - e.only_level - e.only_baseline
        rows.append({"factor": e.factor, "comparison": f"{fmt_value(e.level)} − {fmt_value(e.baseline)}",
                     "within": e.within, "pairs": e.pairs, "Δ test acc, points [95% CI]": acc,
                     "Δ steps to target, median paired [95% CI]": steps,
                     "reached: both / only new / only base / neither":
                         f"{both} / {e.only_level} / {e.only_baseline} / {e.neither}"})
    return md_table(pd.DataFrame(rows))


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
    lines.append(f"- Git commit: {values('git_commit')}")
    lines.append(f"- Device: {values('device')}; torch {values('torch_version')}")
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


def render(data: ReportData, built: Figures | None = None) -> str:
    """report.md: findings, summary and effects from `data`; a section per figure in `built` (with
    its caption, linking figures/<name>.png and .svg), the notes on figures left out, and the study
    section when `built` has one."""
    built = built or Figures()
    name = data.cfg.name if data.cfg else data.dir.name
    fs = findings.findings(data.runs, data.summary, data.effects, varying=data.varying, chance=data.chance,
                           target=data.target, planned=data.planned, max_seeds=data.max_seeds)
    parts = [f"# Report: {name}\n", _INTRO, "## Findings\n", "\n".join(f"- {f}" for f in fs) + "\n",
             "## Summary per configuration\n",
             "Test accuracy is the mean over seeds of runs that finished (diverged and failed runs have none "
             "but are counted); steps to target is the median with runs that never reached the target "
             f"dev accuracy{f' {data.target:g}' if data.target is not None else ''} counted as ∞.\n",
             summary_markdown(data), "## Effects\n", _EFFECTS_INTRO, effects_markdown(data), "## Figures\n"]
    captions = {n: c for n, _, c in built.figures}
    for name_, caption in captions.items():
        parts.append(f"### {_title(name_)}\n\n![{_title(name_)}](figures/{name_}.png)\n\n{caption} "
                     f"([SVG](figures/{name_}.svg))\n")
    for name_, why in built.notes.items():
        parts.append(f"- Not drawn: {_title(name_)} — {why}.\n")
    if built.study_md:
        parts += ["## Study: best setting per configuration\n", built.study_md]
    parts += ["## Provenance\n", provenance_markdown(data)]
    return "\n".join(parts)


_INTRO = ("Where does the vanilla RNN stop learning as sequences get longer, and what do the LSTM/GRU, "
          "LayerNorm, batch size and learning rate change about it? Generated by `harness report` from the "
          "tables in this directory; every number below comes from them.\n")
_EFFECTS_INTRO = (
    "Each row switches one factor from its first level to another, holding every other factor and "
    "the seed fixed (matched pairs). Δ test acc is the mean paired difference in percentage points; "
    "Δ steps is the median paired change in steps to target (a run that never reached it counts as "
    "∞; 'faster (censored)' means the new level reached it in most pairs where the baseline did "
    "not). Intervals: stratified bootstrap (seeds resampled within each setting of the other "
    "factors), 95%, percentile.\n")


_TITLES = {"frontier": "Frontier: test accuracy against pad_size", "heatmap": "Test accuracy heatmaps",
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
