import numpy as np
import pytest
import torch

from conftest import TOY_NAMES, recipe_of, repo_params, tiny_params, toy_sentiment, write_clean
from sentiment.evaluation.attribution import (
    AttentionConfig,
    erasure_variants,
    faithfulness,
    integrated_gradients,
    per_word,
    per_word_matrix,
    rollout,
    word_groups,
)
from sentiment.models.classifier import build_model, load_classifier
from sentiment.models.config import ModelConfig
from sentiment.models.training import finetune


def attention(**changes) -> AttentionConfig:
    """params.yaml's `attention` with `changes`."""
    return AttentionConfig(**{**repo_params()["attention"], **changes})


SENTIMENT_WORDS = {"good", "great", "lovely", "excellent", "wonderful", "bad", "awful", "terrible", "boring", "dreadful"}


def test_rollout_on_a_hand_built_two_layer_attention():
    a1 = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])  # one head
    a2 = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    # layer mix: 0.5*A + 0.5*I, rows already sum to 1
    m1 = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    m2 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    # rollout = m2 @ m1, worked out by hand: row 0 = 0.5*[1, 0] + 0.5*[0.25, 0.75]
    assert m1.sum(dim=1).tolist() == [1.0, 1.0] and m2.sum(dim=1).tolist() == [1.0, 1.0]
    torch.testing.assert_close(rollout(torch.stack([a1, a2])), torch.tensor([[0.625, 0.375], [0.25, 0.75]]))


def test_erasure_variants_keep_special_tokens():
    ids = [101, 5, 6, 7, 8, 102]
    scores = np.array([9.0, 0.1, 0.9, 0.2, 0.8, 9.0])
    without, only = erasure_variants(ids, scores, 0.5)
    assert without == [101, 5, 7, 102] and only == [101, 6, 8, 102]


def test_integrated_gradients_are_complete(tokenizer):
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate(tiny_params()["model"]), tokenizer, 2, 32).eval()
    enc = tokenizer("a rather good film", return_tensors="pt")
    cfg = attention(ig_steps=8, ig_max_steps=256, ig_tolerance=0.01, ig_baseline="pad")
    attributions, info = integrated_gradients(model, tokenizer, enc["input_ids"], enc["attention_mask"], 1, cfg)
    baseline = enc["input_ids"].clone()
    baseline[:, 1:-1] = tokenizer.pad_token_id
    with torch.no_grad():
        f = lambda ids: torch.softmax(model(ids, enc["attention_mask"]).logits, -1)[0, 1].item()  # noqa: E731
        gap = f(enc["input_ids"]) - f(baseline)
    assert abs(gap) > 1e-4
    assert attributions.sum() == pytest.approx(gap, abs=0.01 * abs(gap) + 1e-4)
    assert info["converged"] and info["relative_delta"] <= 0.01 and info["baseline"] == "pad"


def test_integrated_gradients_raise_the_step_count_until_converged(tokenizer):
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate(tiny_params()["model"]), tokenizer, 2, 32).eval()
    enc = tokenizer("a rather good film , not a bad one at all", return_tensors="pt")
    loose = attention(ig_steps=2, ig_max_steps=2, ig_tolerance=1e-9, ig_baseline="mask")
    _, stopped = integrated_gradients(model, tokenizer, enc["input_ids"], enc["attention_mask"], 0, loose)
    assert stopped["steps"] == 2 and not stopped["converged"]
    strict = attention(ig_steps=2, ig_max_steps=512, ig_tolerance=0.001, ig_baseline="mask")
    _, raised = integrated_gradients(model, tokenizer, enc["input_ids"], enc["attention_mask"], 0, strict)
    assert raised["steps"] > 2 and raised["relative_delta"] < stopped["relative_delta"]


