"""Text that arrives from outside: `sentiment predict`'s input files (CSV, JSONL, one text per line) read row by
row with an id per row, and the checks on text the JSON parser lets through but the tokenizer cannot take.
Every malformed row is a one-line UserError naming its file and line."""

from __future__ import annotations

import csv
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sentiment.config import UserError

CHUNK = 512  # rows scored and written at a time: memory stays bounded whatever the input's size
FORMATS = ("csv", "jsonl", "txt")
SPOOL_BYTES = 8 << 20  # stdin is kept in memory up to this size, past it in a temporary file
CSV_FIELD_LIMIT = 2**31 - 1  # the csv module's default (128 KiB) would refuse a long review
JSON_TYPES = {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "an array"}


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


def refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str) -> Any:
    """json.loads, every failure a UserError with the reason: malformed JSON, NaN or Infinity, nesting too deep,
    and an integer past Python's 4,300-digit conversion limit (a ValueError that is not a JSONDecodeError)."""
    try:
        return json.loads(text, parse_constant=refuse_constant)
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


def decoded_lines(lines: Iterator[bytes], where: str) -> Iterator[str]:
    """Each line as text (line ends kept, a UTF-8 byte order mark dropped), undecodable bytes named by line."""
    for number, raw in enumerate(lines, start=1):
        line = decode(raw, where, number)
        yield line.removeprefix("\ufeff") if number == 1 else line


def text_value(value: Any, field: str, number: int, where: str) -> str:
    """A JSONL text field as a string: null is an empty text; a number, boolean, object or array is an error."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserError(f"{where}: line {number}: {field!r} is {JSON_TYPES[type(value)]}, expected a string (or null)")
    return value


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


def line_rows(lines: Iterator[str], fmt: str, text_column: str, id_column: str | None, where: str) -> Iterator[tuple[Any, str]]:
    """(id, text) of each row of a plain text input (every line a row) or a JSONL input (every non-blank line)."""
    row_number = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
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
        text = text_value(row[text_column], text_column, number, where)
        if id_column is not None and isinstance(row[id_column], (dict, list)):
            kind = JSON_TYPES[type(row[id_column])]
            raise UserError(f"{where}: line {number}: {id_column!r} is {kind}, expected a string or a number")
        yield (row[id_column] if id_column else row_number), text
        row_number += 1


def column_index(header: list[str], column: str, option: str, where: str) -> int:
    if column not in header:
        raise UserError(f"{where}: missing column {column!r} (has {header}); set {option}")
    if header.count(column) > 1:
        raise UserError(f"{where}: the header names column {column!r} {header.count(column)} times")
    return header.index(column)


def csv_rows(lines: Iterator[str], text_column: str, id_column: str | None, where: str) -> Iterator[tuple[Any, str]]:
    """(id, text) of each row of a CSV with a header, one row at a time; a row with more or fewer fields than
    the header, or broken quoting, is an error naming its line (blank lines are skipped)."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    reader = csv.reader(lines, strict=True)
    read_to = 0  # lines read so far: a row starts on the next one (a quoted field may span lines)
    try:
        header = next(reader, None)
        if header is None:
            raise UserError(f"{where}: empty CSV (expected a header line)")
        read_to = reader.line_num
        text_at = column_index(header, text_column, "--text-column", where)
        id_at = column_index(header, id_column, "--id-column", where) if id_column is not None else None
        row_number = 0
        for fields in reader:
            line, read_to = read_to + 1, reader.line_num
            if not fields:
                continue
            if len(fields) != len(header):
                missing = " (a field is missing)" if len(fields) < len(header) else ""
                raise UserError(
                    f"{where}: malformed CSV: line {line} has {len(fields)} fields, the header {len(header)}{missing}"
                )
            yield (fields[id_at] if id_at is not None else row_number), fields[text_at]
            row_number += 1
    except csv.Error as err:
        raise UserError(f"{where}: malformed CSV: line {read_to + 1}: {err}") from None  # where the broken row starts


@dataclass
class InputRows:
    """An input opened for reading, read from its start each time it is iterated: (id, text) per row, in order
    (a CSV's text column, a JSONL line's text field, or a line of plain text). The id is the `id_column` value
    where one is named, else the 0-based row number."""

    stream: IO[bytes]
    fmt: str
    text_column: str
    id_column: str | None
    where: str  # how errors name the input: its path, or "stdin"

    def __iter__(self) -> Iterator[tuple[Any, str]]:
        self.stream.seek(0)
        lines = decoded_lines(iter(self.stream.readline, b""), self.where)
        if self.fmt == "csv":
            return csv_rows(lines, self.text_column, self.id_column, self.where)
        return line_rows(lines, self.fmt, self.text_column, self.id_column, self.where)

    def check(self) -> int:
        """Read every row once (a malformed one raises its UserError); the number of rows."""
        return sum(1 for _ in self)

    @property
    def size(self) -> int:
        """Bytes in the input."""
        here = self.stream.tell()
        end = self.stream.seek(0, 2)
        self.stream.seek(here)
        return end


@contextmanager
def input_rows(source: str, fmt: str | None, text_column: str, id_column: str | None = None) -> Iterator[InputRows]:
    """The rows of `source` ('-' is stdin, spooled first: in memory up to SPOOL_BYTES, then in a temporary file,
    so it can be checked whole before it is scored); a missing or unreadable file is a one-line error."""
    fmt, where = input_format(source, fmt), "stdin" if source == "-" else source
    if id_column is not None and fmt == "txt":
        raise UserError(f"{where}: plain text has no columns; --id-column needs a CSV or JSONL input")
    if source == "-":
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
            yield InputRows(spool, fmt, text_column, id_column, where)
        return
    if not Path(source).is_file():
        raise UserError(f"input file not found: {source}")
    try:
        stream = open(source, "rb")
    except OSError as err:
        raise UserError(f"cannot read {source}: {err.strerror}") from None
    with stream:
        yield InputRows(stream, fmt, text_column, id_column, where)
