"""End to end: the real `dvc repro` on the tiny profile of both datasets, run once per session
(conftest.tiny_run): every stage runs, a rerun does nothing, results travel through a DVC remote and
`dvc artifacts get`, forced reruns are byte-identical, an evaluate param reruns only what reads
evaluate, an edited source file reruns its dataset's stages, and the plots render offline.

What a change would rerun is read from `dvc repro --dry` (the stages whose own deps changed) and
`dvc dag` (what depends on them); each promise of the README is also kept by one real rerun. Tests that
change the repository work on a private copy of it (`tiny_repo`), so any test passes alone."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from huggingface_hub import ModelCard

from conftest import REPO, needs_mirror, truncated_logits
from dvc_tiny import ALL_STAGES, DISTILLED, KEYS, PER_DATASET, downstream, ran, set_param, sh, would_run

pytestmark = [needs_mirror, pytest.mark.slow, pytest.mark.xdist_group("dvc")]


def predictions(root: Path, key: str, model: str, split: str = "test") -> pd.DataFrame:
    """A stage's predictions file (`<model>_<split>.csv` in its data folder), in id order."""
    frame = pd.read_csv(root / "data" / key / model / f"{model}_{split}.csv", dtype={"id": str})
    return frame.sort_values("id", kind="stable").reset_index(drop=True)


def assert_the_fitted_baselines_load_and_answer_as_in_their_stage(root: Path, key: str) -> None:
    """Loaded outside the stage that wrote them, the fitted baselines give the test predictions it wrote: TF-IDF + LR
    its probabilities from the normalised text, VADER its dev-tuned labels from NLTK's compound score of the text."""
    from nltk.sentiment import SentimentIntensityAnalyzer

    test = pd.read_parquet(root / "data" / key / "clean" / "test.parquet")
    folder = root / "data" / key / "baseline"
    for model in ("tfidf_lr", "vader"):
        written = pd.read_csv(folder / f"{model}_test.csv", dtype={"id": str})
        assert written["id"].tolist() == test["id"].astype(str).tolist()
        fitted = joblib.load(folder / f"{model}.joblib")
        if model == "tfidf_lr":
            assert np.allclose(fitted.predict_proba(test["text_norm"]), written.filter(like="prob_").to_numpy(), atol=1e-6)
        else:
            analyzer = SentimentIntensityAnalyzer()
            compound = np.array([analyzer.polarity_scores(text)["compound"] for text in test["text"]])
            assert fitted.predict(compound).tolist() == written["pred"].tolist()