def test_pieces_are_merged_into_the_words_of_the_text(tokenizer):
    text = "an unbelievably charming film"
    enc = tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
    groups = word_groups(enc, text)
    assert [w for w, _ in groups] == ["an", "unbelievably", "charming", "film"]
    pieces = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    assert any(p.startswith("##") for p in pieces), "the test needs a word split into pieces"
    scores = np.arange(len(pieces), dtype=float)
    summed, averaged = per_word(scores, groups, "sum"), per_word(scores, groups, "mean")
    unbelievably = groups[1][1]
    assert summed[1] == scores[unbelievably].sum() and averaged[1] == scores[unbelievably].mean()
    assert summed.sum() == scores[1:-1].sum()  # special tokens left out, nothing else lost
    matrix = np.arange(len(pieces) ** 2, dtype=float).reshape(len(pieces), len(pieces))
    merged = per_word_matrix(matrix, groups)
    assert merged.shape == (4, 4) and merged[1, 0] == matrix[unbelievably][:, groups[0][1]].mean()


def test_an_oracle_attribution_beats_the_random_control(in_tmp, tokenizer):
    write_clean(in_tmp, "toy", {"train": toy_sentiment(96, 1), "dev": toy_sentiment(32, 2), "test": toy_sentiment(32, 3)})
    finetune("toy", TOY_NAMES, recipe_of(tiny_params()), in_tmp / "out", in_tmp / "ckpt")
    model, tok, _ = load_classifier(in_tmp / "out" / "model", need_attention_weights=True)
    texts = toy_sentiment(40, 4)
    examples = tok(texts["text"].tolist())["input_ids"]
    targets = texts["label"].tolist()
    oracle = [np.array([1.0 if t in SENTIMENT_WORDS else 0.0 for t in tok.convert_ids_to_tokens(ids)]) for ids in examples]
    rng = np.random.default_rng(0)
    random = [rng.random(len(ids)) for ids in examples]
    fractions = [0.1, 0.2, 0.35]
    good = faithfulness(model, examples, oracle, targets, fractions, tok)
    control = faithfulness(model, examples, random, targets, fractions, tok)
    assert good["comprehensiveness"] > control["comprehensiveness"]
    assert good["sufficiency"] < control["sufficiency"]


def test_a_method_added_to_the_registry_is_scored_shown_and_checked_for_faithfulness(in_tmp, tokenizer, monkeypatch):
    from sentiment.evaluation import attribution

    write_clean(in_tmp, "toy", {"train": toy_sentiment(32, 1), "dev": toy_sentiment(16, 2), "test": toy_sentiment(16, 3)})
    finetune("toy", TOY_NAMES, recipe_of(tiny_params(epochs=1)), in_tmp / "out", in_tmp / "ckpt")
    model, tok, _ = load_classifier(in_tmp / "out" / "model", need_attention_weights=True)

    def position(_model, _tokenizer, ids, _mask, _target, _cfg):  # a stand-in method: later tokens score higher
        return np.arange(ids.shape[1], dtype=float), None

    monkeypatch.setitem(attribution.METHODS, "position", attribution.Method(position, "sum", "position"))
    cfg = attention(ig_steps=2, ig_max_steps=2, faithfulness_examples=4, fractions=[0.2])
    result = attribution.explain_example(model, tok, "a good film , not a bad one", 32, cfg)
    assert list(result["scores"]) == list(attribution.METHODS)
    enc = tok("a good film , not a bad one", return_offsets_mapping=True, return_tensors="pt")
    expected = per_word(np.arange(enc["input_ids"].shape[1], dtype=float), word_groups(enc, "a good film , not a bad one"), "sum")
    np.testing.assert_array_equal(result["scores"]["position"], expected)
    texts = toy_sentiment(8, 5)["text"].tolist()
    report = attribution.faithfulness_report(model, tok, texts, [0] * len(texts), 32, cfg, seed=0)
    assert set(report["methods"]) == {*attribution.METHODS, attribution.CONTROL}
    added, control = report["methods"]["position"], report["methods"][attribution.CONTROL]
    assert added["beats_random_comprehensiveness"] == (added["comprehensiveness"] > control["comprehensiveness"])
