"""`sentiment predict` and `sentiment explain` on a tiny saved model: one output row per input row, in order, with
an id; the labels and probabilities of the model's own forward pass (worked out in the test); one-line errors for
every malformed input; no half file."""

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import repo_params
from sentiment.cli import main

TOY = {"source": "toy.csv", "text_column": "text", "label_column": "label", "labels": ["negative", "positive"]}
PARAMS = {
    "datasets": {"toy": TOY},
    "clean": repo_params()["clean"],
    "predict": {**repo_params()["predict"], "batch_size": 4, "long_text": "chunk", "window_overlap": 0.25},
}


@pytest.fixture
def checkout(saved_model):
    """The tiny saved model with a params.yaml beside it, as in a checkout."""
    (saved_model / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return saved_model


def expected(texts: list[str], long_text: str = "chunk") -> list[dict]:
    """The answers predict must write, worked out here and not by the runtime: the saved model's own forward pass on
    each text alone, its windows cut by hand (`chunk`: max_length - 2 tokens between [CLS] and [SEP], consecutive
    windows sharing window_overlap x max_length of them; `truncate`: the first window), the mean logit over the
    windows, and a softmax at the head's temperature. The texts here are ones cleaning leaves as they are."""
    import torch

    from sentiment.models.classifier import load_classifier

    folder = Path("data/toy/finetune/model")
    model, tokenizer, _ = load_classifier(folder, on="cpu")
    head = json.loads((folder / "head.json").read_text())
    width = head["max_length"] - 2
    step = width - int(PARAMS["predict"]["window_overlap"] * head["max_length"])
    answers = []
    for text in texts:
        tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
        starts = [0]
        while long_text == "chunk" and starts[-1] + width < len(tokens):
            starts.append(starts[-1] + step)
        window_logits = []
        for start in starts:
            ids = torch.tensor([[tokenizer.cls_token_id, *tokens[start : start + width], tokenizer.sep_token_id]])
            with torch.no_grad():
                window_logits.append(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].double().numpy())
        scaled = np.mean(window_logits, axis=0) / head["temperature"]
        exp = np.exp(scaled - scaled.max())
        probs = exp / exp.sum()
        best = int(probs.argmax())
        probabilities = dict(zip(head["labels"], probs, strict=True))
        answers.append({"label": head["labels"][best], "label_id": best, "probabilities": probabilities})
    return answers


