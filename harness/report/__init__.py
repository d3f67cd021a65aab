"""`harness report DIR`: the results' tables → DIR/figures/*.png (+ .svg) and DIR/report.md.

Reads only what the run wrote (the trial shards, config.yaml, and the Optuna storage for study
plots), so it works while a run is still going. Statistics live in `stats`, figures in `figures`
(functions that return figures; saving happens here), sentences in `findings`.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.config import ConfigError, ExperimentConfig
from harness.report import figures as F
from harness.report import findings as W
from harness.report import stats as S

__all__ = ["write_report", "compute", "build_figures", "render", "ReportData", "FIGURE_NAMES"]

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
    effects: list[S.Effect]
    chance: float | None
    target: float | None
    planned: int | None
    max_seeds: int
    notes: dict[str, str] = field(default_factory=dict)
    study_md: str = ""


def compute(results_dir: str | Path) -> ReportData:
    """Load the tables of a results directory and compute the summary and effects."""
    d = Path(results_dir)
    if not d.is_dir():
        raise ConfigError(f"{d} is not a results directory (it does not exist)")
    cfg, text = _load_config(d)
    if cfg is None and not (d / "trials").is_dir():
        raise ConfigError(f"{d} is not a results directory (no config.yaml and no trials/)")
    if cfg is not None:
        from harness.storage import download_artifacts

        download_artifacts(d)
    tables = _load_tables(d)
    runs = S.prepare_runs(tables["runs"])
    if cfg is not None and cfg.study is not None and "phase" in runs.columns:
        # Configurations are compared at their own best settings: the re-runs, once they exist.
        phase = "rerun" if (runs["phase"] == "rerun").any() else "search"
        runs = runs[runs["phase"] == phase]
    grid_axes = list(cfg.to_dict()["grid"]) if cfg else [c for c in runs.columns if "." in c]
    keys = S.config_keys(runs, grid_axes)
    varying = S.varying(runs, keys)
    n_classes = cfg.data.synth.n_classes if cfg and cfg.data.kind == "synthetic" else None
    target = _single(runs, "target_dev_acc")
    if target is None and cfg is not None:
        target = cfg.train.target_dev_acc
    planned = int(np.prod([len(v) for v in cfg.grid.values()])) if cfg and cfg.grid else None
    return ReportData(
        dir=d, cfg=cfg, config_text=text, tables=tables, runs=runs, keys=keys, varying=varying,
        summary=S.summarize(runs, keys), effects=S.effects(runs, keys),
        chance=S.chance_level(tables["confusion"], n_classes), target=target, planned=planned,
        max_seeds=S.n_seeds(runs, keys))


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

def build_figures(data: ReportData) -> list[tuple[str, Any, str]]:
    """(name, figure, caption) for every figure the data allows; `data.notes[name]` says why a
    figure was left out."""
    out: list[tuple[str, Any, str]] = []
    runs, t, notes = data.runs, data.tables, data.notes
    if runs.empty:
        notes["all"] = "no trial has finished yet"
        return out
    summary = data.summary
    panel_keys = [k for k in data.varying if k not in ("cell", "layernorm", "pad_size")]

    def add(name: str, build: Callable[[], Any], caption: str, when: bool = True, why: str = "") -> None:
        if not when:
            notes[name] = why
            return
        fig, _ = build()
        out.append((name, fig, caption))

    add("frontier", lambda: F.frontier(summary, panel_keys, data.chance),
        "Test accuracy against pad_size, one line per cell × layernorm: the mean over seeds with a 95% "
        "bootstrap band; the dashed grey line is chance. ✕ on the axis marks configurations with "
        "diverged or failed runs (their count beside it).")
    row_keys = [k for k in data.keys if k not in ("cell", "layernorm", "lr")
                and (k == "pad_size" or k in data.varying)]
    add("heatmap", lambda: F.heatmaps(summary, row_keys, "lr", data.chance),
        f"Mean test accuracy over {' × '.join(row_keys)} (rows) and learning rate (columns), one panel per "
        "cell × layernorm; (n✕) counts diverged/failed runs, 'div.' a setting where every run diverged.")

    chosen = S.best_settings(runs, data.keys)
    choice_note = _choice_note(data, panel_keys)
    curves = t["curves"]
    by = ["cell", "layernorm", "pad_size"]
    have_curves = len(curves) > 0 and len(chosen) > 0
    for x, name in (("step", "curves_step"), ("samples_seen", "curves_samples")):
        when = have_curves and (x == "step" or "batch_size" in data.varying)
        why = ("no evaluation points recorded yet" if not have_curves else
               "batch_size does not vary, so it is the step figure with the x axis rescaled")
        add(name, lambda x=x: F.training_curves(
            S.curve_bands(curves, chosen, by, x, "dev_loss"), S.curve_bands(curves, chosen, by, x, "dev_acc"),
            x, target=data.target, chance=data.chance, note=choice_note),
            f"Dev loss (left columns) and dev accuracy (right columns) against "
            f"{'step' if x == 'step' else 'samples seen'}, one row per pad_size, cells side by side, "
            f"layernorm by line style; band: min–max over seeds. {choice_note}".strip(), when, why)

    readout = _single_str(runs, "readout")
    reach = S.reach_table(t["grad_time"], chosen)
    add("gradient_reach", lambda: F.gradient_reach(
        reach, xlabel="distance from the read-out position (tokens)" if readout == "last"
        else "input position (read-out position varies per text)"),
        "‖∂L/∂x_t‖ (mean over the probe batch, geometric mean over seeds) for the embedding output, "
        "against distance from the position the classifier reads, at step 0 and at the end of training. "
        + choice_note, len(reach) > 0, "no gradient probe recorded yet")

    longest = runs["pad_size"].max()
    at_longest = chosen[chosen["pad_size"] == longest]
    gnorms = S.group_norm_table(t["grad_norms"], at_longest)
    add("weights_moving", lambda: F.weights_moving(gnorms, note=f"pad_size={longest}. {choice_note}".strip()),
        f"Per parameter group, gradient norm and update ratio ‖Δθ‖/‖θ‖ against step at pad_size {longest} "
        f"(geometric mean over seeds). {choice_note}".strip(), len(gnorms) > 0, "no gradient norms recorded yet")

    conv = S.convergence_table(runs, data.keys)
    conv_x = "samples" if "batch_size" in data.varying else "steps"
    conv_rows = [k for k in data.varying if k != "pad_size"] or ["cell", "layernorm"]
    add("convergence", lambda: F.convergence(conv, conv_rows, x=conv_x, target=data.target),
        f"{'Samples' if conv_x == 'samples' else 'Steps'} to the target dev accuracy {data.target:g} per run "
        f"(one panel per pad_size); runs that never reached it sit in the grey zone right of every budget "
        f"(censored), diverged runs as ✕ (failed: hollow ✕); the black bar is the median with censored runs as ∞."
        if data.target is not None else "Steps to target per run.", len(conv) > 0, "no run has trained yet")

    best = S.best_trials(runs)
    items = []
    for _, r in best.iterrows():
        m = S.confusion_matrix(t["confusion"], r["trial_id"])
        if len(m):
            extra = ", ".join(F.fmt_setting(k, r[k]) for k in data.varying if k not in ("cell", "layernorm"))
            items.append((f"{r['cell']} / LN {r['layernorm']}: test acc {r['test_acc']:.3f}\n"
                          f"{extra}{', ' if extra else ''}seed {int(r['seed'])}", r["cell"], m))
    add("confusion", lambda: F.confusion_matrices(items),
        "Confusion matrices (test set) of the trial with the best test accuracy for each cell × layernorm; "
        "colour: share of the true class, numbers: counts.", len(items) > 0, "no trial has a confusion table yet")

    if data.cfg is not None and data.cfg.study is not None:
        return out + _search_studies(data)
    for name, fig in _study(data):
        out.append((name, fig, {"study_history": "Optuna optimisation history of the sampled trials.",
                                "study_importance": "Hyperparameter importance (Optuna's default evaluator).",
                                "study_parallel": "Parallel coordinates of the sampled trials."}[name]))
    return out


def _choice_note(data: ReportData, panel_keys: list[str]) -> str:
    if not panel_keys:
        return ""
    return (f"Each line shows the {' × '.join(panel_keys)} setting with the best mean test accuracy "
            f"for its cell, layernorm and pad_size.")


def _single_str(runs: pd.DataFrame, col: str) -> str | None:
    if col not in runs.columns:
        return "last"
    v = runs[col].dropna().unique()
    return str(v[0]) if len(v) == 1 else None


def _search_studies(data: ReportData) -> list[tuple[str, Any, str]]:
    """For a config with `study:`: each search study's plots, and the best-settings table."""
    import optuna

    from harness import study as study_mod
    from harness.report.study import best_table, study_figures
    from harness.storage import open_storage, read_run_settings

    cfg = data.cfg
    storage = open_storage(data.dir, cfg.run.storage or read_run_settings(data.dir).storage)
    studies, labels, out = {}, {}, []
    plans = study_mod.search_studies(cfg)
    for i, s in enumerate(plans):
        try:
            studies[s.name] = optuna.load_study(study_name=s.name, storage=storage)
        except KeyError:
            continue
        labels[s.name] = s.label
        slug = str(i) if len(plans) > 1 else "all"
        out += study_figures(studies[s.name], cfg, slug, s.label)
    if studies:
        table = best_table(studies, labels, cfg)
        data.study_md = (f"Sampler {cfg.study.sampler}, pruner {cfg.study.pruner}, {cfg.study.n_trials} trials per "
                         f"study; objectives: {', '.join(f'{o.direction} {o.metric}' for o in cfg.study.objectives)}."
                         f" Each study's best setting"
                         + (" was re-run once per seed; the sections above compare those re-runs.\n\n"
                            if cfg.study.rerun_best else ".\n\n") + md_table(table) + "\n")
    else:
        data.notes["study"] = "no search study in the storage yet"
    return out


