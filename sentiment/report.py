"""Fill the README's results tables from the committed metrics files, so the two cannot drift.

python -m sentiment.report           # rewrite the block between the markers in README.md
python -m sentiment.report --check   # exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

START, END = "<!-- results:start -->", "<!-- results:end -->"

# Figures published by the efforts this pipeline replaces (quoted from their reports, not measured here).
REFERENCE = {
    "sst2": {"finetune_accuracy": "0.9014 (DistilBERT, GPU)", "finetune_ece": "0.059 (no scaling)"},
    "tweets": {"finetune_f1": "0.668 (BERT-base)", "tfidf_lr_f1": "0.637 dev / 0.623 test (40% of train)"},
}


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _delta(value: float | None) -> str:
    return "—" if value is None else f"{value:+.4f}"


def _p_value(p: float) -> str:
    return "< 1e-6" if p < 1e-6 else f"= {p:.3g}"


def _ci(figures: dict[str, Any], name: str) -> str:
    low, high = figures.get("ci95", {}).get(name, [None, None])
    return f"{_fmt(figures[name])} [{_fmt(low)}, {_fmt(high)}]"


def dataset_section(key: str, root: Path) -> list[str]:
    metrics = root / "metrics" / key
    evaluate = _load(metrics / "evaluate.json")
    lines = [f"### {key}", ""]
    if evaluate is None:
        return [*lines, "_not run yet_", ""]
    ref = REFERENCE.get(key, {})
    lines += [
        "| model | split | accuracy [95% CI] | F1-macro [95% CI] | ECE | ECE after temperature scaling |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for model, r in evaluate["models"].items():
        for split in ("dev", "test"):
            f = r[split]
            acc = _ci(f, "accuracy") if split == "test" else _fmt(f["accuracy"])
            f1 = _ci(f, "f1_macro") if split == "test" else _fmt(f["f1_macro"])
            lines.append(
                f"| {model} | {split} | {acc} | {f1} | {_fmt(f['calibration']['ece'])} | "
                f"{_fmt(f['calibration_scaled']['ece'])} (T={r['temperature']:.2f}) |"
            )
    lines.append("")
    for name, test in evaluate.get("mcnemar_test", {}).items():
        lines.append(
            f"McNemar exact test on test, {name.replace('_vs_', ' vs ')}: {test['a_right_b_wrong']} vs "
            f"{test['a_wrong_b_right']} discordant rows, p {_p_value(test['p_value'])}."
        )
    lines += slices_section(key, metrics) + attribution_section(metrics) + ablation_section(metrics) + export_section(metrics)
    if ref:
        lines += [
            "",
            "Published by the reference efforts (not rerun here): "
            + "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in ref.items())
            + ".",
        ]
    lines.append("")
    return lines


def slices_section(key: str, metrics: Path) -> list[str]:
    slices = _load(metrics / "slices.json")
    if not slices:
        return []
    models = list(slices)
    lines = [
        "",
        "Test slices (accuracy, 95% CI, difference from all of test):",
        "",
        "| slice | n | " + " | ".join(models) + " |",
        "| --- | --- | " + " | ".join("---" for _ in models) + " |",
    ]
    for name, row in slices[models[0]].items():
        cells = []
        for model in models:
            r = slices[model][name]
            if r["accuracy"] is None:
                cells.append("—")
                continue
            low, high = r["accuracy_ci95"]
            cells.append(f"{r['accuracy']:.4f} [{_fmt(low)}, {_fmt(high)}] ({r['accuracy_delta']:+.4f})")
        lines.append(f"| {name} | {row['n']} | " + " | ".join(cells) + " |")
    if key == "sst2":
        lines += [
            "",
            "Reference run (DistilBERT, same 872 sentences): negation n=189 acc 0.8836; contrast n=130 acc 0.8538; all 0.9014.",
        ]
    return lines


def attribution_section(metrics: Path) -> list[str]:
    report = _load(metrics / "attribution.json")
    if not report:
        return []
    lines = [
        "",
        f"Attribution faithfulness on {report['n_examples']} test examples (ERASER, averaged over top "
        f"{', '.join(f'{f:.0%}' for f in report['fractions'])} of tokens; comprehensiveness higher is better, "
        "sufficiency lower is better):",
        "",
        "| method | comprehensiveness | sufficiency | beats random? |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in report["methods"].items():
        verdict = (
            "control"
            if name == "random"
            else (
                "both"
                if r["beats_random_comprehensiveness"] and r["beats_random_sufficiency"]
                else "comprehensiveness only"
                if r["beats_random_comprehensiveness"]
                else "sufficiency only"
                if r["beats_random_sufficiency"]
                else "no"
            )
        )
        lines.append(f"| {name} | {r['comprehensiveness']:.4f} | {r['sufficiency']:.4f} | {verdict} |")
    return lines


def ablation_section(metrics: Path) -> list[str]:
    report = _load(metrics / "ablations.json")
    if not report:
        return []
    lines = [
        "",
        f"Ablations ({report['note']}); mean ± std over seeds:",
        "",
        "| config | seeds | dev accuracy | test accuracy | test delta vs final |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in report["configs"].items():
        lines.append(
            f"| {name} | {r['seeds']} | {r['dev_accuracy']:.4f} ± {r['dev_accuracy_std']:.4f} | "
            f"{r['test_accuracy']:.4f} ± {r['test_accuracy_std']:.4f} | {_delta(r['test_accuracy_delta_vs_final'])} |"
        )
    lines += [
        "",
        f"Best on dev: {report['best_on_dev']}. Reference run (one seed each, full training): pooling cls 0.9014, "
        "mean 0.8968; dropout 0.1 0.9014, 0.0 0.9025.",
    ]
    return lines


def export_section(metrics: Path) -> list[str]:
    report = _load(metrics / "export.json")
    if not report:
        return []
    lines = [
        "",
        f"Exported forms of the fine-tuned model on test (n={report['n_test']}; speed: `python bench/inference.py`):",
        "",
        "| form | accuracy | delta vs fp32 | F1-macro | delta vs fp32 | labels as fp32 | size MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for form, r in report["forms"].items():
        lines.append(
            f"| {form} | {r['accuracy']:.4f} | {r['accuracy_delta_vs_fp32']:+.4f} | {r['f1_macro']:.4f} | "
            f"{r['f1_macro_delta_vs_fp32']:+.4f} | {r['agreement_with_fp32']:.4f} | {r['size_mb']:.1f} |"
        )
    return lines


def render(root: Path = Path(".")) -> str:
    lines = [START, "", "_Generated by `python -m sentiment.report` from `metrics/`; do not edit by hand._", ""]
    for key in ("sst2", "tweets"):
        lines += dataset_section(key, root)
    lines.append(END)
    return "\n".join(lines)


def updated_readme(readme: str, root: Path = Path(".")) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the markers {START} … {END}")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + render(root) + tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md is out of date")
    args = parser.parse_args()
    readme = Path("README.md")
    text = readme.read_text()
    new = updated_readme(text)
    if args.check:
        if new != text:
            print("README.md results are out of date: run `python -m sentiment.report`", file=sys.stderr)
            sys.exit(1)
        return
    readme.write_text(new)


if __name__ == "__main__":
    main()
