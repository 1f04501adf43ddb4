"""docs/experiments.md's generated block: one table per benchmark record committed under docs/results/
(bench/*.py --save NAME writes them through bench/record.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sentiment.evaluation.label_audit import NOISE_KINDS
from sentiment.report.markdown import END, START, current_records, interval, table

RECORDS = Path("docs") / "results"


def machine_line(m: Any) -> str:
    """A record's machine: a dict (CPU, cores, flags) in newer records, a string in older ones."""
    if isinstance(m, dict):
        return f"{m['cpu']}, {m['cores']} cores, {' '.join(m['cpu_flags']) or 'no listed flags'}"
    return m or "machine not recorded"


def cells(row: dict[str, Any]) -> dict[str, str]:
    """A record row as table cells: floats to 3 significant places past the point, lists joined."""
    out = {}
    for k, v in row.items():
        if isinstance(v, float):
            out[k] = f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        elif isinstance(v, list):
            out[k] = " ".join(map(str, v))
        else:
            out[k] = str(v)
    return out


def repro_table(name: str, run: dict[str, Any]) -> list[str]:
    rows = [{"stage": stage, "seconds": f"{s:.0f}"} for stage, s in run["repro"]["stages"].items()]
    command = " ".join(["dvc repro", *run["repro"].get("targets", [])])
    rows.append({"stage": f"**`{command}` wall time**", "seconds": f"**{run['repro']['wall_seconds']:.0f}**"})
    return [f"**{name}** ({machine_line(run.get('machine'))}; {run.get('note', '')}):", "", *table(rows), ""]


def pytest_table(name: str, run: dict[str, Any]) -> list[str]:
    """A test-suite timing record (bench/test_durations.py): seconds per module and the share of the top two."""
    outcomes = ", ".join(f"{n} {word}" for word, n in run["outcomes"].items())
    summed = run["test_seconds_summed"]
    top = sorted(run["modules"].items(), key=lambda kv: -kv[1])
    share = sum(seconds for _, seconds in top[:2]) / summed if summed else 0
    rows = [{"module": module, "seconds": f"{seconds:.0f}"} for module, seconds in top if seconds >= 1]
    return [
        f"**{name}** (`{run['command']}` on {machine_line(run['machine'])}; {run['note']}): "
        f"pytest {run['pytest_seconds']:.0f} s ({outcomes}); {summed:.0f} s of tests summed over both workers, "
        f"{share:.0%} of it in {top[0][0]} and {top[1][0]}:",
        "",
        *table(rows),
        "",
    ]


def seed_study_table(name: str, rows: list[dict[str, Any]]) -> list[str]:
    """A paired seed study (bench/seed_study.py --jsonl): per config mean ± SD over seeds, then each other
    config's mean difference from the first config on the seeds both ran, with its standard error."""
    import pandas as pd

    scores = ["dev_accuracy", "dev_f1_macro", "test_accuracy", "test_f1_macro"]
    frame = pd.DataFrame(rows)
    configs = list(dict.fromkeys(frame["config"]))
    out = []
    for config in configs:
        group = frame[frame["config"] == config]
        sd = {s: group[s].std(ddof=1) if len(group) > 1 else 0 for s in scores}
        out.append({"config": config, "runs": len(group), **{s: f"{group[s].mean():.4f} ± {sd[s]:.4f}" for s in scores}})
    by_seed = frame.set_index(["config", "seed"])[scores]
    for config in configs[1:]:
        diff = (by_seed.loc[config] - by_seed.loc[configs[0]]).dropna()
        paired = {s: f"{diff[s].mean():+.4f} ({diff[s].sem():.4f})" for s in scores}
        out.append({"config": f"{config} − {configs[0]}, paired (SE)", "runs": len(diff), **paired})
    overrides = "; ".join(f"{c}: {json.dumps(frame[frame['config'] == c]['overrides'].iloc[0], sort_keys=True)}" for c in configs)
    return [
        f"**{name}** (`bench/seed_study.py {frame['dataset'].iloc[0]}`, seeds {sorted(set(frame['seed']))}; {overrides}):",
        "",
        *table(out),
        "",
    ]


