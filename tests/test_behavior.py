"""Behavioural tests: each kind (mft, inv, dir) flags a deliberately broken toy model and passes a
correct one; generation is seeded; the committed templates load and every test yields cases."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from conftest import REPO
from sentiment.config import UserError
from sentiment.evaluation.behavior import BehaviorTest, Suite, build_cases, load_suite, perturb, run_test, skip_reason

LABELS = ["negative", "positive"]
LEXICON = {
    "thing": ["film", "plot", "book"],
    "positive": ["good", "great", "lovely"],
    "negative": ["bad", "dull", "awful"],
    "intensifier": ["very", "really"],
    "person": ["Anna", "John", "Wei"],
    "city": ["Paris", "Lima", "Oslo"],
    "url": ["https://t.co/x"],
    "mention": ["@tom"],
    "hashtag": ["#movies"],
}
SUITE = Suite(lexicon=LEXICON, contractions=[("is not", "isn't"), ("was not", "wasn't")], tests=[])
ROWS = [f"review {i}: the plot is not {w}, it was n't fun, see https://x.co" for i in range(20) for w in ("good", "dull")]


def probabilities(p_positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.stack([1 - p_positive, p_positive], axis=1)
    return probs, probs.argmax(axis=1)


def lexicon_model(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A correct toy model: sentiment words, flipped after "not", the clause after "but" decides."""
    scores = []
    for text in texts:
        clause = text.lower().split(" but ")[-1]
        words = clause.replace(",", " ").replace(".", " ").split()
        score = 0.0
        for i, word in enumerate(words):
            sign = 1 if word in LEXICON["positive"] else -1 if word in LEXICON["negative"] else 0
            strength = 2 if i and words[i - 1] in LEXICON["intensifier"] else 1
            score += sign * strength * (-1 if "not" in words[max(0, i - 2) : i] else 1)
        scores.append(score)
    return probabilities(1 / (1 + np.exp(-np.asarray(scores, dtype=float))))


