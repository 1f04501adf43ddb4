"""Hyper-parameter search (the reference notebook's grid and random search) with Optuna.

Optuna, not a DVC sweep: it has a seeded grid sampler *and* a seeded random sampler over
continuous (log-uniform) ranges, while a DVC/Hydra sweep only enumerates listed values and makes
every trial a full pipeline experiment. Each trial is the fine-tune on the light budget; selection
is on dev F1-macro only (test is never read by the search).

The study lives in Optuna's storage (`search.storage`), so worker processes and machines join one
study; each finished trial is then saved as a DVC experiment with dvclive, for `dvc exp show`.
Not a stage of `dvc repro`; run it as a command (USAGE).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import typing
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field, PositiveInt

from sentiment.config import Section, UserError
from sentiment.io import write_csv
from sentiment.models.config import LightBudget, Recipe
from sentiment.models.training import finetune
from sentiment.paths import LIVE, plots_dir
from sentiment.stage import Run, run_stage

Sampler = Literal["grid", "random"]


class Space(Section):
    learning_rate: list[float]
    dropout: list[float]


class SearchConfig(Section):
    """params.yaml `search`."""

    sampler: Sampler
    trials: PositiveInt
    seed: int
    grid: Space  # values to enumerate
    random: Space  # [low, high]: learning rate log-uniform, dropout uniform
    storage: str  # Optuna storage URL; PostgreSQL/MySQL for several machines
    study: str | None  # null: <dataset key>-<sampler>
    heartbeat_seconds: PositiveInt = 60  # a running trial whose worker is silent for twice this is failed and retried
    retries: int = Field(2, ge=0)  # how often a failed trial is retried with the same params


@dataclass(frozen=True)
class SearchSetup:
    """What a search reads: the dataset, its label names, the fine-tuning recipe, `search` and the `light` budget."""

    key: str
    labels: list[str]  # the dataset's label names
    recipe: Recipe
    search: SearchConfig
    budget: LightBudget


def make_sampler(cfg: SearchConfig, sampler: Sampler, worker: int = 0):
    import optuna

    seed = cfg.seed + worker
    if sampler == "grid":  # unvisited grid points are read from the storage, so workers share one grid
        return optuna.samplers.GridSampler(cfg.grid.model_dump(), seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def suggest(trial, cfg: SearchConfig, sampler: Sampler) -> tuple[float, float]:
    space = cfg.grid if sampler == "grid" else cfg.random  # GridSampler supplies the values; suggest_* only reads them
    learning_rate = trial.suggest_float("learning_rate", min(space.learning_rate), max(space.learning_rate), log=True)
    dropout = trial.suggest_float("dropout", min(space.dropout), max(space.dropout))
    return learning_rate, dropout


def trial_count(cfg: SearchConfig, sampler: Sampler, trials: int | None) -> int:
    """The requested trials, capped at the grid's size for the grid sampler."""
    n = trials or cfg.trials
    return min(n, len(cfg.grid.learning_rate) * len(cfg.grid.dropout)) if sampler == "grid" else n


