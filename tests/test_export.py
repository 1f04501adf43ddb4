"""Exported forms (torch int8, ONNX, ONNX int8) of a tiny trained model agree with fp32."""

import json

import numpy as np
import pytest
import yaml
from transformers import AutoConfig

from conftest import tiny_params, toy_sentiment, write_clean
from sentiment.models.classifier import load_classifier
from sentiment.models.training import finetune
from sentiment.serving.export import (
    backend_logits,
    export_onnx,
    onnx_backend,
    optimize_onnx,
    quantize_int8,
    quantize_onnx,
    sorted_batches,
    torch_backend,
)
from sentiment.stage import run_stage

TEXTS = ["good great lovely film", "bad awful terrible plot", "the story was excellent", "really boring and dreadful", "film"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("export")
    write_clean(root, "toy", {"train": toy_sentiment(96, 1), "dev": toy_sentiment(32, 2), "test": toy_sentiment(32, 3)})
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:
        finetune("toy", tiny_params(), root / "data" / "toy" / "finetune", root / "ckpt")
    finally:
        os.chdir(cwd)
    return root


def test_onnx_and_int8_forms_agree_with_fp32(trained, tmp_path):
    model, tokenizer, meta = load_classifier(trained / "data" / "toy" / "finetune" / "model")
    batches = sorted_batches(tokenizer, TEXTS, meta["max_length"], 2)
    fp32 = backend_logits(torch_backend(model), batches, len(TEXTS))
    export_onnx(model, tokenizer, tmp_path / "m.onnx")
    quantize_onnx(tmp_path / "m.onnx", tmp_path / "m8.onnx")
    onnx = backend_logits(onnx_backend(tmp_path / "m.onnx"), batches, len(TEXTS))
    # the fp32 graph is the same computation: logits equal to float32 rounding
    np.testing.assert_allclose(onnx, fp32, atol=1e-4)
    optimize_onnx(tmp_path / "m.onnx", tmp_path / "opt.onnx", model.encoder.config)
    np.testing.assert_allclose(backend_logits(onnx_backend(tmp_path / "opt.onnx"), batches, len(TEXTS)), fp32, atol=1e-4)
    quantize_onnx(tmp_path / "opt.onnx", tmp_path / "opt8.onnx")
    for form in (torch_backend(quantize_int8(model)), onnx_backend(tmp_path / "m8.onnx"), onnx_backend(tmp_path / "opt8.onnx")):
        logits = backend_logits(form, batches, len(TEXTS))
        # int8 weights move logits (on this hidden-32 model by up to ~10% of their scale;
        # tolerance 15%), never the label: margins here are > 4
        assert np.abs(logits - fp32).max() < 0.15 * np.abs(fp32).max()
        assert logits.argmax(1).tolist() == fp32.argmax(1).tolist()


def test_export_stage_scores_every_form(trained, monkeypatch):
    from stages import export

    monkeypatch.chdir(trained)
    params = tiny_params()
    params["export"] = {"batch_size": 8}
    (trained / "params.yaml").write_text(yaml.safe_dump(params))
    (trained / "metrics" / "toy").mkdir(parents=True, exist_ok=True)
    (trained / "metrics" / "toy" / "evaluate.json").write_text(json.dumps({"models": {"finetune": {"temperature": 1.5}}}))
    run_stage(export.main, export.__doc__, argv=["toy"])
    report = json.loads((trained / "metrics" / "toy" / "export.json").read_text())
    assert set(report["forms"]) == {"torch", "torch_int8", "onnx", "onnx_int8", "onnx_optimized_int8"} and report["n_test"] == 32
    for form in report["forms"].values():
        assert abs(form["accuracy_delta_vs_torch"]) <= 0.05 and form["agreement_with_torch"] >= 0.95
    assert (trained / "data" / "toy" / "export" / "model_int8.onnx").exists()
    hub = json.loads((trained / "data" / "toy" / "export" / "transformers" / "config.json").read_text())
    assert hub["logit_temperature"] == 1.5 and hub["id2label"] == {"0": "negative", "1": "positive"}
    # what Optimum's ORTModelForSequenceClassification reads beside the ONNX files: a standard config, labels named
    onnx_config = AutoConfig.from_pretrained(trained / "data" / "toy" / "export")
    assert onnx_config.model_type == hub["encoder"]["model_type"] and onnx_config.id2label == {0: "negative", 1: "positive"}
    assert str(trained) not in (trained / "data" / "toy" / "export" / "config.json").read_text()


def test_export_refuses_a_bad_batch_size(trained, monkeypatch, capsys):
    from stages import export

    monkeypatch.chdir(trained)
    params = tiny_params()
    params["export"] = {"batch_size": 0}
    (trained / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(SystemExit):
        run_stage(export.main, export.__doc__, argv=["toy"])
    assert "error: invalid param export.batch_size=0" in capsys.readouterr().err


def test_transformers_pipeline_gives_the_labels_and_probabilities_predict_gives(trained, tmp_path, monkeypatch):
    from transformers import pipeline

    from sentiment.serving.hf_classifier import save_for_transformers
    from sentiment.serving.predictor import Predictor

    monkeypatch.chdir(trained)
    model, tokenizer, meta = load_classifier(trained / "data" / "toy" / "finetune" / "model", on="cpu")
    temperature = 1.7  # as evaluate would fit on dev
    save_for_transformers(model, tokenizer, meta["labels"], temperature, tmp_path / "hub")
    assert (tmp_path / "hub" / "hf_classifier.py").exists()  # the model's code, beside its weights
    classify = pipeline("text-classification", model=str(tmp_path / "hub"), trust_remote_code=True, top_k=None, device="cpu")
    predictor = Predictor("toy", "torch")
    predictor.temperature = temperature
    expected = predictor.answers(TEXTS)
    for got, want in zip(classify(TEXTS), expected, strict=True):
        scores = {g["label"]: g["score"] for g in got}
        assert max(scores, key=scores.get) == want["label"]
        for label, p in want["probabilities"].items():
            assert scores[label] == pytest.approx(p, abs=1e-5)
