"""distill: a student keeping `distill.layers` of the fine-tuned model's layers, trained on its soft labels and the
labels, then scored as evaluate scores the teacher (test accuracy and F1-macro with bootstrap CIs, ECE before and
after its own temperature fitted on dev) and against the teacher (agreement on test).

    python -m stages.distill <dataset key> [--resume]
"""

import shutil

import numpy as np

from sentiment.data.datasets import TrainRows, load_predictions, read_clean, training_rows
from sentiment.evaluation.evaluate import Scoring, evaluate_model
from sentiment.io import model_facts, write_csv, write_results
from sentiment.models.config import TrainConfig
from sentiment.models.distill import DistillConfig, distill
from sentiment.models.engine import Reading
from sentiment.models.training import rank_zero_dir, resume_argument, resume_requested, write_curves
from sentiment.paths import CHECKPOINTS, LIVE, data_dir, model_dir, plots_dir
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    key = run.key
    resume = resume_requested(run.args)
    checkpoints = CHECKPOINTS / f"{key}-distill"
    cfg, train, reading = (
        run.section(DistillConfig, "distill"),
        run.section(TrainConfig, "train"),
        run.section(Reading, "predict"),
    )
    rows = training_rows(key, run.section(TrainRows, "clean").drop_label_issues)
    evaluate = run.section(Scoring, "evaluate")
    with rank_zero_dir(data_dir(key, "distill")) as out:
        live = LIVE / f"{key}-distill"
        figures = distill(
            key, run.labels, cfg, train, run.seed, reading, rows, model_dir(key), out, checkpoints, resume=resume, live_dir=live
        )
        if figures is None:
            return
        predictions = figures.pop("predictions")
        for split, frame in predictions.items():
            write_csv(frame, out / f"distill_{split}.csv")
    write_curves(figures.pop("curves"), plots_dir(key, "distill"))
    evaluated = evaluate_model(predictions, run.labels, evaluate, run.seed, model_facts(key, "distill")["temperature"])
    teacher = load_predictions(data_dir(key, "finetune") / "finetune_test.csv", read_clean(key, "test"), run.labels)
    student = predictions["test"]
    agreement = float(np.mean(teacher["pred"].to_numpy() == student["pred"].to_numpy()))
    figures.update(evaluated, agreement_with_teacher=agreement, digest=model_facts(key, "distill")["digest"])
    test = evaluated["test"]
    headline = {
        "accuracy": test["accuracy"],
        "f1_macro": test["f1_macro"],
        "ece": test["calibration_scaled"]["ece"],
        "agreement": agreement,
    }
    write_results(key, "distill", figures, headline)
    shutil.rmtree(checkpoints, ignore_errors=True)
    print(
        f"[distill:{key}] {len(figures['layers'])} of {figures['teacher_layers']} layers: test acc {test['accuracy']:.4f} "
        f"F1 {test['f1_macro']:.4f}, agreement with the teacher {agreement:.4f}"
    )


if __name__ == "__main__":
    run_stage(main, __doc__, arguments=resume_argument)
