"""Training throughput: our configured training vs a reference-notebook-style set-up, side by side.

Both train the same model (params.yaml `model`) on the same SST-2 training rows on this machine:
  reference: every example padded to 128 tokens, random batches, fp32, every weight trained
  ours:      dynamic padding (DataCollatorWithPadding), length-grouped batches, `train.precision`,
             `train.freeze_embeddings`
  ours + torch.compile: the same with `train.torch_compile: true`
Prints examples/s for each (the first `--warmup` steps, which include compilation, are not
timed) and the ratios, and splits the speed-up into its two factors: how many fewer (padded)
tokens ours feeds the model per example, and how many more tokens per second it gets through.
The first factor bounds what dynamic padding can give on hardware without a faster number
format, so it is also printed for a whole epoch of the full training set. Timings are printed,
never asserted. `--profile` adds a run of ours under
torch.profiler and prints where the time of its timed steps goes, by operator.

    python bench/train_throughput.py [--steps 40] [--warmup 5] [--dataset sst2] [--no-compile] [--profile]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, set_seed
from transformers.trainer_pt_utils import LengthGroupedSampler

from sentiment.config import Params
from sentiment.data.datasets import read_clean
from sentiment.models.classifier import load_tokenizer
from sentiment.models.config import ModelConfig
from sentiment.models.training import TrainConfig, build_trainable, precision_flags, tokenize, training_arguments


class StepClock(TrainerCallback):
    """Wall-clock time at the end of the warm-up steps and at the end of training (optionally profiled)."""

    def __init__(self, warmup: int, profiler: profile | None = None):
        self.warmup, self.profiler, self.start, self.end = warmup, profiler, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            if self.profiler is not None:
                self.profiler.start()
            self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.end = time.perf_counter()
        if self.profiler is not None:
            self.profiler.stop()


@dataclass
class TokenCountingCollator:
    """DataCollatorWithPadding that records each batch's padded token count, in batch order."""

    collator: DataCollatorWithPadding
    tokens: list[int] = field(default_factory=list)

    def __call__(self, features: list[dict]) -> dict:
        batch = self.collator(features)
        self.tokens.append(batch["input_ids"].numel())
        return batch


@dataclass
class Throughput:
    examples_per_second: float
    tokens_per_example: float  # padded tokens the model processes per training example

    @property
    def tokens_per_second(self) -> float:
        return self.examples_per_second * self.tokens_per_example


def epoch_tokens_per_example(lengths: list[int], batch_size: int, seed: int) -> float:
    """Padded tokens per example over one epoch of length-grouped batches (the Trainer's sampler)."""
    order = list(LengthGroupedSampler(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(seed)))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    return sum(len(rows) * max(lengths[i] for i in rows) for rows in batches) / len(order)


def measure(
    params: Params,
    dataset: str,
    frame,
    *,
    reference: bool,
    steps: int,
    warmup: int,
    compile: bool = False,
    profiler: profile | None = None,
) -> Throughput:
    model_cfg = params.section(ModelConfig, "model")
    train_cfg = params.section(TrainConfig, "train").model_copy(update={"torch_compile": compile})
    tokenizer = load_tokenizer(model_cfg)
    names = params.dataset(dataset).labels
    if reference:
        data = tokenize(frame, tokenizer, 128)
        features = [c for c in data.column_names if c != "labels"]
        data = data.map(lambda b: tokenizer.pad({c: b[c] for c in features}, padding="max_length", max_length=128), batched=True)
        train_cfg = train_cfg.model_copy(update={"precision": "fp32", "freeze_embeddings": False})
    else:
        data = tokenize(frame, tokenizer, train_cfg.max_length)
    set_seed(0)
    model = build_trainable(model_cfg, train_cfg, tokenizer, len(names))
    with tempfile.TemporaryDirectory() as tmp:
        args = training_arguments(train_cfg, 0, Path(tmp))
        args.max_steps, args.eval_strategy, args.save_strategy = steps, "no", "no"
        args.load_best_model_at_end, args.disable_tqdm = False, True
        if reference:
            args.train_sampling_strategy = "random"
        clock = StepClock(warmup, profiler)
        collator = TokenCountingCollator(DataCollatorWithPadding(tokenizer))
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            data_collator=collator,
            callbacks=[clock],
        )
        trainer.train()
    # Batches are collated in order (the loader may fetch one ahead), so the timed steps'
    # batches are those after the warm-up ones.
    examples = (steps - warmup) * train_cfg.batch_size * train_cfg.grad_accum
    timed_tokens = sum(collator.tokens[warmup * train_cfg.grad_accum : steps * train_cfg.grad_accum])
    return Throughput(examples / (clock.end - clock.start), timed_tokens / examples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="steps not timed (compilation, allocator warm-up)")
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    parser.add_argument("--profile", action="store_true", help="print an operator breakdown of our timed steps")
    args = parser.parse_args()
    params = Params.load()
    train, train_cfg = read_clean(args.dataset, "train"), params.section(TrainConfig, "train")
    model_cfg = params.section(ModelConfig, "model")
    frame = train.sample(4000, random_state=0)
    flags = precision_flags(train_cfg.precision)
    ours_label = "bf16" if flags["bf16"] else "fp16" if flags["fp16"] else "fp32"
    run = dict(params=params, dataset=args.dataset, frame=frame, steps=args.steps, warmup=args.warmup)
    ref = measure(reference=True, **run)
    ours = measure(reference=False, **run)
    print(f"model {model_cfg.name}, {args.steps} steps x batch {train_cfg.batch_size}, {args.dataset} train rows")
    rows = [("reference (pad to 128, random batches, fp32)", ref), (f"ours (dynamic padding, length groups, {ours_label})", ours)]
    for name, result in rows:
        print(
            f"{name + ':':<52} {result.examples_per_second:7.1f} examples/s, "
            f"{result.tokens_per_example:5.1f} padded tokens/example, {result.tokens_per_second:6.0f} tokens/s"
        )
    token_ratio = ref.tokens_per_example / ours.tokens_per_example
    print(
        f"speed-up: {ours.examples_per_second / ref.examples_per_second:.1f}x = {token_ratio:.1f}x fewer tokens per example"
        f" x {ours.tokens_per_second / ref.tokens_per_second:.2f}x more tokens/s"
    )
    lengths = tokenize(train, load_tokenizer(model_cfg), train_cfg.max_length)["length"]
    epoch_tokens = epoch_tokens_per_example(lengths, train_cfg.batch_size, params.seed)
    print(
        f"a whole epoch of all {len(lengths)} {args.dataset} train rows ({sum(lengths) / len(lengths):.1f} tokens on average)"
        f" pads to {epoch_tokens:.1f} tokens/example:"
        f" {ref.tokens_per_example / epoch_tokens:.1f}x fewer than the reference"
    )
    if args.profile:  # a separate run, so the profiler's overhead stays out of the figures above
        profiler = profile(activities=[ProfilerActivity.CPU])
        measure(reference=False, profiler=profiler, **run)
        print("where the time of our timed steps goes, by operator:")
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    if not args.no_compile:
        compiled = measure(reference=False, compile=True, **run)
        ratio = compiled.examples_per_second / ours.examples_per_second
        print(f"{'ours + torch.compile:':<52} {compiled.examples_per_second:7.1f} examples/s ({ratio:.2f}x ours)")


if __name__ == "__main__":
    main()
