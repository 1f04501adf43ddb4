"""Model cards (markdown and JSON) generated from a dataset's results files and its validated params; the
markdown opens with the Hugging Face Hub's YAML metadata (huggingface_hub's ModelCardData)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentiment.config import DatasetConfig, Params, Section
from sentiment.data.hub import LOCAL_SUFFIXES
from sentiment.data.splitting import SplitConfig
from sentiment.io import read_json
from sentiment.models.config import ModelConfig, TrainConfig
from sentiment.paths import PRIMARY, SPLITS, results_file
from sentiment.stage import stage_results

FAILING = 0.05  # a behavioural test failed this often or more is named as a limitation


class CardConfig(Section):
    """params.yaml `card`."""

    license: str  # the trained weights' license


@dataclass(frozen=True)
class CardParams:
    """The validated params a card states."""

    key: str
    dataset: DatasetConfig
    split: SplitConfig
    model: ModelConfig
    train: TrainConfig
    card: CardConfig
    seed: int


def card_params(key: str, params: Params) -> CardParams:
    """The sections a model card reads, validated."""
    return CardParams(
        key=key,
        dataset=params.dataset(key),
        split=params.section(SplitConfig, "split"),
        model=params.section(ModelConfig, "model"),
        train=params.section(TrainConfig, "train"),
        card=params.section(CardConfig, "card"),
        seed=params.seed,
    )


def read_results(key: str, root: Path = Path(".")) -> dict[str, Any]:
    """Every results file of the dataset the card reads, by stage; a one-line error for a missing required one."""
    found = {}
    # every results file dvc.yaml declares; those of stages not run for every dataset (ablations.json, for the
    # datasets listed in `ablations`; external.json, for those with `external.sets`) may be absent
    for name, every_dataset in stage_results():
        path = root / results_file(key, name)
        if path.exists() or every_dataset:
            found[name] = read_json(path, f"{name}@{key}")
    return found


def ci(figures: dict[str, Any], name: str) -> str:
    low, high = figures["ci95"][name]
    return f"{figures[name]:.4f} [{low:.4f}, {high:.4f}]"


def on_hub(ds: DatasetConfig) -> bool:
    return not ds.source.lower().endswith(tuple(LOCAL_SUFFIXES))


def scored_split(ds: DatasetConfig, split: SplitConfig) -> str:
    """The split the test figures were measured on: the source's own split name (holdout), else the project's."""
    if ds.split == "holdout":
        return str(ds.test_split)
    return f"own split: a stratified {split.pooled_test_fraction:.0%} of all labelled rows"


def scored_split_sentence(ds: DatasetConfig, split: SplitConfig, rows: int) -> str:
    if ds.split == "holdout":
        return f"Test figures are measured on the `{ds.test_split}` split of `{ds.source}` ({rows} rows after cleaning)."
    return (
        f"Test figures are measured on this project's own split, not one published with `{ds.source}`: a stratified "
        f"{split.pooled_test_fraction:.0%} of all its labelled rows ({rows} after cleaning)."
    )


def failing_tests(behavior: dict[str, Any]) -> list[tuple[str, float]]:
    """The primary model's behavioural tests failed at FAILING or more, most often failed first."""
    tests = behavior["models"][PRIMARY]["tests"]
    failing = [
        (name, t["failure_rate"]) for name, t in tests.items() if t["failure_rate"] is not None and t["failure_rate"] >= FAILING
    ]
    return sorted(failing, key=lambda item: (-item[1], item[0]))


# label_issues.model -> what its out-of-fold probabilities come from, in a card's words
AUDIT_MODEL_WORDS = {"tfidf": "TF-IDF", "embeddings": "sentence-embedding", "encoder": "fine-tuned encoder"}


