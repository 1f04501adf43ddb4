"""Hyper-parameter search (the reference notebook's grid and random search), outside `dvc repro`.

    python -m stages.search <dataset key> [--sampler grid|random] [--trials N]

Optuna drives it, not a DVC sweep: Optuna has a seeded grid sampler *and* a seeded random
sampler over continuous (log-uniform) ranges, while a DVC/Hydra sweep only enumerates listed
values and makes every trial a full pipeline experiment (evaluate, slices, attention…), which a
search does not need. Each trial is the finetune stage's training on the light budget of the
`search` params (fewer epochs, a train fraction); selection is on dev F1-macro only (test is
never read by the search). The trial table goes to plots/<key>/search/trials.csv; the best config is printed
with the `dvc exp run` command that trains it at full budget.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from stages.common import StageError, load_params, require_choice, require_range, write_csv
from stages.finetune import finetune

SAMPLERS = ("grid", "random")


def trial_params(params: dict[str, Any], learning_rate: float, dropout: float) -> dict[str, Any]:
    """params.yaml with one trial's values and the search's light budget applied."""
    light = params["search"]
    trial = copy.deepcopy(params)
    trial["train"].update(learning_rate=float(learning_rate), epochs=light["epochs"], max_length=light["max_length"])
    trial["model"]["dropout"] = float(dropout)
    return trial


def make_sampler(cfg: dict[str, Any], sampler: str):
    import optuna

    if sampler == "grid":
        space = {"learning_rate": cfg["grid"]["learning_rate"], "dropout": cfg["grid"]["dropout"]}
        return optuna.samplers.GridSampler(space, seed=cfg["seed"])
    return optuna.samplers.RandomSampler(seed=cfg["seed"])


def suggest(trial, cfg: dict[str, Any], sampler: str) -> tuple[float, float]:
    if sampler == "grid":  # GridSampler supplies the values; suggest_* only reads them
        lr_low, lr_high = min(cfg["grid"]["learning_rate"]), max(cfg["grid"]["learning_rate"])
        dropout_low, dropout_high = min(cfg["grid"]["dropout"]), max(cfg["grid"]["dropout"])
    else:
        (lr_low, lr_high), (dropout_low, dropout_high) = cfg["random"]["learning_rate"], cfg["random"]["dropout"]
    learning_rate = trial.suggest_float("learning_rate", lr_low, lr_high, log=True)
    dropout = trial.suggest_float("dropout", dropout_low, dropout_high)
    return learning_rate, dropout


def run_search(key: str, params: dict[str, Any], sampler: str, trials: int) -> pd.DataFrame:
    import optuna

    cfg = params["search"]
    require_range("search.train_fraction", cfg["train_fraction"], 0, 1, low_open=True)
    rows = []

    def objective(trial) -> float:
        learning_rate, dropout = suggest(trial, cfg, sampler)
        scratch = Path(tempfile.mkdtemp(prefix="search-"))
        start = time.perf_counter()
        try:
            metrics = finetune(
                key,
                trial_params(params, learning_rate, dropout),
                scratch / "out",
                scratch / "checkpoints",
                train_fraction=cfg["train_fraction"],
            )  # finetune also scores test; the search never reads those figures
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
        print(
            f"[search:{key}] trial {trial.number}: lr {learning_rate:.2e} dropout {dropout:.3f} "
            f"-> dev F1 {rows[-1]['dev_f1_macro']:.4f}"
        )
        return metrics["dev"]["f1_macro"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(cfg, sampler))
    study.optimize(objective, n_trials=trials)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("key", help="dataset key from params.yaml")
    parser.add_argument("--sampler", choices=SAMPLERS, help="default: params.yaml search.sampler")
    parser.add_argument("--trials", type=int, help="default: params.yaml search.trials (the grid is capped at its size)")
    args = parser.parse_args(argv)
    try:
        params = load_params()
        cfg = params["search"]
        sampler = require_choice("search.sampler", args.sampler or cfg["sampler"], SAMPLERS)
        trials = args.trials or cfg["trials"]
        if sampler == "grid":
            trials = min(trials, len(cfg["grid"]["learning_rate"]) * len(cfg["grid"]["dropout"]))
        require_range("search.trials", trials, 1, 10_000)
        table = run_search(args.key, params, sampler, trials)
    except StageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    path = Path("plots") / args.key / "search" / f"trials_{sampler}.csv"
    write_csv(table, path)
    best = table.sort_values(["dev_f1_macro", "trial"], ascending=[False, True]).iloc[0]
    print(f"[search:{args.key}] wrote {path}")
    print(
        f"[search:{args.key}] best on dev: learning_rate {best['learning_rate']:.3g}, dropout {best['dropout']:.3g} "
        f"(dev F1 {best['dev_f1_macro']:.4f} on the light budget). Train it at full budget with:\n"
        f"  dvc exp run -S train.learning_rate={best['learning_rate']:.3g} -S model.dropout={best['dropout']:.3g}"
    )


if __name__ == "__main__":
    main()
