"""baseline: TF-IDF + logistic regression (grid-searched) and the VADER lexicon, with dev/test predictions.

python -m stages.baseline <dataset key>
"""

import time

import joblib

from sentiment.config import POLARITY_OFF
from sentiment.data.datasets import SKIPPED, TrainRows, predictions_frame, read_clean, training_rows
from sentiment.io import atomic_dir, write_csv, write_json, write_results
from sentiment.metrics import accuracy_and_f1
from sentiment.models.baselines import (
    BaselineConfig,
    VaderModel,
    cv_table,
    grid_search,
    label_order_correlation,
    portable,
    short_name,
    vader_scores,
)
from sentiment.paths import HELD_OUT, data_dir, plots_dir
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    cfg, names, key = run.section(BaselineConfig, "baseline"), run.labels, run.key
    frames = {split: read_clean(key, split) for split in HELD_OUT}
    frames = {"train": training_rows(key, run.section(TrainRows, "clean").drop_label_issues), **frames}
    start = time.perf_counter()
    search = grid_search(frames["train"], cfg, run.seed, len(names))
    print(
        f"[baseline:{key}] grid search: {len(search.cv_results_['params'])} points x {cfg.cv_folds} folds "
        f"in {time.perf_counter() - start:.0f}s; best {search.best_params_} CV F1-macro {search.best_score_:.4f}"
    )
    model = search.best_estimator_
    report = {
        "tfidf_lr": {
            "best_params": {short_name(k): v for k, v in search.best_params_.items()},
            "cv_f1_macro": search.best_score_,
        }
    }
    fitted = {"tfidf_lr": model}
    skipped = {}
    if run.dataset.polarity:  # VADER's compound score runs negative -> positive, as the labels must
        compound = {split: vader_scores(frame["text"]) for split, frame in frames.items() if split != "train"}
        order = label_order_correlation(compound["dev"], frames["dev"]["label"].to_numpy(), key)
        vader = fitted["vader"] = VaderModel().fit(compound["dev"], frames["dev"]["label"].to_numpy(), len(names))
        calibration = "logistic calibration of the compound score, fitted on dev"
        report["vader"] = {"thresholds": vader.thresholds, "probabilities": calibration, "dev_label_spearman": order}
    else:
        skipped["vader"] = POLARITY_OFF.format(key=key)
    with atomic_dir(data_dir(key, "baseline")) as out:
        for split in HELD_OUT:
            frame, labels = frames[split], frames[split]["label"].to_numpy()
            outputs = {"tfidf_lr": predictions_frame(frame["id"], labels, model.predict_proba(frame["text_norm"]), names)}
            if "vader" in fitted:
                outputs["vader"] = predictions_frame(frame["id"], labels, vader.predict_proba(compound[split]), names)
                outputs["vader"]["pred"] = vader.predict(compound[split])  # the dev-tuned thresholds, not the argmax
            for name, predictions in outputs.items():
                write_csv(predictions, out / f"{name}_{split}.csv")
                report[name][split] = accuracy_and_f1(labels, predictions["pred"], len(names))
        joblib.dump(portable(model), out / "tfidf_lr.joblib")  # after predicting, which sets the id again
        if "vader" in fitted:
            joblib.dump(vader, out / "vader.joblib")
        if skipped:
            write_json(out / SKIPPED, skipped)
    write_csv(cv_table(search), plots_dir(key, "baseline") / "grid.csv")
    headline = {name: report["tfidf_lr"]["test"][name] for name in ("accuracy", "f1_macro")}
    write_results(key, "baseline", {**report, "skipped": skipped} if skipped else report, headline)
    for name, reason in skipped.items():
        print(f"[baseline:{key}] {name}: skipped, {reason}")
    for name in fitted:
        r = report[name]
        print(
            f"[baseline:{key}] {name}: dev acc {r['dev']['accuracy']:.4f} F1 {r['dev']['f1_macro']:.4f}; "
            f"test acc {r['test']['accuracy']:.4f} F1 {r['test']['f1_macro']:.4f}"
        )


if __name__ == "__main__":
    run_stage(main, __doc__)
