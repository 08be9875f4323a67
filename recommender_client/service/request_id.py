"""Request ids: the caller's X-Request-Id when well-formed, else a fresh uuid4; echoed on the response."""

from __future__ import annotations

import re
import uuid

from recommender_client.service.errors import ClientError

HEADER = "X-Request-Id"
MAX_LENGTH = 128
# Printable, no spaces or quotes: the id goes into JSON logs, Parquet and response headers as is.
_WELL_FORMED = re.compile(rf"[A-Za-z0-9._:\-]{{1,{MAX_LENGTH}}}")


def request_id(header: str | None) -> str:
    """The id of this request: the caller's (so its own logs join ours) or a new uuid4 (32 hex).

    Raises:
        ClientError: 400 naming the header when the caller sent one that is empty, longer than
            ``MAX_LENGTH`` or has other characters than letters, digits and ``._:-``. A caller
            who sends an id relies on it, so it is refused rather than silently replaced.
    """
    if header is None:
        return uuid.uuid4().hex
    if _WELL_FORMED.fullmatch(header) is None:
        raise ClientError(
            400,
            f"header {HEADER} must be 1 to {MAX_LENGTH} characters of letters, digits and ._:- "
            f"(got {len(header)} characters)",
            kind="bad_request_id",
        )
    return header