def precision_cell(planted: dict[str, Any]) -> str:
    """Precision at the planted count (newer records), else the older records' precision over their ceiling."""
    if "precision_at_budget" in planted:
        return f"{planted['precision_at_budget']:.3f} at budget"
    return f"{planted['precision']:.3f} / {planted['precision_ceiling']:.3f} ceiling"


def label_audit_table(name: str, run: dict[str, Any]) -> list[str]:
    """A label-audit record (bench/label_audit.py): per dataset, model and fold grouping, the audit on train and
    how it ranks the two kinds of planted noise (AUROC) and its precision."""
    keep = ("dataset", "model", "grouped_folds", "rows_audited", "out_of_fold_accuracy", "flagged", "natural_error_rate")
    rows = [
        {
            **cells({k: r[k] for k in keep}),
            **{f"AUROC {kind.replace('_', '-')}": f"{r[kind]['auroc']:.3f}" for kind in NOISE_KINDS},
            **{f"precision {kind.replace('_', '-')}": precision_cell(r[kind]) for kind in NOISE_KINDS},
            "seconds": f"{r['seconds']:.0f}",
        }
        for r in run["runs"]
    ]
    return [
        f"**{name}** (`{run['command']}`; {machine_line(run['machine'])}): the training-label audit with folds grouped "
        "by text and not, labels planted wrong on purpose of two kinds (uniform flips; class-conditional, shaped like "
        "the estimated noise), ranked by cleanlab's label-quality score:",
        "",
        *table(rows),
        "",
    ]


def inference_table(name: str, run: dict[str, Any]) -> list[str]:
    """A per-form speed record (bench/inference.py): every form side by side, with its ratio to torch fp32."""
    forms = run["forms"]
    baseline = run.get("baseline", "torch")  # a student's record: the teacher's torch fp32
    fp32 = (forms.get(baseline) or forms.get("fp32"))["batch_sentences_per_s"]
    rows = [
        {"form": form, **cells(r), f"vs {baseline.replace('_', ' ')} fp32": f"{r['batch_sentences_per_s'] / fp32:.2f}×"}
        for form, r in forms.items()
        if "batch_sentences_per_s" in r
    ]
    skipped = [f"{form} ({r['skipped']})" for form, r in forms.items() if "skipped" in r]
    command = run.get("command", f"python bench/inference.py --dataset {run['dataset']}")
    lines = [f"**{name}** (`{command}`; {machine_line(run.get('machine'))}; batch {run['batch_size']}):", "", *table(rows)]
    return lines + (["", "Not measured: " + "; ".join(skipped) + "."] if skipped else []) + [""]


def levels_table(name: str, run: dict[str, Any], command: str, summary: str) -> list[str]:
    return [f"**{name}** (`{command}`; {summary}):", "", *table([cells(r) for r in run["levels"]]), ""]


def batch_dependence(figure: float | dict[str, Any]) -> str:
    """Older records hold the share of labels that changed; newer ones the count per batch size."""
    if isinstance(figure, dict):
        return ", ".join(f"{n} at batch {size}" for size, n in figure["label_changes_vs_batch_1"].items())
    return f"{figure:.1%}"


def serve_load_table(name: str, run: dict[str, Any]) -> list[str]:
    offline = run["offline_sentences_per_s"]
    levels = [{**r, "of offline batched": f"{r['sentences_per_s'] / offline:.0%}"} for r in run["levels"]]
    extra = f", one sentence p50 {run['offline_single_p50_ms']:.2f} ms" if "offline_single_p50_ms" in run else ""
    if "offline_rounds_of_32" in run:
        rounds, size = run["offline_rounds_of_32"], run["serve"]["batch_size"]
        extra += (
            f"; rounds of 32 random texts offline: one call {rounds['one_call_per_round']:.0f}/s, length-sorted calls of "
            f"{size} {rounds['sorted_calls_per_round']:.0f}/s; labels that change alone vs in batches: "
            f"{batch_dependence(run['labels_batch_dependent'])}; server answers differing from offline alone: "
            f"{run['answers_differing']}/100"
        )
    summary = (
        f"{machine_line(run.get('machine'))}; load: {run.get('load_generator', 'Python httpx clients')}; "
        f"offline batched {offline:.0f} sentences/s{extra}"
    )
    return levels_table(
        name, {"levels": levels}, f"python bench/serve_load.py --dataset {run['dataset']} --form {run['form']}", summary
    )


