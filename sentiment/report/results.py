"""docs/results.md: every dataset's detailed tables, from its results files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentiment.config import DatasetConfig
from sentiment.evaluation.label_audit import NOISE_KINDS
from sentiment.paths import HELD_OUT, PRIMARY, results_file
from sentiment.report.markdown import datasets, delta, fmt, interval, load, p_value, reference, table, with_ci


def models_table(evaluate: dict[str, Any]) -> list[str]:
    rows = []
    for model, r in evaluate["models"].items():
        for split in HELD_OUT:
            f = r[split]
            rows.append(
                {
                    "model": model,
                    "split": split,
                    "accuracy [95% CI]": with_ci(f, "accuracy") if split == "test" else fmt(f["accuracy"]),
                    "F1-macro [95% CI]": with_ci(f, "f1_macro") if split == "test" else fmt(f["f1_macro"]),
                    "ECE": fmt(f["calibration"]["ece"]),
                    "ECE after temperature scaling": f"{fmt(f['calibration_scaled']['ece'])} (T={r['temperature']:.2f})",
                }
            )
    return table(rows)


def dataset_section(key: str, entry: DatasetConfig, root: Path) -> list[str]:
    results = (root / results_file(key, "evaluate")).parent
    evaluate = load(results / "evaluate.json")
    lines = [f"### {key}: {entry.description}" if entry.description else f"### {key}", ""]
    if evaluate is None:
        return [*lines, "_not run yet_", ""]
    lines += [*models_table(evaluate), ""]
    for name, test in evaluate.get("mcnemar_test", {}).items():
        lines.append(
            f"McNemar exact test on test, {name.replace('_vs_', ' vs ')}: {test['a_right_b_wrong']} vs "
            f"{test['a_wrong_b_right']} discordant rows, p {p_value(test['p_value'])}."
        )
    if evaluate.get("skipped"):
        lines += ["", "Not fitted: " + "; ".join(f"{name} ({why})" for name, why in evaluate["skipped"].items()) + "."]
    quoted = reference(root, key)
    lines += slices_section(results, quoted.slices) + attention_section(results)
    lines += ablation_section(results, quoted.ablations) + export_section(results)
    lines += external_section(results) + behavior_section(results) + label_audit_section(results)
    lines += suspect_test_labels_section(evaluate, key)
    if published := quoted.published:
        lines += [
            "",
            "Published by the reference efforts (not rerun here): "
            + "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in published.items())
            + ".",
        ]
    lines.append("")
    return lines


def label_audit_section(results: Path) -> list[str]:
    """The training-label audit: rows flagged per given class, the estimated joint, the planted-noise check."""
    audit = load(results / "label_issues.json")
    if not audit:
        return []
    names = list(audit["per_class"])
    rows = [
        {
            "given label": name,
            "rows": r["rows"],
            "flagged": r["flagged"],
            "rate": f"{r['flagged_rate']:.4f}",
            **{f"P(given, true={t})": f"{audit['joint_given_true'][name][t]:.4f}" for t in names},
        }
        for name, r in audit["per_class"].items()
    ]
    lines = [
        "",
        f"Training-label audit (cleanlab `{audit['filter_by']}` on {audit['folds']}-fold out-of-fold {audit['model']} "
        f"probabilities, {audit['rows_audited']} train rows, out-of-fold accuracy {audit['out_of_fold_accuracy']:.4f}); "
        "estimated joint P(given, true) beside the rows flagged:",
        "",
        *table(rows),
    ]
    if planted := audit.get("planted"):
        lines += planted_lines(planted)
    return lines


RANKING = (("AUROC", "auroc"), ("average precision", "average_precision"), ("recall at 2×", "recall_at_2x_budget"))


def planted_lines(planted: dict[str, Any]) -> list[str]:
    """The planted-noise check, both populations side by side: the ranking figures over the rows that could be
    planted (the headline's) and over every audited row, where the rows flagged on the given labels, never
    planted, count as false alarms; and the flags' and the budget's precision and recall on the plantable rows."""
    rows = []
    for kind in NOISE_KINDS:
        r = planted[kind]
        row = {"noise": kind, "planted": r["planted"], "plantable rows": r["plantable_rows"]}
        for label, name in RANKING:
            row[f"{label}, plantable"] = fmt(r[name])
            row[f"{label}, all rows"] = fmt(r["all_rows"][name])
        row |= {
            "precision at budget": fmt(r["precision_at_budget"]),
            "flags' precision": fmt(r["precision"]),
            "flags' recall": fmt(r["recall"]),
        }
        rows.append(row)
    return [
        "",
        f"On labels planted wrong on purpose (seed {planted['seed']}), only among the rows not flagged on the given labels "
        f"({planted['excluded_flagged_rows']} are): ranked by cleanlab's label-quality score over those plantable rows and, "
        "for comparison, over all audited rows, where the flagged rows, never planted and scored lowest, count as false "
        "alarms; recall at 2× among the 2 × planted lowest-scored rows; precision at budget among as many lowest-scored "
        "plantable rows as were planted (equal to recall there); the flags' precision and recall on the plantable rows:",
        "",
        *table(rows),
    ]


def suspect_test_labels_section(evaluate: dict[str, Any], key: str) -> list[str]:
    """The test-label audit: suspects, the share both the reference and the best baseline label otherwise, and
    where the list is."""
    test = evaluate.get("test_label_audit")
    if not test:
        return []
    reference, shown, both = test.get("reference", PRIMARY), test.get("shown", test["suspects"]), ""
    if test.get("baseline") and test.get("disputed_by_both_share") is not None:
        both = (
            f"; {reference} and {test['baseline']} both label {test['disputed_by_both']} of them "
            f"({test['disputed_by_both_share']:.1%}) otherwise than given"
        )
    return [
        "",
        f"Test-label audit (cleanlab `{test['filter_by']}` on {reference}'s test probabilities; "
        f"reporting only): {test['suspects']} of {test['test_rows']} test labels suspect{both}; the {shown} lowest "
        f"in label quality: `plots/{key}/evaluate/suspect_test_labels.csv`.",
    ]


def slices_section(results: Path, quoted: str | None) -> list[str]:
    slices = load(results / "slices.json")
    if not slices:
        return []
    models = list(slices)

    def cell(r: dict[str, Any]) -> str:
        if r["accuracy"] is None:
            return "—"
        low, high = r["accuracy_ci95"]
        return f"{r['accuracy']:.4f} [{fmt(low)}, {fmt(high)}] ({r['accuracy_delta']:+.4f})"

    rows = [
        {"slice": name, "n": row["n"], **{model: cell(slices[model][name]) for model in models}}
        for name, row in slices[models[0]].items()
    ]
    lines = ["", "Test slices (accuracy, 95% CI, difference from all of test):", "", *table(rows)]
    return lines + (["", quoted] if quoted else [])


def faithfulness_verdict(name: str, r: dict[str, Any]) -> str:
    if name == "random":
        return "control"
    beats = [m for m in ("comprehensiveness", "sufficiency") if r[f"beats_random_{m}"]]
    return "both" if len(beats) == 2 else f"{beats[0]} only" if beats else "no"


def attention_section(results: Path) -> list[str]:
    report = load(results / "attention.json")
    if not report:
        return []
    rows = [
        {
            "method": name,
            "comprehensiveness": f"{r['comprehensiveness']:.4f}",
            "sufficiency": f"{r['sufficiency']:.4f}",
            "beats random?": faithfulness_verdict(name, r),
        }
        for name, r in report["methods"].items()
    ]
    lines = [
        "",
        f"Attribution faithfulness on {report['n_examples']} test examples (ERASER, averaged over top "
        f"{', '.join(f'{f:.0%}' for f in report['fractions'])} of tokens; comprehensiveness higher is better, "
        "sufficiency lower is better):",
        "",
        *table(rows),
    ]
    ig = report.get("integrated_gradients")
    if ig and ig.get("relative_delta_mean") is not None:
        lines += [
            "",
            f"Integrated gradients: {ig['baseline']} baseline, {ig['steps_mean']:.0f} steps on average; completeness gap "
            f"|sum of attributions - (f(x) - f(baseline))| {ig['relative_delta_mean']:.2%} of |f(x) - f(baseline)| on average, "
            f"{ig['relative_delta_max']:.2%} at most; {ig['unconverged']} examples short of attention.ig_tolerance.",
        ]
    return lines


def ablation_section(results: Path, quoted: str | None) -> list[str]:
    report = load(results / "ablations.json")
    if not report:
        return []
    rows = [
        {
            "config": name,
            "seeds": r["seeds"],
            "dev F1-macro": f"{r['dev_f1_macro']:.4f} ± {r['dev_f1_macro_std']:.4f}" if "dev_f1_macro" in r else "—",
            "dev accuracy": f"{r['dev_accuracy']:.4f} ± {r['dev_accuracy_std']:.4f}",
            "test accuracy": f"{r['test_accuracy']:.4f} ± {r['test_accuracy_std']:.4f}",
            "test delta vs final": delta(r["test_accuracy_delta_vs_final"]),
        }
        for name, r in report["configs"].items()
    ]
    lines = ["", f"Ablations ({report['note']}); mean ± std over seeds:", "", *table(rows)]
    return lines + ["", f"Best on dev: {report['best_on_dev']}." + (f" {quoted}" if quoted else "")]


def export_section(results: Path) -> list[str]:
    report = load(results / "export.json")
    if not report:
        return []
    rows = [
        {
            "form": form,
            "accuracy": f"{r['accuracy']:.4f}",
            "delta vs torch": f"{r['accuracy_delta_vs_torch']:+.4f}",
            "F1-macro": f"{r['f1_macro']:.4f}",
            "F1 delta vs torch": f"{r['f1_macro_delta_vs_torch']:+.4f}",
            "labels as torch": f"{r['agreement_with_torch']:.4f}",
            "passes the gate": {True: "yes", False: "no", None: "—"}[r.get("passes_gate")],
            "size MB": f"{r['size_mb']:.1f}",
        }
        for form, r in report["forms"].items()
    ]
    return [
        "",
        f"Exported forms of the fine-tuned model on test (n={report['n_test']}; gate: {report['goal']}; "
        "speed: `python bench/inference.py`):",
        "",
        *table(rows),
    ]


def external_rows(key: str, report: dict[str, Any], full: bool) -> list[dict[str, Any]]:
    """One row per external set and model: accuracy with its interval beside the in-domain test figure."""
    rows = []
    for name, entry in report["sets"].items():
        for model, f in entry["models"].items():
            within = f.get("accuracy_within_set_labels")
            row = {
                "dataset": key,
                "external set": f"{name} (n={entry['n']})",
                "model": model,
                "in-domain test accuracy": f"{f['in_domain_accuracy']:.4f}",
                "accuracy [95% CI]": f"{f['accuracy']:.4f} {interval(f['accuracy_ci95'])}",
                "accuracy within its labels": "—" if within is None else f"{within:.4f}",
            }
            if full:
                row["F1-macro [95% CI]"] = f"{f['f1_macro']:.4f} {interval(f['f1_macro_ci95'])}"
                row["ECE → scaled"] = f"{f['ece']:.4f} → {f['ece_scaled']:.4f}"
            rows.append(row)
    return rows


def external_section(results: Path) -> list[str]:
    report = load(results / "external.json")
    if not report:
        return []
    return [
        "",
        f"External sets (forms {', '.join(report['forms'])}, long texts: {report['long_text']}; `finetune_truncate` reads "
        "only the first max_length tokens; ECE before → after the in-domain temperature):",
        "",
        *table(external_rows(results.name, report, full=True)),
    ]


def behavior_section(results: Path) -> list[str]:
    report = load(results / "behavior.json")
    if not report:
        return []
    rows = [
        {
            "test": name,
            "capability": t["capability"],
            "kind": t["kind"],
            "n": t["n"],
            **{
                model: f"{r['tests'][name]['failure_rate']:.3f} {interval(r['tests'][name]['ci95'])}"
                for model, r in report["models"].items()
            },
        }
        for name, t in report["models"][PRIMARY]["tests"].items()
    ]
    lines = ["", "Behavioural tests (failure rate [95% Wilson interval]; templates in `data/behavior/templates.yaml`):", ""]
    lines += table(rows) if rows else ["_every test skipped_"]
    if report.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(f"{name} ({why})" for name, why in report["skipped"].items()) + "."]
    return lines


def results_page(root: Path = Path(".")) -> str:
    lines = ["# Results", "", "_Generated by `python -m sentiment.report` from `results/`; do not edit by hand._", ""]
    for key, entry in datasets(root).items():
        lines += dataset_section(key, entry, root)
    return "\n".join(lines).rstrip("\n") + "\n"