def student_answers(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """sst2's distilled student's labels and probabilities for `texts` (short, left alone by cleaning), from the
    working directory: the engine's torch fp32 logits and a softmax at its head's temperature worked out here."""
    from sentiment.models.classifier import load_classifier

    model, tokenizer, head = load_classifier("data/sst2/distill/model", on="cpu")
    scaled = truncated_logits(model, tokenizer, texts, head["max_length"]) / head["temperature"]
    exp = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    probs = exp / exp.sum(axis=1, keepdims=True)
    return [head["labels"][i] for i in probs.argmax(axis=1)], probs


def test_repro_runs_every_stage_then_nothing(tiny_run):
    root, output = tiny_run
    assert ran(output) == ALL_STAGES
    for key in KEYS:
        for name in (s for s in PER_DATASET if s != "card"):
            assert (root / "metrics" / key / f"{name}.json").exists() and (root / "results" / key / f"{name}.json").exists()
        assert_the_fitted_baselines_load_and_answer_as_in_their_stage(root, key)
        card = (root / "reports" / key / "MODEL_CARD.md").read_text()
        assert "## Exported forms (test)" in card and ("## Ablations" in card) == (key == "sst2")
        assert "Training-label audit" in card and "## Distilled student" in card
        student = json.loads((root / "results" / key / "distill.json").read_text())
        assert student["layers"] == [0] and "ci95" in student["test"]
        teacher, pupil = (predictions(root, key, model) for model in ("finetune", "distill"))
        assert student["agreement_with_teacher"] == pytest.approx(float((teacher["pred"] == pupil["pred"]).mean()))
        assert json.loads((root / "results" / key / "export_distill.json").read_text())["forms"]["torch"]["passes_gate"]
        assert json.loads((root / "data" / key / "export" / "transformers" / "config.json").read_text())["auto_map"]
        hub = ModelCard.load(root / "reports" / key / "MODEL_CARD.md")  # the Hub's own parser reads its metadata
        test = json.loads((root / "results" / key / "evaluate.json").read_text())["models"]["finetune"]["test"]
        assert hub.data.license == "apache-2.0" and hub.data.library_name == "transformers"
        accuracy, f1 = hub.data.eval_results
        assert (accuracy.metric_type, accuracy.metric_value) == ("accuracy", round(test["accuracy"], 4))
        assert (f1.metric_type, f1.metric_value) == ("f1", round(test["f1_macro"], 4))
    ablations = json.loads((root / "results" / "sst2" / "ablations.json").read_text())
    assert set(ablations["configs"]) == {"pretrained cls dropout 0.1", "pretrained mean dropout 0.1", "scratch cls dropout 0.1"}
    assert ablations["configs"]["pretrained cls dropout 0.1"]["test_accuracy_delta_vs_final"] == 0
    assert ran(sh(root, "dvc", "repro")) == set()
    assert "up to date" in sh(root, "dvc", "status")


UNDECLARED = ("checkpoints/", "dvclive/")  # training's scratch (checkpoints, live logs): no stage's deps or outs


def read_under(path: str, declared: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in declared)


def own_temporary(path: str) -> str:
    """A path inside an out's temporary sibling (sentiment.io.atomic_dir: `.evaluate.x1y2z3/...`) as the out's."""
    return re.sub(r"(^|/)\.([^/]+)\.[a-z0-9_]+(?=/|$)", r"\1\2", path)


def param_covered(read: str, declared: str) -> bool:
    return read == declared or read.startswith(declared + ".")


def unread_by_choice(dep: str, params: dict, root: Path) -> bool:
    """A dep a stage reads only in some configurations, which the tiny run leaves unread: the label audit's flags
    (read when clean.drop_label_issues drops them), data/external (read when a set names a local file there) and the
    export's files (behavior and external load the served default form's, none when it is torch); DVC cannot make a
    dep conditional, so the block declares them always."""
    if re.fullmatch(r"data/\w+/label_issues", dep):
        return not params["clean"]["drop_label_issues"]
    if match := re.fullmatch(r"data/(\w+)/export", dep):
        return json.loads((root / "results" / match.group(1) / "export.json").read_text())["default_form"] == "torch"
    if dep == "data/external":
        sources = [spec["source"] for sets in params["external"]["sets"].values() for spec in sets.values()]
        return not any(source.startswith("data/external/") for source in sources)
    return False


def test_each_stage_declares_exactly_the_files_and_params_it_reads(tiny_run):
    """Every stage of the tiny run recorded the repository files it opened and the params it validated
    (sentiment.stage.ReadTrace): each must lie under a declared dep (or its own outs), each declared data dep must
    be read, and the declared params must be exactly those read (a section read whole needs the whole section)."""
    root, _ = tiny_run
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    records = {r["cmd"]: r for r in (json.loads(f.read_text()) for f in (root.parent / "reads").glob("*.json"))}
    blocks = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    problems = []
    for name, stage in sorted(lock.items()):
        record = records.get(stage["cmd"])
        if record is None:
            problems.append(f"{name}: no record of what `{stage['cmd']}` read")
            continue
        deps = [d["path"] for d in stage.get("deps", []) if not d["path"].endswith(".py")]
        outs = [o["path"] for o in stage.get("outs", [])]
        files = {own_temporary(f) for f in record["files"]} - {"params.yaml", "dvc.yaml"}
        files = {f for f in files if not f.startswith(("sentiment/", "stages/", ".", *UNDECLARED)) and not read_under(f, outs)}
        problems += [f"{name}: reads {f}, not under its deps" for f in sorted(files) if not read_under(f, deps)]
        problems += [
            f"{name}: declares {d}, never read"
            for d in deps
            if not any(read_under(f, [d]) for f in files) and not unread_by_choice(d, params, root)
        ]
        # a param interpolated into the command line (`${model.pooling}`) is read, and tracked by the command
        template = blocks[name.split("@")[0]]
        interpolated = [p for p in re.findall(r"\$\{([\w.]+)\}", template.get("do", template)["cmd"]) if p != "key"]
        interpolated = [p for p in interpolated if p.split(".")[0] != "item"]
        declared = [*stage.get("params", {}).get("params.yaml", {}), *interpolated]
        read = [*record["params"], *interpolated]
        problems += [f"{name}: reads param {r}, not declared" for r in read if not any(param_covered(r, d) for d in declared)]
        problems += [f"{name}: declares param {d}, never read" for d in declared if not any(param_covered(r, d) for r in read)]
    assert not problems, "\n".join(problems)


def test_every_plot_file_the_plots_block_names_is_written_by_its_stage(tiny_run):
    """The top-level plots block (generated by sentiment.report.dvc_blocks) names files the stage scripts write:
    after the tiny run, each one exists, so a renamed chart file fails here, not in a user's `dvc plots show`."""
    root, _ = tiny_run
    declared = set()
    for entry in yaml.safe_load((root / "dvc.yaml").read_text())["plots"]:
        for spec in [entry] if isinstance(entry, str) else entry.values():
            declared |= {spec} if isinstance(spec, str) else set(spec["y"]) if isinstance(spec["y"], dict) else set()
    assert declared and sorted(p for p in declared if not (root / p).exists()) == []


def test_predict_and_serve_use_the_student_when_asked(tiny_run, monkeypatch):
    import asyncio

    import httpx

    from sentiment.config import Params
    from sentiment.serving.server import ServeConfig, create_app, load_scorer, model_info

    root, _ = tiny_run
    texts = ["a lovely , moving film", "dull and far too long", "the plot"]
    out = subprocess.run(
        [sys.executable, "-m", "sentiment.cli", "predict", "--dataset", "sst2", "--model", "distill", "--form", "onnx"],
        cwd=root, input="\n".join(texts) + "\n", capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stderr.startswith("model distill, form onnx (asked for)")
    predicted = pd.read_csv(io.StringIO(out.stdout))
    monkeypatch.chdir(root)
    labels, probs = student_answers(texts)  # the student's own torch forward pass: the onnx form must match it
    assert predicted["label"].tolist() == labels and np.allclose(predicted["prob_positive"], probs[:, 1], atol=1e-4)
    params = Params.load()
    cfg = params.section(ServeConfig, "serve")
    scorer = load_scorer("sst2", "onnx", cfg, params, "distill")
    assert scorer.model == "distill" and scorer.meta["distilled_layers"] == [0]

    async def ask() -> httpx.Response:
        app = create_app(scorer, cfg, model_info("sst2", scorer))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for _ in range(600):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                info = (await client.get("/v1/model")).json()
                assert info["model"] == "distill"
                return await client.post("/v1/predict", json={"texts": texts})

    response = asyncio.run(ask())
    assert response.status_code == 200
    answers = response.json()["predictions"]
    assert [a["label"] for a in answers] == predicted["label"].tolist()
    for answer, (_, row) in zip(answers, predicted.iterrows(), strict=True):
        assert answer["probabilities"]["positive"] == pytest.approx(row["prob_positive"], abs=1e-5)


@pytest.fixture(scope="module")
def ssh_remote():
    import ssh_server

    if not ssh_server.available():
        pytest.skip("OpenSSH server is not installed (Debian: apt-get install openssh-server)")
    with ssh_server.server() as server:
        yield server


@pytest.fixture(params=["folder", pytest.param("ssh", marks=pytest.mark.servers)])
def remote(request, tmp_path) -> Callable[[Path, str], None]:
    """Adds a DVC remote as the default of a repo: a local folder, or a path on a real SSH server on loopback."""
    where = tmp_path / "remote"
    if request.param == "folder":
        return lambda repo, *flags: sh(repo, "dvc", "remote", "add", *flags, "-d", "shared", str(where))
    server = request.getfixturevalue("ssh_remote")

    def add(repo: Path, *flags: str) -> None:
        sh(repo, "dvc", "remote", "add", *flags, "-d", "shared", server.url(where))
        sh(repo, "dvc", "remote", "modify", *flags, "shared", "keyfile", str(server.keyfile))

    return add


def test_push_then_pull_in_a_fresh_clone_reruns_nothing(tiny_repo, tmp_path, remote):
    """A GPU user pushes once; a colleague clones, pulls and reruns nothing."""
    remote(tiny_repo, "--local")
    sh(tiny_repo, "dvc", "push", "--run-cache")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(tiny_repo), str(clone))
    remote(clone, "--local")
    sh(clone, "dvc", "pull", "--run-cache")
    assert (clone / "data" / "sst2" / "finetune" / "model" / "head.json").exists()
    assert ran(sh(clone, "dvc", "repro")) == set()
    assert sh(clone, "dvc", "metrics", "diff", "--json").strip() in ("", "{}")  # stderr too: no notice either
    for command in (("metrics", "show"), ("plots", "show")):
        assert "failed to load" not in sh(clone, "dvc", *command).lower()


def test_models_are_artifacts_another_project_gets_from_a_fresh_clone(tiny_repo, tmp_path, remote):
    """`dvc artifacts get` fetches a registered version of each dataset's model and ONNX export by name
    through a DVC remote (a version is a GTO git tag, which `gto register` makes)."""
    from sentiment.models.classifier import load_classifier

    remote(tiny_repo)
    sh(tiny_repo, "git", "commit", "-qam", "a DVC remote")
    sh(tiny_repo, "dvc", "push")
    for name in ("sst2-sentiment", "tweets-sentiment-onnx"):
        sh(tiny_repo, "gto", "register", name)
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(tiny_repo), str(clone))
    other = tmp_path / "other-project"
    other.mkdir()
    sh(other, "dvc", "artifacts", "get", str(clone), "sst2-sentiment", "-o", "model")
    sh(other, "dvc", "artifacts", "get", str(clone), "tweets-sentiment-onnx", "-o", "onnx")
    model, _, meta = load_classifier(other / "model", on=None)
    assert meta["labels"] == ["negative", "positive"] and model.head.out_features == 2
    from sentiment.serving.forms import FORMS

    built = yaml.safe_load((clone / "params.yaml").read_text())["export"]["forms"]  # the forms export builds
    files = {FORMS[f].file for f in built if FORMS[f].file}
    assert files and {*files, *(f.replace(".xml", ".bin") for f in files)} <= {p.name for p in (other / "onnx").iterdir()}


