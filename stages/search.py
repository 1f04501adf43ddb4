"""search: grid or random hyper-parameter search on the light budget (outside `dvc repro`).

    python -m stages.search <dataset key> [--sampler grid|random] [--trials N] [--workers N] [--resume | --restart]

The study lives in params.yaml `search.storage` (a SQLite file by default; a PostgreSQL/MySQL URL lets
several machines run the same command with --resume). Every trial is saved as a DVC experiment
(`dvc exp show`); the table of the study's trials goes to plots/<key>/search/trials_<sampler>.csv, and
the best config is printed with the `dvc exp run` command that trains it at full budget.
"""

import argparse
import typing

from sentiment.config import section
from sentiment.io import write_csv
from sentiment.models.search import Sampler, SearchConfig, run_search, trial_count
from sentiment.paths import plots_dir
from sentiment.stage import Run, run_stage


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def arguments(parser) -> None:
    parser.add_argument("--sampler", choices=typing.get_args(Sampler), help="default: params.yaml search.sampler")
    parser.add_argument("--trials", type=positive_int, help="default: params.yaml search.trials (the grid is capped at its size)")
    parser.add_argument("--workers", type=positive_int, default=1, help="worker processes on this machine (default 1)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_const", const="resume", dest="mode", help="join or continue the study")
    mode.add_argument("--restart", action="store_const", const="restart", dest="mode", help="replace the study")


def main(run: Run) -> None:
    cfg = section(SearchConfig, run.params, "search")
    sampler = run.args.sampler or cfg.sampler
    trials = trial_count(cfg, sampler, run.args.trials)
    table = run_search(run.key, run.params, sampler, trials, run.args.workers, run.args.mode or "new")
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
    run_stage(main, __doc__, arguments=arguments)
