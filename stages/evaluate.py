"""evaluate: metrics, curves, calibration (temperature scaling) and intervals for every model, from predictions.

python -m stages.evaluate <dataset key>
"""

from sentiment.config import UserError
from sentiment.data.datasets import load_predictions, predictions_file, prob_columns, read_clean, skipped_models
from sentiment.evaluation.evaluate import (
    PRIMARY,
    EvaluateConfig,
    analysis_table,
    comparison_table,
    evaluate_model,
    logits_of,
    write_curves,
    write_figures,
)
from sentiment.evaluation.label_audit import SuspectLabels, audit_test_labels
from sentiment.io import atomic_dir, model_facts, write_csv, write_results
from sentiment.metrics import mcnemar_exact, scale
from sentiment.paths import HELD_OUT, data_dir, model_dir, plots_dir
from sentiment.stage import Run, pipeline_stages, run_stage


def main(run: Run) -> None:
    cfg, names, key = run.section(EvaluateConfig, "evaluate"), run.labels, run.key
    audit = run.section(SuspectLabels, "label_issues")
    declared = pipeline_stages()["evaluate"]["do"]["deps"]
    for model, stage in cfg.models.items():
        if f"data/${{key}}/{stage}" not in declared:
            raise UserError(
                f"invalid param evaluate.models.{model}={stage!r}: dvc.yaml's evaluate deps do not list data/${{key}}/{stage}"
            )
    splits = {split: read_clean(key, split) for split in HELD_OUT}
    skipped = {m: why for m, stage in cfg.models.items() for s, why in skipped_models(key, stage).items() if s == m}
    preds = {
        model: {s: load_predictions(predictions_file(key, stage, model, s), splits[s], names) for s in splits}
        for model, stage in cfg.models.items()
        if model not in skipped
    }
    # a trained model's temperature is the one its folder carries (fitted on its unrounded dev logits; serving
    # applies it); the baselines' are fitted here
    carried = {m: model_facts(key, m)["temperature"] for m in preds if (model_dir(key, m) / "head.json").exists()}
    results = {model: evaluate_model(frames, names, cfg, run.seed, carried.get(model)) for model, frames in preds.items()}
    report = {"models": results, **({"skipped": skipped} if skipped else {})}
    test_labels = splits["test"]["label"].to_numpy()
    baselines = [m for m in preds if m != PRIMARY]
    if baselines:
        best = max(baselines, key=lambda m: results[m]["dev"]["f1_macro"])  # chosen on dev, never on test
        report["best_baseline"] = best
        primary_preds, best_preds = preds[PRIMARY]["test"]["pred"].to_numpy(), preds[best]["test"]["pred"].to_numpy()
        report["mcnemar_test"] = {f"{PRIMARY}_vs_{best}": mcnemar_exact(test_labels, primary_preds, best_preds)}

    frame = preds[PRIMARY]["test"]  # charts and analysis files are the primary model's, on test
    scaled = scale(logits_of(frame, names), results[PRIMARY]["temperature"])
    analysis = analysis_table(splits["test"], frame, scaled, names)
    # the test labels audited from the primary model's out-of-sample test probabilities (reporting only: the
    # headline figures stay on every row); the suspects, lowest label quality first, beside the best baseline's
    # label, for a person to read
    baseline = (best, preds[best]["test"]["pred"].to_numpy()) if baselines else None
    flagged, suspects, test_audit = audit_test_labels(splits["test"], scaled, names, audit.filter_by, baseline)
    report["test_label_audit"] = test_audit | {"reference": PRIMARY, "shown": min(audit.shown, len(suspects))}
    analysis["suspect_label"] = flagged
    with atomic_dir(plots_dir(key, "evaluate")) as out:
        write_curves(out, test_labels, frame, scaled, names, cfg.ece_bins)
        write_csv(comparison_table(results), out / "comparison.csv")
        write_csv(suspects.head(audit.shown), out / "suspect_test_labels.csv")
    with atomic_dir(plots_dir(key, "figures")) as out:
        probs = frame[prob_columns(names)].to_numpy()
        write_figures(out, test_labels, probs, scaled, frame["pred"].to_numpy(), names, cfg.ece_bins, key)
    with atomic_dir(data_dir(key, "evaluate")) as out:
        write_csv(analysis, out / "test_predictions.csv")
        errors = analysis[~analysis["correct"]].sort_values(["confidence", "id"], ascending=[False, True], kind="stable")
        write_csv(errors, out / "misclassified.csv")
    test = results[PRIMARY]["test"]
    headline = {"accuracy": test["accuracy"], "f1_macro": test["f1_macro"], "ece": test["calibration_scaled"]["ece"]}
    write_results(key, "evaluate", report, headline)
    for model, r in results.items():
        t = r["test"]
        print(
            f"[evaluate:{key}] {model}: test acc {t['accuracy']:.4f} {t['ci95']['accuracy']} F1 {t['f1_macro']:.4f} "
            f"ECE {t['calibration']['ece']:.4f} -> {t['calibration_scaled']['ece']:.4f} (T={r['temperature']:.3f})"
        )
    suspect = report["test_label_audit"]
    both = (
        f"; {PRIMARY} and {suspect['baseline']} both disagree with {suspect['disputed_by_both']} of them"
        if suspect["baseline"]
        else ""
    )
    print(f"[evaluate:{key}] test-label audit: {suspect['suspects']} of {suspect['test_rows']} test labels suspect{both}")


if __name__ == "__main__":
    run_stage(main, __doc__)