def test_forced_reruns_give_byte_identical_committed_files(tiny_repo):
    """Same inputs, same bytes: metrics, plot CSVs, figures, model cards and dvc.lock do not change; and an
    ablation cell rerun with the same outputs leaves the summary that reads it up to date."""
    for stage in (
        "ablation_cell@sst2-pretrained-cls-0.1-1",
        "split@tweets",
        "label_issues@tweets",
        "baseline@sst2",
        "finetune@sst2",
        "evaluate@sst2",
        "behavior@sst2",
        "external@tweets",
        "card@sst2",
    ):
        sh(tiny_repo, "dvc", "repro", "--force", "--single-item", stage)
    changed = sh(tiny_repo, "git", "status", "--porcelain").strip()
    assert changed == "", sh(tiny_repo, "git", "diff") if changed else ""
    assert "up to date" in sh(tiny_repo, "dvc", "status")


def test_an_evaluate_param_reruns_evaluate_and_what_reads_it(tiny_repo):
    set_param(tiny_repo, "evaluate", "ece_bins", 10)
    # evaluate and distill (which scores its student as evaluate does), and what reads their outputs: slices, the
    # student's export, behavior and external (evaluate.json) and the cards; not the teacher's export, whose
    # temperature is the model folder's own (head.json), not evaluate's
    readers = ("evaluate", "distill")
    stages = ("evaluate", "distill", "slices", "export_distill", "behavior", "external", "card")
    rerun = {f"{s}@{k}" for s in stages for k in KEYS}
    assert would_run(tiny_repo) == {f"{s}@{k}" for s in readers for k in KEYS}
    assert downstream(tiny_repo, {f"{s}@{k}" for s in readers for k in KEYS}) == rerun
    # run for one dataset (the other's stages are the same DAG): each stage that reads evaluate's outputs reruns;
    # export_distill reads the student's folder (its weights and head.json), which an evaluate param leaves as it
    # was, so DVC rightly skips it
    tweets = {s for s in rerun if s.endswith("@tweets")}
    done = ran(sh(tiny_repo, "dvc", "repro", "--downstream", "evaluate@tweets", "distill@tweets"))
    assert done == tweets - {"export_distill@tweets"}


