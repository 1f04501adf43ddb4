"""Compare finetune configs over several seeds: mean and spread of dev and test scores.

One seed cannot separate configs here: on SST-2, changing only the seed moves test accuracy by
up to 0.8 points. This runs the finetune stage's `finetune()` (all of train, the configured
budget) for every config and seed, each in a temporary directory, and prints one row per run
and mean ± SD per config. Choose on dev; the test columns say what a choice gives on the scored
split. `--baseline NAME` also prints, per other config, the mean difference from that config on
the seeds both ran, with its standard error: seeds pair the runs, so this separates configs with
fewer seeds than comparing two means. Nothing in the repo is written unless `--jsonl` names a file
(one JSON line per run, appended as runs finish). A config with `clean.drop_label_issues=true` trains
on train without the rows the label_issues stage flagged, as the finetune stage then does.

    python bench/seed_study.py sst2 --seeds 42 43 44 45 \
        --config current= --config b32=train.batch_size=32,train.learning_rate=0.00006 [--workers 4]

A config is `name=` followed by comma-separated `section.key=value` overrides of params.yaml,
what `dvc exp run -S` sets (values read as YAML). `--workers N` runs N fine-tunes at once: on a
GPU a small encoder leaves it mostly idle, so several runs share it well; on a 2-core CPU keep 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sentiment.config import Params, UserError
from sentiment.models.config import Recipe
from sentiment.stage import fail


def parse_config(text: str) -> tuple[str, dict[str, Any]]:
    """`name=a.b=1,c.d=x` -> ("name", {"a.b": 1, "c.d": "x"})."""
    name, _, rest = text.partition("=")
    if not name:
        raise UserError(f"invalid --config {text!r}: expected name=section.key=value,...")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or "." not in key and key != "seed":
            raise UserError(f"invalid override {item!r} in --config {text!r}: expected section.key=value")
        overrides[key] = yaml.safe_load(value)
    return name, overrides


SCORES = ["dev_accuracy", "dev_f1_macro", "test_accuracy", "test_f1_macro", "seconds"]
PAIRED_LABELS = [("dev_accuracy", "dev acc"), ("dev_f1_macro", "F1"), ("test_accuracy", "test acc"), ("test_f1_macro", "F1")]


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and SD (over seeds; 0 for one run) of each score, per config, in first-seen config order."""
    grouped = pd.DataFrame(rows).groupby("config", sort=False)
    table = pd.concat([grouped[SCORES].mean(), grouped[SCORES].std().fillna(0.0).add_suffix("_sd")], axis=1)
    table.insert(0, "runs", grouped.size())
    return table.reset_index().to_dict("records")


def paired_differences(rows: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Per config other than `baseline`: mean and standard error, over the seeds both ran, of the
    config's score minus the baseline's, for each score but time."""
    scores = pd.DataFrame(rows).set_index(["config", "seed"])[SCORES[:-1]]
    base = scores.loc[baseline]
    out = []
    for config in scores.index.get_level_values("config").unique():
        if config == baseline:
            continue
        diff = (scores.loc[config] - base).dropna()
        record = {"config": config, "runs": len(diff)}
        for score in SCORES[:-1]:
            record[score], record[f"{score}_se"] = diff[score].mean(), diff[score].sem()
        out.append(record)
    return out


def run_one(key: str, name: str, overrides: dict[str, Any], seed: int, threads: int, log_dir: str) -> dict[str, Any]:
    """One fine-tune in a temporary directory; its output goes to a log file, its scores come back."""
    import torch

    from sentiment.models.training import finetune

    torch.set_num_threads(threads)
    log = Path(log_dir) / f"{key}_{name}_{seed}.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1), os.dup2(fd, 2)
    params = Params.load().with_values({**overrides, "seed": seed})
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # finetune() leaves out the rows label_issues flags itself when clean.drop_label_issues is true
        metrics = finetune(key, params.dataset(key).labels, Recipe.of(params), Path(tmp) / "out", Path(tmp) / "checkpoints")
    return {
        "dataset": key,
        "config": name,
        "overrides": overrides,
        "seed": seed,
        "best_epoch": metrics["best_epoch"],
        "dev_accuracy": metrics["dev"]["accuracy"],
        "dev_f1_macro": metrics["dev"]["f1_macro"],
        "test_accuracy": metrics["test"]["accuracy"],
        "test_f1_macro": metrics["test"]["f1_macro"],
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("key", help="dataset key from params.yaml")
    parser.add_argument("--config", action="append", required=True, help="name=section.key=value,... (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads per run (default: CPU cores / workers)")
    parser.add_argument("--jsonl", type=Path, help="append one JSON line per finished run here")
    parser.add_argument("--logs", type=Path, help="keep each run's log here (default: a temporary directory)")
    parser.add_argument("--baseline", help="a config's name: also print each other config's paired difference from it")
    args = parser.parse_args(argv)
    configs = [parse_config(text) for text in args.config]
    if args.baseline is not None and args.baseline not in {name for name, _ in configs}:
        raise UserError(f"--baseline {args.baseline!r} is not one of the --config names")
    params = Params.load()
    for _, overrides in configs:  # fail on a bad key or value before any training starts
        Recipe.of(params.with_values(overrides))
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    jobs = [(name, overrides, seed) for seed in args.seeds for name, overrides in configs]
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="seed_study_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"{len(jobs)} runs on {args.key}, {args.workers} at a time, {threads} threads each; logs in {log_dir}", flush=True)
    if args.jsonl:
        from record import append  # bench/ is on sys.path when this runs as a script; tests import the module
    rows = []
    # spawn: each worker starts clean (CUDA cannot be re-initialised in a forked child)
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_one, args.key, name, overrides, seed, threads, str(log_dir)) for name, overrides, seed in jobs]
        for future in as_completed(futures):
            row = future.result()
            rows.append(row)
            print(
                f"{row['config']:<16} seed {row['seed']:>4}: dev acc {row['dev_accuracy']:.4f} F1 {row['dev_f1_macro']:.4f}"
                f" | test acc {row['test_accuracy']:.4f} F1 {row['test_f1_macro']:.4f}"
                f" | best epoch {row['best_epoch']} | {row['seconds']:.0f}s",
                flush=True,
            )
            if args.jsonl:
                append(args.jsonl, row)
    print("mean ± SD over seeds:")
    for s in summarise(rows):
        print(
            f"{s['config']:<16} n={s['runs']}: dev acc {s['dev_accuracy']:.4f} ± {s['dev_accuracy_sd']:.4f}"
            f" F1 {s['dev_f1_macro']:.4f} ± {s['dev_f1_macro_sd']:.4f}"
            f" | test acc {s['test_accuracy']:.4f} ± {s['test_accuracy_sd']:.4f}"
            f" F1 {s['test_f1_macro']:.4f} ± {s['test_f1_macro_sd']:.4f} | {s['seconds']:.0f}s per run"
        )
    if args.baseline is not None:
        print(f"paired difference from {args.baseline}, in points (standard error):")
        for d in paired_differences(rows, args.baseline):
            cells = [f"{name} {100 * d[score]:+.2f} ({100 * d[score + '_se']:.2f})" for score, name in PAIRED_LABELS]
            print(f"{d['config']:<16} n={d['runs']}: " + " | ".join(cells))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except UserError as err:
        fail(str(err))
