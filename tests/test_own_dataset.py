"""A dataset of the user's own, added as the README's "Bring your own data" says: a local CSV whose two
string labels are topics, not sentiment polarity. Every stage runs for it, nothing else reruns, the
polarity-only baseline and behavioural tests are skipped with their reason, and the README block,
docs/results.md, its model card and `dvc plots show` all include it."""

from __future__ import annotations

import re
import shutil
import sys

import pandas as pd
import pytest
import yaml

from conftest import REPO, needs_mirror
from dvc_tiny import PER_DATASET, SOURCES, ran, sh

pytestmark = [needs_mirror, pytest.mark.slow, pytest.mark.xdist_group("dvc")]

FILM = re.compile(r"\b(film|films|movie|movies|director|actors?|cinema|screen|story|characters?)\b")
DESCRIPTION = "SST-2 sentences labelled by whether they talk about the film itself"
NO_CASE = "no case: the perturbation changes none of the rows"  # stages/behavior.py's reason


def topics_csv(path) -> None:
    """300 SST-2 sentences labelled `film` or `other` by whether they name the film or its parts."""
    rows = pd.read_parquet(SOURCES["sst2"]).sample(300, random_state=1)
    topic = ["film" if FILM.search(text) else "other" for text in rows["sentence"]]
    pd.DataFrame({"text": rows["sentence"], "topic": topic}).to_csv(path, index=False)


def assert_only_the_label_free_behaviour_tests_run(repo, behavior: dict, polarity_off: str) -> None:
    """Of the templates' tests, those naming a label are skipped (topics has no polarity), those for other datasets
    are skipped as such, and every other one runs on the topics model (or is skipped for having no case)."""
    suite = yaml.safe_load((repo / "data" / "behavior" / "templates.yaml").read_text())["tests"]
    only = {t["name"]: t["datasets"] for t in suite if t.get("datasets")}
    elsewhere = {name: f"only for datasets {datasets}" for name, datasets in only.items() if "topics" not in datasets}
    naming = {t["name"] for t in suite if any(t.get(k) for k in ("expect", "expect_not", "label", "needs"))} - set(elsewhere)
    label_free = {t["name"] for t in suite} - naming - set(elsewhere)
    no_case = {name for name, why in behavior["skipped"].items() if why == NO_CASE}
    assert no_case <= label_free
    assert behavior["skipped"] == {**elsewhere, **dict.fromkeys(naming, polarity_off), **dict.fromkeys(no_case, NO_CASE)}
    ran = behavior["models"]["finetune"]["tests"]
    assert set(ran) == label_free - no_case and {"person names", "place names"} <= set(ran)  # template fills: always cases
    assert all(test["kind"] == "inv" and test["n"] > 0 for test in ran.values())


def test_a_dataset_of_ones_own_runs_every_stage_and_is_reported(tiny_repo):
    repo = tiny_repo
    (repo / "data" / "sources" / "topics").mkdir()
    topics_csv(repo / "data" / "sources" / "topics" / "topics.csv")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["datasets"]["topics"] = {  # the README's entry, with its own names
        "source": "data/sources/topics/topics.csv",
        "description": DESCRIPTION,
        "text_column": "text",
        "label_column": "topic",
        "labels": ["other", "film"],
        "split": "pooled",
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(repo, sys.executable, "-m", "sentiment.report.dvc_blocks")  # its charts and artifacts in dvc.yaml
    output = sh(repo, "dvc", "repro")
    expected = {f"{stage}@topics" for stage in PER_DATASET if stage != "external"}  # no external sets named for it
    assert ran(output) == expected  # the other datasets' split stages read only their own source folders

    baseline = yaml.safe_load((repo / "results" / "topics" / "baseline.json").read_text())
    reason = "labels not declared polarity-ordered (datasets.topics.polarity)"
    assert baseline["skipped"] == {"vader": reason} and "vader" not in baseline
    behavior = yaml.safe_load((repo / "results" / "topics" / "behavior.json").read_text())
    assert_only_the_label_free_behaviour_tests_run(repo, behavior, reason)

    card = (repo / "reports" / "topics" / "MODEL_CARD.md").read_text()
    assert "# Model card: topics text classifier" in card and DESCRIPTION in card
    # tweets' description nowhere (the card may name tweets where a behavioural test is only for that dataset)
    assert f"- vader: {reason}." in card and "English tweets" not in card and "sentiment classifier" not in card
    from huggingface_hub import ModelCard

    hub = ModelCard.load(repo / "reports" / "topics" / "MODEL_CARD.md")
    assert hub.data.pipeline_tag == "text-classification" and "sentiment-analysis" not in hub.data.tags

    for name in ("README.md", "docs"):
        (shutil.copytree if name == "docs" else shutil.copy)(REPO / name, repo / name)
    sh(repo, sys.executable, "-m", "sentiment.report")
    readme, results = (repo / "README.md").read_text(), (repo / "docs" / "results.md").read_text()
    assert re.search(r"\| topics +\| finetune +\|", readme) and f"**topics**, {DESCRIPTION}: " in readme
    topics = results.split("### topics")[1]
    assert f"### topics: {DESCRIPTION}" in results and not re.search(r"^\| vader\b", topics, re.M)  # no figures for it
    assert f"Not fitted: vader ({reason})." in topics

    sh(repo, "dvc", "plots", "show", "-o", "dvc_plots")
    page = (repo / "dvc_plots" / "index.html").read_text()
    assert "topics: confusion matrix, finetune on test" in page
    assert any("topics" in image and "confusion" in image for image in re.findall(r'<img src="([^"]+)"', page))
