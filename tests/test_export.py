"""The exported forms of a tiny trained model: the registry builds each once, OpenVINO int8 answers a text the same
alone, in any batch and among any neighbours, the gate fails a form that flips labels or moves with its batch or its
neighbours, and `auto` takes the fastest passing form it is told of, leaving out with one notice what it cannot run."""

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from transformers import AutoConfig

from conftest import REPO, TOY_NAMES, recipe_of, repo_cleaning, repo_params, tiny_params, toy_sentiment, write_clean
from sentiment.models.classifier import load_classifier
from sentiment.models.engine import padded_batches, run_batches, torch_backend
from sentiment.models.training import finetune
from sentiment.serving import backends as backends_module
from sentiment.serving.builders import BuildInputs
from sentiment.serving.export import build_forms, default_form, neighbour_batches, score_forms
from sentiment.serving.forms import FORM_CHOICES, FORMS, GateConfig, resolve
from sentiment.serving.long_text import PredictConfig
from sentiment.serving.runtime import FinetuneScorer
from sentiment.serving.timing_cache import timings_cache_path
from sentiment.stage import run_stage

TEXTS = ["good great lovely film", "bad awful terrible plot", "the story was excellent", "really boring and dreadful", "film"]
GATE = GateConfig(max_metric_loss=0.005, min_agreement=0.99, max_label_changes=0, max_probability_change=1e-4, neighbour_seed=0)
READING = PredictConfig(**{**repo_params()["predict"], "batch_size": 4})
SIZES = [1, 8, 16, 64]
# what the tiny export builds
BUILT = ["torch", "openvino_int8", "openvino_int8_ffn_fp32", "openvino", "onnx", "onnx_int8_static"]


def stage_params() -> dict:
    export = {"forms": BUILT, "batch_size": 8, "calibration_rows": 32, "batch_sizes": [1, 8, 64], "gate": GATE.model_dump()}
    return {**tiny_params(), "export": export, "serve": {"batch_size": 4}, "predict": {**READING.model_dump(), "batch_size": 16}}


