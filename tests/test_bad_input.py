"""Every bad input named across the issues, fed to the stage commands: a one-line error naming the
thing, a non-zero exit, and no stage output left behind (half-written or not).

Most run the command's module in this process, as `python -m` does (`runpy`), where an uncaught
exception fails the test; the exit status and stderr of a real interpreter are checked where they are
the point (`real_command`): a missing params file, bytes that are not UTF-8, an argparse error, Ctrl-C."""

from __future__ import annotations

import contextlib
import io
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, tiny_params, toy_sentiment, write_clean

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def real_command(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m <args>` in a new interpreter, from `root`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], cwd=root, env=env, capture_output=True, timeout=300)


def run_stage(root: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` from `root`, run in this process; stderr as bytes, like real_command's."""
    err, argv, cwd = io.StringIO(), sys.argv, os.getcwd()
    code = 0
    try:
        os.chdir(root)
        sys.argv = [module, *args]
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else int(done.code is not None)
    finally:
        sys.argv = argv
        os.chdir(cwd)
    return subprocess.CompletedProcess([module, *args], code, b"", err.getvalue().encode())


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    stderr = result.stderr.decode()
    assert result.returncode != 0, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def no_outputs(root: Path, *paths: str) -> bool:
    """None of the stage's outs exist, nor any temporary sibling of them."""
    for path in paths:
        target = root / path
        if target.exists():
            return False
        if target.parent.exists() and any(p.name != target.name and target.name in p.name for p in target.parent.iterdir()):
            return False
    return True


def csv_dataset(root: Path, frame: pd.DataFrame, **overrides) -> None:
    """params.yaml whose `sst2` dataset is a local CSV (pooled 70/15/15 split)."""
    frame.to_csv(root / "source.csv", index=False)
    params = yaml.safe_load(yaml.safe_dump(PARAMS))
    params["datasets"]["sst2"].update(source="source.csv", split="pooled", **overrides)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def sentences(n: int = 60) -> pd.DataFrame:
    text = [f"sentence number {i} is fine" for i in range(n)]
    return pd.DataFrame({"idx": range(n), "sentence": text, "label": [i % 2 for i in range(n)]})


def test_missing_input_file(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    result = run_stage(tmp_path, "stages.clean", "sst2")
    assert_one_line_error(result, "missing input file", "data/sst2/split")
    assert no_outputs(tmp_path, "data/sst2/clean", "metrics/sst2/clean.json", "results/sst2/clean.json")


def test_missing_params_file(tmp_path):
    assert_one_line_error(real_command(tmp_path, "stages.split", "sst2"), "params file not found")


def test_missing_column(tmp_path):
    csv_dataset(tmp_path, sentences().rename(columns={"sentence": "text"}))
    result = run_stage(tmp_path, "stages.split", "sst2")
    assert_one_line_error(result, "missing column 'sentence'")
    assert no_outputs(tmp_path, "data/sst2/split", "metrics/sst2/split.json", "results/sst2/split.json")


def test_unknown_label(tmp_path):
    frame = sentences()
    frame.loc[3, "label"] = 7
    csv_dataset(tmp_path, frame)
    result = run_stage(tmp_path, "stages.split", "sst2")
    assert_one_line_error(result, "unknown label ids [7]")
    assert no_outputs(tmp_path, "data/sst2/split")


def test_nan_text(tmp_path):
    frame = sentences()
    frame.loc[5, "sentence"] = None
    csv_dataset(tmp_path, frame)
    assert_one_line_error(run_stage(tmp_path, "stages.split", "sst2"), "'sentence' has 1 NaN texts")
    assert no_outputs(tmp_path, "data/sst2/split")


def test_empty_split(tmp_path):
    csv_dataset(tmp_path, sentences(0))
    assert_one_line_error(run_stage(tmp_path, "stages.split", "sst2"), "empty")
    assert no_outputs(tmp_path, "data/sst2/split")


def test_invalid_param_value(tmp_path):
    csv_dataset(tmp_path, sentences())
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["split"]["pooled_test_fraction"] = 1.5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert_one_line_error(run_stage(tmp_path, "stages.split", "sst2"), "invalid param", "1.5")
    assert no_outputs(tmp_path, "data/sst2/split")


def finetune_setup(root: Path, **model) -> None:
    write_clean(root, "toy", {"train": toy_sentiment(96, 1), "dev": toy_sentiment(32, 2), "test": toy_sentiment(32, 3)})
    params = tiny_params()
    params["model"].update(model)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def test_unknown_pooling(tmp_path):
    finetune_setup(tmp_path, pooling="max")
    result = run_stage(tmp_path, "stages.finetune", "toy")
    assert_one_line_error(result, "invalid param model.pooling='max'")
    assert no_outputs(tmp_path, "data/toy/finetune", "metrics/toy/finetune.json", "results/toy/finetune.json")


def test_unknown_model_id_while_offline(tmp_path):
    finetune_setup(tmp_path, name="no-such-org/no-such-model")
    result = run_stage(tmp_path, "stages.finetune", "toy")
    assert_one_line_error(result, "no-such-org/no-such-model")
    assert no_outputs(tmp_path, "data/toy/finetune", "metrics/toy/finetune.json", "results/toy/finetune.json")


def test_non_utf8_input_to_predict(tmp_path):
    (tmp_path / "texts.txt").write_bytes(b"a fine film\nbad \xff\xfe bytes\n")
    # input is read (and refused) before any model is loaded
    result = real_command(tmp_path, "sentiment.cli", "predict", "--input", "texts.txt")
    assert_one_line_error(result, "texts.txt: line 2 is not valid UTF-8")


def test_interrupted_finetune_leaves_no_output(tmp_path):
    finetune_setup(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"].update(epochs=500)  # long enough to be interrupted
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.finetune", "toy"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # pytest-xdist workers ignore SIGINT, and a child inherits that: give Ctrl-C back its meaning
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while time.time() < deadline and not any((tmp_path / "checkpoints").glob("*/checkpoint-*")):
        time.sleep(0.5)  # wait until training has written a checkpoint
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the fine-tune ignored Ctrl-C") from None
    assert any((tmp_path / "checkpoints").glob("*/checkpoint-*")), "training never reached a checkpoint"
    assert no_outputs(
        tmp_path, "data/toy/finetune", "metrics/toy/finetune.json", "results/toy/finetune.json", "plots/toy/finetune"
    )


DATASET_STAGES = sorted(p.stem for p in (REPO / "stages").glob("*.py") if p.stem not in ("__init__", "ablation_cell", "search"))


@pytest.mark.parametrize("stage", DATASET_STAGES)
def test_a_missing_or_unknown_dataset_key_is_named(stage, tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    assert_one_line_error(run_stage(tmp_path, f"stages.{stage}"), "the following arguments are required: key")
    assert_one_line_error(run_stage(tmp_path, f"stages.{stage}", "imdb"), "unknown dataset key 'imdb'", "sst2", "tweets")


def test_an_argument_error_exits_non_zero_from_a_real_interpreter(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    assert_one_line_error(real_command(tmp_path, "stages.split", "sst2", "--bogus"), "unrecognized arguments: --bogus")


def test_a_misspelt_or_mistyped_param_is_named(tmp_path):
    finetune_setup(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"]["learning_rat"] = 0.1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert_one_line_error(run_stage(tmp_path, "stages.finetune", "toy"), "invalid param train.learning_rat", "Extra inputs")
    params["train"].pop("learning_rat")
    params["train"]["epochs"] = "two"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert_one_line_error(run_stage(tmp_path, "stages.finetune", "toy"), "invalid param train.epochs='two'")
    assert no_outputs(tmp_path, "data/toy/finetune", "metrics/toy/finetune.json", "results/toy/finetune.json")


def test_a_model_that_cannot_be_loaded_is_named(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror" / "models" / "broken" / "encoder"
    mirror.mkdir(parents=True)
    (mirror / "config.json").write_text('{"model_type": "no-such-family"}')
    finetune_setup(tmp_path, name="broken/encoder", tokenizer=None)
    monkeypatch.setenv("HUB_MIRROR", str(tmp_path / "mirror"))
    assert_one_line_error(run_stage(tmp_path, "stages.finetune", "toy"), "cannot load model 'broken/encoder'")
    assert no_outputs(tmp_path, "data/toy/finetune")


def test_malformed_jsonl_and_csv_lines_are_named(tmp_path):
    (tmp_path / "texts.jsonl").write_text('{"text": "a fine film"}\n\n{"text": "broken\n')
    result = run_stage(tmp_path, "sentiment.cli", "predict", "--input", "texts.jsonl")
    assert_one_line_error(result, "texts.jsonl: line 3 is not valid JSON")
    (tmp_path / "texts.jsonl").write_text('{"text": "a fine film"}\n["not", "an", "object"]\n')
    assert_one_line_error(run_stage(tmp_path, "sentiment.cli", "predict", "--input", "texts.jsonl"), "line 2 is a JSON list")
    (tmp_path / "texts.jsonl").write_text('{"text": "a fine film"}\n{"text": "\\ud800 alone"}\n')
    result = run_stage(tmp_path, "sentiment.cli", "predict", "--input", "texts.jsonl")
    assert_one_line_error(result, "texts.jsonl: line 2: 'text' has a lone surrogate at character 0")
    (tmp_path / "texts.jsonl").write_text('{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    result = run_stage(tmp_path, "sentiment.cli", "predict", "--input", "texts.jsonl")
    assert_one_line_error(result, "line 1 is not valid JSON (nested too deeply)")
    (tmp_path / "texts.csv").write_text('text\n"a fine film"\n"one","two"\n')
    result = run_stage(tmp_path, "sentiment.cli", "predict", "--input", "texts.csv")
    assert_one_line_error(result, "texts.csv: malformed CSV", "line 3")


@pytest.mark.parametrize("value", ["", "  "])
def test_serve_refuses_an_empty_token_at_start(tmp_path, value):
    """A token variable set but empty would turn auth off silently: refused before any model is loaded."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    result = real_command(tmp_path, "sentiment.cli", "serve", "--port", "0", env={"SENTIMENT_TOKEN": value})
    assert_one_line_error(result, "SENTIMENT_TOKEN is set but empty")


MALFORMED = REPO / "tests" / "malformed"  # the corpus: csv/, jsonl/, txt/ and stdin/ inputs, http/ request bodies
FILE_CASES = sorted(f"{kind}/{p.name}" for kind in ("csv", "jsonl", "txt", "stdin") for p in (MALFORMED / kind).iterdir())


def test_the_corpus_holds_at_least_50_malformed_inputs_of_every_kind():
    kinds = {kind: len(list((MALFORMED / kind).iterdir())) for kind in ("csv", "jsonl", "txt", "stdin", "http")}
    assert all(kinds.values()) and sum(kinds.values()) >= 50, kinds


@pytest.mark.parametrize("case", FILE_CASES)
def test_every_malformed_input_of_the_corpus_is_one_line_naming_it_before_any_output(case, tmp_path, monkeypatch, capsys):
    """`sentiment predict` on each file (stdin/ ones piped in, their suffix the --input-format): exit 1, one
    `error:` line naming the input (and the line, where the case's name has one), nothing on stdout, no output
    file and no temporary one; an exception would fail the test (no traceback)."""
    from sentiment.cli import main

    source = MALFORMED / case
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    monkeypatch.chdir(tmp_path)
    if case.startswith("stdin/"):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(source.read_bytes())))
        args, named = ["--input", "-", "--input-format", source.suffix.lstrip(".")], "stdin"
    else:
        args, named = ["--input", str(source)], str(source)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--dataset", "sst2", "--form", "torch", *args, "--output", "out.csv"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 1 and captured.out == ""
    assert captured.err.startswith(f"error: {named}") and captured.err.count("\n") == 1, captured.err
    if "_line" in source.stem:
        assert f"line {source.stem.rsplit('_line', 1)[1]}" in captured.err, captured.err
    assert os.listdir(tmp_path) == ["params.yaml"]
