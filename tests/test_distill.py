import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TOY_NAMES, recipe_of, tiny_params, toy_sentiment, truncated_logits, write_clean
from sentiment.config import UserError
from sentiment.models.classifier import build_model, load_classifier
from sentiment.models.config import ModelConfig
from sentiment.models.distill import DistillConfig, DistillTrainer, student_of
from sentiment.models.distill import distill as distil
from sentiment.models.training import finetune

DISTILL = {"datasets": ["toy"], "layers": [1], "temperature": 2.0, "soft_weight": 0.7, "epochs": 6, "learning_rate": 0.003}


def teacher(tokenizer, layers: int = 3):
    torch.manual_seed(0)
    cfg = tiny_params()["model"]
    cfg["scratch"]["num_layers"] = layers
    return build_model(ModelConfig.model_validate(cfg), tokenizer, 2, 16).eval()


def test_the_student_keeps_the_chosen_layers_with_the_teachers_weights(tokenizer):
    big = teacher(tokenizer)
    small = student_of(big, [0, -1])
    assert small.encoder.config.num_hidden_layers == 2 and len(small.encoder.encoder.layer) == 2
    for kept, source in zip(
        small.encoder.encoder.layer, (big.encoder.encoder.layer[0], big.encoder.encoder.layer[2]), strict=True
    ):
        for a, b in zip(kept.parameters(), source.parameters(), strict=True):
            assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()  # copied, not shared
    assert torch.equal(small.head.weight, big.head.weight)
    assert big.encoder.config.num_hidden_layers == 3  # the teacher is untouched
    ids = torch.tensor([[101, 2204, 102]])
    assert small(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.shape == (1, 2)


@pytest.mark.parametrize("layers", [[3], [-4], [1, 1], [2, 0]])
def test_layers_the_teacher_lacks_or_out_of_order_are_refused(tokenizer, layers):
    with pytest.raises(UserError, match="distill.layers"):
        student_of(teacher(tokenizer), layers)


def test_the_distillation_term_vanishes_when_the_student_matches_the_teacher():
    trainer = DistillTrainer.__new__(DistillTrainer)
    trainer.temperature, trainer.soft_weight = 3.0, 1.0
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.25]])

    class Fixed(torch.nn.Module):
        def forward(self, labels=None, **_):
            loss = torch.nn.functional.cross_entropy(logits, labels)
            return type("Out", (), {"logits": logits, "loss": loss})()

    same = trainer.compute_loss(Fixed(), {"labels": torch.tensor([0, 1]), "teacher_logits": logits.clone()})
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    other = trainer.compute_loss(Fixed(), {"labels": torch.tensor([0, 1]), "teacher_logits": -logits})
    assert other.item() > 0.1


def test_a_one_layer_student_learns_the_teachers_answers(in_tmp, tokenizer):
    write_clean(in_tmp, "toy", {"train": toy_sentiment(96, 1), "dev": toy_sentiment(32, 2), "test": toy_sentiment(32, 3)})
    params = tiny_params(max_length=16)
    finetune("toy", TOY_NAMES, recipe_of(params), in_tmp / "teacher", in_tmp / "ckpt-teacher")
    cfg = DistillConfig(**{**DISTILL, "batch_size": 16})
    recipe, rows = recipe_of(params), pd.read_parquet(in_tmp / "data" / "toy" / "clean" / "train.parquet")
    teacher_dir, student_dir = in_tmp / "teacher" / "model", in_tmp / "student"
    figures = distil(
        "toy", TOY_NAMES, cfg, recipe.train, recipe.seed, recipe.reading, rows, teacher_dir, student_dir, in_tmp / "c"
    )
    assert figures["layers"] == [1] and figures["teacher_layers"] == 2
    assert figures["test"]["accuracy"] >= 0.9
    big, tok, _ = load_classifier(in_tmp / "teacher" / "model", on="cpu")
    small, _, meta = load_classifier(in_tmp / "student" / "model", on="cpu")
    assert small.encoder.config.num_hidden_layers == 1 and meta["distilled_layers"] == [1]
    texts = toy_sentiment(32, 3)["text"].tolist()
    agree = truncated_logits(big, tok, texts, 16).argmax(1) == truncated_logits(small, tok, texts, 16).argmax(1)
    assert np.mean(agree) >= 0.9
    assert figures["predictions"]["test"]["pred"].tolist() == truncated_logits(small, tok, texts, 16).argmax(1).tolist()