def encode(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


def mixed_lengths(n: int) -> list[str]:
    """Texts of 3 to 18 tokens, so every batch pads most rows, by different amounts."""
    return [" ".join(["good", "bad", "film", "plot", "lovely"][: 1 + i % 5] * (1 + i % 4)) for i in range(n)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("export")
    write_clean(root, "toy", {"train": toy_sentiment(96, 1), "dev": toy_sentiment(32, 2), "test": toy_sentiment(32, 3)})
    cwd = os.getcwd()
    os.chdir(root)
    try:
        finetune("toy", TOY_NAMES, recipe_of(tiny_params()), root / "data" / "toy" / "finetune", root / "ckpt")
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture(scope="module")
def exported(trained):
    """The tiny run after the export stage."""
    from stages import export

    cwd = os.getcwd()
    os.chdir(trained)
    try:
        (trained / "params.yaml").write_text(yaml.safe_dump(stage_params()))
        run_stage(export.main, export.__doc__, arguments=export.arguments, argv=["toy"])
    finally:
        os.chdir(cwd)
    return trained


def test_the_registry_names_how_every_form_is_built_and_run():
    for spec in FORMS.values():
        assert (spec.file is None) == (spec.backend == "torch")
        # a file is built by the form's own builder, or is its source's file compiled another way
        assert spec.file is None or spec.build is not None or FORMS[spec.source].file == spec.file
        assert spec.source is None or FORMS[spec.source].file
    assert FORM_CHOICES == ("auto", *FORMS) and next(iter(FORMS)) == "torch"
    # forms whose answers move with the batch are options, never auto's pick
    assert {f for f, spec in FORMS.items() if not spec.auto} == {"torch_bf16", "onnx_int8_dynamic", "openvino_bf16"}


def test_each_builder_runs_once_and_every_form_agrees_with_fp32(trained, tmp_path, monkeypatch):
    model, tokenizer, meta = load_classifier(trained / "data" / "toy" / "finetune" / "model", on="cpu")
    dev = encode(tokenizer, toy_sentiment(32, 2)["text"].tolist(), 16)
    calls = []
    for name, spec in FORMS.items():
        if spec.build:
            counted = lambda *a, b=spec.build, n=name: calls.append(n) or b(*a)  # noqa: E731
            monkeypatch.setitem(FORMS, name, dataclasses.replace(spec, build=counted))
    backends = build_forms(BuildInputs(model, tokenizer, dev, 8), tmp_path, list(FORMS))
    assert sorted(calls) == sorted(f for f, spec in FORMS.items() if spec.build)  # the fp32 graph once, not per int8 form
    files = {spec.file for spec in FORMS.values() if spec.file}
    assert files <= set(os.listdir(tmp_path)) and "openvino_int8.bin" in os.listdir(tmp_path)
    batches = padded_batches(tokenizer, encode(tokenizer, TEXTS, meta["max_length"]), 2)
    fp32 = run_batches(backends["torch"], batches, len(TEXTS))
    for form in ("onnx", "openvino"):  # the same computation in fp32 (OpenVINO told f32, not left to run bf16)
        np.testing.assert_allclose(run_batches(backends[form], batches, len(TEXTS)), fp32, atol=1e-4)
    for form in ("torch_bf16", "onnx_int8_static", "onnx_int8_dynamic", "openvino_int8", "openvino_bf16"):
        logits = run_batches(backends[form], batches, len(TEXTS))
        # bf16 and int8 move logits (on this hidden-32 model by a few % of their scale), never the label: margins here are > 4
        assert np.abs(logits - fp32).max() < 0.15 * np.abs(fp32).max(), form
        assert logits.argmax(1).tolist() == fp32.argmax(1).tolist(), form


def test_openvino_int8_answers_a_text_the_same_alone_in_batches_and_among_any_neighbours(exported):
    _, tokenizer, meta = load_classifier(exported / "data" / "toy" / "finetune" / "model", on="cpu")
    backend = FORMS["openvino_int8"].open(exported / "data" / "toy" / "export")
    texts = mixed_lengths(64)
    sequences = encode(tokenizer, texts, meta["max_length"])
    alone = run_batches(backend, padded_batches(tokenizer, sequences, 1), len(texts))
    for size in (3, 8, 16, 64):
        for batches in (padded_batches(tokenizer, sequences, size), neighbour_batches(tokenizer, sequences, size, seed=size)):
            batched = run_batches(backend, batches, len(texts))
            assert batched.argmax(1).tolist() == alone.argmax(1).tolist()
            np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-6)  # fixed activation scales: neighbours move nothing


def test_the_export_stage_records_the_gate_per_form_and_the_default_deterministically(exported):
    report = json.loads((exported / "results" / "toy" / "export.json").read_text())
    assert set(report["forms"]) == set(BUILT) and report["n_test"] == 32
    assert report["batch_sizes"] == [1, 4, 8, 16, 64]  # export.batch_sizes with serve's 4 and predict's 16
    int8 = report["forms"]["openvino_int8"]
    ways = {"1", "4", "8", "16", "64", "4_mixed", "8_mixed", "16_mixed", "64_mixed"}
    assert set(int8["by_batch_size"]) == ways and set(int8["label_changes_vs_batch_1"]) == ways - {"1"}
    assert int8["passes_gate"] and int8["gate_failures"] == [] and int8["max_probability_change_vs_batch_1"] < 1e-6
    assert report["default_form"] == "openvino_int8"  # the first passing form auto may pick, in the registry's order
    headline = json.loads((exported / "metrics" / "toy" / "export.json").read_text())
    assert headline == {"agreement": int8["agreement_with_torch"]}  # the served default's, not torch's own 1.0
    out = exported / "data" / "toy" / "export"
    hub = json.loads((out / "transformers" / "config.json").read_text())
    head = json.loads((exported / "data" / "toy" / "finetune" / "model" / "head.json").read_text())
    assert hub["logit_temperature"] == head["temperature"] and hub["id2label"] == {"0": "negative", "1": "positive"}
    # what Optimum's ORTModelForSequenceClassification reads beside the ONNX files: a standard config, labels named
    onnx_config = AutoConfig.from_pretrained(out)
    assert onnx_config.model_type == hub["encoder"]["model_type"] and onnx_config.id2label == {0: "negative", 1: "positive"}
    assert str(exported) not in (out / "config.json").read_text()
    built = sorted(p.name for p in out.iterdir() if p.suffix in (".onnx", ".xml", ".bin"))

    def rerun() -> tuple[dict[str, str], bytes]:
        # as `dvc repro -f` reruns it, in a process of its own (OpenVINO numbers its nodes per process)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-m", "stages.export", "toy"], cwd=exported, env=env, check=True, capture_output=True)
        files = {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in built}
        return files, (exported / "results" / "toy" / "export.json").read_bytes()

    assert rerun() == rerun()  # the same files, the same figures


def test_the_gate_fails_a_form_that_flips_labels_or_moves_with_its_batch_or_its_neighbours(trained):
    model, tokenizer, meta = load_classifier(trained / "data" / "toy" / "finetune" / "model", on="cpu")
    test = toy_sentiment(100, 3)
    texts = [text + " film" * (i % 4) for i, text in enumerate(test["text"])]  # filler: lengths that differ by up to 3
    sequences, labels = encode(tokenizer, texts, meta["max_length"]), test["label"].to_numpy()
    torch_run = torch_backend(model)
    chosen = {tuple(ids) for ids in sequences[:3]}

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

    def moves_with_padding(ids, mask):
        out = torch_run(ids, mask)
        out[:, 0] += 0.01 * (mask == 0).sum(axis=1)  # padding leaks in: harmless among rows of equal length only
        return out

    backends = {
        "torch": torch_run,
        "onnx": flips_three_texts,
        "onnx_int8_dynamic": batch_dependent,
        "torch_bf16": jitters_with_its_batch,
        "openvino_int8": moves_with_padding,
    }
    report = score_forms(backends, tokenizer, sequences, labels, SIZES, GATE)
    assert report["torch"]["passes_gate"]
    flipped = report["onnx"]
    assert 0.9 < flipped["agreement_with_torch"] < 0.99 and not flipped["passes_gate"]
    assert any(f.startswith("agreement with torch") for f in flipped["gate_failures"])
    assert set(flipped["label_changes_vs_batch_1"].values()) == {0}  # wrong, but the same in every batch
    moving = report["onnx_int8_dynamic"]
    assert moving["label_changes_vs_batch_1"]["64"] == 64 and moving["label_changes_vs_batch_1"]["8"] == 0
    assert not moving["passes_gate"] and "64 labels change with the batch or its neighbours" in moving["gate_failures"]
    jitter = report["torch_bf16"]
    assert set(jitter["label_changes_vs_batch_1"].values()) == {0} and jitter["agreement_with_torch"] == 1
    assert jitter["gate_failures"] == [
        f"probabilities move by up to {jitter['max_probability_change_vs_batch_1']:.2g} with the batch or its neighbours"
    ]
    padded = report["openvino_int8"]
    assert not padded["passes_gate"] and padded["max_probability_change_vs_batch_1"] > 1e-4
    # length-sorted batches pad less than random neighbours do: the mixed calls are what catch most of it
    changes = padded["by_batch_size"]
    assert all(
        changes[f"{size}_mixed"]["agreement_with_torch"] <= changes[str(size)]["agreement_with_torch"] for size in (8, 16, 64)
    )
    assert default_form(report) == "torch"  # no form auto may pick passes


def test_auto_takes_the_fastest_passing_form_that_auto_may_pick(tmp_path, capsys):
    export_dir, report = tmp_path / "export", tmp_path / "export.json"
    export_dir.mkdir()
    for spec in FORMS.values():
        if spec.file:
            (export_dir / spec.file).write_bytes(b"")
    figures = {f: {"passes_gate": True} for f in FORMS}
    report.write_text(json.dumps({"forms": {**figures, "onnx": {"passes_gate": False}}}))
    seconds = dict.fromkeys(FORMS, 2.0) | {"onnx": 0.1, "onnx_int8_dynamic": 0.1, "openvino_int8": 0.5, "onnx_int8_static": 1.0}
    timed = []

    def timings(forms):
        timed.append(forms)
        return {f: seconds[f] for f in forms}

    form, why = resolve("auto", export_dir, report, gpu=False, timings=timings)
    # onnx fails the gate and the batch-dependent forms are never auto's: none of them is timed
    assert form == "openvino_int8"
    assert timed == [["torch", "openvino_int8", "openvino_int8_ffn_fp32", "onnx_int8_static", "openvino"]]
    assert "500.0 ms" in why
    assert resolve("auto", export_dir, report, gpu=True, timings=timings)[0] == "torch"
    assert resolve("onnx_int8_dynamic", export_dir, report, gpu=False)[0] == "onnx_int8_dynamic"  # asked for
    (export_dir / FORMS["openvino_int8"].file).unlink()  # results came with git, the files did not come with DVC
    capsys.readouterr()
    assert resolve("auto", export_dir, report, gpu=False, timings=timings)[0] == "onnx_int8_static"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "openvino_int8" in err and "dvc pull" in err
    assert resolve("auto", export_dir, tmp_path / "absent.json", gpu=False)[0] == "torch"


def test_auto_leaves_out_forms_whose_runtime_is_not_installed_with_one_notice(tmp_path, monkeypatch, capsys):
    export_dir, report = tmp_path / "export", tmp_path / "export.json"
    export_dir.mkdir()
    for spec in FORMS.values():
        if spec.file:
            (export_dir / spec.file).write_bytes(b"")
    report.write_text(json.dumps({"forms": {f: {"passes_gate": True} for f in FORMS}}))
    monkeypatch.setitem(backends_module.RUNTIME_PACKAGES, "openvino", "no_such_package_here")
    seconds = dict.fromkeys(FORMS, 1.0) | {"onnx": 0.5}
    capsys.readouterr()
    form, _ = resolve("auto", export_dir, report, gpu=False, timings=lambda forms: {f: seconds[f] for f in forms})
    err = capsys.readouterr().err
    assert form == "onnx"
    assert err.count("\n") == 1
    assert err.startswith("notice: auto leaves out openvino_int8, openvino_int8_ffn_fp32, openvino: no_such_package_here")


def test_auto_times_the_forms_once_per_cpu_and_falls_back_to_torch_without_the_files(exported, monkeypatch, tmp_path, capsys):
    from sentiment.serving import runtime

    monkeypatch.chdir(exported)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    passing = ["torch", "openvino_int8", "openvino_int8_ffn_fp32", "onnx_int8_static", "openvino", "onnx"]  # the tiny export's
    scorer = FinetuneScorer("toy", "auto", repo_cleaning(), READING, 4)
    assert scorer.form in passing and scorer.form_reason.startswith("auto: the fastest")
    cache = json.loads(timings_cache_path().read_text())["entries"]
    (entry,) = (e["seconds"] for e in cache.values())
    assert set(entry) == set(passing) and all(s > 0 for s in entry.values())
    assert scorer.form == min(passing, key=lambda f: (entry[f], passing.index(f)))  # the fastest measured, whichever
    loaded, load = [], runtime.load_backend
    monkeypatch.setattr(runtime, "load_backend", lambda *a, **k: loaded.append(a[1]) or load(*a, **k))
    assert FinetuneScorer("toy", "auto", repo_cleaning(), READING, 4).form == scorer.form
    assert loaded == [scorer.form]  # the timings came from the cache: only the chosen form loaded
    moved = tmp_path / "export-away"
    shutil.move(exported / "data" / "toy" / "export", moved)
    try:
        capsys.readouterr()
        fallback = FinetuneScorer("toy", "auto", repo_cleaning(), READING, 4)
        err = capsys.readouterr().err
        notices = [line for line in err.splitlines() if line.startswith("notice")]
        assert fallback.form == "torch" and len(notices) == 1 and notices[0].startswith("notice: auto leaves out")
        reference = FinetuneScorer("toy", "torch", repo_cleaning(), READING, 4)
        assert fallback.answers(TEXTS) == reference.answers(TEXTS)
    finally:
        shutil.move(moved, exported / "data" / "toy" / "export")


def test_transformers_pipeline_gives_the_labels_and_probabilities_predict_gives(trained, tmp_path, monkeypatch):
    from transformers import pipeline

    from sentiment.serving.hf_classifier import save_for_transformers

    monkeypatch.chdir(trained)
    model, tokenizer, meta = load_classifier(trained / "data" / "toy" / "finetune" / "model", on="cpu")
    temperature = 1.7  # as evaluate would fit on dev
    save_for_transformers(model, tokenizer, meta["labels"], temperature, tmp_path / "hub")
    assert (tmp_path / "hub" / "hf_classifier.py").exists()  # the model's code, beside its weights
    classify = pipeline("text-classification", model=str(tmp_path / "hub"), trust_remote_code=True, top_k=None, device="cpu")
    scorer = FinetuneScorer("toy", "torch", repo_cleaning(), READING, 4)
    scorer.temperature = temperature  # the probabilities predict gives at this temperature
    expected = scorer.answers(TEXTS)
    for got, want in zip(classify(TEXTS), expected, strict=True):
        scores = {g["label"]: g["score"] for g in got}
        assert max(scores, key=scores.get) == want["label"]
        for label, p in want["probabilities"].items():
            assert scores[label] == pytest.approx(p, abs=1e-5)


def test_export_refuses_a_bad_param(trained, monkeypatch, capsys):
    from stages import export

    monkeypatch.chdir(trained)
    bad = (
        ("export", "batch_size", 0),
        ("export", "gate", {"min_agreement": 2}),
        ("export", "forms", ["torch", "onnx_int4"]),
        ("serve", "batch_size", 0),
    )
    for section, key, value in bad:
        params = stage_params()
        params[section] = {**params[section], key: value}
        (trained / "params.yaml").write_text(yaml.safe_dump(params))
        with pytest.raises(SystemExit):
            run_stage(export.main, export.__doc__, arguments=export.arguments, argv=["toy"])
        assert f"error: invalid param {section}.{key}" in capsys.readouterr().err
    (trained / "params.yaml").write_text(yaml.safe_dump(stage_params()))
