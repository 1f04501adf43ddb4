"""Training throughput: our configured training vs a reference-notebook-style set-up, side by side.

Both train the same model (params.yaml `model`) on the same SST-2 training rows on this machine:
  reference: every example padded to 128 tokens, random batches, fp32, every weight trained
  ours:      dynamic padding (DataCollatorWithPadding), length-grouped batches, `train.precision`,
             `train.freeze_embeddings`
  ours + torch.compile: the same with `train.torch_compile: true`
Prints examples/s for each (the first `--warmup` steps, which include compilation, are not
timed) and the ratios. Timings are printed, never asserted. `--profile` adds a run of ours under
torch.profiler and prints where the time of its timed steps goes, by operator.

    python bench/train_throughput.py [--steps 40] [--warmup 5] [--dataset sst2] [--no-compile] [--profile]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from torch.profiler import ProfilerActivity, profile
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, set_seed

from stages.common import load_params
from stages.data import label_names, read_clean
from stages.finetune import build_trainable, precision_flags, tokenize, training_arguments
from stages.models import load_tokenizer


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


def examples_per_second(
    params: dict,
    dataset: str,
    frame,
    *,
    reference: bool,
    steps: int,
    warmup: int,
    compile: bool = False,
    profiler: profile | None = None,
) -> float:
    model_cfg, train_cfg = params["model"], dict(params["train"])
    train_cfg["torch_compile"] = compile
    tokenizer = load_tokenizer(model_cfg)
    names = label_names(params["datasets"][dataset])
    if reference:
        data = tokenize(frame, tokenizer, 128)
        features = [c for c in data.column_names if c != "labels"]
        data = data.map(lambda b: tokenizer.pad({c: b[c] for c in features}, padding="max_length", max_length=128), batched=True)
        train_cfg["precision"] = "fp32"
        train_cfg["freeze_embeddings"] = False
    else:
        data = tokenize(frame, tokenizer, train_cfg["max_length"])
    set_seed(0)
    model = build_trainable(model_cfg, train_cfg, tokenizer, len(names))
    with tempfile.TemporaryDirectory() as tmp:
        args = training_arguments(train_cfg, 0, Path(tmp))
        args.max_steps, args.eval_strategy, args.save_strategy = steps, "no", "no"
        args.load_best_model_at_end, args.disable_tqdm = False, True
        if reference:
            args.train_sampling_strategy = "random"
        clock = StepClock(warmup, profiler)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            callbacks=[clock],
        )
        trainer.train()
    return (steps - warmup) * train_cfg["batch_size"] * train_cfg["grad_accum"] / (clock.end - clock.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="steps not timed (compilation, allocator warm-up)")
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    parser.add_argument("--profile", action="store_true", help="print an operator breakdown of our timed steps")
    args = parser.parse_args()
    params = load_params()
    frame = read_clean(args.dataset, "train").sample(4000, random_state=0)
    flags = precision_flags(params["train"]["precision"])
    ours_label = "bf16" if flags["bf16"] else "fp16" if flags["fp16"] else "fp32"
    ref = examples_per_second(params, args.dataset, frame, reference=True, steps=args.steps, warmup=args.warmup)
    ours = examples_per_second(params, args.dataset, frame, reference=False, steps=args.steps, warmup=args.warmup)
    print(
        f"model {params['model']['name']}, {args.steps} steps x batch {params['train']['batch_size']}, {args.dataset} train rows"
    )
    print(f"reference (pad to 128, random batches, fp32): {ref:8.1f} examples/s")
    print(f"ours (dynamic padding, length groups, {ours_label}):  {ours:8.1f} examples/s")
    print(f"speed-up: {ours / ref:.1f}x")
    if args.profile:  # a separate run, so the profiler's overhead stays out of the figures above
        profiler = profile(activities=[ProfilerActivity.CPU])
        examples_per_second(params, args.dataset, frame, reference=False, steps=args.steps, warmup=args.warmup, profiler=profiler)
        print("where the time of our timed steps goes, by operator:")
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    if not args.no_compile:
        compiled = examples_per_second(
            params, args.dataset, frame, reference=False, steps=args.steps, warmup=args.warmup, compile=True
        )
        print(f"ours + torch.compile:                           {compiled:8.1f} examples/s ({compiled / ours:.2f}x ours)")


if __name__ == "__main__":
    main()
