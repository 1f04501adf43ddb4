"""End to end: the real `dvc repro` on a tiny profile of both datasets, in a temporary copy of
the repository: every stage runs, a rerun does nothing, results travel through a DVC remote,
forced reruns are byte-identical, an evaluate param reruns only what reads evaluate, an edited
source file reruns its dataset's stages, and the plots render offline. (test_dvc_experiments.py
covers params changes upstream of evaluate.) The pipeline runs once per module; each test works on
its own copy of the run repository, so any test passes alone."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import joblib
import pytest
import yaml

from conftest import REPO, needs_mirror
from dvc_tiny import make_repo, ran, set_param, sh

pytestmark = [needs_mirror, pytest.mark.xdist_group("dvc_pipeline")]
PER_DATASET = (
    "split",
    "clean",
    "baseline",
    "finetune",
    "evaluate",
    "slices",
    "attention",
    "export",
    "behavior",
    "external",
    "card",
)
# the tiny profile's ablation grid: pooling {cls, mean} x dropout {0.1} x seed {1}, plus the scratch row
ABLATIONS = {
    "ablation_cell@sst2-pretrained-cls-0.1-1",
    "ablation_cell@sst2-pretrained-mean-0.1-1",
    "ablation_scratch@sst2-1",
    "ablation_summary@sst2",
}
ALL_STAGES = {f"{s}@{k}" for s in PER_DATASET for k in ("sst2", "tweets")} | ABLATIONS


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, str]:
    """The tiny repository after one `dvc repro` of every stage, committed; and that repro's output."""
    root = make_repo(tmp_path_factory.mktemp("pipeline") / "repo", ("sst2", "tweets"))
    output = sh(root, "dvc", "repro")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "tiny run")
    return root, output


@pytest.fixture
def repo(first_run, tmp_path) -> Path:
    """A private copy of the run repository (git history and DVC cache included)."""
    return Path(shutil.copytree(first_run[0], tmp_path / "repo", symlinks=True))


def test_repro_runs_every_stage_then_nothing(first_run, repo):
    assert ran(first_run[1]) == ALL_STAGES
    for key in ("sst2", "tweets"):
        for name in (
            "split",
            "clean",
            "baseline",
            "finetune",
            "evaluate",
            "slices",
            "attribution",
            "export",
            "behavior",
            "external",
        ):
            assert (repo / "metrics" / key / f"{name}.json").exists()
        for model in ("tfidf_lr", "vader"):  # the fitted baselines load outside the stage that wrote them
            assert hasattr(joblib.load(repo / "data" / key / "baseline" / f"{model}.joblib"), "predict_proba")
        card = (repo / "reports" / key / "MODEL_CARD.md").read_text()
        assert "## Exported forms (test)" in card and ("## Ablations" in card) == (key == "sst2")
    ablations = json.loads((repo / "metrics" / "sst2" / "ablations.json").read_text())
    assert set(ablations["configs"]) == {"pretrained cls dropout 0.1", "pretrained mean dropout 0.1", "scratch cls dropout 0.1"}
    assert ablations["configs"]["pretrained cls dropout 0.1"]["test_accuracy_delta_vs_final"] == 0
    second = sh(repo, "dvc", "repro")
    assert ran(second) == set()
    assert "up to date" in sh(repo, "dvc", "status")


def test_push_then_pull_in_a_fresh_clone_reruns_nothing(repo, tmp_path):
    """A GPU user pushes once; a colleague clones, pulls and reruns nothing."""
    remote = tmp_path / "remote"
    sh(repo, "dvc", "remote", "add", "--local", "-d", "shared", str(remote))
    sh(repo, "dvc", "push", "--run-cache")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    sh(clone, "dvc", "remote", "add", "--local", "-d", "shared", str(remote))
    sh(clone, "dvc", "pull", "--run-cache")
    assert (clone / "data" / "sst2" / "finetune" / "model" / "head.json").exists()
    assert ran(sh(clone, "dvc", "repro")) == set()
    # stdout only: DVC notes on stderr that the live dvclive files (not committed) are absent
    assert sh(clone, "dvc", "metrics", "diff", "--json", stderr=False).strip() in ("", "{}")