def open_storage(cfg: SearchConfig):
    """Optuna's RDB storage with heartbeats: a trial whose worker died (killed, or its machine lost) is
    marked failed by the next worker that starts a trial, and retried with the same params. A SQLite
    file's folder is created, and SQLite waits for its lock rather than failing; PostgreSQL is reached
    through psycopg (`postgresql+psycopg://user@host/db`)."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback  # RetryFailedTrialCallback's name since Optuna 4.9

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: experimental since Optuna 2.8
    heartbeat = {
        "heartbeat_interval": cfg.heartbeat_seconds,
        "grace_period": 2 * cfg.heartbeat_seconds,
        "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=cfg.retries),
    }
    url = cfg.storage
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}, **heartbeat)
    return optuna.storages.RDBStorage(url, **heartbeat)


def prepare_study(storage, name: str, mode: Literal["new", "resume", "restart"]) -> None:
    """Create the study (`new`: an error if it exists), join it (`resume`), or replace it (`restart`)."""
    import optuna

    exists = name in {s.study_name for s in optuna.get_all_study_summaries(storage)}
    if exists and mode == "new":
        raise UserError(
            f"study {name!r} already exists in the search storage: --resume adds trials to it "
            "(several workers or machines), --restart replaces it"
        )
    if exists and mode == "restart":
        optuna.delete_study(study_name=name, storage=storage)
    optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)


def worker(index: int, setup: SearchSetup, sampler: Sampler, trials: int, name: str, run_id: str) -> None:
    """One worker process: trials on the light budget until the study holds `trials` trials (from any worker)."""
    import optuna
    from optuna.trial import TrialState

    key, cfg, budget = setup.key, setup.search, setup.budget
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial) -> float:
        learning_rate, dropout = suggest(trial, cfg, sampler)
        scratch = Path(tempfile.mkdtemp(prefix="search-"))
        start = time.perf_counter()
        try:
            recipe = setup.recipe.light(budget, model={"dropout": float(dropout)}, learning_rate=float(learning_rate))
            out, checkpoints = scratch / "out", scratch / "checkpoints"
            metrics = finetune(key, setup.labels, recipe, out, checkpoints, train_fraction=budget.train_fraction)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        epochs = metrics["curves"][1]
        best = epochs.loc[epochs["epoch"] == metrics["best_epoch"]]
        trial.set_user_attr("run", run_id)
        trial.set_user_attr("dev_accuracy", metrics["dev"]["accuracy"])
        trial.set_user_attr("dev_loss", float(best["dev_loss"].iloc[0]) if len(best) else float("nan"))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
        score = metrics["dev"]["f1_macro"]
        print(f"[search:{key}] trial {trial.number}: lr {learning_rate:.2e} dropout {dropout:.3f} -> dev F1 {score:.4f}")
        return score

    # one worker: the configured seed, so a fresh single-worker study is reproducible; more: one seed each
    loaded = optuna.load_study(study_name=name, storage=open_storage(cfg), sampler=make_sampler(cfg, sampler, index))

    def enough(study, _trial) -> None:
        """Stop once the study holds `trials` trials that count: a trial whose worker died is failed first
        (its retry, a waiting trial, counts instead of it)."""
        optuna.storages.fail_stale_trials(study)
        if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING))) >= trials:
            study.stop()

    loaded.optimize(objective, n_trials=trials, callbacks=[enough])


def trials_table(study, sampler: Sampler) -> pd.DataFrame:
    """One row per finished trial of the study (every worker's and machine's), in trial order."""
    import optuna

    rows = [
        {
            "trial": t.number,
            "sampler": sampler,
            "learning_rate": t.params["learning_rate"],
            "dropout": t.params["dropout"],
            "dev_f1_macro": t.value,
            "dev_accuracy": t.user_attrs.get("dev_accuracy"),
            "dev_loss": t.user_attrs.get("dev_loss"),
            "seconds": t.user_attrs.get("seconds"),
        }
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    ]
    return pd.DataFrame(
        rows, columns=["trial", "sampler", "learning_rate", "dropout", "dev_f1_macro", "dev_accuracy", "dev_loss", "seconds"]
    )


def log_experiments(key: str, name: str, table: pd.DataFrame) -> int:
    """Each trial as a DVC experiment (dvclive: params and dev figures under dvclive/search/<key>/, declared
    by the dvc.yaml dvclive writes there, which each experiment commit carries), so `dvc exp show` lists
    the trials beside their values while the main dvc.yaml declares nothing a fresh clone lacks. Outside
    a git + DVC repository there is nowhere to save them. Returns the number of trials logged."""
    from dvclive import Live

    if not (Path(".dvc").is_dir() and Path(".git").exists()):
        return 0
    for row in table.itertuples():
        with Live(
            str(LIVE / "search" / key),
            dvcyaml=str(LIVE / "search" / key / "dvc.yaml"),
            save_dvc_exp=True,
            exp_name=f"{name}-trial-{row.trial}",
            exp_message=f"search {name} trial {row.trial} (light budget)",
            report=None,
        ) as live:
            live.log_params({"study": name, "trial": row.trial, "learning_rate": row.learning_rate, "dropout": row.dropout})
            for metric in ("dev_f1_macro", "dev_accuracy", "dev_loss"):
                live.summary[metric] = getattr(row, metric)
    return len(table)


def run_search(
    setup: SearchSetup,
    sampler: Sampler,
    trials: int,
    workers: int = 1,
    mode: Literal["new", "resume", "restart"] = "new",
) -> pd.DataFrame:
    """Run `workers` processes on one Optuna study in `search.storage`; return its finished trials."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import optuna

    cfg = setup.search
    name = cfg.study or f"{setup.key}-{sampler}"
    storage = open_storage(cfg)
    prepare_study(storage, name, mode)
    run_id = uuid.uuid4().hex
    if workers == 1:
        worker(0, setup, sampler, trials, name, run_id)
    else:  # spawned processes: a forked torch would share its thread pools
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for done in [pool.submit(worker, i, setup, sampler, trials, name, run_id) for i in range(workers)]:
                done.result()
    finished = optuna.load_study(study_name=name, storage=storage)
    table = trials_table(finished, sampler)
    log_experiments(setup.key, name, table[table["trial"].isin(ran_by(finished, run_id))])
    return table


