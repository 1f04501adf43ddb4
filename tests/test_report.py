import json

import yaml

from conftest import REPO, repo_params
from sentiment.report.__main__ import generated_files
from sentiment.report.experiments import timing_tables
from sentiment.report.markdown import END, START
from sentiment.report.plots_template import build
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


def test_report_reads_results(tmp_path):
    datasets = {key: repo_params()["datasets"][key] for key in ("sst2", "tweets")}  # the report lists these, in order
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"datasets": datasets, "report": {"reference": {}}}))
    results = tmp_path / "results" / "sst2"
    results.mkdir(parents=True)
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
    (results / "evaluate.json").write_text(json.dumps(evaluate))
    (tmp_path / "metrics" / "sst2").mkdir(parents=True)  # headline figures only: the report does not read them
    (tmp_path / "metrics" / "sst2" / "evaluate.json").write_text(json.dumps({"accuracy": 0.1}))
    text = updated_readme(f"intro\n{START}\nold\n{END}\noutro\n", tmp_path)
    rows = [" ".join(line.split()) for line in text.splitlines()]  # to_markdown pads cells to the column width
    assert "| sst2 | finetune | 0.9000 [0.8800, 0.9200] | 0.8900 [0.8700, 0.9100] | 0.0500 → 0.0100 | — |" in rows
    assert text.endswith("outro\n") and "old" not in text and any(r.startswith("| tweets | _not run yet_") for r in rows)


def test_the_headline_says_which_forms_pass_export_gate(tmp_path):
    from sentiment.report.readme import findings

    results = tmp_path / "results" / "sst2"
    results.mkdir(parents=True)
    forms = {
        "torch": {"agreement_with_torch": 1.0, "passes_gate": True},
        "torch_bf16": {"agreement_with_torch": 0.9989, "passes_gate": True},
        "onnx_int8_dynamic": {"agreement_with_torch": 0.985, "passes_gate": False},
    }
    (results / "export.json").write_text(json.dumps({"forms": forms}))
    assert findings("sst2", tmp_path) == [
        "export's gate (agreement with torch fp32) passes torch_bf16 0.999; fails onnx_int8_dynamic 0.985"
    ]
    forms["torch_bf16"]["passes_gate"] = False
    (results / "export.json").write_text(json.dumps({"forms": forms}))
    assert findings("sst2", tmp_path) == [
        "export's gate (agreement with torch fp32) fails torch_bf16 0.999, onnx_int8_dynamic 0.985"
    ]


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


def test_speed_goals_are_judged_from_the_records(tmp_path):
    from sentiment.report.experiments import speed_goals

    results = tmp_path / "docs" / "results"
    results.mkdir(parents=True)
    avx2 = {"cpu": "some CPU", "cores": 2, "cpu_flags": ["avx2"]}
    serve = {"load_generator": "wrk -t1", "offline_sentences_per_s": 100.0, "offline_single_p50_ms": 3.0, "levels": [
        {"connections": 1, "p50_ms": 4.0}, {"connections": 32, "sentences_per_s": 95.0, "p99_ms": 200.0}]}  # fmt: skip
    (results / "serve_load_x.json").write_text(json.dumps({"machine": avx2, **serve}))
    same_answers = {"label_changes_vs_batch_1": {"8": 0, "64": 0}}
    forms = {
        "torch": {"batch_sentences_per_s": 100.0},
        "onnx_int8": {"batch_sentences_per_s": 160.0, "passes_gate": True, **same_answers},
        # faster and inside the gate's metric deltas, but its labels move with the batch: never the default
        "onnx_int8_dynamic": {"batch_sentences_per_s": 200.0, "passes_gate": True, "label_changes_vs_batch_1": {"8": 3}},
    }
    student_results(tmp_path, {"finetune": "aaaa", "distill": "bbbb"})  # the committed models' digests
    record = {"machine": avx2, "dataset": "sst2", "forms": forms}
    (results / "inference_x.json").write_text(json.dumps({**record, "model_digests": {"sst2/finetune": "aaaa"}}))
    # the same figures from earlier models (or a record that names none) judge nothing
    (results / "inference_old.json").write_text(json.dumps({**record, "model_digests": {"sst2/finetune": "zzzz"}}))
    (results / "inference_unnamed.json").write_text(json.dumps(record))
    amx = {**avx2, "cpu_flags": ["avx512_vnni", "amx_int8"]}
    student = {"torch": {"batch_sentences_per_s": 200.0}, "teacher_torch": {"batch_sentences_per_s": 100.0},
               "openvino_int8": {"batch_sentences_per_s": 500.0, "passes_gate": True, **same_answers}}  # fmt: skip
    digests = {"sst2/distill": "bbbb", "sst2/finetune": "aaaa"}
    (results / "inference_y.json").write_text(json.dumps({"machine": amx, "dataset": "sst2", "model": "distill",
        "baseline": "teacher_torch", "forms": student, "model_digests": digests}))  # fmt: skip
    for part, seconds in (("part1-a", 1200.0), ("part2-b", 1800.0)):
        record = {"machine": avx2, "note": "from an empty DVC cache", "repro": {"wall_seconds": seconds, "stages": {}}}
        (results / f"repro_run-{part}.json").write_text(json.dumps(record))
    rows = [row.split("|") for row in speed_goals(tmp_path)[4:-1]]
    met = {row[2].strip(): row[-2].strip() for row in rows}
    assert met == {
        "finetune sst2: default form (onnx_int8) vs torch fp32": "yes",  # 1.6x against 1.5x without VNNI
        "distill sst2: default form (openvino_int8) vs teacher torch fp32": "no",  # 5x against 6x with AMX
        "serve at 32 connections vs offline batched": "yes",
        "serve at 32 connections: p99": "no",
        "serve, lone client: p50 above offline batch 1": "yes",
        "dvc repro from an empty cache, 2 parts": "no",  # 50 minutes in all against 45
    }
    assert [row[1].strip() for row in rows].count("inference_x") == 1 and not any("inference_old" in r[1] for r in rows)


