"""The `study:` section: search with an Optuna sampler (and pruner) instead of enumerating a grid."""

from __future__ import annotations

from dataclasses import dataclass, field

SAMPLERS = ("tpe", "random", "qmc", "gp", "nsga2", "grid", "bruteforce")
PRUNERS = ("none", "median", "hyperband", "successive_halving", "wilcoxon")
# Runs-table metrics a study can optimise, with the direction that is better. The test_* ones are
# refused unless study.allow_test_objectives (selecting settings on test data biases the test numbers).
METRICS = {"best_dev_acc": "maximize", "test_acc": "maximize", "test_macro_f1": "maximize",
           "test_loss": "minimize", "steps_to_target": "minimize", "samples_to_target": "minimize",
           "seconds_to_target": "minimize", "train_s": "minimize", "wall_s": "minimize"}
# Options each sampler/pruner accepts (a subset of the Optuna constructors' keyword arguments).
SAMPLER_OPTIONS = {
    "tpe": ("n_startup_trials", "n_ei_candidates", "multivariate", "group", "constant_liar", "gamma"),
    "random": (), "qmc": ("qmc_type", "scramble"), "gp": ("n_startup_trials", "deterministic_objective"),
    "nsga2": ("population_size", "mutation_prob", "crossover_prob", "swapping_prob"), "grid": (),
    "bruteforce": ("avoid_premature_stop",),
}
PRUNER_OPTIONS = {
    "none": (), "median": ("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor"),
    "successive_halving": ("min_resource", "reduction_factor", "min_early_stopping_rate"),
    "wilcoxon": ("p_threshold", "n_startup_steps"),
}


@dataclass
class ParamSpec:
    """One search distribution: float (low, high, log, step), int (low, high, log, step) or
    categorical (choices)."""

    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list | None = None


@dataclass
class Objective:
    metric: str
    direction: str


@dataclass
class StudyConfig:
    n_trials: int = 20
    sampler: str = "tpe"
    sampler_options: dict = field(default_factory=dict)
    pruner: str = "none"
    pruner_options: dict = field(default_factory=dict)
    objectives: list[Objective] = field(default_factory=lambda: [Objective("best_dev_acc", "maximize")])
    params: dict[str, ParamSpec] = field(default_factory=dict)  # canonical dotted key -> distribution
    per: list[str] = field(default_factory=list)  # canonical dotted keys of grid axes: one study each
    rerun_best: bool = True   # re-run each study's best setting once per grid seed
    seed: int = 0             # the sampler's seed
    # Objectives on test metrics are refused unless this is set; the report then warns that the
    # test numbers of the selected settings are biased upward (selection on the test set).
    allow_test_objectives: bool = False
