"""Every encoder family through every model stage: a tiny random-init checkpoint of each family (hidden 32,
2 layers) with a tokenizer of its kind, in a temporary Hub-like mirror, goes finetune -> evaluate ->
attention (IG completeness) -> export (ONNX logits equal torch's) -> `sentiment predict` (the onnx form gives the
model's own answers) -> `sentiment explain` (its prediction, and every word of the text ranked, not pieces).

Sizes are the smallest that still test each thing: 64 training rows, one example per category, 4
faithfulness examples; IG must close its completeness gap to 1% (steps doubled up to 512)."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, toy_sentiment, truncated_logits, write_clean
from families import FAMILIES, build_checkpoint
from sentiment.cli import main as cli
from sentiment.models.classifier import load_classifier
from sentiment.stage import run_stage
from stages import attention, evaluate, export, finetune

pytestmark = pytest.mark.slow

# the attention kernel each family gets for training and inference (eager only where attention weights are read)
EXPECTED_ATTENTION = {family: "eager" if family in ("deberta-v2", "deberta-v3", "mpnet") else "sdpa" for family in FAMILIES}
EXPECTED_BASELINE = dict.fromkeys(FAMILIES, "mask")  # attention.ig_baseline: auto, and every family has a mask token


def own_answers(model, tokenizer, head: dict, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """The trained model's labels and probabilities for short texts cleaning leaves alone: the engine's torch fp32
    logits and a softmax at the head's temperature worked out here."""
    scaled = truncated_logits(model, tokenizer, texts, head["max_length"]) / head["temperature"]
    exp = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    probs = exp / exp.sum(axis=1, keepdims=True)
    return [head["labels"][i] for i in probs.argmax(axis=1)], probs


def stage(module, key="toy"):
    """A stage script's main, run through the stage skeleton as `python -m stages.<name> <key>` runs it."""
    resume = (lambda p: p.add_argument("--resume", action="store_true")) if module is finetune else None
    run_stage(module.main, module.__doc__, arguments=getattr(module, "arguments", resume), argv=[key])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_stage_runs_on_the_family(family, tmp_path, monkeypatch, capsys):
    mirror = tmp_path / "mirror"
    hub_id = build_checkpoint(family, mirror)
    monkeypatch.setenv("HUB_MIRROR", str(mirror))
    monkeypatch.chdir(tmp_path)
    write_clean(tmp_path, "toy", {"train": toy_sentiment(64, 1), "dev": toy_sentiment(24, 2), "test": toy_sentiment(24, 3)})
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"] = {
        "toy": {"source": "toy.csv", "text_column": "text", "label_column": "label", "labels": ["negative", "positive"]}
    }
    params["model"].update(name=hub_id, pooling="mean", dropout=0.0)
    params["train"].update(epochs=1, batch_size=16, max_length=32, precision="fp32", logging_steps=2, learning_rate=0.001)
    params["evaluate"]["models"] = {"finetune": "finetune"}
    params["attention"].update(examples_per_category=1, faithfulness_examples=4, ig_tolerance=0.01, ig_max_steps=512)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    stage(finetune)
    trained, tokenizer, head = load_classifier(tmp_path / "data" / "toy" / "finetune" / "model", on="cpu")
    assert trained.encoder.config._attn_implementation == EXPECTED_ATTENTION[family]
    explained, _, _ = load_classifier(tmp_path / "data" / "toy" / "finetune" / "model", need_attention_weights=True)
    assert explained.encoder.config._attn_implementation == "eager"

    stage(evaluate)
    scored = json.loads((tmp_path / "results" / "toy" / "evaluate.json").read_text())["models"]["finetune"]["test"]
    trained_on = json.loads((tmp_path / "results" / "toy" / "finetune.json").read_text())["test"]
    assert scored["accuracy"] == pytest.approx(trained_on["accuracy"])  # two stages, the same predictions

    stage(attention)
    report = json.loads((tmp_path / "results" / "toy" / "attention.json").read_text())
    ig = report["integrated_gradients"]
    assert ig["baseline"] == EXPECTED_BASELINE[family] and ig["unconverged"] == 0
    assert ig["relative_delta_max"] <= 0.01 or all(r["delta"] < 1e-6 for r in ig["examples"].values())
    words = pd.read_csv(tmp_path / "plots" / "toy" / "attention" / "word_scores.csv", keep_default_na=False)
    for piece_mark in ("##", "Ġ", "▁"):
        assert not words["word"].str.contains(piece_mark, regex=False).any(), f"a subword piece is shown: {piece_mark}"

    stage(export)
    forms = json.loads((tmp_path / "results" / "toy" / "export.json").read_text())["forms"]
    assert forms["onnx"]["max_abs_logit_diff_vs_torch"] <= 1e-4  # the same computation, to float32 rounding
    assert forms["onnx"]["agreement_with_torch"] == 1.0 and forms["onnx"]["accuracy_delta_vs_torch"] == 0

    texts = ["a good great film", "bad awful plot"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        cli(["predict", "--dataset", "toy", "--input", "in.txt", "--form", "onnx"])
        raise SystemExit(0)
    assert done.value.code == 0
    predicted = pd.read_csv(io.StringIO(capsys.readouterr().out))
    labels, probs = own_answers(trained, tokenizer, head, texts)  # the exported onnx form answers as the model does
    assert predicted["label"].tolist() == labels
    assert np.allclose(predicted[["prob_negative", "prob_positive"]].to_numpy(), probs, atol=1e-4)

    text = "an unbelievably wonderful film"
    with pytest.raises(SystemExit) as done:
        cli(["explain", "--dataset", "toy", text, "--top", "4", "--output", "map.png"])
        raise SystemExit(0)
    lines = capsys.readouterr().out.splitlines()
    assert done.value.code == 0 and (tmp_path / "map.png").exists()
    [label], [prob] = own_answers(trained, tokenizer, head, [text])
    assert lines[0] == f"prediction: {label}"
    shown = dict(part.split() for part in lines[1].removeprefix("probabilities: ").split(", "))
    assert {name: float(p) for name, p in shown.items()} == pytest.approx(dict(zip(head["labels"], prob, strict=True)), abs=1e-3)
    for method in ("attention", "rollout", "integrated_gradients"):  # each ranks the text's four words, not pieces
        listed = next(line for line in lines if line.startswith(f"{method}: ")).removeprefix(f"{method}: ").split(", ")
        assert sorted(item.split(" (")[0] for item in listed) == sorted(text.split()), (method, listed)
    assert any(line.startswith(f"integrated gradients: {EXPECTED_BASELINE[family]} baseline") for line in lines)