def flagged_clause(audit: dict[str, Any]) -> str:
    """The label audit's finding on train, as the card and the README state it: how many rows it flags as
    suspect, how well it ranks noise planted on purpose among the rows it could plant (AUROC), and the
    natural noise it estimates."""
    text = (
        f"the {AUDIT_MODEL_WORDS[audit['model']]} label audit flags {audit['flagged']} of {audit['rows_audited']} train rows "
        f"({audit['flagged_rate']:.1%}) as suspect"
    )
    if planted := audit.get("planted"):
        text += (
            f"; on {planted['uniform']['fraction']:.0%} planted noise it ranks the planted rows first among the rows it "
            f"could plant with AUROC {planted['uniform']['auroc']:.2f} (uniform flips) and "
            f"{planted['class_conditional']['auroc']:.2f} (class-conditional)"
        )
    return text + f"; estimated natural noise {audit['natural_error_rate']:.1%}"


def test_suspects_clause(test: dict[str, Any]) -> str:
    """The test-label audit as the card and the README state it: how many test labels are suspect and what
    share of them both the reference model and the best baseline label otherwise."""
    text = f"{test['suspects']} of {test['test_rows']} test labels suspect"
    if test.get("baseline") and test.get("disputed_by_both_share") is not None:
        text += (
            f", {test['disputed_by_both_share']:.0%} of them labelled otherwise by both {test.get('reference', PRIMARY)} "
            f"and {test['baseline']}"
        )
    return text


def limitations(m: dict[str, Any], description: str | None) -> list[str]:
    """Known limitations, each stated from a measured figure."""
    notes = []
    worst = min(
        ((name, r) for name, r in m["slices"][PRIMARY].items() if name != "all" and r["n"] >= 30 and r["accuracy"] is not None),
        key=lambda item: item[1]["accuracy"],
        default=None,
    )
    if worst:
        name, r = worst
        notes.append(
            f"Weakest test slice with n ≥ 30: {name} (n={r['n']}), "
            f"accuracy {r['accuracy']:.4f} ({r['accuracy_delta']:+.4f} vs all)."
        )
    primary = m["evaluate"]["models"][PRIMARY]
    test = primary["test"]
    worst_class = min(test["per_class"].items(), key=lambda item: item[1]["f1"])
    notes.append(f"Lowest per-class test F1: {worst_class[0]} ({worst_class[1]['f1']:.4f}).")
    dev, scored = m["finetune"]["dev"]["accuracy"], test["accuracy"]
    if dev - scored > 0.01:
        notes.append(f"Dev accuracy ({dev:.4f}) exceeds test ({scored:.4f}): dev is for selection, test is the figure to quote.")
    confidence = "over-confident" if primary["temperature"] > 1 else "under-confident"
    notes.append(
        f"Raw probabilities are {confidence} (test ECE {test['calibration']['ece']:.4f}); the `predict` command applies "
        f"the temperature fitted on dev (T={primary['temperature']:.3f}, ECE after {test['calibration_scaled']['ece']:.4f})."
    )
    tests = m["behavior"]["models"][PRIMARY]["tests"]
    if failing := failing_tests(m["behavior"]):
        notes.append(
            "Behavioural tests it fails most often: "
            + ", ".join(f"{name} ({rate:.0%} of {tests[name]['n']})" for name, rate in failing[:3])
            + "."
        )
    for name, entry in m.get("external", {}).get("sets", {}).items():
        f = entry["models"][PRIMARY]
        if f["accuracy_minus_in_domain"] < -0.02:
            notes.append(
                f"Out of domain it loses accuracy: {name} {f['accuracy']:.4f} (n={entry['n']}), "
                f"{f['accuracy_minus_in_domain']:+.4f} vs its own test."
            )
        if not f["temperature_helps_ece"]:
            notes.append(
                f"On {name} the in-domain temperature worsens calibration (ECE {f['ece']:.4f} -> {f['ece_scaled']:.4f})."
            )
    notes.append(
        f"Training labels: {flagged_clause(m['label_issues'])}; the model was trained on them"
        + (" minus those rows." if dropped_label_issues(m) else " as given.")
    )
    notes.append(f"Trained on {description}." if description else "Trained on the data named above only.")
    return notes


def trained_with_line(env: dict[str, Any] | None) -> str:
    if not env:
        return "- Precision and device: not recorded."
    flags = f", CPU flags {', '.join(env['cpu_flags'])}" if env["device"] == "cpu" and env.get("cpu_flags") else ""
    return f"- Trained in {env['precision']} on {env['device']}{flags}; torch {env['torch']}, transformers {env['transformers']}."


