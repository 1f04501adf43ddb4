"""external: the fine-tuned model and the best baseline on labelled sets from outside the dataset,
beside the in-domain test: accuracy and F1-macro with intervals, ECE before and after the in-domain
temperature, and (where texts outrun the model's max_length) windows against truncation.

    python -m stages.external <dataset key>
"""

import numpy as np
import pandas as pd

from sentiment.config import UserError
from sentiment.data.text import NegationWords, TextCleaning
from sentiment.evaluation.external import ExternalConfig, read_set, set_metrics, summary_chart
from sentiment.io import atomic_dir, read_results, write_csv, write_results
from sentiment.paths import data_dir, plots_dir
from sentiment.serving.long_text import BatchedReading
from sentiment.serving.runtime import deployed_scorers
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    cfg, key, names, seed = run.section(ExternalConfig, "external"), run.key, run.labels, run.seed
    if key not in cfg.sets:
        raise UserError(f"params.yaml external.sets has no entry for dataset {key!r}")
    reading = run.section(BatchedReading, "predict")
    clean, words = run.section(TextCleaning, "clean"), run.section(NegationWords, "words")
    scorers = deployed_scorers(key, clean, words, reading, names)
    finetune = scorers[0]
    truncating = finetune.reading_as(reading.model_copy(update={"long_text": "truncate"}), "finetune_truncate")
    in_domain = read_results(key, "evaluate")["models"]
    rows = [
        {
            "set": "in-domain test",
            "model": s.name,
            "n": None,
            "accuracy": in_domain[s.name]["test"]["accuracy"],
            "ci_low": in_domain[s.name]["test"]["ci95"]["accuracy"][0],
            "ci_high": in_domain[s.name]["test"]["ci95"]["accuracy"][1],
        }
        for s in scorers
        if s.name in in_domain  # the served form's own test figures are export's (it is gated against the reference)
    ]
    report = {
        "forms": [s.name for s in scorers if s.name.startswith("finetune")],
        "long_text": reading.long_text,
        "window_overlap": reading.window_overlap,
        "sets": {},
    }
    with atomic_dir(data_dir(key, "external")) as out:
        for name, spec in cfg.sets[key].items():
            frame, total = read_set(name, spec, names, seed)
            texts, labels = frame["text"].tolist(), frame["label"].to_numpy()
            long_texts = int(np.sum(np.asarray(finetune.token_counts(texts)) > finetune.max_length))
            present = sorted(set(labels.tolist()))
            entry = {
                "source": spec.source,
                "n": len(frame),
                "rows_before_sample": total,
                "over_max_length": long_texts,
                "label_counts": {names[k]: int(np.sum(labels == k)) for k in present},
                "models": {},
            }
            models = scorers + ([truncating] if long_texts and reading.long_text == "chunk" else [])
            predictions = frame.assign(label=[names[k] for k in labels])
            for scorer in models:
                scored = scorer(texts)
                figures = set_metrics(
                    labels, scored.preds, scored.probabilities(), scored.probabilities(scorer.temperature), present, cfg, seed
                )
                reference = in_domain[scorer.name if scorer.name in in_domain else "finetune"]["test"]
                figures["in_domain_accuracy"] = reference["accuracy"]
                figures["accuracy_minus_in_domain"] = figures["accuracy"] - reference["accuracy"]
                entry["models"][scorer.name] = figures
                low, high = figures["accuracy_ci95"]
                rows.append(
                    {
                        "set": name,
                        "model": scorer.name,
                        "n": len(frame),
                        "accuracy": figures["accuracy"],
                        "ci_low": low,
                        "ci_high": high,
                    }
                )
                predictions[f"pred_{scorer.name}"] = [names[k] for k in scored.preds]
            write_csv(predictions, out / f"{name}.csv")
            report["sets"][name] = entry
            for model, f in entry["models"].items():
                print(
                    f"[external:{key}] {name} (n={len(frame)}, {long_texts} over max_length) {model}: acc {f['accuracy']:.4f} "
                    f"{[round(x, 4) for x in f['accuracy_ci95']]} (in-domain {f['in_domain_accuracy']:.4f}); "
                    f"ECE {f['ece']:.4f} -> {f['ece_scaled']:.4f} with the in-domain temperature"
                )
    accuracies = [entry["models"]["finetune"]["accuracy"] for entry in report["sets"].values()]
    write_results(key, "external", report, {"min_accuracy": min(accuracies, default=None)})
    table = pd.DataFrame(rows)
    with atomic_dir(plots_dir(key, "external")) as out:
        write_csv(table, out / "accuracy.csv")
        write_csv(table[table["model"] == "finetune"], out / "finetune.csv")  # the `dvc plots` chart
        summary_chart(out / "accuracy.png", table, key)


if __name__ == "__main__":
    run_stage(main, __doc__)
