"""export: every form of a trained model (the fine-tuned one; `--model distill`: its student) that
sentiment.serving.forms lists (ONNX fp32, static and dynamic int8), each builder run once, each form scored on test
at batch size 1, at `export.batch_sizes` and at the batch sizes serve and predict use, against torch fp32 (accuracy,
F1-macro, agreement, label changes across batch sizes, the gate's verdict); a config.json beside them (Optimum's
ORTModelForSequenceClassification loads the folder), and a transformers folder (`pipeline("text-classification",
...)`) with the temperature fitted on dev.

python -m stages.export <dataset key> [--model distill]     # writes data/<key>/export (export_distill)
"""

import argparse

import pandas as pd
import torch

from sentiment.config import section
from sentiment.data.datasets import encode_labels, read_clean
from sentiment.io import atomic_dir, write_csv, write_results
from sentiment.models.classifier import load_classifier
from sentiment.paths import MODELS, data_dir, export_stage, model_dir
from sentiment.serving.export import (
    BuildInputs,
    ExportConfig,
    build_forms,
    file_mb,
    save_onnx_config,
    score_forms,
    scored_batch_sizes,
)
from sentiment.serving.hf_classifier import save_for_transformers
from sentiment.serving.runtime import batches_of, encode, temperature
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    cfg, key, names = section(ExportConfig, run.params, "export"), run.key, run.labels
    trained, stage = run.args.model, export_stage(run.args.model)
    torch.manual_seed(run.seed)
    model, tokenizer, meta = load_classifier(model_dir(key, trained), on="cpu")
    test = read_clean(key, "test")
    labels = encode_labels(test["label"], names, f"{data_dir(key, 'clean')} test")
    dev = read_clean(key, "dev")["text"].tolist()[: cfg.calibration_rows]
    calibration = batches_of(tokenizer, encode(tokenizer, dev, meta["max_length"]), cfg.batch_size)
    batch_sizes = scored_batch_sizes(run.params)
    with atomic_dir(data_dir(key, stage)) as out:
        backends = build_forms(BuildInputs(model, tokenizer, calibration), out)
        forms = score_forms(backends, tokenizer, test["text"].tolist(), labels, meta["max_length"], batch_sizes, cfg.gate)
        for form, figures in forms.items():
            figures["size_mb"] = file_mb(out, form, model)
        columns = ["accuracy", "f1_macro", "agreement_with_torch", "max_probability_change_vs_batch_1", "passes_gate", "size_mb"]
        write_csv(pd.DataFrame([{"form": f, **{c: v[c] for c in columns}} for f, v in forms.items()]), out / "scores.csv")
        tokenizer.save_pretrained(out / "tokenizer")
        save_onnx_config(model, names, out)
        save_for_transformers(model, tokenizer, names, temperature(key, trained), out / "transformers")
    gate = cfg.gate
    goal = (
        f"at most {gate.max_metric_loss * 100:.1f} points of accuracy and of F1-macro lost against torch fp32, "
        f"at least {gate.min_agreement:.0%} of its test labels, at most {gate.max_label_changes} labels changed and no "
        f"probability moved by more than {gate.max_probability_change:g} between batch 1 and batch sizes {batch_sizes[1:]}"
    )
    report = {"forms": forms, "n_test": len(labels), "batch_sizes": batch_sizes, "goal": goal}
    passing = [r["agreement_with_torch"] for r in forms.values() if r["passes_gate"]]
    write_results(key, stage, report, {"agreement": min(passing, default=None)})
    for form, r in forms.items():
        changes = sum(r["label_changes_vs_batch_1"].values())
        verdict = "passes" if r["passes_gate"] else "fails: " + "; ".join(r["gate_failures"])
        print(
            f"[{stage}:{key}] {form}: test acc {r['accuracy']:.4f} ({r['accuracy_delta_vs_torch']:+.4f}) "
            f"F1 {r['f1_macro']:.4f} ({r['f1_macro_delta_vs_torch']:+.4f}) agreement {r['agreement_with_torch']:.4f} "
            f"labels changed across batch sizes {changes}, {r['size_mb']:.1f} MB; {verdict}"
        )


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODELS, default="finetune", help="which trained model (sentiment.paths.MODELS)")


if __name__ == "__main__":
    run_stage(main, __doc__, arguments=arguments)
