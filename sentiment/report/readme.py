"""README.md's results block: each dataset's models on test beside the reference efforts' published
figures, a line of headline findings per dataset, and the out-of-domain table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentiment.paths import PRIMARY, results_file
from sentiment.report.cards import FAILING, failing_tests, flagged_clause, test_suspects_clause
from sentiment.report.markdown import (
    END,
    NO_CURRENT_RECORD,
    START,
    current_records,
    datasets,
    fmt,
    load,
    reference,
    replace_block,
    table,
    with_ci,
)
from sentiment.serving.forms import FORMS


def label_audit_summary(audit: dict[str, Any], evaluate: dict[str, Any] | None) -> str:
    """One clause: train rows the label audit flags, how it ranks planted noise, the natural noise it
    estimates, and the test labels it finds suspect, with the share both the reference and the best baseline
    label otherwise."""
    text = flagged_clause(audit)
    if evaluate and (test := evaluate.get("test_label_audit")):
        text += f"; {test_suspects_clause(test)}"
    return text


def test_rows(key: str, root: Path) -> list[dict[str, Any]]:
    evaluate = load(root / results_file(key, "evaluate"))
    if evaluate is None:
        return [{"dataset": key, "model": "_not run yet_"}]
    published = reference(root, key).published
    note = {
        "finetune": "; ".join(v for k, v in published.items() if k.startswith("finetune")),
        "tfidf_lr": published.get("tfidf_lr_f1", ""),
    }
    return [
        {
            "dataset": key,
            "model": model,
            "test accuracy [95% CI]": with_ci(r["test"], "accuracy"),
            "test F1-macro [95% CI]": with_ci(r["test"], "f1_macro"),
            "ECE raw → scaled": f"{fmt(r['test']['calibration']['ece'])} → {fmt(r['test']['calibration_scaled']['ece'])}",
            "reference (published)": note.get(model) or "—",
        }
        for model, r in evaluate["models"].items()
    ]


def student_clause(student: dict[str, Any], evaluate: dict[str, Any] | None, key: str, root: Path) -> str:
    """The distilled student against its teacher on test, and its speed from the newest frontier record that
    measured the current models (or that there is none)."""
    test = student["test"]
    text = f"{len(student['layers'])}-layer student: accuracy {test['accuracy']:.4f}"
    if evaluate:
        text += f" ({test['accuracy'] - evaluate['models'][PRIMARY]['test']['accuracy']:+.4f})"
    text += f", {student['agreement_with_teacher']:.1%} agreement"
    speeds = []  # (speed-up of the fastest passing student form, its form, the record) from records of these models
    for path, record in current_records(root, "frontier", key):
        rows = [r for r in record["rows"] if r["model"] == "distill" and r["passes_gate"] and FORMS[r["form"]].auto]
        speeds += [(r["speedup_vs_teacher_torch"], r["form"], path, record) for r in rows]
    for path, record in current_records(root, "inference", key):
        if record.get("model") == "distill" and (base := record["forms"].get("teacher_torch")):
            rows = {f: r for f, r in record["forms"].items() if f in FORMS and FORMS[f].auto and r["passes_gate"]}
            speeds += [(r["batch_sentences_per_s"] / base["batch_sentences_per_s"], f, path, record) for f, r in rows.items()]
    if not speeds:
        return text + f", {NO_CURRENT_RECORD}"
    # the newest record's fastest (records are named <kind>_<date>-...: the date, not the kind, orders them)
    speedup, form, path, record = max(speeds, key=lambda s: (s[2].stem.split("_", 1)[1], s[0]))
    return text + f", {form} {speedup:.1f}x the teacher's torch fp32 ({record['machine']['cpu']}, {path.stem})"


def findings(key: str, root: Path) -> list[str]:
    """Clauses of what each stage found, for the dataset's headline line."""
    results = (root / results_file(key, "evaluate")).parent
    parts = []
    if (evaluate := load(results / "evaluate.json")) and evaluate.get("skipped"):
        parts.append("not fitted: " + ", ".join(f"{m} ({why})" for m, why in evaluate["skipped"].items()))
    if (attention := load(results / "attention.json")) is not None:
        ig, control = attention["methods"]["integrated_gradients"], attention["methods"]["random"]
        parts.append(
            f"integrated gradients comprehensiveness {ig['comprehensiveness']:.3f} (random {control['comprehensiveness']:.3f})"
        )
    if (export := load(results / "export.json")) is not None:
        others = {f: r for f, r in export["forms"].items() if f != "torch"}
        verdicts = []
        for verdict, passes in (("passes", True), ("fails", False)):
            if forms := [
                f"{f} {r['agreement_with_torch']:.3f}" for f, r in others.items() if bool(r.get("passes_gate")) == passes
            ]:
                verdicts.append(f"{verdict} {', '.join(forms)}")
        if verdicts:
            parts.append(f"export's gate (agreement with torch fp32) {'; '.join(verdicts)}")
    if (student := load(results / "distill.json")) is not None:
        parts.append(student_clause(student, evaluate, key, root))
    if (ablations := load(results / "ablations.json")) is not None:
        parts.append(f"best ablation cell on dev: {ablations['best_on_dev']}")
    if (audit := load(results / "label_issues.json")) is not None:
        parts.append(label_audit_summary(audit, evaluate))
    if (behavior := load(results / "behavior.json")) is not None:
        tests = behavior["models"][PRIMARY]["tests"]
        parts.append(f"fails {len(failing_tests(behavior))} of {len(tests)} behavioural tests at {FAILING:.0%} or more")
    return parts


def headline(root: Path) -> list[str]:
    entries = datasets(root)
    lines = [*table([row for key in entries for row in test_rows(key, root)]), ""]
    for key, entry in entries.items():
        if parts := findings(key, root):
            label = f"**{key}**, {entry.description}" if entry.description else f"**{key}**"
            lines.append(f"- {label}: " + "; ".join(parts) + ".")
    if any((root / results_file(key, "external")).exists() for key in entries):
        lines += ["", "In the wild (labelled sets from elsewhere, scored as torch fp32 and as served): docs/results.md."]
    return lines


def render(root: Path = Path(".")) -> str:
    lines = [
        START,
        "",
        "_Generated by `python -m sentiment.report` from `results/`; all tables: [docs/results.md](docs/results.md)._",
        "",
    ]
    return "\n".join([*lines, *headline(root), "", END])


def updated_readme(readme: str, root: Path = Path(".")) -> str:
    return replace_block(readme, render(root), "README.md")
