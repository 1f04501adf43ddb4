"""Which integrated-gradients baseline to use per encoder family, by measured completeness.

For each family's tiny checkpoint (tests/families.py), briefly trained on the toy task so its
output moves, and each baseline (pad, mask, zero embedding), runs IG at a fixed step count on a few
sentences and prints the mean completeness gap |sum(attributions) - (f(x) - f(baseline))| relative to
|f(x) - f(baseline)|, and the mean |f(x) - f(baseline)| itself (a baseline the output hardly moves
from explains little). Prints, asserts nothing.

    python bench/ig_baselines.py [--steps 16] [--save NAME]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from families import FAMILIES, build_checkpoint  # noqa: E402
from record import save  # noqa: E402
from sentiment.machine import machine

SENTENCES = ["the film was not good , but the acting was great", "a lovely wonderful story", "boring and awful plot ; dull"]


def measure(family: str, mirror: Path, steps: int) -> dict[str, dict[str, float]]:
    from sentiment.config import Params
    from sentiment.evaluation.attribution import AttentionConfig, integrated_gradients
    from sentiment.models.classifier import build_model, load_tokenizer
    from sentiment.models.config import ModelConfig

    hub_id = build_checkpoint(family, mirror)
    cfg = ModelConfig(name=hub_id, pooling="mean", dropout=0.0, scratch={"hidden_size": 8, "num_layers": 1, "num_heads": 1,
                      "intermediate_size": 8})  # fmt: skip
    tokenizer = load_tokenizer(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, tokenizer, 2, 64)
    # a few steps on the toy words, so the output depends on the input
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = tokenizer(["good great lovely", "bad awful boring"] * 8, padding=True, return_tensors="pt")
    labels = torch.tensor([1, 0] * 8)
    for _ in range(30):
        optimizer.zero_grad()
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss.backward()
        optimizer.step()
    model.eval()
    attention = Params.load(Path(__file__).resolve().parents[1] / "params.yaml").section(AttentionConfig, "attention")
    results = {}
    for baseline in ("pad", "mask", "zero"):
        gaps, moves = [], []
        for text in SENTENCES:
            enc = tokenizer(text, return_tensors="pt")
            fixed = {"ig_baseline": baseline, "ig_steps": steps, "ig_max_steps": steps, "ig_tolerance": 1e-9}
            run = attention.model_copy(update=fixed)
            _, info = integrated_gradients(model, tokenizer, enc["input_ids"], enc["attention_mask"], 1, run)
            gaps.append(info["relative_delta"])
            moves.append(info["output_change"])
        results[baseline] = {"relative_gap": float(np.mean(gaps)), "output_change": float(np.mean(moves))}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--save", metavar="NAME", help="also write docs/results/ig_baselines_NAME.json")
    args = parser.parse_args()
    mirror = Path(tempfile.mkdtemp(prefix="ig-mirror-"))
    os.environ["HUB_MIRROR"] = str(mirror)
    table = {family: measure(family, mirror, args.steps) for family in FAMILIES}
    print(f"IG at {args.steps} steps: mean relative completeness gap (mean |f(x) - f(baseline)|)")
    print("| family | pad | mask | zero |")
    print("| --- | --- | --- | --- |")
    for family, row in table.items():
        cells = [f"{row[b]['relative_gap']:.2%} ({row[b]['output_change']:.3f})" for b in ("pad", "mask", "zero")]
        print(f"| {family} | " + " | ".join(cells) + " |")
    if args.save:
        save("ig_baselines", args.save, {"machine": machine(), "steps": args.steps, "families": table})


if __name__ == "__main__":
    main()
