"""The benchmarks' logic: the throughput token accounting (its timings are printed, never tested) and the dev-overlap check."""

import math

import numpy as np
from transformers import DataCollatorWithPadding

from bench.dev_overlap import contained_in, contains_one_of, subset_accuracy
from bench.train_throughput import Throughput, TokenCountingCollator, epoch_tokens_per_example


def test_epoch_tokens_counts_each_batch_padded_to_its_longest_row():
    assert epoch_tokens_per_example([7] * 100, batch_size=32, seed=0) == 7
    # 400 rows, batch 2: the sampler sorts 4 random megabatches of 100 rows each, so at most one
    # batch per megabatch mixes a long and a short row (random batches would pad to about 7.75).
    lengths = [10] * 200 + [1] * 200
    tokens = epoch_tokens_per_example(lengths, batch_size=2, seed=0)
    assert 5.5 <= tokens <= 5.5 + 4 * (10 - 1) / 400


def test_collator_records_padded_tokens_per_batch(tokenizer):
    collator = TokenCountingCollator(DataCollatorWithPadding(tokenizer))
    short, long = tokenizer("good"), tokenizer("a much longer and rather dull sentence")
    batch = collator([dict(short), dict(long)])
    assert batch["input_ids"].shape == (2, len(long["input_ids"]))
    collator([dict(short)])
    assert collator.tokens == [2 * len(long["input_ids"]), len(short["input_ids"])]


def test_throughput_tokens_per_second():
    assert Throughput(examples_per_second=10.0, tokens_per_example=12.5).tokens_per_second == 125.0


def test_contained_in_matches_whole_words_ignoring_case_and_spacing():
    corpus = ["A  good movie , indeed", "badly made"]
    found = contained_in(["good movie", "GOOD   MOVIE", "a good movie , indeed", "bad", "movie indeed", "badly made"], corpus)
    assert found.tolist() == [True, True, True, False, False, True]


def test_contains_one_of_needs_a_proper_span_of_enough_words():
    corpus = ["a fine cast", "Fine", "the whole film"]
    texts = ["with a FINE cast , it works", "a fine cast", "fine work", "the whole film", "not the whole film"]
    assert contains_one_of(texts, corpus, min_words=3).tolist() == [True, False, False, False, True]
    assert contains_one_of(texts, corpus, min_words=1).tolist() == [True, True, True, False, True]


def test_subset_accuracy_per_mask_and_nan_for_empty():
    correct = np.array([True, False, True, True])
    masks = {"all": np.ones(4, dtype=bool), "first two": np.array([True, True, False, False]), "none": np.zeros(4, dtype=bool)}
    scores = subset_accuracy(correct, masks)
    assert scores["all"] == (0.75, 4) and scores["first two"] == (0.5, 2)
    assert math.isnan(scores["none"][0]) and scores["none"][1] == 0