def ran_by(study, run_id: str) -> list[int]:
    """The trials this invocation's workers ran (other machines log their own)."""
    return [t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get("run") == run_id]


USAGE = """Grid or random hyper-parameter search on the light budget (outside `dvc repro`).

    python -m sentiment.search <dataset key> [--sampler grid|random] [--trials N] [--workers N] [--resume | --restart]

The study lives in params.yaml `search.storage` (a SQLite file by default; a PostgreSQL/MySQL URL lets
several machines run the same command with --resume). Every trial is saved as a DVC experiment
(`dvc exp show`); the table of the study's trials goes to plots/<key>/search/trials_<sampler>.csv, and
the best config is printed with the `dvc exp run` command that trains it at full budget.
"""


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sampler", choices=typing.get_args(Sampler), help="default: params.yaml search.sampler")
    parser.add_argument("--trials", type=positive_int, help="default: params.yaml search.trials (the grid is capped at its size)")
    parser.add_argument("--workers", type=positive_int, default=1, help="worker processes on this machine (default 1)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_const", const="resume", dest="mode", help="join or continue the study")
    mode.add_argument("--restart", action="store_const", const="restart", dest="mode", help="replace the study")


def main(run: Run) -> None:
    """Run the study, write its trials table and print the best config's `dvc exp run` command."""
    cfg = run.section(SearchConfig, "search")
    sampler = run.args.sampler or cfg.sampler
    trials = trial_count(cfg, sampler, run.args.trials)
    setup = SearchSetup(run.key, run.labels, Recipe.of(run.params), cfg, run.section(LightBudget, "light"))
    table = run_search(setup, sampler, trials, run.args.workers, run.args.mode or "new")
    path = plots_dir(run.key, "search") / f"trials_{sampler}.csv"
    write_csv(table, path)
    best = table.sort_values(["dev_f1_macro", "trial"], ascending=[False, True]).iloc[0]
    print(f"[search:{run.key}] wrote {path}")
    print(
        f"[search:{run.key}] best on dev: learning_rate {best['learning_rate']:.3g}, dropout {best['dropout']:.3g} "
        f"(dev F1 {best['dev_f1_macro']:.4f} on the light budget). Train it at full budget with:\n"
        f"  dvc exp run -S train.learning_rate={best['learning_rate']:.3g} -S model.dropout={best['dropout']:.3g}"
    )


if __name__ == "__main__":
    run_stage(main, USAGE, arguments=arguments)
