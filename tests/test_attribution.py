import numpy as np
import pytest
import torch

from conftest import tiny_params, toy_sentiment, write_clean
from stages.attribution import erasure_variants, faithfulness, integrated_gradients, rollout
from stages.finetune import finetune
from stages.models import build_model, load_classifier

SENTIMENT_WORDS = {"good", "great", "lovely", "excellent", "wonderful", "bad", "awful", "terrible", "boring", "dreadful"}


def test_rollout_on_a_hand_built_two_layer_attention():
    a1 = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])  # one head
    a2 = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    # layer mix: 0.5*A + 0.5*I, rows already sum to 1
    m1 = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    m2 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    expected = m2 @ m1  # [[0.625, 0.375], [0.25, 0.75]]
    torch.testing.assert_close(rollout(torch.stack([a1, a2])), expected)
    torch.testing.assert_close(expected, torch.tensor([[0.625, 0.375], [0.25, 0.75]]))


def test_erasure_variants_keep_special_tokens():
    ids = [101, 5, 6, 7, 8, 102]
    scores = np.array([9.0, 0.1, 0.9, 0.2, 0.8, 9.0])
    without, only = erasure_variants(ids, scores, 0.5)
    assert without == [101, 5, 7, 102] and only == [101, 6, 8, 102]


def test_integrated_gradients_are_complete(tokenizer):
    torch.manual_seed(0)
    model = build_model(tiny_params()["model"], tokenizer, 2, 32, attn_implementation="eager").eval()
    enc = tokenizer("a rather good film", return_tensors="pt")
    attributions, delta = integrated_gradients(
        model, enc["input_ids"], enc["attention_mask"], 1, tokenizer.pad_token_id, steps=64
    )
    baseline = enc["input_ids"].clone()
    baseline[:, 1:-1] = tokenizer.pad_token_id
    with torch.no_grad():
        f = lambda ids: torch.softmax(model(ids, enc["attention_mask"]).logits, -1)[0, 1].item()  # noqa: E731
        gap = f(enc["input_ids"]) - f(baseline)
    assert attributions.sum() == pytest.approx(gap, abs=max(0.01, 0.05 * abs(gap)))
    assert delta < 0.01


def test_an_oracle_attribution_beats_the_random_control(in_tmp, tokenizer):
    write_clean(in_tmp, "toy", {"train": toy_sentiment(96, 1), "dev": toy_sentiment(32, 2), "test": toy_sentiment(32, 3)})
    finetune("toy", tiny_params(), in_tmp / "out", in_tmp / "ckpt")
    model, tok, _ = load_classifier(in_tmp / "out" / "model", attn_implementation="eager")
    texts = toy_sentiment(40, 4)
    examples = tok(texts["text"].tolist())["input_ids"]
    targets = texts["label"].tolist()
    oracle = [np.array([1.0 if t in SENTIMENT_WORDS else 0.0 for t in tok.convert_ids_to_tokens(ids)]) for ids in examples]
    rng = np.random.default_rng(0)
    random = [rng.random(len(ids)) for ids in examples]
    fractions = [0.1, 0.2, 0.35]
    good = faithfulness(model, examples, oracle, targets, fractions, tok.pad_token_id)
    control = faithfulness(model, examples, random, targets, fractions, tok.pad_token_id)
    assert good["comprehensiveness"] > control["comprehensiveness"]
    assert good["sufficiency"] < control["sufficiency"]
