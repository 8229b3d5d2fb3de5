"""Limit/offset pagination that refuses what it cannot honour.

DRF's ``LimitOffsetPagination`` quietly replaces a bad ``limit`` or ``offset`` with
its default, and passes a huge one to the database (``limit=76222778840409636864``
was a 500 from PostgreSQL). Here both are checked against the bounds the schema
documents and a bad one is a 400 naming the parameter.
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_LIMIT = 1000
# PostgreSQL's OFFSET takes a bigint, but no list here comes near 2**31 rows.
MAX_OFFSET = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,20}")


class Pagination(LimitOffsetPagination):
    """``?limit=`` 1 to 1,000 (default ``PAGE_SIZE``), ``?offset=`` 0 to 2**31-1."""

    max_limit = MAX_LIMIT

    def _parameter(
        self, request: Request, name: str, low: int, high: int
    ) -> int | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        # int() would also take " 7", "+7" and "7_000"; the schema says digits.
        if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
            raise ValidationError({name: [f"must be an integer from {low} to {high}"]})
        return int(raw)

    def get_limit(self, request: Request) -> int | None:
        limit = self._parameter(request, self.limit_query_param, 1, MAX_LIMIT)
        return self.default_limit if limit is None else limit

    def get_offset(self, request: Request) -> int:
        offset = self._parameter(request, self.offset_query_param, 0, MAX_OFFSET)
        return offset or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: (1, MAX_LIMIT),
            self.offset_query_param: (0, MAX_OFFSET),
        }
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"] = {
                **parameter["schema"],
                "minimum": low,
                "maximum": high,
            }
        return parameters