def long_text_table(name: str, run: dict[str, Any]) -> list[str]:
    rows = [
        {
            "mode": mode,
            "accuracy [95% CI]": f"{r['accuracy']:.4f} {interval(r['accuracy_ci95'])}",
            "windows": r["windows"],
            "seconds": f"{r['seconds']:.1f}",
            "reviews/s": f"{r['reviews_per_s']:.1f}",
            **({"peak MB": f"{r['peak_mb']:.0f}"} if "peak_mb" in r else {}),
        }  # fmt: skip
        for mode, r in run["modes"].items()
    ]
    command = f"python bench/long_text.py --dataset {run['dataset']} --form {run['form']} --reviews {run['reviews']}"
    return [
        f"**{name}** (`{command}`; {machine_line(run.get('machine'))}; max_length {run['max_length']}, "
        f"window overlap {run['window_overlap']}):",
        "",
        *table(rows),
        "",
    ]


def ig_baselines_table(name: str, run: dict[str, Any]) -> list[str]:
    rows = [
        {
            "family": family,
            **{b: f"{row[b]['relative_gap']:.2%} ({row[b]['output_change']:.3f})" for b in ("pad", "mask", "zero")},
        }
        for family, row in run["families"].items()
    ]
    return [
        f"**{name}** (`python bench/ig_baselines.py --steps {run['steps']}`): mean completeness gap relative to "
        "|f(x) - f(baseline)| (and that change itself), per family and baseline:",
        "",
        *table(rows),
        "",
    ]


def int8_variants_table(name: str, run: dict[str, Any]) -> list[str]:
    """bench/int8_variants.py: static int8 recipes, agreement with the fp32 graph and speed beside it."""
    rows = [
        {
            "variant": v["variant"],
            "agreement with fp32": f"{v['agreement_with_fp32']:.4f}",
            "speed": f"{v['speed_vs_fp32_onnx']:.2f}x",
        }
        for v in run["variants"]
    ]
    summary = f"{machine_line(run['machine'])}; {run['dataset']} {run['model']}, speed against fp32 ONNX"
    return [f"**{name}** (`{run['command']}`; {summary}):", "", *table(rows), ""]


TABLES = {
    "repro": repro_table,
    "pytest": pytest_table,
    "label_audit": label_audit_table,
    "inference": inference_table,
    "serve_load": serve_load_table,
    "long_text": long_text_table,
    "predict_reviews": lambda name, run: levels_table(name, run, run["command"], machine_line(run["machine"])),
    "ig_baselines": ig_baselines_table,
    "int8_variants": int8_variants_table,
    "optimum_load": lambda name, run: levels_table(
        name, run, run["command"], f"{machine_line(run['machine'])}; " + ", ".join(f"{p} {v}" for p, v in run["versions"].items())
    ),
}


def vnni_or_amx(m: Any) -> bool:
    return isinstance(m, dict) and any(f in m["cpu_flags"] for f in ("avx512_vnni", "amx_int8", "amx_bf16"))


def batch_invariant(form: dict[str, Any]) -> bool:
    """Whether a record shows the form's labels unchanged between batch 1 and every other batch size."""
    changes = form.get("label_changes_vs_batch_1")
    return isinstance(changes, dict) and bool(changes) and not any(changes.values())


