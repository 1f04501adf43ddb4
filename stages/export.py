"""export: torch int8, ONNX, ONNX int8 and optimized ONNX int8 forms of the fine-tuned model, each scored on
test like the torch fp32 model, a config.json beside them (Optimum's ORTModelForSequenceClassification loads
the folder), and a transformers folder (`pipeline("text-classification", ...)`) with the
temperature evaluate fitted on dev.

python -m stages.export <dataset key>
"""

import pandas as pd
import torch

from sentiment.config import section
from sentiment.data.datasets import encode_labels, read_clean
from sentiment.io import atomic_dir, read_json, write_csv, write_json
from sentiment.models.classifier import load_classifier
from sentiment.paths import data_dir, metrics_file, model_dir
from sentiment.serving.export import (
    ExportConfig,
    build_forms,
    quantize_int8,
    save_onnx_config,
    score_forms,
    serialized_mb,
    sorted_batches,
)
from sentiment.serving.forms import FORM_FILES, GATE, passes_gate
from sentiment.serving.hf_classifier import save_for_transformers
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    cfg, key, names = section(ExportConfig, run.params, "export"), run.key, run.labels
    torch.manual_seed(run.params["seed"])
    model, tokenizer, meta = load_classifier(model_dir(key))
    test = read_clean(key, "test")
    labels = encode_labels(test["label"], names, f"{data_dir(key, 'clean')} test")
    batches = sorted_batches(tokenizer, test["text"].tolist(), meta["max_length"], cfg.batch_size)
    with atomic_dir(data_dir(key, "export")) as out:
        backends = build_forms(model, tokenizer, out)
        sizes = {
            "torch": serialized_mb(model),
            "torch_int8": serialized_mb(quantize_int8(model)),
            **{form: (out / name).stat().st_size / 2**20 for form, name in FORM_FILES.items()},
        }
        forms = score_forms(backends, batches, labels, sizes)
        tokenizer.save_pretrained(out / "tokenizer")
        save_onnx_config(model, names, out)
        temperature = read_json(metrics_file(key, "evaluate"), f"evaluate@{key}")["models"]["finetune"]["temperature"]
        save_for_transformers(model, tokenizer, names, temperature, out / "transformers")
        write_csv(pd.DataFrame([{"form": f, **v} for f, v in forms.items()]), out / "scores.csv")
    for r in forms.values():
        r["passes_gate"] = passes_gate(r)
    goal = f"at most {GATE * 100:.1f} points of accuracy and of F1-macro lost against the torch fp32 model"
    write_json(metrics_file(key, "export"), {"forms": forms, "n_test": len(labels), "goal": goal})
    for form, r in forms.items():
        print(
            f"[export:{key}] {form}: test acc {r['accuracy']:.4f} ({r['accuracy_delta_vs_torch']:+.4f}) "
            f"F1 {r['f1_macro']:.4f} ({r['f1_macro_delta_vs_torch']:+.4f}) agreement {r['agreement_with_torch']:.4f} "
            f"{r['size_mb']:.1f} MB"
        )


if __name__ == "__main__":
    run_stage(main, __doc__)
