"""The console's JSON API: live rules, schema, validate, preview, publish, history and rollback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from recommender_client.console import bodies
from recommender_client.console.auth import Guard, Operator
from recommender_client.console.drafts import Checked, DraftTooLarge, Problem, check_document, check_text
from recommender_client.console.history import RulesStore, StaleDraft, UnknownVersion
from recommender_client.console.preview import preview
from recommender_client.features import ContextError
from recommender_client.pipeline import RankRequest
from recommender_client.rerank.rules import RuleSet, rules_digest
from recommender_client.rerank.schema import KINDS, rules_json_schema
from recommender_client.service.errors import ClientError, json_response, validation_detail
from recommender_client.service.request_time import request_now
from recommender_client.service.settings import Settings

NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True)
class Console:
    """What every console route needs: the service's settings, the credentials check and the store."""

    settings: Settings
    guard: Guard
    store: RulesStore

    def refusal(self) -> ClientError:
        return ClientError(
            401, "the console needs credentials (a bearer token or basic auth)", kind="console_auth"
        )

    def operator(self, request: Request) -> Operator:
        found = self.guard.check(request)
        if found is None:
            raise self.refusal()
        return found

    def challenge(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="recsys console"' if self.guard.uses_basic else "Bearer"}


class ConsoleRoute(APIRoute):
    """Routes whose :class:`ClientError` becomes its JSON 4xx, never cached (a 401 also says how to log in)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                response = await handler(request)
            except ClientError as exc:
                response = exc.response()
                if exc.status == 401:
                    response.headers.update(request.app.state.console.challenge())
            response.headers.update(NO_STORE)
            return response

        return answer


NOT_UTF8 = (
    "the rules file is not UTF-8 (its undecodable bytes are shown as U+FFFD): the service keeps "
    "the rules it had; publish a fixed draft"
)


def _shown(text: str) -> str:
    """A file's text as JSON can carry it: bytes that are not UTF-8 (kept as surrogates) become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _ok(content: Any, status: int = 200) -> Response:
    return json_response(status, content)


def _draft(body: bodies.DraftBody, console: Console) -> Checked:
    bodies.draft_text_size(body, console.settings.console)
    if body.yaml is not None:
        return check_text(body.yaml)
    assert body.document is not None
    try:
        return check_document(body.document, max_bytes=console.settings.console.max_rules_bytes)
    except DraftTooLarge:
        raise bodies.draft_too_large("the draft's YAML has", console.settings.console) from None


def _valid(checked: Checked) -> RuleSet:
    """The draft's rules, or its problems as a 422 (nothing invalid is previewed or published)."""
    if checked.ruleset is None:
        raise ClientError(422, [p.to_json() for p in checked.problems], kind="console_invalid_rules")
    return checked.ruleset


def _in_force(request: Request) -> dict[str, Any]:
    """What the running service applies now (its RuleBook), which may lag a publish by one check."""
    recommender = getattr(request.app.state, "recommender", None)
    book = recommender.rules if recommender is not None else None
    return {
        "digest": recommender.current_rules().digest if recommender is not None else None,
        "reload_failures": book.failures if book is not None else None,
        "last_error": book.last_error if book is not None else None,
        "reload_interval_s": book.min_interval_s if book is not None else None,
    }


router = APIRouter(prefix="/console/api", route_class=ConsoleRoute)


def _console(request: Request) -> tuple[Console, Operator]:
    """The console and who calls it, checked once per request (401 without credentials)."""
    console: Console = request.app.state.console
    return console, console.operator(request)


@router.get("/rules")
async def live_rules(request: Request) -> Response:
    """The live rules file: its version, YAML text, the parsed document and what the service applies."""
    console, _ = _console(request)
    version, text = await asyncio.to_thread(console.store.live)
    shown = _shown(text)
    checked = check_text(shown, source=str(console.store.rules_path))
    problems = [p.to_json() for p in checked.problems]
    if shown != text:
        problems.insert(0, Problem(NOT_UTF8).to_json())
    return _ok(
        {
            "version": version.to_json(),
            "yaml": shown,
            "document": checked.document,
            "errors": problems,
            "in_force": _in_force(request),
            "path": str(console.store.rules_path),
        }
    )


@router.get("/schema")
async def schema(request: Request) -> Response:
    """The rules file's JSON Schema (pydantic's), the one description the form is built from."""
    _console(request)
    return _ok({"schema": rules_json_schema(), "kinds": sorted(KINDS)})


@router.post("/validate")
async def validate(request: Request) -> Response:
    """Check a draft as the service's reload would; the answer carries both its YAML and its document."""
    console, _ = _console(request)
    body = await bodies.read_json(request, bodies.DraftBody, console.settings.console)
    return _ok(_draft(body, console).to_json())


def _rank_request(request: Request, body: bodies.PreviewBody, console: Console) -> RankRequest:
    """The preview's user, k, context and now, checked by the service's own /recommend intake."""
    intake, settings = request.app.state.intake, console.settings
    fields = {"user_id": body.user_id, "k": body.k, "context": body.context, "now": body.now}
    try:
        checked = intake.model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise ClientError(422, validation_detail(exc), kind="console_preview") from None
    intake.check(checked)
    now = request_now(checked.now, settings)  # /recommend's clock
    return RankRequest(
        user_id=checked.user_id,
        k=checked.k,
        context=checked.context,
        now=now,
        deadline=time.monotonic() + settings.console.preview_deadline_s,
        request_id=f"console-preview-{time.time_ns()}",
    )


@router.post("/preview")
async def preview_draft(request: Request) -> Response:
    """One user's list under the live rules and under the draft, side by side (nothing recorded)."""
    console, _ = _console(request)
    body = await bodies.read_json(request, bodies.PreviewBody, console.settings.console)
    draft = _valid(_draft(body, console))
    rank_request = _rank_request(request, body, console)
    try:
        out = await preview(request.app.state.recommender, draft, rank_request, seed=console.settings.seed)
    except ContextError as exc:  # as /recommend: a context the contract does not take
        raise ClientError(400, str(exc), kind="console_preview") from None
    return _ok(out)


@router.post("/publish")
async def publish(request: Request) -> Response:
    """Make a valid draft live (atomic replace of the rules file); 409 if it starts from a stale version."""
    console, operator = _console(request)
    body = await bodies.read_json(request, bodies.PublishBody, console.settings.console)
    bodies.rules_size(body.yaml, console.settings.console)
    author = bodies.author_of(body.author, operator.username, console.settings.console)
    _valid(check_text(body.yaml))
    return await _published(
        request,
        console,
        lambda: console.store.publish(
            body.yaml, base=body.base_version, author=author, message=body.message.strip()
        ),
    )


async def _published(request: Request, console: Console, write: Callable[[], Any]) -> Response:
    try:
        version = await asyncio.to_thread(write)
    except StaleDraft as exc:
        return _ok({"detail": str(exc), "base_version": exc.base, "live_version": exc.live}, 409)
    return _ok({"version": version.to_json(), "in_force": _in_force(request)})


@router.get("/history")
async def history(request: Request, limit: int | None = None) -> Response:
    """Published versions, newest (the live one) first: author, time, digest, message (50 by default)."""
    console, _ = _console(request)
    limit = min(50, console.store.max_history) if limit is None else limit
    if not 1 <= limit <= console.store.max_history:
        raise ClientError(
            422, f"limit must be between 1 and {console.store.max_history}, got {limit}", kind="console_limit"
        )
    versions = await asyncio.to_thread(console.store.versions, limit)
    return _ok({"versions": [v.to_json() for v in versions], "max_history": console.store.max_history})


@router.get("/history/{number}")
async def version(request: Request, number: int) -> Response:
    """One version's text and its diff from the version it replaced."""
    console, _ = _console(request)
    try:
        found, text, diff = await asyncio.to_thread(console.store.entry, number)
    except UnknownVersion as exc:
        raise ClientError(404, str(exc), kind="console_version") from None
    return _ok(
        {"version": found.to_json(), "yaml": _shown(text), "diff": _shown(diff), "digest": rules_digest(text)}
    )


@router.post("/rollback")
async def rollback(request: Request) -> Response:
    """Publish an earlier version's text again (a new version naming it); 409 on a stale base."""
    console, operator = _console(request)
    body = await bodies.read_json(request, bodies.RollbackBody, console.settings.console)
    author = bodies.author_of(body.author, operator.username, console.settings.console)
    try:
        _, text = await asyncio.to_thread(console.store.version, body.version)
    except UnknownVersion as exc:
        raise ClientError(404, str(exc), kind="console_version") from None
    _valid(check_text(text))
    return await _published(
        request,
        console,
        lambda: console.store.publish(
            text,
            base=body.base_version,
            author=author,
            message=f"rollback to version {body.version}",
            rollback_of=body.version,
        ),
    )