def cli(capsys, command: str, *argv):
    """(exit code, stdout, stderr) of `sentiment <command> --dataset toy …`."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--dataset", "toy", *argv])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def run(capsys, *argv, stdin: bytes | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    return cli(capsys, "predict", "--form", "torch", *argv)


def test_csv_in_jsonl_out_one_row_per_input_row_with_the_runtimes_answers(checkout, capsys):
    texts = ["good film", "", "bad film", "   ", "a lovely story"]
    pd.DataFrame({"review": texts, "key": ["a", "b", "c", "d", "e"]}).to_csv("in.csv", index=False)
    code, _, err = run(capsys, "--input", "in.csv", "--text-column", "review", "--id-column", "key", "--output", "out.jsonl")
    assert code == 0 and "2 empty texts: no label" in err
    rows = [json.loads(line) for line in open("out.jsonl")]
    assert [r["id"] for r in rows] == ["a", "b", "c", "d", "e"] and [r["text"] for r in rows] == texts
    for row, text in zip(rows, texts, strict=True):
        if text.strip():
            want = expected([text])[0]
            assert row["label"] == want["label"] and row["label_id"] == want["label_id"] and row["reason"] == ""
            assert row["prob_positive"] == pytest.approx(want["probabilities"]["positive"], abs=1e-6)
        else:  # kept in place, with no label and the reason
            assert row["label"] == "" and row["label_id"] is None and row["prob_positive"] is None
            assert row["reason"] == "empty after cleaning"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat("out.jsonl").st_mode & 0o777 == 0o666 & ~umask  # the user's usual mode, not mkstemp's 0600


def test_ids_are_row_numbers_without_an_id_column_and_the_text_file_keeps_blank_lines(checkout, capsys):
    with open("in.jsonl", "w") as f:
        f.write('{"text": "nice", "n": 7}\n\n{"text": "awful", "n": 9}\n{"text": null, "n": 10}\n')
    code, out, _ = run(capsys, "--input", "in.jsonl")
    frame = pd.read_csv(io.StringIO(out), keep_default_na=False)
    assert code == 0 and frame["id"].tolist() == [0, 1, 2] and frame["text"].tolist() == ["nice", "awful", ""]
    assert frame["label"].tolist()[:2] == [a["label"] for a in expected(["nice", "awful"])] and frame["label"][2] == ""
    code, out, _ = run(capsys, "--input", "in.jsonl", "--id-column", "n")
    assert pd.read_csv(io.StringIO(out))["id"].tolist() == [7, 9, 10]
    with open("in.txt", "w") as f:
        f.write("one\n\ntwo\nthree\n")
    code, out, err = run(capsys, "--input", "in.txt")
    frame = pd.read_csv(io.StringIO(out), keep_default_na=False)
    assert frame["id"].tolist() == [0, 1, 2, 3] and frame["text"].tolist() == ["one", "", "two", "three"]
    assert frame["reason"].tolist() == ["", "empty after cleaning", "", ""] and "1 empty texts" in err


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{broken", "not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
        ('{"text": "x", "n": ' + "9" * 5000 + "}", "not valid JSON (Exceeds the limit (4300 digits) for integer string"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON (nested too deeply)"),
        ('["a list"]', "is a JSON list, expected an object with a text field"),
        ('{"body": "x"}', "has no field 'text'"),
        ('{"text": "\\ud800"}', "'text' has a lone surrogate at character 0"),
    ],
)
def test_every_malformed_jsonl_line_is_one_line_naming_it(checkout, capsys, line, reason):
    with open("in.jsonl", "w") as f:
        f.write('{"text": "fine"}\n' + line + "\n")
    code, out, err = run(capsys, "--input", "in.jsonl", "--output", "out.csv")
    assert code == 1 and err.startswith("error: in.jsonl: line 2") and reason in err and err.count("\n") == 1
    assert out == "" and not os.path.exists("out.csv")


def test_an_id_column_that_is_not_there_is_named(checkout, capsys):
    pd.DataFrame({"text": ["a"]}).to_csv("in.csv", index=False)
    code, _, err = run(capsys, "--input", "in.csv", "--id-column", "key")
    assert code == 1 and "missing column 'key'" in err and "--id-column" in err
    (checkout / "in.txt").write_text("a\n")
    code, _, err = run(capsys, "--input", "in.txt", "--id-column", "key")
    assert code == 1 and "plain text has no columns" in err


def test_stdin(checkout, capsys, monkeypatch):
    code, out, err = run(capsys, stdin=b"what a lovely film\n", monkeypatch=monkeypatch)
    assert code == 0 and pd.read_csv(io.StringIO(out))["label"].tolist() == [expected(["what a lovely film"])[0]["label"]]
    assert "Loading weights" not in err  # no progress bar for loading a local checkpoint
    assert err.startswith("model finetune, form torch (asked for)")


def test_the_batch_size_comes_from_params_and_the_option_and_changes_no_answer(checkout, capsys, monkeypatch):
    from sentiment.models import engine

    texts = [f"{'good' if i % 2 else 'bad'} film {'really ' * (i % 5)}" for i in range(11)]
    (checkout / "in.txt").write_text("\n".join(texts) + "\n")
    shapes, padded_batches = [], engine.padded_batches
    monkeypatch.setattr(engine, "padded_batches", lambda tok, ids, size: shapes.append(size) or padded_batches(tok, ids, size))
    _, by_params, _ = run(capsys, "--input", "in.txt")
    _, by_option, _ = run(capsys, "--input", "in.txt", "--batch-size", "7")
    assert shapes == [4, 7] and by_params == by_option
    code, _, err = run(capsys, "--input", "in.txt", "--batch-size", "0")
    assert code == 1 and "expected a positive integer" in err


def test_loading_bar_is_hidden_only_while_the_cli_loads(saved_model):
    from transformers.utils import logging as hf_logging

    from sentiment.cli import load_model

    assert hf_logging.is_progress_bar_enabled()
    load_model("toy", "finetune")
    assert hf_logging.is_progress_bar_enabled()


def test_long_texts_are_read_in_windows_or_truncated_with_one_warning(checkout, capsys):
    texts = [" ".join(["good"] * 50), "short", " ".join(["bad"] * 40)]
    (checkout / "in.txt").write_text("\n".join(texts) + "\n")
    code, windowed, err = run(capsys, "--input", "in.txt")
    assert (
        code == 0
        and "warning" not in err
        and "2 texts longer than the model's max_length were scored in overlapping windows" in err
    )
    code, truncated, err = run(capsys, "--input", "in.txt", "--long-text", "truncate")
    assert code == 0 and err.count("warning") == 1 and "2 texts were longer" in err
    windowed, truncated = pd.read_csv(io.StringIO(windowed)), pd.read_csv(io.StringIO(truncated), keep_default_na=False)
    for frame, mode in ((windowed, "chunk"), (truncated, "truncate")):
        want = [a["probabilities"]["positive"] for a in expected(texts, mode)]
        assert np.allclose(frame["prob_positive"], want, atol=1e-6)
    assert truncated["reason"].tolist() == ["longer than max_length: truncated", "", "longer than max_length: truncated"]
    assert windowed["prob_positive"].iloc[1] == truncated["prob_positive"].iloc[1]  # "short": one window either way


def test_undecodable_bytes_name_the_line(checkout, capsys):
    with open("bad.txt", "wb") as f:
        f.write(b"fine\nalso fine\nbro\xffken\n")
    code, _, err = run(capsys, "--input", "bad.txt")
    assert code == 1 and "line 3 is not valid UTF-8" in err and err.count("\n") == 1


def test_missing_model_names_the_dvc_target(in_tmp, capsys, monkeypatch):
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    code, _, err = run(capsys, "--input", "-", stdin=b"x\n", monkeypatch=monkeypatch)
    assert code == 1 and "dvc repro finetune@toy" in err


def explain(capsys, *argv):
    return cli(capsys, "explain", *argv)


def test_explain_prints_the_runtimes_prediction_top_tokens_and_writes_a_heatmap(saved_model, capsys):
    from PIL import Image

    text = "not a good film at all"
    code, out, _ = explain(capsys, text, "--top", "3", "--ig-steps", "4", "--output", "map.png")
    assert code == 0
    lines = out.splitlines()
    want = expected([text])[0]
    assert lines[0] == f"prediction: {want['label']}"
    probs = dict(part.split() for part in lines[1].removeprefix("probabilities: ").split(", "))
    assert {k: float(v) for k, v in probs.items()} == pytest.approx(want["probabilities"], abs=1e-3)
    words = set(text.split())
    for method in ("attention", "rollout", "integrated_gradients"):
        listed = next(line for line in lines if line.startswith(f"{method}: ")).removeprefix(f"{method}: ").split(", ")
        assert len(listed) == 3 and all(item.split(" (")[0] in words for item in listed)
    with Image.open(saved_model / "map.png") as image:
        assert image.format == "PNG" and min(image.size) > 100


def test_explain_reads_a_file(saved_model, capsys):
    (saved_model / "in.txt").write_text("a lovely film\n")
    code, out, _ = explain(capsys, "--file", "in.txt", "--ig-steps", "4", "--output", "f.png")
    assert code == 0 and out.splitlines()[0] == f"prediction: {expected(['a lovely film'])[0]['label']}"


def test_explain_without_a_trained_model_names_the_dvc_target(in_tmp, capsys):
    code, _, err = explain(capsys, "a fine film")
    assert code == 1 and "dvc repro finetune@toy" in err


def test_without_dataset_the_first_of_params_is_used(checkout, capsys):
    (checkout / "params.yaml").write_text(yaml.safe_dump({**PARAMS, "datasets": {"toy": {}, "other": {}}}, sort_keys=False))
    (checkout / "in.txt").write_text("good film\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--form", "torch", "--input", "in.txt"])
        raise SystemExit(0)
    assert exit_info.value.code == 0 and len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == 1
    (checkout / "params.yaml").write_text(yaml.safe_dump({**PARAMS, "datasets": {}}))
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--input", "in.txt"])
    assert exit_info.value.code == 1 and "params.yaml lists no datasets: pass --dataset" in capsys.readouterr().err


def test_predict_streams_in_chunks_in_order_and_leaves_no_file_when_it_fails_midway(checkout, capsys, monkeypatch):
    import sentiment.cli

    texts = [f"{'good' if i % 3 else 'bad'} film number {i}" for i in range(23)]
    (checkout / "in.txt").write_text("\n".join(texts) + "\n")
    code, whole, _ = run(capsys, "--input", "in.txt")
    monkeypatch.setattr(sentiment.cli, "CHUNK", 4)
    code, _, _ = run(capsys, "--input", "in.txt", "--output", "out.csv")
    assert code == 0 and open("out.csv").read() == whole  # chunk by chunk, the same rows in the same order
    assert pd.read_csv("out.csv")["text"].tolist() == texts
    # the third chunk fails after two were written to the temporary file: neither it nor out2.csv is left
    predictions, calls, seen = sentiment.cli.predictions, [], []

    def failing(scorer, rows, reading):
        calls.append(len(rows))
        seen.append(sorted(p for p in os.listdir(".") if p.startswith(".out2.csv")))
        if len(calls) == 3:
            raise sentiment.cli.UserError("the model failed")
        return predictions(scorer, rows, reading)

    monkeypatch.setattr(sentiment.cli, "predictions", failing)
    code, _, err = run(capsys, "--input", "in.txt", "--output", "out2.csv")
    assert code == 1 and "the model failed" in err and calls == [4, 4, 4]
    assert seen[0] and seen[2]  # the temporary file existed while the chunks were scored
    assert not os.path.exists("out2.csv") and not [p for p in os.listdir(".") if p.startswith(".out2.csv")]


def test_stdin_is_checked_whole_before_any_row_is_written(checkout):
    """A bad row past the first CHUNK rows of stdin: one line naming it, and nothing on stdout (a real pipe)."""
    import subprocess

    from conftest import REPO

    lines = [f"review number {i} was good" for i in range(600)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "sentiment.cli", "predict", "--dataset", "toy", "--form", "torch"]
    good = ("\n".join(lines) + "\n").encode()
    done = subprocess.run(command, cwd=checkout, env=env, input=good, capture_output=True, timeout=300)
    assert done.returncode == 0 and len(pd.read_csv(io.StringIO(done.stdout.decode()))) == 600
    bad = good + b"bro\xffken\n"
    done = subprocess.run(command, cwd=checkout, env=env, input=bad, capture_output=True, timeout=300)
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode() == "error: stdin: line 601 is not valid UTF-8 (invalid start byte at byte 3)\n"


def test_explain_applies_the_dev_temperature_to_the_probabilities(saved_model, capsys):
    """With a fitted temperature, explain prints the probabilities predict gives (temperature-scaled)."""
    head = saved_model / "data" / "toy" / "finetune" / "model" / "head.json"
    head.write_text(json.dumps({**json.loads(head.read_text()), "temperature": 0.25}))
    text = "a lovely good film"
    code, out, _ = explain(capsys, text, "--top", "1", "--ig-steps", "2", "--output", "t.png")
    probs = dict(part.split() for part in out.splitlines()[1].removeprefix("probabilities: ").split(", "))
    want = expected([text])[0]["probabilities"]
    assert code == 0 and {k: float(v) for k, v in probs.items()} == pytest.approx(want, abs=1e-3)
    assert max(want.values()) > 0.55  # the temperature sharpens the tiny model's near-even answer: the test can tell
