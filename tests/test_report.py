import json

from conftest import REPO
from sentiment.plots_template import build
from sentiment.report.__main__ import generated_files
from sentiment.report.experiments import timing_tables
from sentiment.report.markdown import END, START
from sentiment.report.readme import updated_readme


def test_generated_documents_are_current():
    stale = [
        str(path.relative_to(REPO))
        for path, text in generated_files(REPO).items()
        if not path.exists() or path.read_text() != text
    ]
    assert not stale, f"out of date: {stale}: run `python -m sentiment.report`"


def test_readme_is_short():
    assert len((REPO / "README.md").read_bytes()) <= 15 * 1024


def test_report_reads_metrics(tmp_path):
    (tmp_path / "params.yaml").write_text("datasets:\n  sst2: {}\n  tweets: {}\n")  # the report lists these, in order
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
    rows = [" ".join(line.split()) for line in text.splitlines()]  # to_markdown pads cells to the column width
    assert "| sst2 | finetune | 0.9000 [0.8800, 0.9200] | 0.8900 [0.8700, 0.9100] | 0.0500 → 0.0100 | — |" in rows
    assert text.endswith("outro\n") and "old" not in text and any(r.startswith("| tweets | _not run yet_") for r in rows)


def test_timing_tables_come_from_the_saved_runs(tmp_path):
    (tmp_path / "docs" / "results").mkdir(parents=True)
    run = {"machine": "a CPU, 2 cores", "note": "n", "repro": {"wall_seconds": 12.3, "stages": {"split@a": 4.4, "clean@a": 7.9}}}
    (tmp_path / "docs" / "results" / "repro_x.json").write_text(json.dumps(run))
    table = " ".join(timing_tables(tmp_path).split())
    assert "| split@a | 4 |" in table and "| clean@a | 8 |" in table and "**12**" in table and "a CPU, 2 cores" in table


def test_readme_families_table_is_what_the_code_does():
    from test_families import EXPECTED_ATTENTION, EXPECTED_BASELINE

    names = {"BERT (MiniLM)": "bert", "DistilBERT": "distilbert", "ELECTRA": "electra", "RoBERTa": "roberta",
             "XLM-RoBERTa": "xlm-roberta", "ALBERT": "albert", "DeBERTa-v2": "deberta-v2", "DeBERTa-v3": "deberta-v3",
             "MPNet": "mpnet", "ModernBERT": "modernbert"}  # fmt: skip
    lines = (REPO / "README.md").read_text().splitlines()
    rows = [line.split(" | ") for line in lines if line.startswith("| ") and (" | sdpa |" in line or " | eager |" in line)]
    documented = {}
    for cells in rows:
        for family in cells[0].removeprefix("| ").split(", "):
            documented[names[family]] = (cells[2], cells[3].removesuffix(" |"))
    assert documented == {f: (EXPECTED_ATTENTION[f], EXPECTED_BASELINE[f]) for f in EXPECTED_ATTENTION}


def test_offline_plots_template_inlines_vega(tmp_path):
    html = build(tmp_path / "t.html").read_text()
    assert html.count("{plot_divs}") == 1 and "cdn.jsdelivr" not in html and "vegaEmbed" in html
