"""ablation_cell: one cell of the ablation grid, trained on the light budget; keeps its figures, not its model.

python -m stages.ablation_cell <dataset key> <pretrained|scratch> <pooling> <dropout> <seed>
"""

import shutil
import typing

from sentiment.io import atomic_dir, write_json
from sentiment.models.ablation import Encoder, cell_model, cell_name
from sentiment.models.config import EncoderChoice, LightBudget, Recipe
from sentiment.models.training import finetune
from sentiment.paths import CHECKPOINTS, ablation_cell_dir
from sentiment.stage import Run, run_stage


def arguments(parser) -> None:
    parser.add_argument("encoder", choices=typing.get_args(Encoder))
    parser.add_argument("pooling", choices=["cls", "mean"])
    parser.add_argument("dropout", help="as dvc.yaml spells it, e.g. 0.1")
    parser.add_argument("seed", type=int)


def main(run: Run) -> None:
    a = run.args
    name = cell_name(a.encoder, a.pooling, a.dropout, a.seed)
    checkpoints = CHECKPOINTS / f"{run.key}-{name}"
    budget = run.section(LightBudget, "light")
    model = cell_model(run.section(EncoderChoice, "model"), a.encoder, a.pooling, float(a.dropout))
    recipe = Recipe.of(run.params, model=model, seed=a.seed).light(budget)
    with atomic_dir(ablation_cell_dir(run.key, name)) as out:
        metrics = finetune(run.key, run.labels, recipe, out, checkpoints, train_fraction=budget.train_fraction)
        shutil.rmtree(out / "model")  # the summary needs figures, not 90 MB per cell
        metrics.pop("curves")
        write_json(out / "metrics.json", metrics)
    shutil.rmtree(checkpoints, ignore_errors=True)
    print(f"[ablation:{run.key}] {name}: dev acc {metrics['dev']['accuracy']:.4f}, test acc {metrics['test']['accuracy']:.4f}")


if __name__ == "__main__":
    run_stage(main, __doc__, arguments=arguments)
