"""Behavioural tests after CheckList (Ribeiro et al., ACL 2020): minimum functionality (mft), invariance
(inv) and directional (dir) tests generated from committed templates (data/behavior/templates.yaml).

Written here rather than with the `checklist` package: its latest release (0.0.11, a source archive)
does not build with our stack (its setup.py runs `pip install jupyter` while building), and the part
needed (fill templates, perturb, count failures) is this module.
Generation is seeded: the same templates, rows and seed give the same cases.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import Field, PositiveInt, ValidationError, model_validator
from scipy import stats

from sentiment.config import POLARITY_OFF, Section, UserError

Kind = Literal["mft", "inv", "dir"]
PERTURBATIONS = (
    "typo",
    "contraction",
    "punctuation",
    "person",
    "city",
    "url",
    "mention",
    "hashtag",
    "negative_clause",
    "intensify",
)


class BehaviorConfig(Section):
    """params.yaml `behavior`."""

    templates: str
    max_cases: PositiveInt  # per test: a seeded sample of its template fills or test rows
    tolerance: float = Field(ge=0, le=1)  # dir: allowed move of P(label) the wrong way
    worst: PositiveInt  # failures kept per test and model, most severe first


class BehaviorTest(Section):
    """One test of the templates file."""

    name: str
    capability: str
    kind: Kind
    templates: list[str] = []
    source: Literal["templates", "test"] = "templates"
    perturb: Literal[PERTURBATIONS] | None = None  # type: ignore[valid-type]
    expect: str | None = None
    expect_not: str | None = None
    label: str | None = None  # dir: whose probability is watched
    must_not: Literal["rise", "fall"] | None = None
    needs: list[str] = []
    datasets: list[str] | None = None

    @model_validator(mode="after")
    def _complete(self) -> BehaviorTest:
        if self.kind == "mft" and (self.expect is None) == (self.expect_not is None):
            raise ValueError("an mft test needs exactly one of expect / expect_not")
        if self.kind != "mft" and self.perturb is None:
            raise ValueError(f"an {self.kind} test needs perturb")
        if self.kind == "dir" and (self.label is None or self.must_not is None):
            raise ValueError("a dir test needs label and must_not")
        if self.source == "templates" and not self.templates:
            raise ValueError("source: templates needs templates")
        return self

    def wanted_labels(self) -> list[str]:
        return [x for x in (self.expect, self.expect_not, self.label) if x] + self.needs


class Suite(Section):
    """The templates file: word lists, contraction pairs, tests."""

    lexicon: dict[str, list[str]]
    contractions: list[tuple[str, str]] = []
    tests: list[BehaviorTest]


def load_suite(path: Path) -> Suite:
    if not path.exists():
        raise UserError(f"behaviour templates not found: {path} (params.yaml behavior.templates)")
    try:
        suite = Suite.model_validate(yaml.safe_load(path.read_text()))
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UserError(f"{path}: {where}: {first['msg']}") from None
    for test in suite.tests:
        for template in test.templates:
            for slot in placeholders(template):
                if slot.rstrip("0123456789") not in suite.lexicon:
                    raise UserError(f"{path}: test {test.name!r} uses {{{slot}}}, which is not in lexicon")
    return suite


def placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


@dataclass
class Case:
    """One input (mft) or input pair (inv, dir); `fill` is what the template slots were filled with."""

    text: str
    perturbed: str | None = None
    fill: dict[str, str] = field(default_factory=dict)


def fill_templates(templates: list[str], lexicon: dict[str, list[str]], n: int, rng: np.random.Generator) -> list[Case]:
    """Up to n distinct sentences, each a random template with random words (a slot `x2` differs from `x`)."""
    cases: dict[str, Case] = {}
    for _ in range(n * 20):
        if len(cases) >= n:
            break
        template = templates[rng.integers(len(templates))]
        fill: dict[str, str] = {}
        for slot in sorted(placeholders(template)):  # `x` before `x2`
            words = [w for w in lexicon[slot.rstrip("0123456789")] if w not in fill.values()]
            fill[slot] = words[rng.integers(len(words))]
        text = template.format(**fill)
        cases.setdefault(text, Case(text, fill=fill))
    return list(cases.values())


# --- perturbations: (text, fill, rng) -> the changed text, or None where it does not apply ---------


def _typo(text: str, rng: np.random.Generator) -> str | None:
    """Swap two adjacent letters inside one word of four letters or more."""
    spans = [m.span() for m in re.finditer(r"[A-Za-z]{4,}", text)]
    if not spans:
        return None
    start, end = spans[rng.integers(len(spans))]
    i = int(rng.integers(start + 1, end - 2)) if end - start > 3 else start
    if text[i] == text[i + 1]:
        return None
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def _contraction(text: str, pairs: list[tuple[str, str]]) -> str | None:
    """Contract the first long form found, else expand the first contraction (SST-2's "is n't" too)."""
    for long, short in pairs:
        pattern = re.compile(rf"\b{re.escape(long)}\b", re.IGNORECASE)
        if pattern.search(text):
            return pattern.sub(short, text, count=1)
    for long, short in pairs:
        head, tail = re.match(r"(.*?)((?:n't|'\w+))$", short).groups()
        pattern = re.compile(rf"\b{re.escape(head)} ?{re.escape(tail)}", re.IGNORECASE)
        if pattern.search(text):
            return pattern.sub(long, text, count=1)
    return None


def _swap(text: str, fill: dict[str, str], slot: str, words: list[str], rng: np.random.Generator) -> str | None:
    if slot not in fill:
        return None
    others = [w for w in words if w != fill[slot]]
    return re.sub(rf"\b{re.escape(fill[slot])}\b", others[rng.integers(len(others))], text)


def perturb(kind: str, text: str, fill: dict[str, str], suite: Suite, rng: np.random.Generator) -> str | None:
    lex = suite.lexicon

    def pick(name: str) -> str:
        return lex[name][rng.integers(len(lex[name]))]

    if kind == "typo":
        return _typo(text, rng)
    if kind == "contraction":
        return _contraction(text, suite.contractions)
    if kind == "punctuation":
        stripped = text.rstrip(" .!?")
        return stripped if stripped != text else f"{text}."
    if kind in ("person", "city"):
        return _swap(text, fill, kind, lex[kind], rng)
    if kind in ("url", "hashtag"):
        return f"{text} {pick(kind)}"
    if kind == "mention":
        return f"{pick('mention')} {text}"
    if kind == "negative_clause":
        return f"{text.rstrip(' .!?')}, but the {pick('thing')} was {pick('negative')}."
    if kind == "intensify":
        word = fill.get("positive") or fill.get("negative")
        if not word:
            return None
        return re.sub(rf"\b{re.escape(word)}\b", f"{pick('intensifier')} {word}", text, count=1)
    raise UserError(f"unknown perturbation {kind!r}")


def build_cases(test: BehaviorTest, suite: Suite, rows: list[str], n: int, seed: int) -> list[Case]:
    """The test's cases: template fills or test rows, perturbed for inv/dir (unchanged rows skipped)."""
    rng = np.random.default_rng(seed)
    if test.source == "templates":
        bases = fill_templates(test.templates, suite.lexicon, n if test.kind == "mft" else n * 2, rng)
    else:
        bases = [Case(t) for t in rows]
    if test.kind == "mft":
        return bases[:n]
    cases = []
    for case in bases:
        changed = perturb(test.perturb, case.text, case.fill, suite, rng)
        if changed is not None and changed != case.text:
            cases.append(Case(case.text, changed, case.fill))
        if len(cases) == n:
            break
    return cases


# --- running a test ---------------------------------------------------------------------------

Score = Callable[[list[str]], tuple[np.ndarray, np.ndarray]]  # texts -> (probabilities (n, labels), labels (n,))


def failure_interval(failures: int, n: int) -> list[float]:
    """95% Wilson interval of the failure rate."""
    ci = stats.binomtest(failures, n).proportion_ci(0.95, method="wilson")
    return [float(ci.low), float(ci.high)]


def run_test(
    test: BehaviorTest, cases: list[Case], score: Score, labels: list[str], tolerance: float
) -> tuple[dict[str, Any], pd.DataFrame]:
    """(summary, frame of cases with `failed` and `severity`)."""
    index = {name: i for i, name in enumerate(labels)}
    before, pred = score([c.text for c in cases])
    frame = pd.DataFrame({"text": [c.text for c in cases], "predicted": [labels[i] for i in pred]})
    if test.kind == "mft":
        if test.expect:
            k = index[test.expect]
            failed, severity = pred != k, 1 - before[:, k]
        else:
            k = index[test.expect_not]
            failed, severity = pred == k, before[:, k]
        frame["expected"] = test.expect or f"not {test.expect_not}"
    else:
        after, pred_after = score([c.perturbed for c in cases])
        frame["perturbed"] = [c.perturbed for c in cases]
        frame["predicted_after"] = [labels[i] for i in pred_after]
        if test.kind == "inv":
            failed = pred_after != pred
            severity = np.abs(after - before).max(axis=1)
            frame["expected"] = "same label"
        else:
            k = index[test.label]
            move = (after[:, k] - before[:, k]) * (1 if test.must_not == "rise" else -1)
            failed, severity = move > tolerance, move
            frame["expected"] = f"P({test.label}) does not {test.must_not} by more than {tolerance}"
    frame["failed"], frame["severity"] = failed, np.round(severity, 6)
    n, failures = len(cases), int(np.sum(failed))
    summary = {
        "capability": test.capability,
        "kind": test.kind,
        "n": n,
        "failures": failures,
        "failure_rate": failures / n,
        "ci95": failure_interval(failures, n),
    }
    return summary, frame


def capability_summary(tests: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per capability: its tests, their cases, and the mean failure rate over its tests."""
    out: dict[str, dict[str, Any]] = {}
    for name, t in tests.items():
        if "n" not in t:
            continue
        entry = out.setdefault(t["capability"], {"tests": [], "n": 0, "rates": []})
        entry["tests"].append(name)
        entry["n"] += t["n"]
        entry["rates"].append(t["failure_rate"])
    return {cap: {"tests": e["tests"], "n": e["n"], "mean_failure_rate": float(np.mean(e["rates"]))} for cap, e in out.items()}


def skip_reason(test: BehaviorTest, key: str, labels: list[str], polarity: bool) -> str | None:
    """Why `test` does not apply to this dataset's model, or None. Tests that name labels assume sentiment
    polarity (positive words make `positive` likelier), so they need `datasets.<key>.polarity`."""
    if test.datasets is not None and key not in test.datasets:
        return f"only for datasets {test.datasets}"
    if test.wanted_labels() and not polarity:
        return POLARITY_OFF.format(key=key)
    missing = [x for x in test.wanted_labels() if x not in labels]
    return f"the model has no label {missing[0]!r}" if missing else None


def failure_chart(path: Path, table: pd.DataFrame, key: str, skipped: dict[str, str]) -> None:
    """Failure rate per test (bars per model) with 95% intervals; a line saying so when every test was skipped."""
    from sentiment.io import pyplot, save_figure

    plt = pyplot()
    tests = list(dict.fromkeys(table["test"]))
    models = list(dict.fromkeys(table["model"]))
    if not tests:
        fig, ax = plt.subplots(figsize=(8, 1.5))
        reasons = sorted(set(skipped.values()))
        ax.text(0.5, 0.5, "every test skipped: " + "; ".join(reasons), ha="center", va="center", wrap=True)
        ax.set(title=f"{key}: behavioural tests", xticks=[], yticks=[])
        save_figure(fig, path)
        return
    height = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(tests) * len(models) + 1.2))
    for j, model in enumerate(models):
        rows = table[table["model"] == model].set_index("test").reindex(tests)
        y = np.arange(len(tests)) + j * height
        err = np.vstack([rows["failure_rate"] - rows["ci_low"], rows["ci_high"] - rows["failure_rate"]])
        ax.barh(y, rows["failure_rate"], height, xerr=err, label=model, capsize=2)
    ax.set_yticks(np.arange(len(tests)) + height * (len(models) - 1) / 2, tests)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="failure rate (95% Wilson interval)", title=f"{key}: behavioural tests")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)