def test_an_edited_source_file_reruns_its_dataset_only(tiny_repo):
    source = tiny_repo / "data" / "sources" / "tweets" / "tweets.csv"
    source.write_text("".join(source.read_text().splitlines(keepends=True)[:-10]))  # drop 10 rows
    (tiny_repo / "data" / "sources" / "sst2" / "notes.txt").write_text("a new file beside sst2's source\n")
    # each split stage reads its own data/sources/<key>/ alone: a file added to sst2's folder reruns split@sst2
    # only, whose splits come out the same, so its clean does not run; tweets' edited file changes its splits,
    # so clean@tweets runs, and after it everything of tweets (the DAG), nothing of sst2
    assert would_run(tiny_repo) == {"split@sst2", "split@tweets"}
    assert ran(sh(tiny_repo, "dvc", "repro", "clean@sst2", "clean@tweets")) == {"split@sst2", "split@tweets", "clean@tweets"}
    assert downstream(tiny_repo, {"clean@tweets"}) == {f"{s}@tweets" for s in (*PER_DATASET, *DISTILLED)} - {"split@tweets"}
    (tiny_repo / "data" / "sources" / "tweets" / "notes.txt").write_text("a new file beside tweets' source\n")
    pending = would_run(tiny_repo)  # a new file in tweets' folder: split@tweets (and what is still pending of tweets)
    assert "split@tweets" in pending and not {s for s in pending if s.endswith("@sst2")}


