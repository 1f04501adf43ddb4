"""The generated documents: README.md's results block and docs/results.md from metrics/, docs/experiments.md's
timings from docs/results/, so no figure in them is typed by hand.

python -m sentiment.report           # rewrite them
python -m sentiment.report --check   # exit 1 if one is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sentiment.config import load_params
from sentiment.paths import metrics_file

START, END = "<!-- results:start -->", "<!-- results:end -->"


def reference(root: Path, key: str) -> dict[str, Any]:
    """params.yaml `report.reference.<key>`: figures the efforts this pipeline replaces published (quoted)."""
    return ((load_params(root / "params.yaml").get("report") or {}).get("reference") or {}).get(key) or {}


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
    metrics = (root / metrics_file(key, "evaluate")).parent
    evaluate = _load(metrics / "evaluate.json")
    lines = [f"### {key}", ""]
    if evaluate is None:
        return [*lines, "_not run yet_", ""]
    ref = reference(root, key).get("published", {})
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
    quoted = reference(root, key)
    lines += slices_section(metrics, quoted.get("slices")) + attribution_section(metrics)
    lines += ablation_section(metrics, quoted.get("ablations")) + export_section(metrics)
    lines += external_section(metrics) + behavior_section(metrics) + label_audit_section(metrics)
    if ref:
        lines += [
            "",
            "Published by the reference efforts (not rerun here): "
            + "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in ref.items())
            + ".",
        ]
    lines.append("")
    return lines


def label_audit_section(metrics: Path) -> list[str]:
    """The training-label audit: rows flagged per given class, the estimated joint, the injected-noise check."""
    audit = _load(metrics / "label_issues.json")
    if not audit:
        return []
    names = list(audit["per_class"])
    lines = [
        "",
        f"Training-label audit (cleanlab `{audit['filter_by']}` on {audit['folds']}-fold out-of-fold {audit['model']} "
        f"probabilities, {audit['rows_audited']} train rows, out-of-fold accuracy {audit['out_of_fold_accuracy']:.4f}); "
        "estimated joint P(given, true) beside the rows flagged:",
        "",
        "| given label | rows | flagged | rate | " + " | ".join(f"P(given, true={n})" for n in names) + " |",
        "| --- | --- | --- | --- |" + " --- |" * len(names),
    ]
    for name, r in audit["per_class"].items():
        joint = " | ".join(f"{audit['joint_given_true'][name][t]:.4f}" for t in names)
        lines.append(f"| {name} | {r['rows']} | {r['flagged']} | {r['flagged_rate']:.4f} | {joint} |")
    if inj := audit.get("injected"):
        lines += [
            "",
            f"On {inj['flipped']} labels flipped on purpose ({inj['fraction']:.0%}, seed {inj['seed']}): "
            f"{inj['flagged']} flagged, {inj['found']} of them flipped: precision {inj['precision']:.4f}, "
            f"recall {inj['recall']:.4f}; precision {inj['precision_beyond_natural_issues']:.4f} when rows "
            "the audit of the given labels flags too are not counted.",
        ]
    return lines


def slices_section(metrics: Path, quoted: str | None) -> list[str]:
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
    if quoted:
        lines += ["", quoted]
    return lines


def attribution_section(metrics: Path) -> list[str]:
    report = _load(metrics / "attention.json")
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
    ig = report.get("integrated_gradients")
    if ig and ig.get("relative_delta_mean") is not None:
        lines += [
            "",
            f"Integrated gradients: {ig['baseline']} baseline, {ig['steps_mean']:.0f} steps on average; completeness gap "
            f"|sum of attributions - (f(x) - f(baseline))| {ig['relative_delta_mean']:.2%} of |f(x) - f(baseline)| on average, "
            f"{ig['relative_delta_max']:.2%} at most; {ig['unconverged']} examples short of attention.ig_tolerance.",
        ]
    return lines


def ablation_section(metrics: Path, quoted: str | None) -> list[str]:
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
    lines += ["", f"Best on dev: {report['best_on_dev']}." + (f" {quoted}" if quoted else "")]
    return lines


def export_section(metrics: Path) -> list[str]:
    report = _load(metrics / "export.json")
    if not report:
        return []
    lines = [
        "",
        f"Exported forms of the fine-tuned model on test (n={report['n_test']}; speed: `python bench/inference.py`):",
        "",
        "| form | accuracy | delta vs torch | F1-macro | delta vs torch | labels as torch | size MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for form, r in report["forms"].items():
        lines.append(
            f"| {form} | {r['accuracy']:.4f} | {r['accuracy_delta_vs_torch']:+.4f} | {r['f1_macro']:.4f} | "
            f"{r['f1_macro_delta_vs_torch']:+.4f} | {r['agreement_with_torch']:.4f} | {r['size_mb']:.1f} |"
        )
    return lines


def _interval(low_high: list[float]) -> str:
    return f"[{low_high[0]:.4f}, {low_high[1]:.4f}]"


def external_rows(key: str, report: dict[str, Any], full: bool) -> list[str]:
    """One row per external set and model: accuracy with its interval beside the in-domain test figure."""
    rows = []
    for name, entry in report["sets"].items():
        for model, f in entry["models"].items():
            within = f.get("accuracy_within_set_labels")
            cells = [
                key,
                f"{name} (n={entry['n']})",
                model,
                f"{f['in_domain_accuracy']:.4f}",
                f"{f['accuracy']:.4f} {_interval(f['accuracy_ci95'])}",
                "—" if within is None else f"{within:.4f}",
            ]
            if full:
                cells += [f"{f['f1_macro']:.4f} {_interval(f['f1_macro_ci95'])}", f"{f['ece']:.4f} → {f['ece_scaled']:.4f}"]
            rows.append("| " + " | ".join(cells) + " |")
    return rows


EXTERNAL_HEADER = "| dataset | external set | model | in-domain test accuracy | accuracy [95% CI] | accuracy within its labels |"


def external_section(metrics: Path) -> list[str]:
    report = _load(metrics / "external.json")
    if not report:
        return []
    return [
        "",
        f"External sets (form {report['form']}, long texts: {report['long_text']}; `finetune_truncate` reads only the "
        "first max_length tokens; ECE before → after the in-domain temperature):",
        "",
        EXTERNAL_HEADER + " F1-macro [95% CI] | ECE → scaled |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *external_rows(metrics.name, report, full=True),
    ]


def behavior_section(metrics: Path) -> list[str]:
    report = _load(metrics / "behavior.json")
    if not report:
        return []
    models = list(report["models"])
    lines = [
        "",
        "Behavioural tests (failure rate [95% Wilson interval]; templates in `data/behavior/templates.yaml`):",
        "",
        "| test | capability | kind | n | " + " | ".join(models) + " |",
        "| --- | --- | --- | --- |" + " --- |" * len(models),
    ]
    for name, t in report["models"]["finetune"]["tests"].items():
        rates = [
            f"{r['tests'][name]['failure_rate']:.3f} {_interval(r['tests'][name]['ci95'])}" for r in report["models"].values()
        ]
        lines.append(f"| {name} | {t['capability']} | {t['kind']} | {t['n']} | " + " | ".join(rates) + " |")
    if report.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(f"{name} ({why})" for name, why in report["skipped"].items()) + "."]
    return lines


def wild_summary(root: Path) -> list[str]:
    """The README's out-of-domain table and a line of behavioural failures per dataset."""
    rows = [
        r
        for key in dataset_keys(root)
        if (x := _load(root / metrics_file(key, "external")))
        for r in external_rows(key, x, False)
    ]
    lines = []
    if rows:
        lines += ["", "In the wild: each model on labelled sets from elsewhere, beside its own test:", ""]
        lines += [EXTERNAL_HEADER, "| --- | --- | --- | --- | --- | --- |", *rows, ""]
    for key in dataset_keys(root):
        if (behavior := _load(root / metrics_file(key, "behavior"))) is None:
            continue
        tests = behavior["models"]["finetune"]["tests"]
        failing = sorted(((t["failure_rate"], name) for name, t in tests.items() if t["failure_rate"] >= 0.05), reverse=True)
        worst = "; ".join(f"{name} {rate:.0%}" for rate, name in failing) or "none"
        lines.append(f"- **{key}** behavioural tests: finetune fails {len(failing)} of {len(tests)} at 5% or more ({worst}).")
    return lines


