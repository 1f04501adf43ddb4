"""Training throughput: our configured training vs a reference-notebook-style set-up, side by side.

Both train the same model (params.yaml `model`) on the same SST-2 training rows on this machine:
  reference: every example padded to 128 tokens, random batches, fp32
  ours:      dynamic padding (DataCollatorWithPadding), length-grouped batches, `train.precision`
Prints examples/s for each and the ratio. Timings are printed, never asserted.

    python bench/train_throughput.py [--steps 40] [--dataset sst2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from transformers import DataCollatorWithPadding, Trainer, set_seed

from stages.common import load_params
from stages.data import label_names, read_clean
from stages.finetune import precision_flags, tokenize, training_arguments
from stages.models import build_model, load_tokenizer


def examples_per_second(params: dict, frame, *, reference: bool, steps: int) -> float:
    model_cfg, train_cfg = params["model"], dict(params["train"])
    tokenizer = load_tokenizer(model_cfg)
    names = label_names(params["datasets"]["sst2"])
    if reference:
        data = tokenize(frame, tokenizer, 128).map(
            lambda b: tokenizer.pad({"input_ids": b["input_ids"]}, padding="max_length", max_length=128), batched=True
        )
        train_cfg["precision"] = "fp32"
    else:
        data = tokenize(frame, tokenizer, train_cfg["max_length"])
    set_seed(0)
    model = build_model(model_cfg, tokenizer, len(names), train_cfg["max_length"])
    with tempfile.TemporaryDirectory() as tmp:
        args = training_arguments(train_cfg, 0, Path(tmp))
        args.max_steps, args.eval_strategy, args.save_strategy = steps, "no", "no"
        args.load_best_model_at_end, args.disable_tqdm = False, True
        if reference:
            args.train_sampling_strategy = "random"
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return steps * train_cfg["batch_size"] * train_cfg["grad_accum"] / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--dataset", default="sst2")
    args = parser.parse_args()
    params = load_params()
    frame = read_clean(args.dataset, "train").sample(4000, random_state=0)
    flags = precision_flags(params["train"]["precision"])
    ours_label = "bf16" if flags["bf16"] else "fp16" if flags["fp16"] else "fp32"
    ref = examples_per_second(params, frame, reference=True, steps=args.steps)
    ours = examples_per_second(params, frame, reference=False, steps=args.steps)
    print(
        f"model {params['model']['name']}, {args.steps} steps x batch {params['train']['batch_size']}, {args.dataset} train rows"
    )
    print(f"reference (pad to 128, random batches, fp32): {ref:8.1f} examples/s")
    print(f"ours (dynamic padding, length groups, {ours_label}):  {ours:8.1f} examples/s")
    print(f"speed-up: {ours / ref:.1f}x")


if __name__ == "__main__":
    main()
