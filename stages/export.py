"""export: every form of a trained model (the fine-tuned one; `--model distill`: its student) that
`export.forms` lists (sentiment.serving.forms: ONNX, OpenVINO fp32 and int8, ...), each builder run once, each form
scored on test (read as `predict.long_text` says) alone, at `export.batch_sizes` and the batch sizes serve and
predict use, length-sorted and among random neighbours, against torch fp32 (accuracy, F1-macro, agreement, label
and probability changes, the gate's verdict; the default served form: the first passing form of the registry's
order); a config.json beside them (Optimum's ORTModelForSequenceClassification loads the folder), and a
transformers folder (`pipeline("text-classification", ...)`) with the model folder's temperature.

python -m stages.export <dataset key> [--model distill]     # writes data/<key>/export (export_distill)
"""

import argparse

import pandas as pd
import torch

from sentiment.data.datasets import encode_labels, read_clean
from sentiment.io import atomic_dir, model_facts, write_csv, write_results
from sentiment.models.classifier import load_classifier
from sentiment.models.engine import Reading, windows
from sentiment.paths import MODELS, data_dir, export_stage, model_dir
from sentiment.serving.builders import BuildInputs
from sentiment.serving.export import (
    ExportConfig,
    build_forms,
    default_form,
    file_mb,
    save_onnx_config,
    score_forms,
    scored_batch_sizes,
)
from sentiment.serving.forms import ServedBatchSize
from sentiment.serving.hf_classifier import save_for_transformers
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    cfg, key, names, reading = run.section(ExportConfig, "export"), run.key, run.labels, run.section(Reading, "predict")
    batch_sizes = scored_batch_sizes(cfg, [run.section(ServedBatchSize, use) for use in ("serve", "predict")])
    trained, stage = run.args.model, export_stage(run.args.model)
    temperature = model_facts(key, trained)["temperature"]  # before any work: a folder without one is an error
    torch.manual_seed(run.seed)
    model, tokenizer, meta = load_classifier(model_dir(key, trained), on="cpu")
    max_length = meta["max_length"]
    test = read_clean(key, "test")
    labels = encode_labels(test["label"], names, f"{data_dir(key, 'clean')} test")
    dev = read_clean(key, "dev")["text"].tolist()[: cfg.calibration_rows]
    calibration = tokenizer(dev, truncation=True, max_length=max_length)["input_ids"]
    sequences, owner = windows(tokenizer, test["text"].tolist(), max_length, reading)
    with atomic_dir(data_dir(key, stage)) as out:
        backends = build_forms(BuildInputs(model, tokenizer, calibration, cfg.batch_size), out, cfg.forms)
        forms = score_forms(backends, tokenizer, sequences, labels, batch_sizes, cfg.gate, owner)
        for form, figures in forms.items():
            figures["size_mb"] = file_mb(out, form, model)
        columns = ["accuracy", "f1_macro", "agreement_with_torch", "max_probability_change_vs_batch_1", "passes_gate", "size_mb"]
        write_csv(pd.DataFrame([{"form": f, **{c: v[c] for c in columns}} for f, v in forms.items()]), out / "scores.csv")
        tokenizer.save_pretrained(out / "tokenizer")
        save_onnx_config(model, names, out)
        save_for_transformers(model, tokenizer, names, temperature, out / "transformers")
    gate = cfg.gate
    goal = (
        f"at most {gate.max_metric_loss * 100:.1f} points of accuracy and of F1-macro lost against torch fp32, "
        f"at least {gate.min_agreement:.0%} of its test labels, at most {gate.max_label_changes} labels changed and no "
        f"probability moved by more than {gate.max_probability_change:g} between each text alone and in batches of "
        f"{batch_sizes[1:]}, length-sorted or among random neighbours"
    )
    served = default_form(forms)
    report = {"forms": forms, "default_form": served, "n_test": len(labels), "batch_sizes": batch_sizes, "goal": goal}
    report["reading"] = reading.model_dump()  # how test texts longer than max_length were read (windows or truncated)
    # the headline: how far the served default form's answers are from the reference's (1.0 when it is torch)
    write_results(key, stage, report, {"agreement": forms[served]["agreement_with_torch"]})
    for form, r in forms.items():
        changes = sum(r["label_changes_vs_batch_1"].values())
        verdict = "passes" if r["passes_gate"] else "fails: " + "; ".join(r["gate_failures"])
        print(
            f"[{stage}:{key}] {form}: test acc {r['accuracy']:.4f} ({r['accuracy_delta_vs_torch']:+.4f}) "
            f"F1 {r['f1_macro']:.4f} ({r['f1_macro_delta_vs_torch']:+.4f}) agreement {r['agreement_with_torch']:.4f} "
            f"labels changed across batches {changes}, {r['size_mb']:.1f} MB; {verdict}"
        )
    print(f"[{stage}:{key}] default served form: {served}")


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=MODELS, default="finetune", help="which trained model (sentiment.paths.MODELS)")


if __name__ == "__main__":
    run_stage(main, __doc__, arguments=arguments)
