"""Reading and checking a /recommend body within the settings' limits, before any work is done for it."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from pydantic import ValidationError

from recommender_client.excerpt import clip, excerpt
from recommender_client.service.errors import ClientError, validation_detail
from recommender_client.service.schemas import TOO_MANY_CANDIDATES, RecommendRequest, request_model
from recommender_client.service.settings import Settings


async def read_limited(request: Request, limit: int, too_large: Callable[[], Exception]) -> bytes:
    """The body, raising ``too_large()`` past ``limit`` bytes as soon as that is known.

    A Content-Length over the limit is refused before anything is read; a body that runs
    past it while streaming is refused at the chunk that crosses it (the rest is never read).
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 19 or int(declared) > limit):
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


class Intake:
    """Turns the bytes of a request into a checked :class:`RecommendRequest`, or a :class:`ClientError`.

    The body is read only up to ``max_body_bytes`` (413 past it, from Content-Length before
    reading anything), parsed by pydantic-core straight from bytes (strict UTF-8 and JSON: a
    lone surrogate, invalid UTF-8, a number of more than 4,300 digits or nesting deeper than
    pydantic's limit are a 400), validated against the limits of :func:`request_model` (422),
    then checked for what needs the settings together: ``k``, the candidates' count, the
    context's size (400).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = request_model(
            max_string_length=settings.max_string_length,
            max_context_keys=settings.max_context_keys,
            max_candidates=settings.max_request_candidates,
        )

    async def read(self, request: Request) -> bytes:
        """The body, refusing one over the limit as soon as that is known (the rest is never read)."""
        return await read_limited(request, self.settings.max_body_bytes, self._too_large)

    def _too_large(self) -> ClientError:
        return ClientError(
            413,
            f"request body larger than {self.settings.max_body_bytes} bytes (max_body_bytes)",
            kind="body_too_large",
            close=True,
        )

    def parse(self, raw: bytes) -> RecommendRequest:
        try:
            body = self.model.model_validate_json(raw)
        except ValidationError as exc:
            raise self._refusal(exc) from None
        self.check(body)
        return body

    def _refusal(self, exc: ValidationError) -> ClientError:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0]
        if first["type"] == "json_invalid":
            reason = first["msg"].removeprefix("Invalid JSON: ")
            if "escape" in reason or "surrogate" in reason:
                reason += " (a \\ud800-\\udfff escape must be half of a surrogate pair)"
            return ClientError(400, f"body is not valid JSON: {clip(reason)}", kind="invalid_json")
        for error in errors:
            if error["type"] == TOO_MANY_CANDIDATES:
                return ClientError(400, error["msg"], kind="too_many_candidates")
        return ClientError(422, validation_detail(exc), kind="invalid_body")

    def check(self, body: RecommendRequest) -> None:
        """The limits pydantic cannot check on one field alone."""
        settings = self.settings
        if not 1 <= body.k <= settings.max_k:
            raise ClientError(
                400, f"k must be between 1 and {settings.max_k}, got {excerpt(body.k)}", kind="bad_k"
            )
        if body.candidates is not None:
            if not body.candidates:
                raise ClientError(
                    400,
                    f"candidates must hold 1 to {settings.max_request_candidates} ids, got 0",
                    kind="too_many_candidates",
                )
            distinct = len(set(body.candidates))
            if distinct > settings.max_candidates:
                raise ClientError(
                    400,
                    f"candidates hold {distinct} distinct ids, more than max_candidates="
                    f"{settings.max_candidates} (the most one request scores)",
                    kind="too_many_candidates",
                )
        size = sum(
            len(v.encode()) if isinstance(v, str) else sum(len(s.encode()) for s in v)
            for v in body.context.values()
            if isinstance(v, (str, list))
        )
        if size > settings.max_context_bytes:
            raise ClientError(
                400,
                f"context strings hold {size} bytes, more than max_context_bytes={settings.max_context_bytes} "
                "(the context is repeated on every candidate's row of the Predict)",
                kind="context_too_large",
            )
