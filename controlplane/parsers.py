"""JSON bodies refused before they can hurt: too deep to parse safely.

Python's ``json`` recurses once per nesting level, so about 1,500 ``[`` in a 3 KB
body end in ``RecursionError`` (a 500). No body this API accepts nests deeper than a
handful of levels; :func:`nesting_problem` finds a deeper one with a linear scan of
the text (strings removed, brackets counted) before ``json.loads`` sees it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json

MAX_DEPTH = 32
# A JSON string, escapes included (unrolled so long strings cost no backtracking).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def nesting_problem(text: str, limit: int = MAX_DEPTH) -> str | None:
    """Why ``text`` nests too deep to parse, or None. Malformed JSON is left to the
    parser to describe; this only counts brackets outside strings."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    depth = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > limit:
                return f"JSON nested deeper than {limit} levels"
        else:
            depth -= 1
    return None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser behind the nesting check (400 naming the problem)."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            text = stream.read().decode(encoding)
            problem = nesting_problem(text)
            if problem is not None:
                raise ParseError(f"JSON parse error - {problem}")
            constant = json.strict_constant if self.strict else None
            return json.loads(text, parse_constant=constant)
        except (ValueError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
