"""The benchmarks' logic: the throughput token accounting (its timings are printed, never tested), the dev-overlap
check and the seed study's config parsing and summary."""

import math

import numpy as np
import pytest
from transformers import DataCollatorWithPadding

from bench.dev_overlap import contained_in, contains_one_of, subset_accuracy
from bench.seed_study import SCORES, paired_differences, parse_config, summarise
from bench.train_throughput import Throughput, TokenCountingCollator, epoch_tokens_per_example
from sentiment.config import Params, Section, UserError


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


def test_seed_study_config_reads_values_as_yaml():
    assert parse_config("committed=") == ("committed", {})
    name, overrides = parse_config("b64=train.batch_size=64,train.learning_rate=1.0e-4,model.pooling=cls")
    assert name == "b64"
    assert overrides == {"train.batch_size": 64, "train.learning_rate": 1e-4, "model.pooling": "cls"}
    for bad in ("=train.epochs=1", "x=train.epochs", "x=epochs=1"):
        with pytest.raises(UserError):
            parse_config(bad)


class Batch(Section):
    batch_size: int
    epochs: int


def test_overridden_params_are_a_copy_and_refuse_unknown_keys():
    params = Params({"seed": 42, "train": {"batch_size": 32, "epochs": 2}})
    changed = params.with_values({"train.batch_size": 64, "seed": 7})
    assert changed.seed == 7 and changed.section(Batch, "train").batch_size == 64
    assert params.seed == 42 and params.section(Batch, "train").batch_size == 32
    for unknown in ("train.nope", "nope.batch_size", "train.batch_size.deeper"):
        with pytest.raises(UserError, match="unknown param"):
            params.with_values({unknown: 1})


def test_seed_study_summary_is_mean_and_sd_per_config():
    def run(config, dev, test):
        scores = {"dev_accuracy": dev, "dev_f1_macro": dev, "test_accuracy": test, "test_f1_macro": test}
        return {"config": config, "seconds": 10, **scores}

    rows = [run("a", 0.90, 0.80), run("b", 0.5, 0.5), run("a", 0.94, 0.84)]
    first, second = summarise(rows)
    assert first["config"] == "a" and first["runs"] == 2 and second["runs"] == 1
    assert first["dev_accuracy"] == pytest.approx(0.92) and first["test_accuracy"] == pytest.approx(0.82)
    assert first["dev_accuracy_sd"] == pytest.approx(math.sqrt(2) * 0.02)
    assert second["dev_accuracy_sd"] == 0.0


def test_seed_study_paired_differences_use_only_seeds_both_configs_ran():
    def run(config, seed, score):
        return {"config": config, "seed": seed, "seconds": 1, **dict.fromkeys(SCORES[:-1], score)}

    rows = [run("base", 1, 0.90), run("base", 2, 0.80), run("new", 1, 0.92), run("new", 2, 0.84), run("new", 3, 0.0)]
    rows += [run("other", 2, 0.70)]
    new, other = paired_differences(rows, "base")
    assert new["config"] == "new" and new["runs"] == 2  # seed 3 has no baseline run to pair with
    assert new["test_accuracy"] == pytest.approx(0.03) and new["test_accuracy_se"] == pytest.approx(0.01)
    assert other["runs"] == 1 and other["dev_f1_macro"] == pytest.approx(-0.10)
