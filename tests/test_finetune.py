import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from transformers import set_seed
from transformers.utils import is_torch_bf16_gpu_available

from conftest import REPO, TOY_NAMES, recipe_of, repo_cleaning, tiny_params, toy_sentiment, truncated_logits, write_clean
from sentiment.config import UserError
from sentiment.io import model_digest
from sentiment.models.classifier import (
    ModelConfig,
    SentimentClassifier,
    build_model,
    load_classifier,
    mean_pool,
)
from sentiment.models.engine import Reading, length_sorted_batches
from sentiment.models.training import finetune, reference_predictions, training_curves


@pytest.fixture
def toy_data(in_tmp):
    write_clean(in_tmp, "toy", {"train": toy_sentiment(96, 1), "dev": toy_sentiment(32, 2), "test": toy_sentiment(32, 3)})
    return in_tmp


def test_length_sorted_batches_cover_every_row_once_shortest_first():
    sequences = [[1] * n for n in (5, 1, 3, 1, 4, 2, 6)]
    batches = length_sorted_batches(sequences, 3)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(sequences)))
    lengths = [len(sequences[i]) for b in batches for i in b]
    assert lengths == sorted(lengths)
    assert batches[0].tolist() == [1, 3, 5]  # ties keep input order


def run(root, name="out", **train):
    return finetune("toy", TOY_NAMES, recipe_of(tiny_params(**train)), root / name, root / f"ckpt-{name}")


def test_tiny_model_beats_chance_and_writes_a_lean_checkpoint(toy_data, tokenizer):
    metrics = run(toy_data)
    assert metrics["test"]["accuracy"] >= 0.8
    out = toy_data / "out"
    preds = pd.read_csv(out / "finetune_test.csv")
    assert {"id", "label", "pred", "prob_negative", "prob_positive", "logit_negative", "logit_positive"} <= set(preds)
    files = {p.name for p in (out / "model").iterdir()}
    assert {"config.json", "model.safetensors", "head.safetensors", "head.json", "tokenizer.json"} <= files
    assert not any("optimizer" in f for f in files)
    model, tok, meta = load_classifier(out / "model")
    assert meta["labels"] == ["negative", "positive"] and meta["pooling"] == "cls"
    # the folder says what serving needs: which model, the dev temperature, its test figures, the weights' digest
    assert meta["model"] == "finetune" and meta["dataset"] == "toy" and meta["temperature"] > 0
    assert meta["test"] == {k: metrics["test"][k] for k in ("accuracy", "f1_macro")}
    assert meta["digest"] == model_digest(out / "model")
    logits = truncated_logits(model, tok, ["good great lovely", "bad awful terrible"], 32)
    assert logits.argmax(1).tolist() == [1, 0]
    steps, epochs = metrics["curves"]
    assert epochs["epoch"].tolist() == [float(e) for e in range(1, 9)]  # one dev evaluation per epoch, all 8 run
    assert list(epochs.columns) == ["epoch", "dev_loss", "dev_accuracy", "dev_f1_macro"]
    # 96 rows in batches of 16: 6 optimizer steps an epoch, 48 in all, a train-loss row every 5 (logging_steps)
    assert steps["step"].tolist() == list(range(5, 8 * 6 + 1, 5))
    losses = steps["train_loss"].to_numpy()
    assert losses[-3:].mean() < 0.5 * losses[:3].mean()  # training drove the loss down on separable data
    assert epochs["dev_loss"].iloc[-1] < epochs["dev_loss"].iloc[0]


def test_same_seed_gives_identical_predictions(toy_data, tokenizer):
    run(toy_data, "a", epochs=2)
    run(toy_data, "b", epochs=2)
    a = (toy_data / "a" / "finetune_test.csv").read_bytes()
    assert a == (toy_data / "b" / "finetune_test.csv").read_bytes()


def test_frozen_embeddings_stay_as_initialised_and_the_rest_trains(toy_data, tokenizer):
    run(toy_data, "frozen", epochs=2, freeze_embeddings=True)
    run(toy_data, "full", epochs=2)
    set_seed(tiny_params()["seed"])  # finetune's seeded initialisation
    initial = build_model(ModelConfig.model_validate(tiny_params()["model"]), tokenizer, 2, 32)
    frozen, full = (load_classifier(toy_data / name / "model")[0].encoder for name in ("frozen", "full"))
    embeddings = initial.encoder.get_input_embeddings().weight
    assert torch.equal(frozen.get_input_embeddings().weight, embeddings)
    assert not torch.equal(full.get_input_embeddings().weight, embeddings)
    query = initial.encoder.encoder.layer[0].attention.self.query.weight
    assert not torch.equal(frozen.encoder.layer[0].attention.self.query.weight, query)