def speed_goals(root: Path) -> list[str]:
    """The speed goals, each from the records that measure it: wrk-driven serve records only, and repro
    records whose note says they started from an empty DVC cache (parts named `<run>-partN-…` summed)."""
    rows = []
    for path, run in current_records(root, "inference"):  # speed of the models committed now, not earlier ones
        forms = run["forms"]
        # a default form gives a text the same answer in any batch: records that did not measure it judge none
        passing = [f for f, r in forms.items() if f != "torch" and r.get("passes_gate") and batch_invariant(r)]
        served = run.get("auto")
        default = served if served in passing else max(passing, key=lambda f: forms[f]["batch_sentences_per_s"], default=None)
        baseline = run.get("baseline", "torch")
        if default is None or baseline not in forms:
            continue
        flags = run["machine"]["cpu_flags"] if isinstance(run["machine"], dict) else []
        amx = "amx_int8" in flags
        if run.get("model", "finetune") != "finetune":  # a student against the teacher's torch fp32
            goal = 6.0 if amx else 3.0
        else:
            goal = 3.5 if amx else 3.0 if vnni_or_amx(run["machine"]) else 1.5
        ratio = forms[default]["batch_sentences_per_s"] / forms[baseline]["batch_sentences_per_s"]
        what = f"{run.get('model', 'finetune')} {run['dataset']}: default form ({default}) vs {baseline.replace('_', ' ')} fp32"
        rows.append(goal_row(path.stem, what, f"{ratio:.2f}×", f"≥ {goal}×", ratio >= goal))
    for path in sorted((root / RECORDS).glob("predict_reviews_*.json")):
        run = json.loads(path.read_text())
        levels = {r.get("run", r.get("form")): r for r in run["levels"]}  # older records: one run per form
        first, default = run["levels"][0], levels.get(run.get("default_run", "auto"))
        if default is not None and default is not first:
            what = f"{default.get('run', 'auto')} vs {first.get('run', first.get('form'))}"
            ratio = first["seconds"] / default["seconds"]
            rows.append(goal_row(path.stem, f"predict, 2,000 reviews: {what}", f"{ratio:.2f}×", "≥ 3×", ratio >= 3))
            peak = default["peak_mb"]
            rows.append(goal_row(path.stem, "predict, 2,000 reviews: peak memory", f"{peak:.0f} MB", "≤ 1024 MB", peak <= 1024))
    for path in sorted((root / RECORDS).glob("serve_load_*.json")):
        run = json.loads(path.read_text())
        levels = {r.get("connections"): r for r in run["levels"]}
        if run.get("load_generator", "").startswith("wrk") and {1, 32} <= set(levels):
            share = levels[32]["sentences_per_s"] / run["offline_sentences_per_s"]
            rows.append(goal_row(path.stem, "serve at 32 connections vs offline batched", f"{share:.0%}", "≥ 90%", share >= 0.9))
            p99 = levels[32]["p99_ms"]
            rows.append(goal_row(path.stem, "serve at 32 connections: p99", f"{p99:.0f} ms", "≤ 150 ms", p99 <= 150))
            extra = levels[1]["p50_ms"] - run["offline_single_p50_ms"]
            rows.append(
                goal_row(path.stem, "serve, lone client: p50 above offline batch 1", f"{extra:+.1f} ms", "≤ 2 ms", extra <= 2)
            )
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((root / RECORDS).glob("repro_*.json")):
        runs.setdefault(path.stem.split("-part")[0], []).append(json.loads(path.read_text()))
    for name, parts in runs.items():
        if isinstance(parts[0].get("machine"), dict) and all("empty DVC cache" in r.get("note", "") for r in parts):
            minutes = sum(r["repro"]["wall_seconds"] for r in parts) / 60
            amx = "amx_bf16" in parts[0]["machine"]["cpu_flags"]
            goal = 25 if amx else 45
            what = "dvc repro from an empty cache" + (f", {len(parts)} parts" if len(parts) > 1 else "")
            rows.append(goal_row(name, what, f"{minutes:.0f} min", f"≤ {goal} min", minutes <= goal))
    if not rows:
        return []
    return ["**Speed goals**, each from the record named (its machine is in its table below):", "", *table(rows), ""]


def goal_row(record: str, goal: str, measured: str, target: str, met: bool) -> dict[str, str]:
    return {"record": record, "goal": goal, "measured": measured, "target": target, "met": "yes" if met else "no"}


def timing_tables(root: Path = Path(".")) -> str:
    """The speed goals, then every committed record, grouped by kind, in name order."""
    lines = [START, "", *speed_goals(root)]
    for kind, render in TABLES.items():
        if kind == "label_audit":  # after the seed studies, as before
            for path in sorted((root / RECORDS).glob("seed_study_*.jsonl")):
                rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
                lines += seed_study_table(path.stem, rows)
        for path in sorted((root / RECORDS).glob(f"{kind}_*.json")):
            lines += render(path.stem, json.loads(path.read_text()))
    return "\n".join([*lines, END])