def _study(data: ReportData) -> list[tuple[str, Any]]:
    """Optuna's plots, only for a study with sampled trials (trials without a 'trial_id' user attr,
    or a study marked 'study'); an enumerated grid has nothing for them to show."""
    cfg = data.cfg
    if cfg is None:
        data.notes["study"] = "no config.yaml, so no study name"
        return []
    url = cfg.run.storage
    if not url and not (data.dir / "optuna.journal").is_file():
        data.notes["study"] = "no Optuna storage in the results directory"
        return []
    try:
        import optuna

        from harness.storage import open_storage

        study = optuna.load_study(study_name=cfg.name, storage=open_storage(data.dir, url))
        trials = study.get_trials(deepcopy=False)
    except Exception as e:  # noqa: BLE001 - the study plots are optional; say why they are missing
        data.notes["study"] = f"the Optuna study could not be read ({type(e).__name__}: {e})"
        return []
    sampled = [t for t in trials if "trial_id" not in t.user_attrs]
    if not sampled and "study" not in study.user_attrs:
        data.notes["study"] = "the study is an enumerated grid (every trial enqueued), so Optuna's plots are skipped"
        return []
    figs = F.study_figures(study)
    if not figs:
        data.notes["study"] = "Optuna could not draw its plots for this study (too few finished trials)"
    return figs


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
            acc = W.pct(r["acc_mean"])
            acc += " (one seed)" if math.isnan(r["acc_low"]) else f" [{W.pct(r['acc_low'])}, {W.pct(r['acc_high'])}]"
        if r["speed_n"] == 0:
            steps = "—"
        elif math.isinf(r["steps_median"]):
            steps = (f"not reached ({r['reached']}/{r['speed_n']})" if r["reached"] == 0 else
                     f"∞: most did not reach it ({r['reached']}/{r['speed_n']} reached)")
        else:
            steps = f"{r['steps_median']:g} ({r['reached']}/{r['speed_n']} reached)"
        rows.append({**{k: F.fmt_value(r[k]) for k in show}, "runs": int(r["runs"]),
                     "complete": int(r["complete"]), "diverged": int(r["diverged"]), "failed": int(r["failed"]),
                     "pruned": int(r["pruned"]), "test acc, mean [95% CI]": acc,
                     "median steps to target": steps,
                     "samples/s": "—" if math.isnan(r["samples_per_s"]) else f"{r['samples_per_s']:.0f}"})
    fixed = [k for k in data.keys if k not in show and k in data.runs.columns]
    head = ""
    if fixed:
        head = "Fixed in these results: " + ", ".join(
            F.fmt_setting(k, data.runs[k].dropna().iloc[0]) for k in fixed if data.runs[k].notna().any()) + ".\n\n"
    return head + md_table(pd.DataFrame(rows))