def student_results(root, digests: dict[str, str]) -> None:
    """results/sst2 for the README's student clause: the student's figures, and each model's committed digest."""
    results = root / "results" / "sst2"
    results.mkdir(parents=True, exist_ok=True)
    student = {"layers": [0, 2], "test": {"accuracy": 0.88}, "agreement_with_teacher": 0.95}
    (results / "distill.json").write_text(json.dumps({**student, "digest": digests["distill"]}))
    (results / "finetune.json").write_text(json.dumps({"digest": digests["finetune"]}))


def frontier(root, name: str, speedup: float, models: dict[str, str] | None) -> None:
    row = {"model": "distill", "form": "onnx", "passes_gate": True, "speedup_vs_teacher_torch": speedup}
    record = {"dataset": "sst2", "machine": {"cpu": "a CPU"}, "rows": [row], **({"model_digests": models} if models else {})}
    (root / "docs" / "results").mkdir(parents=True, exist_ok=True)
    (root / "docs" / "results" / f"frontier_{name}.json").write_text(json.dumps(record))


def student_clause_of(root) -> str:
    from sentiment.report.readme import findings

    return next(c for c in findings("sst2", root) if "student" in c)


def test_the_readme_quotes_a_speed_record_only_of_the_current_models(tmp_path):
    """A frontier record is quoted only when every model digest it names is the current one: the committed
    digest in results/<key>/<model>.json, or the model folder's own when it is there. Records without digests
    (older ones) never are; when none matches the README says so."""
    from sentiment.io import model_digest

    current = {"finetune": "aaaa", "distill": "bbbb"}
    student_results(tmp_path, current)
    frontier(tmp_path, "1-old", 3.2, None)  # before records named their models
    assert student_clause_of(tmp_path).endswith(", no speed record of the current models")
    frontier(tmp_path, "2-current", 2.5, {"sst2/finetune": "aaaa", "sst2/distill": "bbbb"})
    frontier(tmp_path, "3-other-student", 4.0, {"sst2/finetune": "aaaa", "sst2/distill": "cccc"})
    assert student_clause_of(tmp_path).endswith(", onnx 2.5x the teacher's torch fp32 (a CPU, frontier_2-current)")
    folder = tmp_path / "data" / "sst2" / "distill" / "model"  # the student as pulled: its own digest decides
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"other weights")
    assert model_digest(folder) != "bbbb"
    assert "no speed record of the current models" in student_clause_of(tmp_path)
    frontier(tmp_path, "4-pulled", 1.9, {"sst2/finetune": "aaaa", "sst2/distill": model_digest(folder)})
    assert student_clause_of(tmp_path).endswith(", onnx 1.9x the teacher's torch fp32 (a CPU, frontier_4-pulled)")


def test_a_record_matches_only_when_every_model_it_names_is_current(tmp_path):
    from sentiment.report.markdown import measured_current_models

    student_results(tmp_path, {"finetune": "aaaa", "distill": "bbbb"})
    cases = {
        "every digest current": ({"sst2/finetune": "aaaa", "sst2/distill": "bbbb"}, True),
        "one digest current": ({"sst2/finetune": "aaaa"}, True),
        "a stale digest": ({"sst2/finetune": "aaaa", "sst2/distill": "old"}, False),
        "a model with no digest now": ({"sst2/finetune": "aaaa", "tweets/finetune": "aaaa"}, False),
        "a malformed name": ({"finetune": "aaaa"}, False),
        "no models": ({}, False),
    }
    for case, (models, expected) in cases.items():
        assert measured_current_models({"model_digests": models}, {}, tmp_path) is expected, case
    assert measured_current_models({}, {}, tmp_path) is False
