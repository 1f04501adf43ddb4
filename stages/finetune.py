"""finetune: fine-tune an encoder classifier with the Hugging Face Trainer.

    python -m stages.finetune <dataset key> [--resume]

`--resume` (or FINETUNE_RESUME=1, e.g. `FINETUNE_RESUME=1 dvc repro`) continues an interrupted run
from its last checkpoint in checkpoints/<key>/. Runs unchanged under
`accelerate launch -m stages.finetune <key>` or `torchrun -m stages.finetune <key>` on several GPUs.
"""

import os
import shutil
from contextlib import nullcontext

from sentiment.io import atomic_dir, write_csv, write_results
from sentiment.models.training import finetune, is_main_process
from sentiment.paths import CHECKPOINTS, LIVE, data_dir, plots_dir
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    key = run.key
    resume = run.args.resume or os.environ.get("FINETUNE_RESUME", "") not in ("", "0")
    checkpoints = CHECKPOINTS / key
    # one writer: were every rank to swap in its own temporary directory, the last to finish would replace rank 0's
    with atomic_dir(data_dir(key, "finetune")) if is_main_process() else nullcontext(None) as out:
        metrics = finetune(key, run.params, out, checkpoints, resume=resume, live_dir=LIVE / key)
    if metrics is None:
        return
    steps, epochs = metrics.pop("curves")
    write_csv(steps, plots_dir(key, "finetune") / "train_loss.csv")
    write_csv(epochs, plots_dir(key, "finetune") / "dev_curve.csv")
    write_results(key, "finetune", metrics, {name: metrics["test"][name] for name in ("accuracy", "f1_macro")})
    shutil.rmtree(checkpoints, ignore_errors=True)
    dev, test = metrics["dev"], metrics["test"]
    print(
        f"[finetune:{key}] best epoch {metrics['best_epoch']}: dev acc {dev['accuracy']:.4f} F1 {dev['f1_macro']:.4f}; "
        f"test acc {test['accuracy']:.4f} F1 {test['f1_macro']:.4f}"
    )


if __name__ == "__main__":
    run_stage(
        main,
        __doc__,
        arguments=lambda p: p.add_argument("--resume", action="store_true", help="continue from the last checkpoint"),
    )