def test_cls_and_mean_pooling_read_the_first_token_and_the_mean_of_real_tokens(tokenizer):
    params = tiny_params()
    torch.manual_seed(0)
    cls = build_model(ModelConfig.model_validate(params["model"]), tokenizer, 2, 32).eval()
    mean = SentimentClassifier(cls.encoder, 2, "mean", 0.0).eval()
    mean.head.load_state_dict(cls.head.state_dict())
    batch = tokenizer(["a good film", "bad"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = cls.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        first = cls.head(hidden[:, 0])
        real = batch["attention_mask"].unsqueeze(-1).float()
        average = cls.head((hidden * real).sum(1) / real.sum(1))
        a = cls(batch["input_ids"], batch["attention_mask"]).logits
        b = mean(batch["input_ids"], batch["attention_mask"]).logits
    torch.testing.assert_close(a, first)
    torch.testing.assert_close(b, average)
    torch.testing.assert_close(mean_pool(hidden, batch["attention_mask"]), (hidden * real).sum(1) / real.sum(1))
    assert not torch.allclose(first, average)


def test_mean_pooling_ignores_padding(tokenizer):
    params = tiny_params()
    params["model"]["pooling"] = "mean"
    model = build_model(ModelConfig.model_validate(params["model"]), tokenizer, 2, 32).eval()
    single = tokenizer(["bad"], return_tensors="pt")
    padded = tokenizer(["bad", "a much longer sentence here"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a = model(single["input_ids"], single["attention_mask"]).logits[0]
        b = model(padded["input_ids"], padded["attention_mask"]).logits[0]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_resume_continues_from_the_last_checkpoint(toy_data, tokenizer):
    full = run(toy_data, "full", epochs=3)
    # an "interrupted" run: drop the final checkpoint, so the newest left is from an earlier epoch
    run(toy_data, "part", epochs=3)
    ckpt = toy_data / "ckpt-part"
    steps = sorted(int(p.name.split("-")[1]) for p in ckpt.glob("checkpoint-*"))
    for p in ckpt.glob("checkpoint-*"):
        if int(p.name.split("-")[1]) == steps[-1]:
            shutil.rmtree(p)
    state = json.loads((ckpt / f"checkpoint-{steps[-2]}" / "trainer_state.json").read_text())
    assert state["epoch"] < 3.0
    resumed = finetune("toy", TOY_NAMES, recipe_of(tiny_params(epochs=3)), toy_data / "part", ckpt, resume=True)
    assert resumed["epochs_run"] == 3.0
    np.testing.assert_allclose(resumed["test"]["accuracy"], full["test"]["accuracy"])


@pytest.mark.skipif(torch.cuda.is_available() or is_torch_bf16_gpu_available(), reason="the CPU path of precision: auto")
def test_auto_precision_on_a_bf16_cpu_trains_in_bf16(toy_data, tokenizer, monkeypatch):
    # what `precision: auto` picks on an AMX/AVX512-BF16 CPU; bf16 is emulated (slowly) on other CPUs
    import sentiment.models.training as stage

    monkeypatch.setattr(stage, "cpu_supports_bf16", lambda: True)
    assert stage.precision_flags("auto") == {"bf16": True, "fp16": False, "use_cpu": True}
    metrics = run(toy_data, precision="auto")
    assert metrics["test"]["accuracy"] >= 0.8
    assert metrics["trained_with"]["precision"] == "bf16"
    logits = pd.read_csv(toy_data / "out" / "finetune_test.csv")[["logit_negative", "logit_positive"]].to_numpy()
    # trained under bf16 autocast, predicted in fp32 (the reference form): logits that are not all bf16 numbers
    assert not np.allclose(torch.tensor(logits).bfloat16().double().numpy(), logits, rtol=1e-5, atol=0)


def test_bf16_on_a_gpu_without_it_is_refused(monkeypatch):
    import sentiment.models.training as stage

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert stage.precision_flags("auto") == {"bf16": False, "fp16": True, "use_cpu": False}
    with pytest.raises(UserError, match="train.precision=bf16"):
        stage.precision_flags("bf16")


@pytest.mark.slow  # torchrun starts two training processes
@pytest.mark.skipif(torch.accelerator.is_available(), reason="two CPU processes stand in for two GPUs")
def test_two_processes_train_one_model_and_rank_0_alone_writes_it(toy_data, tokenizer):
    # the multi-GPU launch (torchrun / accelerate launch) on CPU processes: DDP over gloo
    (toy_data / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "stages.finetune", "toy"]
    result = subprocess.run(cmd, cwd=toy_data, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    # one model trained on both shards: each step took a batch per process, so an epoch took half
    # the single-process steps (96 rows / (2 x 16) = 3)
    steps = pd.read_csv(toy_data / "plots" / "toy" / "finetune" / "train_loss.csv")["step"]
    assert steps.max() <= 8 * 3
    assert json.loads((toy_data / "results" / "toy" / "finetune.json").read_text())["test"]["accuracy"] >= 0.8
    assert sorted(p.name for p in (toy_data / "data" / "toy").iterdir()) == ["clean", "finetune"]  # no stray temp dir
    out = toy_data / "data" / "toy" / "finetune"
    model, tok, _ = load_classifier(out / "model")
    logits = truncated_logits(model, tok, ["good great lovely", "bad awful terrible"], 32)
    assert logits.argmax(1).tolist() == [1, 0]
    assert len(pd.read_csv(out / "finetune_test.csv")) == 32
    assert not (toy_data / "checkpoints" / "toy").exists()


def test_reference_predictions_read_long_texts_in_windows_as_predict_does(saved_model, tokenizer):
    from sentiment.models.config import TrainConfig
    from sentiment.serving.long_text import PredictConfig
    from sentiment.serving.runtime import FinetuneScorer

    model, tok, meta = load_classifier(saved_model / "data" / "toy" / "finetune" / "model", on="cpu")
    long = " ".join(["good film"] * 20 + ["bad plot"] * 30)  # about 100 tokens: several 16-token windows
    frame = pd.DataFrame({"id": [0, 1], "text": ["a good film", long], "label": [1, 0]})
    chunk = Reading(long_text="chunk", window_overlap=0.25)
    cfg = TrainConfig.model_validate({**tiny_params()["train"], "max_length": 16, "eval_batch_size": 4})
    predictions = reference_predictions(model, tok, {"dev": frame, "test": frame}, meta["labels"], cfg, chunk)
    logits = predictions["test"][["logit_negative", "logit_positive"]].to_numpy()
    reading = PredictConfig(long_text="chunk", window_overlap=0.25, batch_size=4, model="finetune")
    scorer = FinetuneScorer("toy", "torch", repo_cleaning(), reading, 4)
    np.testing.assert_allclose(logits, scorer.logits(frame["text"].tolist()), atol=1e-5)  # what predict answers
    truncated = truncated_logits(model, tok, frame["text"].tolist(), 16)
    assert np.allclose(logits[0], truncated[0], atol=1e-5) and not np.allclose(logits[1], truncated[1], atol=1e-3)


def test_predictions_after_bf16_training_are_the_reference_fp32_answers(toy_data, tokenizer):
    metrics = run(toy_data, precision="bf16")
    model, tok, _ = load_classifier(toy_data / "out" / "model", on="cpu")  # reloaded: no training wrapper
    texts = toy_sentiment(32, 3)["text"].tolist()
    written = pd.read_csv(toy_data / "out" / "finetune_test.csv")[["logit_negative", "logit_positive"]].to_numpy()
    assert metrics["test"]["accuracy"] >= 0.8
    np.testing.assert_allclose(written, truncated_logits(model, tok, texts, 32), atol=1e-4)


def test_bad_params_fail_before_training(toy_data, tokenizer):
    with pytest.raises(UserError, match="model.pooling='max'"):
        finetune(
            "toy",
            TOY_NAMES,
            recipe_of({**tiny_params(), "model": {**tiny_params()["model"], "pooling": "max"}}),
            toy_data / "o",
            toy_data / "c",
        )
    with pytest.raises(UserError, match="train.max_length=4096"):
        p = tiny_params(max_length=4096)
        p["model"]["name"] = "sentence-transformers/all-MiniLM-L6-v2"
        finetune("toy", TOY_NAMES, recipe_of(p), toy_data / "o", toy_data / "c")
    with pytest.raises(UserError, match="train.freeze_embeddings='maybe'"):
        finetune("toy", TOY_NAMES, recipe_of(tiny_params(freeze_embeddings="maybe")), toy_data / "o", toy_data / "c")
    assert not (toy_data / "c").exists()


def test_unknown_model_offline_is_one_line_error(toy_data, tokenizer, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p = tiny_params()
    p["model"]["name"] = "no-such-org/no-such-model"
    with pytest.raises(UserError, match="'no-such-org/no-such-model'.*HUB_MIRROR"):
        finetune("toy", TOY_NAMES, recipe_of(p), toy_data / "o", toy_data / "c")


def test_checkpoint_with_other_num_labels_is_refused(toy_data, tokenizer):
    run(toy_data, "two", epochs=1)
    p = tiny_params(epochs=1)
    with pytest.raises(UserError, match="does not match the configured model"):
        finetune("toy", ["a", "b", "c"], recipe_of(p), toy_data / "three", toy_data / "ckpt-two", resume=True)


def test_training_curves_split_the_log():
    log = [
        {"loss": 0.7, "learning_rate": 1e-3, "epoch": 0.5, "step": 5},
        {"eval_loss": 0.6, "eval_accuracy": 0.7, "eval_f1_macro": 0.69, "epoch": 1.0, "step": 10},
        {"train_loss": 0.65, "epoch": 1.0, "step": 10},
    ]
    steps, epochs = training_curves(log)
    assert steps["train_loss"].tolist() == [0.7] and epochs["dev_loss"].tolist() == [0.6]


def test_live_metrics_are_logged_while_training(toy_data, tokenizer):
    live = toy_data / "live"
    run(toy_data, "live-run", epochs=2)  # no live_dir: nothing logged
    assert not live.exists()
    finetune("toy", TOY_NAMES, recipe_of(tiny_params(epochs=2)), toy_data / "with-live", toy_data / "ckpt-live", live_dir=live)
    latest = json.loads((live / "metrics.json").read_text())
    assert {"loss", "learning_rate"} <= set(latest) and {"loss", "f1_macro"} <= set(latest["eval"])
    steps = pd.read_csv(live / "plots" / "metrics" / "eval" / "f1_macro.tsv", sep="\t")
    assert len(steps) == 2  # one row per epoch's evaluation, written as it happened
