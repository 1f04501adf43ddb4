"""Whether the export stage's ONNX files load in Optimum's `ORTModelForSequenceClassification`, and
whether its `pipeline("text-classification")` then gives plain onnxruntime's answers on test sentences.

Optimum's ONNX Runtime classes live in optimum-onnx, whose only release (0.1.0) requires
transformers < 4.58 while this project runs on transformers 5, so this script runs in a venv of its
own, without the project installed (it reads the export folder and the cleaned test split directly):

    python -m venv /tmp/ort && /tmp/ort/bin/pip install torch==2.13.0 "optimum-onnx[onnxruntime]" pyarrow
    /tmp/ort/bin/python bench/optimum_load.py --dataset sst2 [--n 200] [--save NAME]

Per ONNX file: `ORTModelForSequenceClassification.from_pretrained(<export folder>, file_name=...)` (it reads
the config.json export writes there), then its pipeline's probabilities against plain onnxruntime's softmax
of the same graph, one text at a time. Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import traceback
from importlib.metadata import version
from pathlib import Path

import numpy as np

from record import save
from sentiment.machine import describe, machine

ONNX_FILES = ("model.onnx", "model_int8.onnx", "model_optimized_int8.onnx")


def last_line(error: BaseException) -> str:
    """The error's type and first line of message (no paths beyond the repository's)."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}".replace(str(Path.cwd()) + "/", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--n", type=int, default=200, help="test sentences compared")
    parser.add_argument("--save", metavar="NAME", help="also write docs/results/optimum_load_NAME.json")
    args = parser.parse_args()
    import onnxruntime as ort
    import pyarrow.parquet as pq
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    export = Path("data") / args.dataset / "export"
    texts = pq.read_table(Path("data") / args.dataset / "clean" / "test.parquet").column("text").to_pylist()[: args.n]
    tokenizer = AutoTokenizer.from_pretrained(export / "tokenizer")
    rows = []
    for name in ONNX_FILES:
        row: dict = {"file": name}
        try:
            model = ORTModelForSequenceClassification.from_pretrained(export, file_name=name)
        except Exception as error:  # the outcome is what is measured
            row["loads"] = last_line(error)
            traceback.print_exc()
            rows.append(row)
            continue
        row["loads"] = "yes"
        classify = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None)
        session = ort.InferenceSession(str(export / name), providers=["CPUExecutionProvider"])
        labels_same, gaps = 0, []
        for text, answer in zip(texts, classify(texts), strict=True):
            encoded = tokenizer(text, return_tensors="np")
            feeds = {k: encoded[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
            logits = session.run(["logits"], feeds)[0][0]
            expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            got = {a["label"]: a["score"] for a in answer}
            probs = np.array([got[model.config.id2label[i]] for i in range(len(expected))])
            labels_same += int(probs.argmax() == expected.argmax())
            gaps.append(float(np.abs(probs - expected).max()))
        row.update(n=len(texts), labels_as_onnxruntime=labels_same / len(texts), max_probability_gap=max(gaps))
        rows.append(row)
    versions = {p: version(p) for p in ("optimum-onnx", "optimum", "transformers", "onnxruntime")}
    m = machine()
    print(f"{describe(m)}; {' '.join(f'{p} {v}' for p, v in versions.items())}")
    print("| file | loads | labels as onnxruntime | max probability gap |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['file']} | {r['loads']} | {r.get('labels_as_onnxruntime', '')} | {r.get('max_probability_gap', '')} |")
    if args.save:
        command = f"python bench/optimum_load.py --dataset {args.dataset} --n {args.n}"
        save("optimum_load", args.save, {"command": command, "machine": m, "versions": versions, "levels": rows})


if __name__ == "__main__":
    main()