def dropped_label_issues(m: dict[str, Any]) -> int:
    """Train rows the fine-tune left out (clean.drop_label_issues): clean's train rows minus those it trained on."""
    return m["clean"]["train"]["rows"] - m["finetune"].get("train_rows", m["clean"]["train"]["rows"])


def audit_lines(m: dict[str, Any], key: str) -> list[str]:
    """The label audit's paragraph: train rows flagged per class, how it finds planted noise among the rows it
    could plant (ranking, and precision at a budget of as many rows as were planted), and the test labels the
    fine-tuned model disputes, listed for review."""
    audit = m["label_issues"]
    per_class = ", ".join(f"{name} {r['flagged_rate']:.1%}" for name, r in audit["per_class"].items())
    folds = f"{audit['folds']}-fold{' grouped by text' if audit.get('grouped_folds') else ''}"
    model = AUDIT_MODEL_WORDS[audit["model"]]
    lines = [
        f"Training-label audit (`label_issues`, cleanlab on {folds} out-of-fold {model} probabilities): "
        f"{audit['flagged']} of {audit['rows_audited']} train rows ({audit['flagged_rate']:.1%}) flagged as suspect; "
        f"by given label: {per_class}; estimated natural noise {audit['natural_error_rate']:.1%}."
    ]
    if "planted" in audit:
        lines[0] += (
            f" Labels are planted wrong only among the {audit['planted']['uniform']['plantable_rows']} rows not flagged "
            "on the given labels, and scored there."
        )
    for kind in planted_kinds(audit):
        planted = audit["planted"][kind]
        lines[0] += (
            f" On {planted['planted']} labels planted wrong ({kind.replace('_', '-')}), its label-quality score ranks them "
            f"with AUROC {planted['auroc']:.3f}; of the {planted['budget']} rows it scores lowest, "
            f"{planted['precision_at_budget']:.1%} are planted; its flags find {planted['recall']:.1%} of them at "
            f"precision {planted['precision']:.1%}."
        )
    if test := m["evaluate"].get("test_label_audit"):
        lines.append(
            f"Test-label audit (the same rule on the fine-tuned model's test probabilities, reporting only: test figures "
            f"stay on every row): {test_suspects_clause(test)}; the {test.get('shown', test['suspects'])} lowest in label "
            f"quality are listed for review in `plots/{key}/evaluate/suspect_test_labels.csv`."
        )
    return lines


def student_lines(m: dict[str, Any]) -> list[str]:
    """The distilled student's section: what it keeps of the teacher and what it loses on test (the speed it
    gains is measured per CPU by bench/frontier.py, not here)."""
    student, teacher = m["distill"], m["evaluate"]["models"][PRIMARY]["test"]
    test = student["test"]
    lines = [
        "",
        "## Distilled student",
        "",
        f"The distill stage keeps layers {student['layers']} of the {student['teacher_layers']} of the fine-tuned model "
        f"({student['parameters'] / 1e6:.1f}M parameters) and trains them on its soft labels and the labels. On test: "
        f"accuracy {ci(test, 'accuracy')} ({test['accuracy'] - teacher['accuracy']:+.4f} against the teacher), F1-macro "
        f"{ci(test, 'f1_macro')} ({test['f1_macro'] - teacher['f1_macro']:+.4f}), {student['agreement_with_teacher']:.1%} "
        f"of the teacher's labels, ECE {test['calibration_scaled']['ece']:.4f} after its own temperature "
        f"({student['temperature']:.2f}). `sentiment predict --model distill` and `sentiment serve --model distill` use it.",
    ]
    if "export_distill" in m:
        header = "| student form | accuracy | delta vs its torch | passes the gate | size MB |"
        lines += ["", header, "| --- | --- | --- | --- | --- |"]
        for form, r in m["export_distill"]["forms"].items():
            lines.append(
                f"| {form} | {r['accuracy']:.4f} | {r['accuracy_delta_vs_torch']:+.4f} | "
                f"{'yes' if r['passes_gate'] else 'no'} | {r['size_mb']:.1f} |"
            )
    return lines


