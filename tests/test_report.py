import json

from stages.plots_template import build
from stages.report import END, START, updated_readme


def test_readme_results_are_generated_from_the_committed_metrics():
    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    assert updated_readme(readme, REPO) == readme, "README.md is stale: run `python -m stages.report`"


def test_report_reads_metrics(tmp_path):
    metrics = tmp_path / "metrics" / "sst2"
    metrics.mkdir(parents=True)
    figures = {"accuracy": 0.9, "f1_macro": 0.89, "calibration": {"ece": 0.05}, "calibration_scaled": {"ece": 0.01}}
    evaluate = {
        "models": {
            "finetune": {
                "temperature": 1.5,
                "dev": figures,
                "test": {**figures, "ci95": {"accuracy": [0.88, 0.92], "f1_macro": [0.87, 0.91]}},
            }
        }
    }
    (metrics / "evaluate.json").write_text(json.dumps(evaluate))
    text = updated_readme(f"intro\n{START}\nold\n{END}\noutro\n", tmp_path)
    assert "| finetune | test | 0.9000 [0.8800, 0.9200] |" in text and text.endswith("outro\n") and "old" not in text


def test_offline_plots_template_inlines_vega(tmp_path):
    html = build(tmp_path / "t.html").read_text()
    assert html.count("{plot_divs}") == 1 and "cdn.jsdelivr" not in html and "vegaEmbed" in html
