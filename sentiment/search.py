"""Hyper-parameter search (the reference notebook's grid and random search) with Optuna.

Optuna, not a DVC sweep: it has a seeded grid sampler *and* a seeded random sampler over
continuous (log-uniform) ranges, while a DVC/Hydra sweep only enumerates listed values and makes
every trial a full pipeline experiment. Each trial is the fine-tune on the light budget; selection
is on dev F1-macro only (test is never read by the search).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import PositiveInt

from sentiment.config import Section, section
from sentiment.light import LightBudget, with_overrides
from sentiment.training import finetune

Sampler = Literal["grid", "random"]


class Space(Section):
    learning_rate: list[float]
    dropout: list[float]


class SearchConfig(Section):
    """params.yaml `search`."""

    sampler: Sampler = "grid"
    trials: PositiveInt
    seed: int = 0
    grid: Space  # values to enumerate
    random: Space  # [low, high]: learning rate log-uniform, dropout uniform


def make_sampler(cfg: SearchConfig, sampler: Sampler):
    import optuna

    if sampler == "grid":
        return optuna.samplers.GridSampler(cfg.grid.model_dump(), seed=cfg.seed)
    return optuna.samplers.RandomSampler(seed=cfg.seed)


def suggest(trial, cfg: SearchConfig, sampler: Sampler) -> tuple[float, float]:
    space = cfg.grid if sampler == "grid" else cfg.random  # GridSampler supplies the values; suggest_* only reads them
    learning_rate = trial.suggest_float("learning_rate", min(space.learning_rate), max(space.learning_rate), log=True)
    dropout = trial.suggest_float("dropout", min(space.dropout), max(space.dropout))
    return learning_rate, dropout


def trial_count(cfg: SearchConfig, sampler: Sampler, trials: int | None) -> int:
    """The requested trials, capped at the grid's size for the grid sampler."""
    n = trials or cfg.trials
    return min(n, len(cfg.grid.learning_rate) * len(cfg.grid.dropout)) if sampler == "grid" else n


def run_search(key: str, params: dict[str, Any], sampler: Sampler, trials: int) -> pd.DataFrame:
    """One row per trial: its values, dev figures and seconds."""
    import optuna

    cfg, budget = section(SearchConfig, params, "search"), section(LightBudget, params, "light")
    rows = []

    def objective(trial) -> float:
        learning_rate, dropout = suggest(trial, cfg, sampler)
        scratch = Path(tempfile.mkdtemp(prefix="search-"))
        start = time.perf_counter()
        try:
            trial_params = with_overrides(params, budget, model={"dropout": float(dropout)}, learning_rate=float(learning_rate))
            metrics = finetune(key, trial_params, scratch / "out", scratch / "checkpoints", train_fraction=budget.train_fraction)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        epochs = metrics["curves"][1]
        best = epochs.loc[epochs["epoch"] == metrics["best_epoch"]]
        rows.append(
            {
                "trial": trial.number,
                "sampler": sampler,
                "learning_rate": learning_rate,
                "dropout": dropout,
                "dev_f1_macro": metrics["dev"]["f1_macro"],
                "dev_accuracy": metrics["dev"]["accuracy"],
                "dev_loss": float(best["dev_loss"].iloc[0]) if len(best) else float("nan"),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        score = rows[-1]["dev_f1_macro"]
        print(f"[search:{key}] trial {trial.number}: lr {learning_rate:.2e} dropout {dropout:.3f} -> dev F1 {score:.4f}")
        return metrics["dev"]["f1_macro"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(cfg, sampler))
    study.optimize(objective, n_trials=trials)
    return pd.DataFrame(rows)