def dataset_keys(root: Path) -> list[str]:
    """params.yaml's datasets, in its order."""
    return list(load_params(root / "params.yaml").get("datasets") or {})


TIMINGS = Path("docs") / "results"  # raw results of timed runs (bench/repro_timing.py --save NAME)


def label_audit_summary(audit: dict[str, Any], evaluate: dict[str, Any] | None) -> str:
    """One clause: train rows the label audit flags, its precision/recall on injected flips, and its view of test errors."""
    text = f"label audit ({audit['model']}) flags {audit['flagged_rate']:.1%} of train"
    if inj := audit.get("injected"):
        text += f" (on {inj['fraction']:.0%} injected flips: precision {inj['precision']:.2f}, recall {inj['recall']:.2f})"
    if evaluate and (view := evaluate.get("label_audit")):
        text += (
            f"; the same rule flags {view['top_confident_errors_flagged']} of the {view['top_confident_errors']} "
            "most confident test errors"
        )
    return text


def headline(root: Path) -> list[str]:
    """The README's table: each dataset's models on test, beside the reference efforts' published figures."""
    lines = [
        "| dataset | model | test accuracy [95% CI] | test F1-macro [95% CI] | ECE raw → scaled | reference (published) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key in dataset_keys(root):
        evaluate = _load(root / metrics_file(key, "evaluate"))
        if evaluate is None:
            lines.append(f"| {key} | _not run yet_ | | | | |")
            continue
        ref = reference(root, key).get("published", {})
        for model, r in evaluate["models"].items():
            t = r["test"]
            note = {
                "finetune": "; ".join(v for k, v in ref.items() if k.startswith("finetune")),
                "tfidf_lr": ref.get("tfidf_lr_f1", ""),
            }
            lines.append(
                f"| {key} | {model} | {_ci(t, 'accuracy')} | {_ci(t, 'f1_macro')} | {_fmt(t['calibration']['ece'])} → "
                f"{_fmt(t['calibration_scaled']['ece'])} | {note.get(model, '') or '—'} |"
            )
    lines.append("")
    for key in dataset_keys(root):
        metrics = (root / metrics_file(key, "evaluate")).parent
        parts = []
        if (attribution := _load(metrics / "attention.json")) is not None:
            ig, control = attribution["methods"]["integrated_gradients"], attribution["methods"]["random"]
            parts.append(
                f"integrated gradients comprehensiveness {ig['comprehensiveness']:.3f} "
                f"(random {control['comprehensiveness']:.3f})"
            )
        if (export := _load(metrics / "export.json")) is not None:
            name = "onnx_optimized_int8" if "onnx_optimized_int8" in export["forms"] else "onnx_int8"
            int8 = export["forms"][name]
            parts.append(f"{name} {int8['accuracy_delta_vs_torch']:+.4f} accuracy vs torch fp32 at {int8['size_mb']:.0f} MB")
        if (ablations := _load(metrics / "ablations.json")) is not None:
            parts.append(f"best ablation cell on dev: {ablations['best_on_dev']}")
        if (audit := _load(metrics / "label_issues.json")) is not None:
            parts.append(label_audit_summary(audit, _load(metrics / "evaluate.json")))
        if parts:
            lines.append(f"- **{key}**: " + "; ".join(parts) + ".")
    return lines + wild_summary(root)


def render(root: Path = Path(".")) -> str:
    """The README block."""
    lines = [
        START,
        "",
        "_Generated by `python -m sentiment.report` from `metrics/`; all tables: [docs/results.md](docs/results.md)._",
        "",
    ]
    return "\n".join([*lines, *headline(root), "", END])


def results_page(root: Path = Path(".")) -> str:
    """docs/results.md: every dataset's detailed tables."""
    lines = ["# Results", "", "_Generated by `python -m sentiment.report` from `metrics/`; do not edit by hand._", ""]
    for key in dataset_keys(root):
        lines += dataset_section(key, root)
    return "\n".join(lines).rstrip("\n") + "\n"


def pytest_table(name: str, run: dict[str, Any]) -> list[str]:
    """A test-suite timing record (bench/test_durations.py): seconds per module and the share of the top two."""
    m = run["machine"]
    outcomes = ", ".join(f"{n} {word}" for word, n in run["outcomes"].items())
    summed = run["test_seconds_summed"]
    top = sorted(run["modules"].items(), key=lambda kv: -kv[1])
    share = sum(seconds for _, seconds in top[:2]) / summed if summed else 0
    lines = [
        f"**{name}** (`{run['command']}` on {m['cpu']}, {m['cores']} cores, {' '.join(m['cpu_flags'])}; {run['note']}): "
        f"pytest {run['pytest_seconds']:.0f} s ({outcomes}); {summed:.0f} s of tests summed over both workers, "
        f"{share:.0%} of it in {top[0][0]} and {top[1][0]}:",
        "",
        "| module | seconds |",
        "| --- | --- |",
        *(f"| {module} | {seconds:.0f} |" for module, seconds in top if seconds >= 1),
        "",
    ]
    return lines


def seed_study_table(name: str, rows: list[dict[str, Any]]) -> list[str]:
    """A paired seed study (bench/seed_study.py --jsonl): per config mean ± SD over seeds, then each other
    config's mean difference from the first config on the seeds both ran, with its standard error."""
    import pandas as pd

    scores = ["dev_accuracy", "dev_f1_macro", "test_accuracy", "test_f1_macro"]
    frame = pd.DataFrame(rows)
    configs = list(dict.fromkeys(frame["config"]))
    lines = [
        f"**{name}** (`bench/seed_study.py {frame['dataset'].iloc[0]}`, seeds {sorted(set(frame['seed']))}; "
        + "; ".join(f"{c}: {json.dumps(frame[frame['config'] == c]['overrides'].iloc[0], sort_keys=True)}" for c in configs)
        + "):",
        "",
        "| config | runs | " + " | ".join(scores) + " |",
        "| --- | --- |" + " --- |" * len(scores),
    ]
    for config in configs:
        group = frame[frame["config"] == config]
        cells = [f"{group[s].mean():.4f} ± {group[s].std(ddof=1) if len(group) > 1 else 0:.4f}" for s in scores]
        lines.append(f"| {config} | {len(group)} | " + " | ".join(cells) + " |")
    by_seed = frame.set_index(["config", "seed"])[scores]
    for config in configs[1:]:
        diff = (by_seed.loc[config] - by_seed.loc[configs[0]]).dropna()
        cells = [f"{diff[s].mean():+.4f} ({diff[s].sem():.4f})" for s in scores]
        lines.append(f"| {config} − {configs[0]}, paired (SE) | {len(diff)} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def label_audit_table(name: str, run: dict[str, Any]) -> list[str]:
    """An injected-noise record (bench/label_audit.py): precision and recall per dataset and out-of-fold model."""
    lines = [
        f"**{name}** (`{run['command']}`; {run['machine']['cpu']}, {' '.join(run['machine']['cpu_flags'])}): labels flipped "
        "on purpose in a seeded sample of train, audited by cleanlab on each model's out-of-fold probabilities:",
        "",
        "| dataset | model | rows | flipped | out-of-fold accuracy | flagged | precision | recall "
        "| precision beyond natural issues | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in run["runs"]:
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['rows']} | {r['flipped']} | {r['out_of_fold_accuracy']:.4f} | {r['flagged']} "
            f"| {r['precision']:.3f} | {r['recall']:.3f} | {r['precision_beyond_natural_issues']:.3f} | {r['seconds']:.0f} |"
        )
    return [*lines, ""]


def timing_tables(root: Path = Path(".")) -> str:
    """docs/experiments.md's generated block: each committed timed run's per-stage seconds."""
    lines = [START, ""]
    for path in sorted((root / TIMINGS).glob("repro_*.json")):
        run = json.loads(path.read_text())
        lines += [
            f"**{path.stem}** ({run.get('machine', 'machine not recorded')}; {run.get('note', '')}):",
            "",
            "| stage | seconds |",
            "| --- | --- |",
            *(f"| {name} | {seconds:.0f} |" for name, seconds in run["repro"]["stages"].items()),
            f"| **`dvc repro` wall time** | **{run['repro']['wall_seconds']:.0f}** |",
            "",
        ]
    for path in sorted((root / TIMINGS).glob("pytest_*.json")):
        lines += pytest_table(path.stem, json.loads(path.read_text()))
    for path in sorted((root / TIMINGS).glob("seed_study_*.jsonl")):
        lines += seed_study_table(path.stem, [json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    for path in sorted((root / TIMINGS).glob("label_audit_*.json")):
        lines += label_audit_table(path.stem, json.loads(path.read_text()))
    for path in sorted((root / TIMINGS).glob("inference_*.json")):
        run = json.loads(path.read_text())
        fp32 = run["forms"]["fp32"]["batch_sentences_per_s"]
        lines += [
            f"**{path.stem}** (`python bench/inference.py --dataset {run['dataset']}`, batch {run['batch_size']}, "
            f"{run['torch_threads']} torch threads):",
            "",
            "| form | batch 1 p50 ms | batched sentences/s | vs fp32 | test accuracy |",
            "| --- | --- | --- | --- | --- |",
            *(
                f"| {form} | {r['batch1_p50_ms']:.1f} | {r['batch_sentences_per_s']:.0f} | "
                f"{r['batch_sentences_per_s'] / fp32:.2f}× | {r['test_accuracy']:.4f} |"
                for form, r in run["forms"].items()
            ),
            "",
        ]
    for path in sorted((root / TIMINGS).glob("serve_load_*.json")):
        run = json.loads(path.read_text())
        offline = run["offline_sentences_per_s"]
        lines += [
            f"**{path.stem}** (`python bench/serve_load.py --dataset {run['dataset']} --form {run['form']}`; offline batched "
            f"{offline:.0f} sentences/s; max_batch {run['serve']['max_batch']}, max_wait_ms {run['serve']['max_wait_ms']}):",
            "",
            "| clients | requests | p50 ms | p95 ms | p99 ms | sentences/s | of offline batched |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *(
                f"| {r['clients']} | {r['requests']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['sentences_per_s']:.0f} | {r['sentences_per_s'] / offline:.0%} |"
                for r in run["levels"]
            ),
            "",
        ]
    for path in sorted((root / TIMINGS).glob("long_text_*.json")):
        run = json.loads(path.read_text())
        lines += [
            f"**{path.stem}** (`python bench/long_text.py --dataset {run['dataset']} --form {run['form']} --reviews "
            f"{run['reviews']}`; max_length {run['max_length']}, window overlap {run['window_overlap']}):",
            "",
            "| mode | accuracy [95% CI] | windows | seconds | reviews/s |",
            "| --- | --- | --- | --- | --- |",
            *(
                f"| {mode} | {r['accuracy']:.4f} {_interval(r['accuracy_ci95'])} | {r['windows']} | {r['seconds']:.1f} | "
                f"{r['reviews_per_s']:.1f} |"
                for mode, r in run["modes"].items()
            ),
            "",
        ]
    for path in sorted((root / TIMINGS).glob("ig_baselines_*.json")):
        run = json.loads(path.read_text())
        lines += [
            f"**{path.stem}** (`python bench/ig_baselines.py --steps {run['steps']}`): mean completeness gap relative to "
            "|f(x) - f(baseline)| (and that change itself), per family and baseline:",
            "",
            "| family | pad | mask | zero |",
            "| --- | --- | --- | --- |",
            *(
                f"| {family} | "
                + " | ".join(f"{row[b]['relative_gap']:.2%} ({row[b]['output_change']:.3f})" for b in ("pad", "mask", "zero"))
                + " |"
                for family, row in run["families"].items()
            ),
            "",
        ]
    return "\n".join([*lines, END])


def replace_block(text: str, block: str, name: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"{name} lacks the markers {START} … {END}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + block + tail


def updated_readme(readme: str, root: Path = Path(".")) -> str:
    return replace_block(readme, render(root), "README.md")


def generated_files(root: Path = Path(".")) -> dict[Path, str]:
    """Every generated document, as it should read now."""
    experiments = root / "docs" / "experiments.md"
    return {
        root / "README.md": updated_readme((root / "README.md").read_text(), root),
        root / "docs" / "results.md": results_page(root),
        experiments: replace_block(experiments.read_text(), timing_tables(root), str(experiments)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated document is out of date")
    args = parser.parse_args()
    stale = []
    for path, text in generated_files().items():
        if not path.exists() or path.read_text() != text:
            stale.append(str(path))
            if not args.check:
                path.write_text(text)
    if args.check and stale:
        print(f"error: out of date: {', '.join(stale)}: run `python -m sentiment.report`", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