def effects_markdown(data: ReportData) -> str:
    if not data.effects:
        return ("_No factor varies with matched pairs in these results, so there are no paired effects._\n"
                if len(data.runs) else "_(no trial has results yet)_\n")
    rows = []
    for e in data.effects:
        p, lo, hi = e.acc
        acc = "—" if e.acc_pairs == 0 else W.points(p) + (" (no CI: one seed)" if math.isnan(lo)
                                                           else f" [{W.points(lo)}, {W.points(hi)}]")
        sp, slo, shi = e.steps
        if e.steps_pairs == 0:
            steps = "— (neither reached)"
        elif math.isinf(sp):
            steps = f"{'faster' if sp < 0 else 'slower'} (censored)"
        else:
            steps = W.change(sp) + ("" if math.isnan(slo) else f" [{W.change(slo)}, {W.change(shi)}]")
        both = e.steps_pairs - e.only_level - e.only_baseline
        rows.append({"factor": e.factor, "comparison": f"{W.fmt_level(e.level)} − {W.fmt_level(e.baseline)}",
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


def render(data: ReportData, saved: list[tuple[str, str]]) -> str:
    name = data.cfg.name if data.cfg else data.dir.name
    fs = W.findings(data.runs, data.summary, data.effects, keys=data.keys, varying=data.varying,
                    chance=data.chance, target=data.target, planned=data.planned, max_seeds=data.max_seeds)
    parts = [f"# Report: {name}\n",
             "Where does the vanilla RNN stop learning as sequences get longer, and what do the LSTM/GRU, "
             "LayerNorm, batch size and learning rate change about it? Generated by `harness report` from the "
             "tables in this directory; every number below comes from them.\n",
             "## Findings\n", "\n".join(f"- {f}" for f in fs) + "\n",
             "## Summary per configuration\n",
             "Test accuracy is the mean over seeds of runs that finished (diverged and failed runs have none "
             "but are counted); steps to target is the median with runs that never reached the target "
             f"dev accuracy{f' {data.target:g}' if data.target is not None else ''} counted as ∞.\n",
             summary_markdown(data),
             "## Effects\n",
             "Each row switches one factor from its first level to another, holding every other factor and "
             "the seed fixed (matched pairs). Δ test acc is the mean paired difference in percentage points; "
             "Δ steps is the median paired change in steps to target (a run that never reached it counts as "
             "∞; 'faster (censored)' means the new level reached it in most pairs where the baseline did "
             "not). Intervals: stratified bootstrap (seeds resampled within each setting of the other "
             "factors), 95%, percentile.\n",
             effects_markdown(data),
             "## Figures\n"]
    captions = {n: c for n, _, c in saved}
    for name_, caption in captions.items():
        parts.append(f"### {_title(name_)}\n\n![{_title(name_)}](figures/{name_}.png)\n\n{caption} "
                     f"([SVG](figures/{name_}.svg))\n")
    for name_, why in data.notes.items():
        parts.append(f"- Not drawn: {_title(name_)} — {why}.\n")
    if data.study_md:
        parts += ["## Study: best setting per configuration\n", data.study_md]
    parts += ["## Provenance\n", provenance_markdown(data)]
    return "\n".join(parts)


_TITLES = {"frontier": "Frontier: test accuracy against pad_size", "heatmap": "Test accuracy heatmaps",
           "curves_step": "Training curves (against step)", "curves_samples": "Training curves (against samples)",
           "gradient_reach": "Gradient reach", "weights_moving": "Are the weights moving",
           "convergence": "Convergence speed", "confusion": "Confusion matrices",
           "study_history": "Study: optimisation history", "study_importance": "Study: hyperparameter importance",
           "study_parallel": "Study: parallel coordinates", "study": "Optuna study plots", "all": "all figures"}


def _title(name: str) -> str:
    return _TITLES.get(name, name)


# ----------------------------------------------------------------------------- entry point

def write_report(results_dir: Path) -> Path:
    """Write DIR/figures/<name>.png and .svg and DIR/report.md (linking every figure); return the
    path of report.md. Works on a finished run, a run still going, a single trial, and a run with
    failed or diverged trials."""
    import matplotlib.pyplot as plt

    data = compute(results_dir)
    fig_dir = data.dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    try:
        built = build_figures(data)
        for name, fig, caption in built:
            _atomic_savefig(fig, fig_dir / f"{name}.png")
            try:  # the layout is settled by the first save; do not solve it again for the SVG
                fig.set_layout_engine("none")
            except RuntimeError:
                pass
            _atomic_savefig(fig, fig_dir / f"{name}.svg")
            plt.close(fig)
            saved.append((name, fig, caption))
    finally:
        plt.close("all")
    for name in FIGURE_NAMES:  # a figure this run no longer has must not be shown as current
        if name not in {n for n, _, _ in saved}:
            for ext in ("png", "svg"):
                (fig_dir / f"{name}.{ext}").unlink(missing_ok=True)
    path = data.dir / "report.md"
    _atomic_write(path, render(data, saved))
    return path


def _atomic_savefig(fig: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format=path.suffix[1:])
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
