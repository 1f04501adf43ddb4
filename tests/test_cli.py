import io
import json
import os
import sys

import pandas as pd
import pytest

from sentiment.cli import main


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
    return cli(capsys, "predict", *argv)


def test_csv_in_jsonl_out(saved_model, capsys):
    pd.DataFrame({"review": ["good film", "bad film", ""]}).to_csv("in.csv", index=False)
    code, _, err = run(capsys, "--input", "in.csv", "--text-column", "review", "--output", "out.jsonl")
    assert code == 0 and "skipped 1 empty" in err
    rows = [json.loads(line) for line in open("out.jsonl")]
    assert len(rows) == 2 and {"text", "label", "label_id", "prob_negative", "prob_positive"} <= set(rows[0])
    assert abs(rows[0]["prob_negative"] + rows[0]["prob_positive"] - 1) < 1e-5
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat("out.jsonl").st_mode & 0o777 == 0o666 & ~umask  # the user's usual mode, not mkstemp's 0600


def test_jsonl_and_text_inputs(saved_model, capsys):
    with open("in.jsonl", "w") as f:
        f.write('{"text": "nice"}\n{"text": "awful"}\n')
    code, out, _ = run(capsys, "--input", "in.jsonl")
    assert code == 0 and len(pd.read_csv(io.StringIO(out))) == 2
    with open("in.txt", "w") as f:
        f.write("one\n\ntwo\nthree\n")
    code, out, err = run(capsys, "--input", "in.txt")
    assert len(pd.read_csv(io.StringIO(out))) == 3 and "skipped 1 empty" in err


def test_stdin(saved_model, capsys, monkeypatch):
    code, out, err = run(capsys, stdin=b"what a lovely film\n", monkeypatch=monkeypatch)
    assert code == 0 and pd.read_csv(io.StringIO(out))["label"].iloc[0] in {"negative", "positive"}
    assert "Loading weights" not in err  # no progress bar for loading a local checkpoint


def test_loading_bar_is_hidden_only_while_the_cli_loads(saved_model):
    from transformers.utils import logging as hf_logging

    from sentiment.cli import load_model

    assert hf_logging.is_progress_bar_enabled()
    load_model("toy")
    assert hf_logging.is_progress_bar_enabled()


def test_long_texts_are_read_in_windows_or_truncated_with_one_warning(saved_model, capsys):
    with open("in.txt", "w") as f:
        f.write(" ".join(["good"] * 50) + "\nshort\n" + " ".join(["bad"] * 40) + "\n")
    code, windowed, err = run(capsys, "--input", "in.txt")
    assert (
        code == 0
        and "warning" not in err
        and "2 texts longer than the model's max_length were scored in overlapping windows" in err
    )
    code, truncated, err = run(capsys, "--input", "in.txt", "--long-text", "truncate")
    assert code == 0 and err.count("warning") == 1 and "2 texts were longer" in err
    windowed, truncated = pd.read_csv(io.StringIO(windowed)), pd.read_csv(io.StringIO(truncated))
    assert windowed["prob_positive"].iloc[1] == truncated["prob_positive"].iloc[1]  # "short": one window either way
    assert (windowed["prob_positive"].iloc[[0, 2]] != truncated["prob_positive"].iloc[[0, 2]]).all()


def test_undecodable_bytes_name_the_line(saved_model, capsys):
    with open("bad.txt", "wb") as f:
        f.write(b"fine\nalso fine\nbro\xffken\n")
    code, _, err = run(capsys, "--input", "bad.txt")
    assert code == 1 and "line 3 is not valid UTF-8" in err and err.count("\n") == 1


def test_missing_model_names_the_dvc_target(in_tmp, capsys, monkeypatch):
    code, _, err = run(capsys, "--input", "-", stdin=b"x\n", monkeypatch=monkeypatch)
    assert code == 1 and "dvc repro finetune@toy" in err


def explain(capsys, *argv):
    return cli(capsys, "explain", *argv)


def test_explain_prints_prediction_top_tokens_and_writes_a_heatmap(saved_model, capsys):
    code, out, _ = explain(capsys, "not a good film at all", "--top", "3", "--ig-steps", "4", "--output", "map.png")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split(": ")[1] in ("negative", "positive")
    probs = [float(part.split()[1]) for part in lines[1].removeprefix("probabilities: ").split(", ")]
    assert abs(sum(probs) - 1) < 1e-3
    for method in ("attention", "rollout", "integrated_gradients"):
        listed = next(line for line in lines if line.startswith(f"{method}: "))
        assert len(listed.split(", ")) == 3
    assert (saved_model / "map.png").stat().st_size > 0


def test_explain_reads_a_file(saved_model, capsys):
    (saved_model / "in.txt").write_text("a lovely film\n")
    code, out, _ = explain(capsys, "--file", "in.txt", "--ig-steps", "4", "--output", "f.png")
    assert code == 0 and out.startswith("prediction: ")


def test_explain_without_a_trained_model_names_the_dvc_target(in_tmp, capsys):
    code, _, err = explain(capsys, "a fine film")
    assert code == 1 and "dvc repro finetune@toy" in err


def test_without_dataset_the_first_of_params_is_used(saved_model, capsys):
    (saved_model / "params.yaml").write_text("datasets:\n  toy: {}\n  other: {}\n")
    (saved_model / "in.txt").write_text("good film\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--input", "in.txt"])
        raise SystemExit(0)
    assert exit_info.value.code == 0 and len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == 1
    (saved_model / "params.yaml").write_text("datasets: {}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--input", "in.txt"])
    assert exit_info.value.code == 1 and "params.yaml lists no datasets: pass --dataset" in capsys.readouterr().err


def test_predict_streams_in_chunks_in_order_and_refuses_a_late_bad_line_before_writing(saved_model, capsys, monkeypatch):
    import sentiment.cli

    texts = [f"{'good' if i % 3 else 'bad'} film number {i}" for i in range(23)]
    with open("in.txt", "w") as f:
        f.write("\n".join(texts) + "\n")
    code, whole, _ = run(capsys, "--input", "in.txt")
    monkeypatch.setattr(sentiment.cli, "CHUNK", 4)
    code, chunked, _ = run(capsys, "--input", "in.txt", "--output", "out.csv")
    assert code == 0 and open("out.csv").read() == whole  # chunk by chunk, the same rows in the same order
    assert pd.read_csv("out.csv")["text"].tolist() == texts
    with open("in.jsonl", "w") as f:
        f.write("".join(json.dumps({"text": t}) + "\n" for t in texts) + "{broken\n")
    code, _, err = run(capsys, "--input", "in.jsonl", "--output", "late.jsonl")
    assert code == 1 and "in.jsonl: line 24 is not valid JSON" in err
    assert not os.path.exists("late.jsonl") and not [p for p in os.listdir(".") if p.startswith(".late.jsonl")]
