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
    "tpe": ("n_startup_trials", "n_ei_candidates", "multivariate", "group", "constant_liar"),
    "random": (), "qmc": ("qmc_type", "scramble"), "gp": ("n_startup_trials", "deterministic_objective"),
    "nsga2": ("population_size", "mutation_prob", "crossover_prob", "swapping_prob"), "grid": (),
    "bruteforce": ("avoid_premature_stop",),
}
# The type and range of each option (validated before Optuna sees it: its constructors check few).
# "int|auto" also accepts the string "auto"; `gamma` (a function in Optuna) cannot be written in YAML.
OPTION_TYPES: dict[str, tuple[str, float | None, float | None]] = {
    "n_startup_trials": ("int", 0, None), "n_ei_candidates": ("int", 1, None), "multivariate": ("bool", None, None),
    "group": ("bool", None, None), "constant_liar": ("bool", None, None), "scramble": ("bool", None, None),
    "qmc_type": ("halton|sobol", None, None), "deterministic_objective": ("bool", None, None),
    "population_size": ("int", 2, None), "mutation_prob": ("float", 0.0, 1.0), "crossover_prob": ("float", 0.0, 1.0),
    "swapping_prob": ("float", 0.0, 1.0), "avoid_premature_stop": ("bool", None, None),
    "n_warmup_steps": ("int", 0, None), "interval_steps": ("int", 1, None), "n_min_trials": ("int", 1, None),
    "min_resource": ("int|auto", 1, None), "max_resource": ("int|auto", 1, None),
    "reduction_factor": ("int", 2, None), "min_early_stopping_rate": ("int", 0, None),
    "p_threshold": ("float", 0.0, 1.0), "n_startup_steps": ("int", 0, None),
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