def card_json(p: CardParams, m: dict[str, Any]) -> dict[str, Any]:
    ds = p.dataset
    primary = m["evaluate"]["models"][PRIMARY]
    test = primary["test"]
    return {
        "model_details": {
            "name": f"{p.key}-sentiment",
            "encoder": p.model.name,
            "pooling": p.model.pooling,
            "dropout": p.model.dropout,
            "labels": list(ds.labels),
            "language": ds.language,
            "temperature": primary["temperature"],
        },
        "intended_use": f"{len(ds.labels)}-class {task(ds)} of texts like those in {ds.source}"
        + (f" ({ds.description})" if ds.description else ""),
        "skipped": {**m["evaluate"].get("skipped", {}), **m["behavior"].get("skipped", {})},
        "data": {split: m["clean"][split]["rows"] for split in SPLITS},
        "scored_split": scored_split(ds, p.split),
        "training": p.train.model_dump(mode="json"),
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
            "dev": {"accuracy": primary["dev"]["accuracy"], "f1_macro": primary["dev"]["f1_macro"]},
            "baselines_test": {
                model: {"accuracy": r["test"]["accuracy"], "f1_macro": r["test"]["f1_macro"]}
                for model, r in m["evaluate"]["models"].items()
                if model != PRIMARY
            },
            "export_test_accuracy": {form: r["accuracy"] for form, r in m["export"]["forms"].items()},
            "external_accuracy": {
                name: {
                    "n": e["n"],
                    "accuracy": e["models"][PRIMARY]["accuracy"],
                    "ci95": e["models"][PRIMARY]["accuracy_ci95"],
                }
                for name, e in m.get("external", {}).get("sets", {}).items()
            },
            "distilled_student_test": {name: m["distill"]["test"][name] for name in ("accuracy", "f1_macro") if "distill" in m},
            "behavior_failure_rates": {name: t["failure_rate"] for name, t in m["behavior"]["models"][PRIMARY]["tests"].items()},
        },
        "label_audit": label_audit_json(m),
        "limitations": limitations(m, ds.description),
    }


PLANTED_FIGURES = ("planted", "plantable_rows", "auroc", "average_precision", "recall_at_2x_budget", "budget")
PLANTED_FIGURES += ("precision_at_budget", "recall_at_budget")
TEST_AUDIT_FIGURES = ("test_rows", "suspects", "reference", "baseline", "disputed_by_both", "disputed_by_both_share")


def planted_kinds(audit: dict[str, Any]) -> list[str]:
    """The kinds of noise the audit planted (label_audit.NOISE_KINDS, read from its results: importing the audit
    would make the card depend on the training code)."""
    return sorted(k for k, v in audit.get("planted", {}).items() if isinstance(v, dict))


def label_audit_json(m: dict[str, Any]) -> dict[str, Any]:
    """The card's label audit: train rows audited and flagged, the planted-noise figures on the rows that could
    be planted, and the test labels found suspect."""
    audit = m["label_issues"]
    card = {
        "model": audit["model"],
        "rows_audited": audit["rows_audited"],
        "flagged_rate": audit["flagged_rate"],
        "dropped_from_train": dropped_label_issues(m),
    }
    if planted := audit.get("planted"):
        card["planted"] = {kind: {k: planted[kind][k] for k in PLANTED_FIGURES} for kind in planted_kinds(audit)}
    if test := m["evaluate"].get("test_label_audit"):
        card["test_labels"] = {k: test.get(k) for k in TEST_AUDIT_FIGURES}
    return card


def task(ds: DatasetConfig) -> str:
    return "sentiment classification" if ds.polarity else "text classification"