def test_a_clean_param_reruns_clean_and_downstream_never_split(tiny_repo):
    root = tiny_repo
    set_param(root, "clean", "lemmatize", False)  # changes text_norm, so the clean outputs change
    # behavior and external clean their own texts the same way; label_issues reads clean's train, so it follows clean
    direct = {f"{s}@{k}" for s in ("clean", "behavior", "external") for k in KEYS}
    assert would_run(root) == direct
    everything_after = downstream(root, direct)
    assert everything_after == ALL_STAGES - {f"split@{k}" for k in KEYS}


def test_dvc_plots_show_gathers_every_image_figure(tiny_run, tmp_path):
    """Without a browser: every PNG the generated plots block names, and that exists, is on the page."""
    import importlib.util

    root = tiny_run[0]
    spec = importlib.util.spec_from_file_location("check_plots_offline", REPO / "bench" / "check_plots_offline.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    sh(root, "dvc", "plots", "show", "-o", str(tmp_path / "dvc_plots"))
    images, readable = check.image_figures(tmp_path / "dvc_plots" / "index.html")
    declared = [p for p in yaml.safe_load((root / "dvc.yaml").read_text())["plots"] if isinstance(p, str)]
    present = [p for p in declared if p.endswith(".png") and (root / p).exists()]
    # per dataset: 3 evaluate figures, slices, behavior, external, the label audit's noise matrix
    assert images == readable == len(present) >= 2 * 7


@pytest.mark.servers
def test_plots_render_offline_in_headless_chromium(tiny_repo):
    """Every chart and image dvc.yaml declares is drawn on the offline page in a real browser, and the
    screenshot is not blank (check_plots_offline exits 1 otherwise)."""
    if not shutil.which("chromium"):
        pytest.skip("needs Debian's chromium (.ci/run installs it)")
    sh(tiny_repo, sys.executable, "-m", "sentiment.report.plots_template")
    sh(tiny_repo, "dvc", "config", "plots.html_template", "offline_plots.html")
    shutil.copy(REPO / "bench" / "check_plots_offline.py", tiny_repo / "check_plots_offline.py")
    out = sh(tiny_repo, sys.executable, "check_plots_offline.py", "--out", "dvc_plots", "--screenshot", "shot.png")
    declared = yaml.safe_load((tiny_repo / "dvc.yaml").read_text())["plots"]
    charts, images = sum(isinstance(p, dict) for p in declared), sum(isinstance(p, str) for p in declared)
    found = re.search(r"(\d+) plots declared, (\d+) charts drawn, (\d+) image figures \((\d+) readable\)", out)
    assert found, out
    assert [int(n) for n in found.groups()] == [charts, charts, images, images], out
    assert "cdn.jsdelivr" not in (tiny_repo / "dvc_plots" / "index.html").read_text()
