"""Checks on text that arrives from outside (`sentiment predict` input, HTTP request bodies) that the
JSON parser lets through but the tokenizer cannot take."""

from __future__ import annotations


def lone_surrogate(text: str) -> int | None:
    """The index of the first lone surrogate in `text` (JSON's "\\ud800" decodes to one; it is not valid
    Unicode, and the tokenizer raises on it), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return err.start
    return None