def bag_of_words_model(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A broken toy model: counts sentiment words, ignores negation and contrast, and weakens with length."""
    scores = []
    for text in texts:
        words = text.lower().replace(",", " ").replace(".", " ").split()
        score = sum(w in LEXICON["positive"] for w in words) - sum(w in LEXICON["negative"] for w in words)
        scores.append(score * 100 / len(words) ** 3)
    return probabilities(1 / (1 + np.exp(-np.asarray(scores, dtype=float))))


def constant_model(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return probabilities(np.full(len(texts), 0.7))


def hashing_model(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A broken toy model whose label depends on the exact characters."""
    return probabilities(np.array([0.2 + 0.6 * (hashlib.md5(t.encode()).digest()[0] % 2) for t in texts]))


def rate(spec: BehaviorTest, model, n: int = 60, rows: list[str] = ROWS) -> float:
    cases = build_cases(spec, SUITE, rows, n, seed=0)
    assert cases, "the test generated no case"
    summary, frame = run_test(spec, cases, model, LABELS, tolerance=0.1)
    assert summary["n"] == len(frame) == len(cases)
    low, high = summary["ci95"]
    assert low <= summary["failure_rate"] <= high
    return summary["failure_rate"]


MFT = {
    "positive words": BehaviorTest(
        name="p", capability="vocabulary", kind="mft", expect="positive", templates=["The {thing} was {positive}."]
    ),
    "negated positive": BehaviorTest(
        name="n", capability="negation", kind="mft", expect="negative", templates=["The {thing} was not {positive}."]
    ),
    "negated negative": BehaviorTest(
        name="nn", capability="negation", kind="mft", expect_not="negative", templates=["The {thing} was not {negative}."]
    ),
    "contrast": BehaviorTest(
        name="c",
        capability="contrast",
        kind="mft",
        expect="positive",
        templates=["The {thing} was {negative}, but the {thing2} was {positive}."],
    ),
}


@pytest.mark.parametrize("name", sorted(MFT))
def test_minimum_functionality_flags_the_broken_model_and_passes_the_correct_one(name):
    spec = MFT[name]
    assert rate(spec, lexicon_model) == 0
    always_negative = lambda texts: probabilities(np.full(len(texts), 0.2))  # noqa: E731
    assert rate(spec, always_negative if name == "positive words" else bag_of_words_model) == 1


@pytest.mark.parametrize("kind", ["typo", "contraction", "punctuation", "person", "city", "url", "mention", "hashtag"])
def test_invariance_flags_a_model_that_reads_exact_characters(kind):
    templated = kind in ("person", "city")
    spec = BehaviorTest(
        name=kind,
        capability="robustness",
        kind="inv",
        perturb=kind,
        source="templates" if templated else "test",
        templates=[f"{{{kind}}} liked the {{thing}} a lot.", f"We saw the {{thing}} near {{{kind}}} today."] if templated else [],
    )
    assert rate(spec, constant_model) == 0
    assert rate(spec, hashing_model) > 0.2


def test_directional_negative_clause_flags_a_model_fooled_by_length():
    spec = BehaviorTest(
        name="d",
        capability="directional",
        kind="dir",
        perturb="negative_clause",
        label="positive",
        must_not="rise",
        source="test",
    )
    rows = ["the plot was good", "what a lovely book", "it was great"] * 5
    assert rate(spec, lexicon_model, rows=rows) == 0
    assert rate(spec, lambda texts: probabilities(np.array([min(len(t) / 60, 1.0) for t in texts])), rows=rows) == 1


def test_directional_intensifier_flags_a_model_that_intensifiers_weaken():
    spec = BehaviorTest(
        name="i",
        capability="directional",
        kind="dir",
        perturb="intensify",
        label="positive",
        must_not="fall",
        templates=["The {thing} was {positive}."],
    )
    assert rate(spec, lexicon_model) == 0
    assert rate(spec, bag_of_words_model) == 1  # longer text, weaker score


def test_generation_is_seeded_and_perturbations_change_text():
    spec = MFT["contrast"]
    first = [c.text for c in build_cases(spec, SUITE, [], 30, seed=3)]
    assert first == [c.text for c in build_cases(spec, SUITE, [], 30, seed=3)]
    assert first != [c.text for c in build_cases(spec, SUITE, [], 30, seed=4)]
    assert all(" but the " in t for t in first) and len(set(first)) == len(first)
    rng = np.random.default_rng(0)
    assert perturb("contraction", "nothing to change here", {}, SUITE, rng) is None
    assert perturb("contraction", "the plot is not good", {}, SUITE, rng) == "the plot isn't good"
    assert perturb("contraction", "the plot was n't good", {}, SUITE, rng) == "the plot was not good"  # SST-2's clitics
    swapped = perturb("person", "Anna liked it", {"person": "Anna"}, SUITE, rng)
    assert swapped != "Anna liked it" and swapped.endswith(" liked it")


def test_tests_needing_a_missing_label_or_polarity_are_skipped_with_a_reason():
    spec = BehaviorTest(name="x", capability="v", kind="mft", expect="neutral", templates=["The {thing} starts at nine."])
    assert "neutral" in skip_reason(spec, "sst2", LABELS, polarity=True)
    assert skip_reason(spec, "tweets", ["negative", "neutral", "positive"], polarity=True) is None
    only = spec.model_copy(update={"datasets": ["tweets"]})
    assert skip_reason(only, "sst2", ["negative", "neutral", "positive"], polarity=True) is not None
    # a test that names labels assumes sentiment: not for labels that are not declared polarity-ordered
    assert "datasets.topics.polarity" in skip_reason(spec, "topics", ["neutral", "other"], polarity=False)
    invariance = BehaviorTest(name="y", capability="robustness", kind="inv", source="test", perturb="typo")
    assert skip_reason(invariance, "topics", ["sport", "other"], polarity=False) is None


def test_the_committed_templates_load_and_every_test_has_cases():
    suite = load_suite(REPO / "data" / "behavior" / "templates.yaml")
    rows = ["it is n't a good film , but the acting was great .", "I was not moved by this dull story"] * 10
    for number, test in enumerate(suite.tests):
        assert build_cases(test, suite, rows, 10, seed=number), test.name


def test_a_template_slot_missing_from_the_lexicon_is_a_one_line_error(tmp_path):
    bad = tmp_path / "t.yaml"
    test = "{name: x, capability: v, kind: mft, expect: positive, templates: ['{colour} {thing}']}"
    bad.write_text(f"lexicon: {{thing: [film]}}\ntests:\n  - {test}\n")
    with pytest.raises(UserError, match="colour"):
        load_suite(bad)
    bad.write_text("lexicon: {thing: [film]}\ntests:\n  - {name: x, capability: v, kind: mft, templates: ['{thing}']}\n")
    with pytest.raises(UserError, match="expect"):
        load_suite(bad)
