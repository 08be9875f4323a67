"""Client errors of the HTTP API as JSON bodies that always encode and quote only a bounded excerpt."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Response
from pydantic import ValidationError

from recommender_client.excerpt import EXCERPT_CHARS, clip, excerpt

# FastAPI lists every validation error; 2,000 bad candidate ids would echo 2,000 entries.
MAX_ERRORS = 10
# A location names a field, or a context key the client chose (which may be the too-long one).
LOC_CHARS = 100


class ClientError(Exception):
    """A request the client got wrong: answered with ``status`` and ``{"detail": ...}``, never a 5xx.

    Attributes:
        status: the HTTP status (400, 413, 422).
        detail: a message, or FastAPI-style validation entries (already bounded).
        kind: the ``ranker_errors`` label.
        close: ask the server to close the connection (the rest of the body is not read).
    """

    def __init__(
        self, status: int, detail: str | list[dict[str, Any]], *, kind: str, close: bool = False
    ) -> None:
        super().__init__(detail if isinstance(detail, str) else f"{len(detail)} validation errors")
        self.status = status
        self.detail = detail if not isinstance(detail, str) else clip(detail, 4 * EXCERPT_CHARS)
        self.kind = kind
        self.close = close

    def response(self) -> Response:
        headers = {"Connection": "close"} if self.close else None
        return json_response(self.status, {"detail": self.detail}, headers=headers)


def json_response(status: int, content: Any, *, headers: Mapping[str, str] | None = None) -> Response:
    """Strict JSON (no NaN) in UTF-8; the content must hold only UTF-8-safe strings (see ``_input``)."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body.encode("utf-8"), status_code=status, media_type="application/json", headers=headers)


def _input(value: Any) -> Any:
    """The part of a rejected value an error body may quote: JSON-safe, UTF-8-safe and short."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 63 else excerpt(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return clip(value)
    return excerpt(value)  # containers and bytes: a reprlib sketch of the first members


def _loc(loc: Sequence[int | str]) -> list[int | str]:
    return ["body", *(part if isinstance(part, int) else clip(str(part), LOC_CHARS) for part in loc)]


def validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    """FastAPI's 422 entries (type, loc, msg, input), at most ``MAX_ERRORS`` and each bounded."""
    errors = exc.errors(include_url=False, include_context=False)
    detail: list[dict[str, Any]] = [
        {
            "type": e["type"],
            "loc": _loc(e["loc"]),
            "msg": clip(e["msg"]),
            "input": _input(e.get("input")),
        }
        for e in errors[:MAX_ERRORS]
    ]
    if len(errors) > MAX_ERRORS:
        detail.append(
            {"type": "too_many_errors", "loc": ["body"], "msg": f"{len(errors) - MAX_ERRORS} more not shown"}
        )
    return detail
