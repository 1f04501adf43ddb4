"""behavior: CheckList-style behavioural tests (templates, invariance, directional) of the fine-tuned
model and the best baseline.

    python -m stages.behavior <dataset key>
"""

from pathlib import Path

import pandas as pd

from sentiment.data.datasets import read_clean
from sentiment.data.text import NegationWords, TextCleaning
from sentiment.evaluation.behavior import (
    BehaviorConfig,
    build_cases,
    capability_summary,
    failure_chart,
    load_suite,
    run_test,
    skip_reason,
)
from sentiment.io import atomic_dir, write_csv, write_results
from sentiment.paths import data_dir, plots_dir
from sentiment.serving.long_text import BatchedReading
from sentiment.serving.runtime import deployed_scorers
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    cfg, key, names, seed = run.section(BehaviorConfig, "behavior"), run.key, run.labels, run.seed
    suite = load_suite(Path(cfg.templates))
    rows = read_clean(key, "test").sample(frac=1.0, random_state=seed)["text"].tolist()  # seeded order
    reading = run.section(BatchedReading, "predict")
    clean, words = run.section(TextCleaning, "clean"), run.section(NegationWords, "words")
    scorers = deployed_scorers(key, clean, words, reading, names)
    report = {s.name: {"tests": {}} for s in scorers}
    skipped, frames, summary_rows = {}, [], []
    for number, test in enumerate(suite.tests):
        reason = skip_reason(test, key, names, run.dataset.polarity)
        cases = [] if reason else build_cases(test, suite, rows, cfg.max_cases, seed + number)
        if reason or not cases:
            skipped[test.name] = reason or "no case: the perturbation changes none of the rows"
            continue
        for scorer in scorers:
            summary, frame = run_test(test, cases, scorer.scaled, names, cfg.tolerance)
            report[scorer.name]["tests"][test.name] = summary
            frames.append(frame.assign(test=test.name, model=scorer.name))
            low, high = summary["ci95"]
            summary_rows.append(
                {
                    "test": test.name,
                    "model": scorer.name,
                    **{k: summary[k] for k in ("capability", "kind", "n", "failure_rate")},
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    for r in report.values():
        r["capabilities"] = capability_summary(r["tests"])
    columns = ["test", "model", "capability", "kind", "n", "failure_rate", "ci_low", "ci_high"]
    table = pd.DataFrame(summary_rows, columns=columns)
    cases = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["test", "model", "text", "failed", "severity"])
    )
    worst = (
        cases[cases["failed"].astype(bool)]
        .sort_values(["test", "model", "severity", "text"], ascending=[True, True, False, True], kind="stable")
        .groupby(["test", "model"], sort=False)
        .head(cfg.worst)
    )
    rates = [t["failure_rate"] for t in report["finetune"]["tests"].values() if t["failure_rate"] is not None]
    details = {"models": report, "skipped": skipped, "tolerance": cfg.tolerance}
    write_results(key, "behavior", details, {"failure_rate": sum(rates) / len(rates) if rates else None})
    with atomic_dir(data_dir(key, "behavior")) as out:
        write_csv(cases, out / "cases.csv")
    with atomic_dir(plots_dir(key, "behavior")) as out:
        write_csv(table, out / "failure_rates.csv")
        write_csv(table[table["model"] == "finetune"], out / "finetune.csv")  # the `dvc plots` chart
        write_csv(worst.drop(columns="failed"), out / "worst_failures.csv")
        failure_chart(out / "failure_rates.png", table, key, skipped)
    for test, reason in skipped.items():
        print(f"[behavior:{key}] {test}: skipped, {reason}")
    for name, r in report.items():
        parts = [f"{t} {s['failures']}/{s['n']}" for t, s in r["tests"].items()]
        print(f"[behavior:{key}] {name} failures: " + "; ".join(parts))


if __name__ == "__main__":
    run_stage(main, __doc__)