def test_models_are_artifacts_another_project_gets_from_a_fresh_clone(repo, tmp_path):
    """`dvc artifacts get` fetches a registered version of each dataset's model and ONNX export by name
    through a DVC remote (a version is a GTO git tag, which `gto register` makes)."""
    from sentiment.models import load_classifier

    remote = tmp_path / "remote"
    sh(repo, "dvc", "remote", "add", "-d", "storage", str(remote))
    sh(repo, "git", "commit", "-qam", "a DVC remote")
    sh(repo, "dvc", "push")
    for name in ("sst2-sentiment", "tweets-sentiment-onnx"):
        sh(repo, "gto", "register", name)
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    other = tmp_path / "other-project"
    other.mkdir()
    sh(other, "dvc", "artifacts", "get", str(clone), "sst2-sentiment", "-o", "model")
    sh(other, "dvc", "artifacts", "get", str(clone), "tweets-sentiment-onnx", "-o", "onnx")
    model, _, meta = load_classifier(other / "model", on=None)
    assert meta["labels"] == ["negative", "positive"] and model.head.out_features == 2
    assert {"model.onnx", "model_int8.onnx", "model_optimized_int8.onnx"} <= {p.name for p in (other / "onnx").iterdir()}


def test_forced_reruns_give_byte_identical_committed_files(repo):
    """Same inputs, same bytes: metrics, plot CSVs, figures, model cards and dvc.lock do not change."""
    for stage in (
        "split@tweets",
        "baseline@sst2",
        "finetune@sst2",
        "evaluate@sst2",
        "behavior@sst2",
        "external@tweets",
        "card@sst2",
    ):
        sh(repo, "dvc", "repro", "--force", "--single-item", stage)
    changed = sh(repo, "git", "status", "--porcelain").strip()
    assert changed == "", sh(repo, "git", "diff") if changed else ""
    assert "up to date" in sh(repo, "dvc", "status")


def test_an_evaluate_param_reruns_evaluate_only(repo):
    set_param(repo, "evaluate", "ece_bins", 10)
    # evaluate, and what reads its outputs: slices, behavior and external (evaluate.json) and the model cards (all metrics)
    rerun = ("evaluate", "slices", "behavior", "external", "card")
    assert ran(sh(repo, "dvc", "repro")) == {f"{s}@{k}" for s in rerun for k in ("sst2", "tweets")}


def test_an_edited_source_file_reruns_its_dataset_only(repo):
    source = repo / "data" / "sources" / "tweets.csv"
    source.write_text("".join(source.read_text().splitlines(keepends=True)[:-10]))  # drop 10 rows
    # every split and external stage reads data/sources; only the tweets split comes out different
    assert ran(sh(repo, "dvc", "repro")) == {"split@sst2", "external@sst2"} | {f"{s}@tweets" for s in PER_DATASET}


def test_dvc_plots_show_gathers_every_image_figure(repo):
    """Without a browser: every PNG the generated plots block names, and that exists, is on the page."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_plots_offline", REPO / "bench" / "check_plots_offline.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    sh(repo, "dvc", "plots", "show", "-o", "dvc_plots")
    images, readable = check.image_figures(repo / "dvc_plots" / "index.html")
    declared = [p for p in yaml.safe_load((repo / "dvc.yaml").read_text())["plots"] if isinstance(p, str)]
    present = [p for p in declared if p.endswith(".png") and (repo / p).exists()]
    assert images == readable == len(present) >= 2 * 6  # per dataset: 3 evaluate figures, slices, behavior, external


def test_plots_render_offline_in_headless_chromium(repo):
    if not shutil.which("chromium"):
        pytest.skip("needs Debian's chromium")
    sh(repo, sys.executable, "-m", "sentiment.plots_template")
    sh(repo, "dvc", "config", "plots.html_template", "offline_plots.html")
    shutil.copy(REPO / "bench" / "check_plots_offline.py", repo / "check_plots_offline.py")
    out = sh(repo, sys.executable, "check_plots_offline.py", "--out", "dvc_plots", "--screenshot", "shot.png")
    assert "charts drawn" in out
    images = int(re.search(r"(\d+) image figures \((\d+) readable\)", out).group(1))
    assert images >= 2 * 3  # at least each dataset's confusion, ROC/PR and reliability figures
    assert "cdn.jsdelivr" not in (repo / "dvc_plots" / "index.html").read_text()
