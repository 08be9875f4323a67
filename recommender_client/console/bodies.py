"""The console API's request bodies: read within the settings' limits, parsed strictly, refused as a 4xx."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recommender_client.console.settings import ConsoleSettings
from recommender_client.service.errors import ClientError, validation_detail
from recommender_client.service.intake import read_limited

MAX_MESSAGE_CHARS = 500


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DraftBody(_Body):
    """A draft as YAML text (the text view) or as a document (the form); exactly one of them."""

    yaml: str | None = None
    document: dict[str, Any] | None = None


class PreviewBody(DraftBody):
    """A draft and the request to preview it for (checked as /recommend checks its body)."""

    user_id: Any = None
    k: Any = 10
    context: Any = Field(default_factory=dict)
    now: Any = None


class PublishBody(_Body):
    yaml: str
    base_version: Annotated[int, Field(ge=1)]
    author: str | None = None
    message: Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)] = ""


class RollbackBody(_Body):
    version: Annotated[int, Field(ge=1)]
    base_version: Annotated[int, Field(ge=1)]
    author: str | None = None


def check_origin(request: Request) -> None:
    """Refuse a cross-site write: a browser names the page's origin, which must be this host.

    With the JSON content type required too, a page elsewhere cannot make a logged-in
    operator's browser publish (its cookie or basic credentials would go along otherwise).
    """
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise ClientError(403, f"cross-origin request from {origin[:100]!r} refused", kind="console_origin")


async def read_json(request: Request, model: type[_Body], settings: ConsoleSettings) -> Any:
    """The body as ``model``: 415 unless JSON, 413 past ``max_body_bytes``, 400 bad JSON, 422 bad fields."""
    check_origin(request)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise ClientError(415, "the console API takes application/json bodies", kind="console_media_type")
    limit = settings.max_body_bytes
    raw = await read_limited(
        request,
        limit,
        lambda: ClientError(
            413,
            f"request body larger than {limit} bytes (console max_body_bytes)",
            kind="console_body_too_large",
            close=True,
        ),
    )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise ClientError(400, f"body is not valid JSON: {first['msg']}", kind="console_json") from None
        raise ClientError(422, validation_detail(exc), kind="console_body") from None


def draft_text_size(body: DraftBody, settings: ConsoleSettings) -> None:
    """Exactly one of ``yaml`` and ``document``, the text within ``max_rules_bytes`` (413)."""
    if (body.yaml is None) == (body.document is None):
        raise ClientError(422, "give the draft as exactly one of 'yaml' and 'document'", kind="console_draft")
    if body.yaml is not None:
        rules_size(body.yaml, settings)


def rules_size(text: str, settings: ConsoleSettings) -> None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > settings.max_rules_bytes:
        raise draft_too_large(f"the draft has {size} bytes,", settings)


def draft_too_large(what: str, settings: ConsoleSettings) -> ClientError:
    """The 413 of a draft past ``max_rules_bytes``; ``what`` says how large it is, when known."""
    return ClientError(
        413, f"{what} more than max_rules_bytes={settings.max_rules_bytes}", kind="console_draft_too_large"
    )


def author_of(given: str | None, username: str | None, settings: ConsoleSettings) -> str:
    """Who publishes: the body's ``author``, else the basic-auth user; printable, bounded (422)."""
    author = (given if given is not None else username or "").strip()
    if not author:
        raise ClientError(422, "'author' is required (who publishes this version)", kind="console_author")
    if len(author) > settings.max_author_chars:
        raise ClientError(
            422, f"'author' has more than {settings.max_author_chars} characters", kind="console_author"
        )
    if any(unicodedata.category(c).startswith("C") for c in author):
        raise ClientError(422, "'author' must not hold control characters", kind="console_author")
    return author
