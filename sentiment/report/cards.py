"""Model cards (markdown and JSON) generated from a dataset's metrics files and its params.yaml entry; the
markdown opens with the Hugging Face Hub's YAML metadata (huggingface_hub's ModelCardData)."""

from __future__ import annotations

import json
from typing import Any

from sentiment.config import UserError
from sentiment.paths import metrics_file

# the metrics files a card reads; ablations.json only exists for the datasets listed in `ablations`,
# external.json for those with `external.sets`
REQUIRED = ("split", "label_issues", "clean", "baseline", "finetune", "evaluate", "slices", "attention", "export", "behavior")
OPTIONAL = ("ablations", "external")


def read_metrics(key: str) -> dict[str, Any]:
    found = {}
    for name in (*REQUIRED, *OPTIONAL):
        path = metrics_file(key, name)
        if path.exists():
            found[name] = json.loads(path.read_text())
        elif name in REQUIRED:
            raise UserError(f"missing input file: {path} (run `dvc repro` to build it)")
    return found


def ci(figures: dict[str, Any], name: str) -> str:
    low, high = figures["ci95"][name]
    return f"{figures[name]:.4f} [{low:.4f}, {high:.4f}]"


def limitations(m: dict[str, Any], description: str | None) -> list[str]:
    """Known limitations, each stated from a measured figure."""
    notes = []
    worst = min(
        (
            (name, r)
            for name, r in m["slices"]["finetune"].items()
            if name != "all" and r["n"] >= 30 and r["accuracy"] is not None
        ),
        key=lambda item: item[1]["accuracy"],
        default=None,
    )
    if worst:
        name, r = worst
        notes.append(
            f"Weakest test slice with n ≥ 30: {name} (n={r['n']}), "
            f"accuracy {r['accuracy']:.4f} ({r['accuracy_delta']:+.4f} vs all)."
        )
    test = m["evaluate"]["models"]["finetune"]["test"]
    worst_class = min(test["per_class"].items(), key=lambda item: item[1]["f1"])
    notes.append(f"Lowest per-class test F1: {worst_class[0]} ({worst_class[1]['f1']:.4f}).")
    dev, scored = m["finetune"]["dev"]["accuracy"], test["accuracy"]
    if dev - scored > 0.01:
        notes.append(f"Dev accuracy ({dev:.4f}) exceeds test ({scored:.4f}): dev is for selection, test is the figure to quote.")
    raw = m["evaluate"]["models"]["finetune"]
    confidence = "over-confident" if raw["temperature"] > 1 else "under-confident"
    notes.append(
        f"Raw probabilities are {confidence} (test ECE {test['calibration']['ece']:.4f}); the `predict` command applies "
        f"the temperature fitted on dev (T={raw['temperature']:.3f}, ECE after {test['calibration_scaled']['ece']:.4f})."
    )
    tests = m["behavior"]["models"]["finetune"]["tests"]
    failing = sorted(((t["failure_rate"], name) for name, t in tests.items() if t["failure_rate"] >= 0.05), reverse=True)
    if failing:
        notes.append(
            "Behavioural tests it fails most often: "
            + ", ".join(f"{name} ({rate:.0%} of {tests[name]['n']})" for rate, name in failing[:3])
            + "."
        )
    for name, entry in m.get("external", {}).get("sets", {}).items():
        f = entry["models"]["finetune"]
        if f["accuracy_minus_in_domain"] < -0.02:
            notes.append(
                f"Out of domain it loses accuracy: {name} {f['accuracy']:.4f} (n={entry['n']}), "
                f"{f['accuracy_minus_in_domain']:+.4f} vs its own test."
            )
        if not f["temperature_helps_ece"]:
            notes.append(
                f"On {name} the in-domain temperature worsens calibration (ECE {f['ece']:.4f} -> {f['ece_scaled']:.4f})."
            )
    audit = m["label_issues"]
    notes.append(
        f"Training labels: the {audit['model']} audit flags {audit['flagged_rate']:.1%} of train rows as likely mislabelled "
        f"({audit['flagged']} of {audit['rows_audited']}); the model was trained on them"
        + (" minus those rows." if m["clean"]["train"]["dropped"].get("label_issue") else " as given.")
    )
    notes.append(f"Trained on {description}." if description else "Trained on the data named above only.")
    return notes


def trained_with_line(env: dict[str, Any] | None) -> str:
    if not env:
        return "- Precision and device: not recorded."
    flags = f", CPU flags {', '.join(env['cpu_flags'])}" if env["device"] == "cpu" and env.get("cpu_flags") else ""
    return f"- Trained in {env['precision']} on {env['device']}{flags}; torch {env['torch']}, transformers {env['transformers']}."


