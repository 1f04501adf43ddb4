"""The throughput benchmark's token accounting (its timings are printed, never tested)."""

from transformers import DataCollatorWithPadding

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
