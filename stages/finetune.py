"""finetune: fine-tune an encoder classifier with the Hugging Face Trainer.

    python -m stages.finetune <dataset key> [--resume]

`--resume` (or FINETUNE_RESUME=1, e.g. `FINETUNE_RESUME=1 dvc repro`) continues an interrupted run
from its last checkpoint in checkpoints/<key>/. Runs unchanged under
`accelerate launch -m stages.finetune <key>` or `torchrun -m stages.finetune <key>` on several GPUs.
"""

import shutil

from sentiment.io import model_facts, write_results
from sentiment.models.config import Recipe
from sentiment.models.training import finetune, rank_zero_dir, resume_argument, resume_requested, write_curves
from sentiment.paths import CHECKPOINTS, LIVE, data_dir, plots_dir
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    key = run.key
    resume = resume_requested(run.args)
    checkpoints = CHECKPOINTS / key
    recipe = Recipe.of(run.params)
    with rank_zero_dir(data_dir(key, "finetune")) as out:
        metrics = finetune(key, run.labels, recipe, out, checkpoints, resume=resume, live_dir=LIVE / key)
    if metrics is None:
        return
    write_curves(metrics.pop("curves"), plots_dir(key, "finetune"))
    facts = model_facts(key, "finetune")  # the model folder's head.json: its digest names it in bench records
    metrics.update(digest=facts["digest"], temperature=facts["temperature"])
    write_results(key, "finetune", metrics, {name: metrics["test"][name] for name in ("accuracy", "f1_macro")})
    shutil.rmtree(checkpoints, ignore_errors=True)
    dev, test = metrics["dev"], metrics["test"]
    print(
        f"[finetune:{key}] best epoch {metrics['best_epoch']}: dev acc {dev['accuracy']:.4f} F1 {dev['f1_macro']:.4f}; "
        f"test acc {test['accuracy']:.4f} F1 {test['f1_macro']:.4f}"
    )


if __name__ == "__main__":
    run_stage(main, __doc__, arguments=resume_argument)
