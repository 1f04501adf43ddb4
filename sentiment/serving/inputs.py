"""Text that arrives from outside: `sentiment predict`'s input files (CSV, JSONL, one text per line) read row by
row with an id per row, and the checks on text the JSON parser lets through but the tokenizer cannot take.
Every malformed row is a one-line UserError naming it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from sentiment.config import UserError

CHUNK = 512  # CSV rows parsed at a time: memory stays bounded whatever the input's size
FORMATS = ("csv", "jsonl", "txt")


def lone_surrogate(text: str) -> int | None:
    """The index of the first lone surrogate in `text` (JSON's "\\ud800" decodes to one; it is not valid
    Unicode, and the tokenizer raises on it), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return err.start
    return None


def decode(raw: bytes, source: str, first_line: int = 1) -> str:
    """UTF-8 text, or a one-line error naming the line (counted from `first_line`) with undecodable bytes."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + raw[: err.start].count(b"\n")
        raise UserError(f"{source}: line {line} is not valid UTF-8 ({err.reason} at byte {err.start})") from None


def parse_json(text: str) -> Any:
    """json.loads, every failure a UserError with the reason: malformed JSON, nesting too deep, and an integer
    past Python's 4,300-digit conversion limit (a ValueError that is not a JSONDecodeError)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise UserError("nested too deeply") from None
    except ValueError as err:  # int("9" * 5000): "Exceeds the limit (4300 digits) for integer string conversion"
        raise UserError(str(err).split(";")[0].split(":")[0]) from None


def input_format(source: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if source == "-":
        return "txt"
    return {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(Path(source).suffix, "txt")


def jsonl_row(line: str, number: int, where: str) -> dict[str, Any]:
    """One JSONL line as an object; a malformed line is an error naming it."""
    try:
        row = parse_json(line)
    except UserError as err:
        raise UserError(f"{where}: line {number} is not valid JSON ({err})") from None
    if not isinstance(row, dict):
        raise UserError(f"{where}: line {number} is a JSON {type(row).__name__}, expected an object with a text field")
    for field, value in row.items():
        if isinstance(value, str) and (at := lone_surrogate(value)) is not None:
            raise UserError(f"{where}: line {number}: {field!r} has a lone surrogate at character {at} (not valid Unicode)")
    return row


def line_rows(lines: Iterator[bytes], fmt: str, text_column: str, id_column: str | None, where: str) -> Iterator[tuple[Any, str]]:
    """(id, text) of each row of a plain text input (every line a row) or a JSONL input (every non-blank line)."""
    row_number = 0
    for number, raw in enumerate(lines, start=1):
        line = decode(raw, where, number).rstrip("\r\n")
        if fmt == "txt":
            yield row_number, line
            row_number += 1
            continue
        if not line.strip():
            continue
        row = jsonl_row(line, number, where)
        for field in (text_column, id_column):
            if field is not None and field not in row:
                option = "--text-column" if field == text_column else "--id-column"
                raise UserError(f"{where}: line {number} has no field {field!r} (has {sorted(row)}); set {option}")
        text = "" if row[text_column] is None else str(row[text_column])
        yield (row[id_column] if id_column else row_number), text
        row_number += 1


def csv_rows(stream: Any, text_column: str, id_column: str | None, where: str) -> Iterator[tuple[Any, str]]:
    """(id, text) of each row of a CSV with a header, CHUNK rows parsed at a time (pandas' parser names a malformed row)."""
    row_number = 0
    try:
        for frame in pd.read_csv(stream, dtype=str, keep_default_na=False, chunksize=CHUNK, encoding="utf-8"):
            for column, option in ((text_column, "--text-column"), (id_column, "--id-column")):
                if column is not None and column not in frame.columns:
                    raise UserError(f"{where}: missing column {column!r} (has {list(frame.columns)}); set {option}")
            ids = frame[id_column] if id_column else range(row_number, row_number + len(frame))
            for row_id, text in zip(ids, frame[text_column], strict=True):
                if (at := lone_surrogate(text)) is not None:
                    raise UserError(f"{where}: {text_column!r} has a lone surrogate at character {at} (not valid Unicode)")
                yield row_id, text
            row_number += len(frame)
    except pd.errors.EmptyDataError:
        raise UserError(f"{where}: empty CSV (expected a header line)") from None
    except pd.errors.ParserError as err:
        reason = str(err).strip().splitlines()[-1].removeprefix("Error tokenizing data. C error: ")
        raise UserError(f"{where}: malformed CSV: {reason}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{where}: not valid UTF-8 ({err.reason})") from None


@contextmanager
def open_input(source: str) -> Iterator[Any]:
    """The input as a binary stream ('-' is stdin); a missing file is a one-line error."""
    if source == "-":
        yield sys.stdin.buffer
        return
    if not Path(source).is_file():
        raise UserError(f"input file not found: {source}")
    with open(source, "rb") as stream:
        yield stream


def iter_rows(source: str, fmt: str | None, text_column: str, id_column: str | None = None) -> Iterator[tuple[Any, str]]:
    """(id, text) per input row, in order, as they are read: a CSV's text column, a JSONL line's text field, or a
    line of plain text. The id is the `id_column` value where one is named, else the 0-based row number."""
    fmt, where = input_format(source, fmt), "stdin" if source == "-" else source
    if id_column is not None and fmt == "txt":
        raise UserError(f"{where}: plain text has no columns; --id-column needs a CSV or JSONL input")
    with open_input(source) as stream:
        if fmt == "csv":
            yield from csv_rows(stream, text_column, id_column, where)
        else:
            yield from line_rows(iter(stream), fmt, text_column, id_column, where)