def audit_lines(m: dict[str, Any]) -> list[str]:
    """The training-label audit's paragraph: rows flagged per class and, when measured, its precision on injected flips."""
    audit = m["label_issues"]
    per_class = ", ".join(f"{name} {r['flagged_rate']:.1%}" for name, r in audit["per_class"].items())
    lines = [
        f"Training-label audit (`label_issues`, cleanlab on {audit['folds']}-fold {audit['model']} probabilities): "
        f"{audit['flagged']} of {audit['rows_audited']} train rows ({audit['flagged_rate']:.1%}) flagged as likely "
        f"mislabelled; by given label: {per_class}."
    ]
    if "injected" in audit:
        inj = audit["injected"]
        lines[0] += (
            f" On {inj['flipped']} labels flipped on purpose ({inj['fraction']:.0%}), it finds {inj['recall']:.1%} "
            f"with precision {inj['precision']:.1%}."
        )
    return lines


def card_json(key: str, params: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    ds = params["datasets"][key]
    names = list(ds["labels"])
    finetune = m["evaluate"]["models"]["finetune"]
    test = finetune["test"]
    return {
        "model_details": {
            "name": f"{key}-sentiment",
            "encoder": params["model"]["name"],
            "pooling": params["model"]["pooling"],
            "dropout": params["model"]["dropout"],
            "labels": names,
            "temperature": finetune["temperature"],
        },
        "intended_use": f"{len(names)}-class {task(ds)} of texts like those in {ds['source']}"
        + (f" ({ds['description']})" if ds.get("description") else ""),
        "skipped": {**m["evaluate"].get("skipped", {}), **m["behavior"].get("skipped", {})},
        "data": {split: m["clean"][split]["rows"] for split in ("train", "dev", "test")},
        "training": {k: params["train"][k] for k in sorted(params["train"])},
        "trained_with": m["finetune"].get("trained_with"),
        "metrics": {
            "test": {
                "accuracy": test["accuracy"],
                "accuracy_ci95": test["ci95"]["accuracy"],
                "f1_macro": test["f1_macro"],
                "f1_macro_ci95": test["ci95"]["f1_macro"],
                "ece": test["calibration"]["ece"],
                "ece_after_temperature_scaling": test["calibration_scaled"]["ece"],
            },
            "dev": {"accuracy": finetune["dev"]["accuracy"], "f1_macro": finetune["dev"]["f1_macro"]},
            "baselines_test": {
                model: {"accuracy": r["test"]["accuracy"], "f1_macro": r["test"]["f1_macro"]}
                for model, r in m["evaluate"]["models"].items()
                if model != "finetune"
            },
            "export_test_accuracy": {form: r["accuracy"] for form, r in m["export"]["forms"].items()},
            "external_accuracy": {
                name: {
                    "n": e["n"],
                    "accuracy": e["models"]["finetune"]["accuracy"],
                    "ci95": e["models"]["finetune"]["accuracy_ci95"],
                }
                for name, e in m.get("external", {}).get("sets", {}).items()
            },
            "behavior_failure_rates": {
                name: t["failure_rate"] for name, t in m["behavior"]["models"]["finetune"]["tests"].items()
            },
        },
        "label_audit": {
            "model": m["label_issues"]["model"],
            "rows_audited": m["label_issues"]["rows_audited"],
            "flagged_rate": m["label_issues"]["flagged_rate"],
            "dropped_from_train": m["clean"]["train"]["dropped"].get("label_issue", 0),
        },
        "limitations": limitations(m, ds.get("description")),
    }


def task(ds: dict[str, Any]) -> str:
    return "sentiment classification" if ds.get("polarity") else "text classification"


def hub_metadata(key: str, params: dict[str, Any], m: dict[str, Any]) -> str:
    """The card's YAML header as the Hub reads it: license, base model, Hub datasets, model-index with test metrics."""
    from huggingface_hub import EvalResult, ModelCardData

    ds, test = params["datasets"][key], m["evaluate"]["models"]["finetune"]["test"]
    source_on_hub = not ds["source"].endswith((".csv", ".tsv", ".parquet"))
    base = params["model"]["name"]

    def result(metric: str, value: float, name: str, args: dict | None = None) -> EvalResult:
        return EvalResult(
            task_type="text-classification",
            dataset_type=ds["source"] if source_on_hub else key,
            dataset_name=ds.get("description") or key,
            dataset_split="test",
            metric_type=metric,
            metric_value=round(value, 4),
            metric_name=name,
            metric_args=args,
        )

    data = ModelCardData(
        license=params["card"]["license"],
        base_model=None if base == "scratch" else base,
        datasets=[ds["source"]] if source_on_hub else None,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["text-classification", *(["sentiment-analysis"] if ds.get("polarity") else []), "dvc"],
        model_name=f"{key}-classifier",
        eval_results=[
            result("accuracy", test["accuracy"], "test accuracy"),
            result("f1", test["f1_macro"], "test F1-macro", {"average": "macro"}),
        ],
    )
    return f"---\n{data.to_yaml()}\n---\n"


def card_markdown(key: str, params: dict[str, Any], m: dict[str, Any], card: dict[str, Any]) -> str:
    ev = m["evaluate"]["models"]
    ft = ev["finetune"]
    lines = [
        hub_metadata(key, params, m),
        f"# Model card: {key} {task(params['datasets'][key]).replace('classification', 'classifier')}",
        "",
        "_Generated by `python -m stages.card` from `metrics/`; do not edit by hand._",
        "",
        "## Model",
        "",
        f"- Encoder `{params['model']['name']}`, {params['model']['pooling']} pooling, dropout {params['model']['dropout']}, "
        f"linear head over {len(card['model_details']['labels'])} labels ({', '.join(card['model_details']['labels'])}).",
        f"- Trained with the Hugging Face Trainer: {params['train']['epochs']} epoch(s), learning rate "
        f"{params['train']['learning_rate']}, batch size {params['train']['batch_size']}, max_length "
        f"{params['train']['max_length']}, seed {params['seed']}; best epoch by dev {params['train']['best_metric']}: "
        f"{m['finetune']['best_epoch']:g}.",
        f"- Temperature fitted on dev: {ft['temperature']:.3f}.",
        trained_with_line(m["finetune"].get("trained_with")),
        "",
        "## Data",
        "",
        (f"{params['datasets'][key]['description']}. " if params["datasets"][key].get("description") else "")
        + f"Source `{params['datasets'][key]['source']}`: "
        + ", ".join(f"{split} {n}" for split, n in card["data"].items())
        + " rows (after de-duplication and cleaning).",
        "",
        *audit_lines(m),
        "",
        "## Test metrics (95% bootstrap intervals)",
        "",
        "| model | accuracy | F1-macro | ECE | ECE after temperature scaling |",
        "| --- | --- | --- | --- | --- |",
    ]
    for model, r in ev.items():
        t = r["test"]
        lines.append(
            f"| {model} | {ci(t, 'accuracy')} | {ci(t, 'f1_macro')} | {t['calibration']['ece']:.4f} | "
            f"{t['calibration_scaled']['ece']:.4f} |"
        )
    lines += [
        "",
        "## Slices (finetune, test accuracy)",
        "",
        "| slice | n | accuracy | delta vs all |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in m["slices"]["finetune"].items():
        if r["accuracy"] is not None:
            lines.append(f"| {name} | {r['n']} | {r['accuracy']:.4f} | {r['accuracy_delta']:+.4f} |")
    lines += ["", "## Exported forms (test)", "", "| form | accuracy | delta vs torch | size MB |", "| --- | --- | --- | --- |"]
    for form, r in m["export"]["forms"].items():
        lines.append(f"| {form} | {r['accuracy']:.4f} | {r['accuracy_delta_vs_torch']:+.4f} | {r['size_mb']:.1f} |")
    if "external" in m:
        lines += [
            "",
            "## Out of domain (external sets, 95% bootstrap intervals)",
            "",
            "| set | n | model | accuracy | delta vs own test | ECE | ECE with the in-domain temperature |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, e in m["external"]["sets"].items():
            for model, f in e["models"].items():
                low, high = f["accuracy_ci95"]
                lines.append(
                    f"| {name} | {e['n']} | {model} | {f['accuracy']:.4f} [{low:.4f}, {high:.4f}] | "
                    f"{f['accuracy_minus_in_domain']:+.4f} | {f['ece']:.4f} | {f['ece_scaled']:.4f} |"
                )
    lines += [
        "",
        "## Behavioural tests (failure rate, 95% Wilson interval)",
        "",
        "| test | capability | n | finetune | "
        + " | ".join(name for name in m["behavior"]["models"] if name != "finetune")
        + " |",
        "| --- | --- | --- | --- |" + " --- |" * (len(m["behavior"]["models"]) - 1),
    ]
    for name, t in m["behavior"]["models"]["finetune"]["tests"].items():
        rates = [
            f"{r['tests'][name]['failure_rate']:.3f} [{r['tests'][name]['ci95'][0]:.3f}, {r['tests'][name]['ci95'][1]:.3f}]"
            for r in m["behavior"]["models"].values()
        ]
        lines.append(f"| {name} | {t['capability']} | {t['n']} | " + " | ".join(rates) + " |")
    if "ablations" in m:
        lines += [
            "",
            "## Ablations",
            "",
            f"{m['ablations']['note']}.",
            "",
            "| config | test accuracy mean ± std | delta vs final |",
            "| --- | --- | --- |",
        ]
        for name, r in m["ablations"]["configs"].items():
            delta = r["test_accuracy_delta_vs_final"]
            lines.append(
                f"| {name} | {r['test_accuracy']:.4f} ± {r['test_accuracy_std']:.4f} | "
                + ("—" if delta is None else f"{delta:+.4f}")
                + " |"
            )
    if card["skipped"]:
        lines += ["", "## Skipped", ""] + [f"- {name}: {why}." for name, why in card["skipped"].items()]
    lines += ["", "## Known limitations", ""] + [f"- {note}" for note in card["limitations"]] + [""]
    return "\n".join(lines)