def hub_metadata(p: CardParams, m: dict[str, Any]) -> str:
    """The card's YAML header as the Hub reads it: license, language, base model, Hub datasets, and a model-index
    with the test metrics on the split that was scored."""
    from huggingface_hub import EvalResult, ModelCardData

    ds, test = p.dataset, m["evaluate"]["models"][PRIMARY]["test"]
    hub = on_hub(ds)

    def result(metric: str, value: float, name: str, args: dict | None = None) -> EvalResult:
        return EvalResult(
            task_type="text-classification",
            dataset_type=ds.source if hub else p.key,
            dataset_name=ds.description or p.key,
            dataset_split=scored_split(ds, p.split),
            metric_type=metric,
            metric_value=round(value, 4),
            metric_name=name,
            metric_args=args,
        )

    data = ModelCardData(
        language=ds.language,
        license=p.card.license,
        base_model=None if p.model.name == "scratch" else p.model.name,
        datasets=[ds.source] if hub else None,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["text-classification", *(["sentiment-analysis"] if ds.polarity else []), "dvc"],
        model_name=f"{p.key}-classifier",
        eval_results=[
            result("accuracy", test["accuracy"], "test accuracy"),
            result("f1", test["f1_macro"], "test F1-macro", {"average": "macro"}),
        ],
    )
    return f"---\n{data.to_yaml()}\n---\n"


def card_markdown(p: CardParams, m: dict[str, Any], card: dict[str, Any]) -> str:
    ds, ev = p.dataset, m["evaluate"]["models"]
    labels = card["model_details"]["labels"]
    lines = [
        hub_metadata(p, m),
        f"# Model card: {p.key} {task(ds).replace('classification', 'classifier')}",
        "",
        "_Generated by `python -m stages.card` from `results/`; do not edit by hand._",
        "",
        "## Model",
        "",
        f"- Encoder `{p.model.name}`, {p.model.pooling} pooling, dropout {p.model.dropout}, "
        f"linear head over {len(labels)} labels ({', '.join(labels)}).",
        f"- Trained with the Hugging Face Trainer: {p.train.epochs:g} epoch(s), learning rate "
        f"{p.train.learning_rate}, batch size {p.train.batch_size}, max_length "
        f"{p.train.max_length}, seed {p.seed}; best epoch by dev {p.train.best_metric}: "
        f"{m['finetune']['best_epoch']:g}.",
        f"- Temperature fitted on dev: {ev[PRIMARY]['temperature']:.3f}.",
        trained_with_line(m["finetune"].get("trained_with")),
        "",
        "## Data",
        "",
        (f"{ds.description}. " if ds.description else "")
        + f"Source `{ds.source}`: "
        + ", ".join(f"{split} {n}" for split, n in card["data"].items())
        + " rows (after de-duplication and cleaning). "
        + scored_split_sentence(ds, p.split, card["data"]["test"]),
        "",
        *audit_lines(m, p.key),
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
        f"## Slices ({PRIMARY}, test accuracy)",
        "",
        "| slice | n | accuracy | delta vs all |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in m["slices"][PRIMARY].items():
        if r["accuracy"] is not None:
            lines.append(f"| {name} | {r['n']} | {r['accuracy']:.4f} | {r['accuracy_delta']:+.4f} |")
    lines += ["", "## Exported forms (test)", "", "| form | accuracy | delta vs torch | size MB |", "| --- | --- | --- | --- |"]
    for form, r in m["export"]["forms"].items():
        lines.append(f"| {form} | {r['accuracy']:.4f} | {r['accuracy_delta_vs_torch']:+.4f} | {r['size_mb']:.1f} |")
    if "distill" in m:
        lines += student_lines(m)
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
    behavior = m["behavior"]["models"]
    others = [name for name in behavior if name != PRIMARY]
    lines += [
        "",
        "## Behavioural tests (failure rate, 95% Wilson interval)",
        "",
        f"| test | capability | n | {PRIMARY} | " + " | ".join(others) + " |",
        "| --- | --- | --- | --- |" + " --- |" * len(others),
    ]
    for name, t in behavior[PRIMARY]["tests"].items():
        rates = [
            f"{r['tests'][name]['failure_rate']:.3f} [{r['tests'][name]['ci95'][0]:.3f}, {r['tests'][name]['ci95'][1]:.3f}]"
            for r in (behavior[PRIMARY], *(behavior[o] for o in others))
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
