"""Accuracy against throughput for the teacher's forms and the distilled student's, side by side in one run on
the CPU at hand; then one row per layer count of a light-budget sweep (students distilled on `light.train_fraction`
of train for `light.epochs`, torch fp32 and OpenVINO int8), to show where the pipeline's student sits.

    python bench/frontier.py --dataset sst2                # after `dvc repro export_distill@sst2`
    python bench/frontier.py --dataset sst2 --sweep        # the two trained models' `export.forms` only, no sweep
    python bench/frontier.py --dataset sst2 --save NAME    # also docs/results/frontier_NAME.json and
                                                           # plots/frontier/<dataset>.csv (`dvc plots show`)

Every form is built by the export stage's builders from the model files, timed on the same test texts in
length-sorted batches of `--batch-size` (best of two passes, tokenization included), and scored on test with
the export gate (agreement with that model's own torch fp32, label changes across batch sizes).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from inference import batched

from record import model_digests, save
from sentiment.config import Params
from sentiment.data.datasets import read_clean, training_rows
from sentiment.machine import describe, machine
from sentiment.metrics import accuracy_and_f1
from sentiment.models.classifier import SentimentClassifier, load_classifier
from sentiment.models.config import LightBudget, Recipe
from sentiment.models.distill import DistillConfig, distill
from sentiment.models.engine import Reading, windows
from sentiment.paths import MODELS, model_dir
from sentiment.serving.builders import BuildInputs
from sentiment.serving.export import ExportConfig, build_forms, score_forms, scored_batch_sizes
from sentiment.serving.forms import ServedBatchSize

PLOTS = Path("plots") / "frontier"


def measured_forms(
    key: str, name: str, loaded: tuple[SentimentClassifier, Any, dict[str, Any]], params: Params, batch: int
) -> list[dict[str, Any]]:
    """One row per form of the `loaded` model: test accuracy and F1-macro, sentences/s, and the gate's verdict."""
    model, tokenizer, meta = loaded
    cfg, max_length = params.section(ExportConfig, "export"), int(meta["max_length"])
    sizes = scored_batch_sizes(cfg, [params.section(ServedBatchSize, use) for use in ("serve", "predict")])
    test = read_clean(key, "test")
    texts, labels = test["text"].tolist(), test["label"].to_numpy()
    dev = read_clean(key, "dev")["text"].tolist()[: cfg.calibration_rows]
    calibration = tokenizer(dev, truncation=True, max_length=max_length)["input_ids"]
    sequences, owner = windows(tokenizer, texts, max_length, params.section(Reading, "predict"))  # as export reads test
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        backends = build_forms(BuildInputs(model, tokenizer, calibration, cfg.batch_size), Path(tmp), cfg.forms)
        gate = score_forms(backends, tokenizer, sequences, labels, sizes, cfg.gate, owner)
        for form, run in backends.items():
            run(*[np.ones((1, 8), dtype=np.int64)] * 2)  # warm-up
            rate, logits = batched(run, tokenizer, texts, max_length, batch)
            rows.append(
                {
                    "model": name,
                    "form": form,
                    "layers": model.encoder.config.num_hidden_layers,
                    "sentences_per_s": rate,
                    **accuracy_and_f1(labels, logits.argmax(axis=1), logits.shape[1]),
                    "agreement_with_own_torch": gate[form]["agreement_with_torch"],
                    "passes_gate": gate[form]["passes_gate"],
                }
            )
            print(f"{name} {form}: {rate:.0f} sentences/s, test acc {rows[-1]['accuracy']:.4f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sweep", type=int, nargs="*", default=[2, 3], help="layer counts of the light-budget sweep")
    parser.add_argument("--save", metavar="NAME")
    args = parser.parse_args()
    key = args.dataset
    params = Params.load()
    m = machine()
    print(f"{describe(m)}; torch threads {torch.get_num_threads()}")
    rows = []
    for name in MODELS:
        rows += measured_forms(key, name, load_classifier(model_dir(key, name), on="cpu"), params, args.batch_size)
    light, recipe = params.section(LightBudget, "light"), Recipe.of(params)
    configured = params.section(DistillConfig, "distill")
    teacher_layers = load_classifier(model_dir(key), on="cpu")[0].encoder.config.num_hidden_layers
    for count in args.sweep:
        layers = np.linspace(0, teacher_layers - 1, count).round().astype(int).tolist()
        swept = configured.model_copy(update={"layers": layers, "epochs": light.epochs})
        with tempfile.TemporaryDirectory() as tmp:
            subset = (
                training_rows(key, False)
                .groupby("label", group_keys=False)
                .sample(frac=light.train_fraction, random_state=recipe.seed)
            )
            names, out = params.dataset(key).labels, Path(tmp)
            figures = distill(
                key, names, swept, recipe.train, recipe.seed, recipe.reading, subset, model_dir(key), out, out / "checkpoints"
            )
            student = load_classifier(Path(tmp) / "model", on="cpu")
            for row in measured_forms(key, f"light_{count}_layers", student, params, args.batch_size):
                if row["form"] in ("torch", "openvino_int8"):
                    rows.append({**row, "distilled_layers": layers, "train_rows": figures["train_rows"]})
    base = next(r["sentences_per_s"] for r in rows if r["model"] == "finetune" and r["form"] == "torch")
    teacher_acc = next(r["accuracy"] for r in rows if r["model"] == "finetune" and r["form"] == "torch")
    for r in rows:
        r["speedup_vs_teacher_torch"] = r["sentences_per_s"] / base
        r["accuracy_delta_vs_teacher"] = r["accuracy"] - teacher_acc
    print("| model | layers | form | sentences/s | x teacher torch fp32 | test acc | delta | F1 | gate |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['model']} | {r['layers']} | {r['form']} | {r['sentences_per_s']:.0f} | {r['speedup_vs_teacher_torch']:.2f}x | "
            f"{r['accuracy']:.4f} | {r['accuracy_delta_vs_teacher']:+.4f} | {r['f1_macro']:.4f} | "
            f"{'pass' if r['passes_gate'] else 'FAIL'} |"
        )
    if args.save:
        command = f"python bench/frontier.py --dataset {key} --sweep {' '.join(map(str, args.sweep))}"
        save(
            "frontier",
            args.save,
            {
                "command": command,
                "machine": m,
                "model_digests": model_digests([(key, name) for name in MODELS]),
                "dataset": key,
                "distill": configured.model_dump(),
                "rows": rows,
            },
        )
        PLOTS.mkdir(parents=True, exist_ok=True)
        columns = ["model", "form", "layers", "speedup_vs_teacher_torch", "accuracy", "f1_macro", "passes_gate"]
        frame = pd.DataFrame(rows)[columns].round(4)
        frame["point"] = frame["model"] + " " + frame["form"]
        frame.to_csv(PLOTS / f"{key}.csv", index=False)
        print(f"wrote {PLOTS / f'{key}.csv'}")


if __name__ == "__main__":
    main()
