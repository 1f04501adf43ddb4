"""card: a markdown and a JSON model card per dataset, generated from its results files, so DVC
regenerates them whenever a figure changes.

    python -m stages.card <dataset key>
"""

from sentiment.io import atomic_path, write_json
from sentiment.paths import report_dir
from sentiment.report.cards import card_json, card_markdown, card_params, read_results
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    params, results = card_params(run.key, run.params), read_results(run.key)
    card = card_json(params, results)
    out = report_dir(run.key)
    write_json(out / "model_card.json", card)
    with atomic_path(out / "MODEL_CARD.md") as tmp:
        tmp.write_text(card_markdown(params, results, card))
    print(f"[card:{run.key}] wrote {out / 'MODEL_CARD.md'} and {out / 'model_card.json'}")


if __name__ == "__main__":
    run_stage(main, __doc__)
