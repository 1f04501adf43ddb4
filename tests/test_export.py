"""The exported forms of a tiny trained model: the registry builds each once, the static int8 default answers a
text the same alone and in any batch, the gate fails a form that flips labels or moves with its batch, and
`auto` measures the passing forms and falls back to torch when the exported files are missing."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import yaml
from transformers import AutoConfig

from conftest import repo_params, tiny_params, toy_sentiment, write_clean
from sentiment.models.classifier import load_classifier
from sentiment.models.training import finetune
from sentiment.serving import export as export_module
from sentiment.serving.export import BuildInputs, build_forms, score_forms
from sentiment.serving.forms import FORM_CHOICES, FORMS, GateConfig, resolve
from sentiment.serving.long_text import PredictConfig
from sentiment.serving.runtime import FinetuneScorer, batches_of, encode, run_batches
from sentiment.stage import run_stage

TEXTS = ["good great lovely film", "bad awful terrible plot", "the story was excellent", "really boring and dreadful", "film"]
GATE = GateConfig(max_metric_loss=0.005, min_agreement=0.99, max_label_changes=0, max_probability_change=1e-4)
READING = PredictConfig(**{**repo_params()["predict"], "batch_size": 4})
SIZES = [1, 8, 16, 64]


def stage_params() -> dict:
    return {
        **tiny_params(),
        "export": {"batch_size": 8, "calibration_rows": 32, "batch_sizes": [1, 8, 64], "gate": GATE.model_dump()},
        "serve": {"batch_size": 4},
        "predict": {"batch_size": 16},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("export")
    write_clean(root, "toy", {"train": toy_sentiment(96, 1), "dev": toy_sentiment(32, 2), "test": toy_sentiment(32, 3)})
    cwd = os.getcwd()
    os.chdir(root)
    try:
        finetune("toy", tiny_params(), root / "data" / "toy" / "finetune", root / "ckpt")
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture(scope="module")
def exported(trained):
    """The tiny run after the export stage (and a temperature as evaluate would fit)."""
    from stages import export

    cwd = os.getcwd()
    os.chdir(trained)
    try:
        (trained / "params.yaml").write_text(yaml.safe_dump(stage_params()))
        (trained / "results" / "toy").mkdir(parents=True, exist_ok=True)
        (trained / "results" / "toy" / "evaluate.json").write_text(json.dumps({"models": {"finetune": {"temperature": 1.5}}}))
        run_stage(export.main, export.__doc__, arguments=export.arguments, argv=["toy"])
    finally:
        os.chdir(cwd)
    return trained


def test_the_registry_names_a_builder_and_a_source_for_every_exported_form():
    for spec in FORMS.values():
        assert (spec.file is None) == (spec.build is None) == (spec.backend == "torch")
        if spec.build:
            assert callable(getattr(export_module, spec.build)), spec.build
        assert spec.source is None or FORMS[spec.source].file
    assert FORM_CHOICES == ("auto", *FORMS)
    assert not FORMS["onnx_int8_dynamic"].auto  # batch-dependent: an option, never auto's pick
    assert FORMS["torch_bf16"].dtype == "bf16"


def test_each_builder_runs_once_and_every_form_agrees_with_fp32(trained, tmp_path, monkeypatch):
    model, tokenizer, meta = load_classifier(trained / "data" / "toy" / "finetune" / "model", on="cpu")
    dev = toy_sentiment(32, 2)["text"].tolist()
    calls = []
    for name in {spec.build for spec in FORMS.values() if spec.build}:
        builder = getattr(export_module, name)
        monkeypatch.setattr(export_module, name, lambda *a, b=builder, n=name: calls.append(n) or b(*a))
    backends = build_forms(BuildInputs(model, tokenizer, batches_of(tokenizer, encode(tokenizer, dev, 16), 8)), tmp_path)
    assert sorted(calls) == sorted(spec.build for spec in FORMS.values() if spec.build)  # the fp32 graph once, not per int8 form
    assert sorted(os.listdir(tmp_path)) == sorted(spec.file for spec in FORMS.values() if spec.file)
    batches = batches_of(tokenizer, encode(tokenizer, TEXTS, meta["max_length"]), 2)
    fp32 = run_batches(backends["torch"], batches, len(TEXTS))
    np.testing.assert_allclose(run_batches(backends["onnx"], batches, len(TEXTS)), fp32, atol=1e-4)  # the same computation
    for form in ("torch_bf16", "onnx_int8_static", "onnx_int8_dynamic"):
        logits = run_batches(backends[form], batches, len(TEXTS))
        # bf16 and int8 move logits (on this hidden-32 model by a few % of their scale), never the label: margins here are > 4
        assert np.abs(logits - fp32).max() < 0.15 * np.abs(fp32).max()
        assert logits.argmax(1).tolist() == fp32.argmax(1).tolist()


def test_the_static_default_answers_a_text_the_same_alone_and_in_batches_of_8_16_64(exported):
    model, tokenizer, meta = load_classifier(exported / "data" / "toy" / "finetune" / "model", on="cpu")
    backend = export_module.onnx_backend(exported / "data" / "toy" / "export" / FORMS["onnx_int8_static"].file)
    # lengths from 3 to 16 tokens, so each batch pads most rows, by different amounts
    texts = [" ".join(["good", "bad", "film", "plot"][: 1 + i % 4] * (1 + i % 4)) for i in range(64)]
    sequences = encode(tokenizer, texts, meta["max_length"])
    alone = run_batches(backend, batches_of(tokenizer, sequences, 1), len(texts))
    for size in (8, 16, 64):
        batched = run_batches(backend, batches_of(tokenizer, sequences, size), len(texts))
        assert batched.argmax(1).tolist() == alone.argmax(1).tolist()
        np.testing.assert_allclose(batched, alone, atol=1e-5)  # fixed activation scales: padding moves nothing


def test_the_export_stage_records_the_gate_per_form_deterministically(exported, monkeypatch):
    from stages import export

    report = json.loads((exported / "results" / "toy" / "export.json").read_text())
    assert set(report["forms"]) == set(FORMS) and report["n_test"] == 32
    assert report["batch_sizes"] == [1, 4, 8, 16, 64]  # export.batch_sizes with serve's 4 and predict's 16
    static = report["forms"]["onnx_int8_static"]
    assert static["passes_gate"] and static["gate_failures"] == []
    assert static["label_changes_vs_batch_1"] == {"4": 0, "8": 0, "16": 0, "64": 0}
    assert static["max_probability_change_vs_batch_1"] < 1e-5
    assert set(static["by_batch_size"]) == {"1", "4", "8", "16", "64"} and static["agreement_with_torch"] >= 0.99
    headline = json.loads((exported / "metrics" / "toy" / "export.json").read_text())
    assert headline == {"agreement": min(r["agreement_with_torch"] for f, r in report["forms"].items() if f != "torch")}
    out = exported / "data" / "toy" / "export"
    hub = json.loads((out / "transformers" / "config.json").read_text())
    assert hub["logit_temperature"] == 1.5 and hub["id2label"] == {"0": "negative", "1": "positive"}
    # what Optimum's ORTModelForSequenceClassification reads beside the ONNX files: a standard config, labels named
    onnx_config = AutoConfig.from_pretrained(out)
    assert onnx_config.model_type == hub["encoder"]["model_type"] and onnx_config.id2label == {0: "negative", 1: "positive"}
    assert str(exported) not in (out / "config.json").read_text()
    digests = {f: hashlib.sha256((out / spec.file).read_bytes()).hexdigest() for f, spec in FORMS.items() if spec.file}
    monkeypatch.chdir(exported)
    run_stage(export.main, export.__doc__, arguments=export.arguments, argv=["toy"])  # again: the same files, the same figures
    assert {f: hashlib.sha256((out / spec.file).read_bytes()).hexdigest() for f, spec in FORMS.items() if spec.file} == digests
    assert json.loads((exported / "results" / "toy" / "export.json").read_text()) == report


def test_the_gate_fails_a_form_that_flips_labels_or_moves_with_its_batch(trained):
    model, tokenizer, meta = load_classifier(trained / "data" / "toy" / "finetune" / "model", on="cpu")
    test = toy_sentiment(100, 3)
    texts, labels = test["text"].tolist(), test["label"].to_numpy()
    torch_run = export_module.torch_backend(model)
    chosen = {tuple(ids) for ids in encode(tokenizer, texts[:3], meta["max_length"])}

    def flips_three_texts(ids, mask):
        out = torch_run(ids, mask)
        flip = np.array([tuple(row[m == 1].tolist()) in chosen for row, m in zip(ids, mask, strict=True)])
        out[flip] = out[flip][:, ::-1]
        return out

    def batch_dependent(ids, mask):
        out = torch_run(ids, mask)
        return out[:, ::-1].copy() if len(ids) == 64 else out  # batches of 64 answer the other label

    def jitters_with_its_batch(ids, mask):
        out = torch_run(ids, mask)
        out[:, 0] += 0.5 * (len(ids) > 1)  # a nudge in any batch of two or more: the same labels, other probabilities
        return out

    backends = {
        "torch": torch_run,
        "onnx": flips_three_texts,
        "onnx_int8_dynamic": batch_dependent,
        "torch_bf16": jitters_with_its_batch,
    }
    report = score_forms(backends, tokenizer, texts, labels, meta["max_length"], SIZES, GATE)
    assert report["torch"]["passes_gate"]
    flipped = report["onnx"]
    assert 0.9 < flipped["agreement_with_torch"] < 0.99 and not flipped["passes_gate"]
    assert any(f.startswith("agreement with torch") for f in flipped["gate_failures"])
    assert flipped["label_changes_vs_batch_1"] == {"8": 0, "16": 0, "64": 0}  # wrong, but the same in every batch
    moving = report["onnx_int8_dynamic"]
    assert moving["label_changes_vs_batch_1"]["64"] == 64 and moving["label_changes_vs_batch_1"]["8"] == 0
    assert not moving["passes_gate"] and "64 labels change with the batch size" in moving["gate_failures"]
    assert moving["max_probability_change_vs_batch_1"] > 0
    jitter = report["torch_bf16"]
    assert jitter["label_changes_vs_batch_1"] == {"8": 0, "16": 0, "64": 0} and jitter["agreement_with_torch"] == 1
    assert jitter["gate_failures"] == [
        f"probabilities move by up to {jitter['max_probability_change_vs_batch_1']:.2g} with the batch size"
    ]


def test_auto_takes_the_fastest_passing_form_that_auto_may_pick(tmp_path, capsys):
    export_dir, report = tmp_path / "export", tmp_path / "export.json"
    export_dir.mkdir()
    for spec in FORMS.values():
        if spec.file:
            (export_dir / spec.file).write_bytes(b"")
    figures = {f: {"passes_gate": True} for f in FORMS}
    report.write_text(json.dumps({"forms": {**figures, "onnx": {"passes_gate": False}}}))
    seconds = {"torch": 3.0, "torch_bf16": 2.0, "onnx": 0.5, "onnx_int8_static": 1.0, "onnx_int8_dynamic": 0.1}
    timed = []

    def timings(forms):
        timed.append(forms)
        return {f: seconds[f] for f in forms}

    form, why = resolve("auto", export_dir, report, gpu=False, timings=timings)
    # onnx fails the gate and the dynamic form is batch-dependent: neither is timed
    assert form == "onnx_int8_static" and timed == [["torch", "torch_bf16", "onnx_int8_static"]] and "1000.0 ms" in why
    assert resolve("auto", export_dir, report, gpu=True, timings=timings)[0] == "torch"
    assert resolve("onnx_int8_dynamic", export_dir, report, gpu=False)[0] == "onnx_int8_dynamic"  # asked for
    (export_dir / FORMS["onnx_int8_static"].file).unlink()  # results came with git, the files did not come with DVC
    (export_dir / "report.json").write_text(json.dumps({"forms": {**figures, "onnx": {"passes_gate": False}, "torch_bf16": {}}}))
    form, why = resolve("auto", export_dir, export_dir / "report.json", gpu=False, timings=timings)
    err = capsys.readouterr().err
    assert form == "torch" and "no exported form" in why
    assert err.count("\n") == 1 and "onnx_int8_static" in err and "dvc pull" in err
    assert resolve("auto", export_dir, tmp_path / "absent.json", gpu=False)[0] == "torch"


def test_auto_times_the_forms_once_per_cpu_and_falls_back_to_torch_without_the_files(exported, monkeypatch, tmp_path, capsys):
    from sentiment.serving import runtime

    monkeypatch.chdir(exported)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    scorer = FinetuneScorer("toy", "auto", runtime.Cleaning(), READING, 4)
    assert scorer.form in ("torch", "torch_bf16", "onnx", "onnx_int8_static")
    assert scorer.form_reason.startswith("auto: the fastest")
    cache = json.loads(runtime.timings_cache().read_text())
    (entry,) = cache.values()
    assert set(entry) >= {"torch", "onnx_int8_static"} and all(s > 0 for s in entry.values())
    loaded, load = [], runtime.load_backend
    monkeypatch.setattr(runtime, "load_backend", lambda *a, **k: loaded.append(a[1]) or load(*a, **k))
    assert FinetuneScorer("toy", "auto", runtime.Cleaning(), READING, 4).form == scorer.form
    assert loaded == [scorer.form]  # the timings came from the cache: only the chosen form loaded
    moved = tmp_path / "export-away"
    shutil.move(exported / "data" / "toy" / "export", moved)
    try:
        capsys.readouterr()
        fallback = FinetuneScorer("toy", "auto", runtime.Cleaning(), READING, 4)
        err = capsys.readouterr().err
        notices = [line for line in err.splitlines() if line.startswith("notice")]
        assert fallback.form == "torch" and len(notices) == 1 and notices[0].startswith("notice: auto leaves out")
        assert fallback.answers(["a lovely film"])[0]["label"] in ("negative", "positive")
    finally:
        shutil.move(moved, exported / "data" / "toy" / "export")


def test_transformers_pipeline_gives_the_labels_and_probabilities_predict_gives(trained, tmp_path, monkeypatch):
    from transformers import pipeline

    from sentiment.data.text import Cleaning
    from sentiment.serving.hf_classifier import save_for_transformers

    monkeypatch.chdir(trained)
    model, tokenizer, meta = load_classifier(trained / "data" / "toy" / "finetune" / "model", on="cpu")
    temperature = 1.7  # as evaluate would fit on dev
    save_for_transformers(model, tokenizer, meta["labels"], temperature, tmp_path / "hub")
    assert (tmp_path / "hub" / "hf_classifier.py").exists()  # the model's code, beside its weights
    classify = pipeline("text-classification", model=str(tmp_path / "hub"), trust_remote_code=True, top_k=None, device="cpu")
    scorer = FinetuneScorer("toy", "torch", Cleaning(), READING, 4)
    scorer.temperature = temperature
    expected = scorer.answers(TEXTS)
    for got, want in zip(classify(TEXTS), expected, strict=True):
        scores = {g["label"]: g["score"] for g in got}
        assert max(scores, key=scores.get) == want["label"]
        for label, p in want["probabilities"].items():
            assert scores[label] == pytest.approx(p, abs=1e-5)


def test_export_refuses_a_bad_param(trained, monkeypatch, capsys):
    from stages import export

    monkeypatch.chdir(trained)
    bad = (("export", "batch_size", 0), ("export", "gate", {"min_agreement": 2}), ("serve", "batch_size", 0))
    for section, key, value in bad:
        params = stage_params()
        params[section] = {**params[section], key: value}
        (trained / "params.yaml").write_text(yaml.safe_dump(params))
        with pytest.raises(SystemExit):
            run_stage(export.main, export.__doc__, arguments=export.arguments, argv=["toy"])
        assert f"error: invalid param {section}.{key}" in capsys.readouterr().err
    (trained / "params.yaml").write_text(yaml.safe_dump(stage_params()))
