"""The console's pages: the login form, the page itself and its static files, all behind the guard."""

from __future__ import annotations

import html
import os
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from recommender_client.console.api import NO_STORE, Console
from recommender_client.console.api import router as api_router
from recommender_client.console.auth import COOKIE, Guard
from recommender_client.console.bodies import check_origin
from recommender_client.console.history import RulesStore
from recommender_client.service.errors import ClientError
from recommender_client.service.intake import read_limited
from recommender_client.service.settings import Settings

# Every console page: as the API's answers (never cached, never sniffed), also never framed and
# with scripts only from this origin.
HEADERS = {
    **NO_STORE,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer makes a form post's Origin "null"
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
}
MAX_LOGIN_BYTES = 4096
_LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Rules console: log in</title>
<link rel="stylesheet" href="/console/login.css"></head><body><main class="login">
<h1>Rules console</h1>{problem}<form method="post" action="/console/login">
<label>Token <input type="password" name="token" id="token" autocomplete="current-password" required></label>
<button type="submit" id="login">Log in</button></form></main></body></html>"""


def static_dir() -> Path:
    """The page's files, shipped inside the package (no CDN: deployments are often offline)."""
    return Path(str(resources.files("recommender_client.console") / "static"))


class GuardedFiles(StaticFiles):
    """Starlette's StaticFiles, answering 401 to a request without credentials and adding ``HEADERS``."""

    def __init__(self, guard: Guard, directory: Path) -> None:
        super().__init__(directory=directory, follow_symlink=False)
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.guard.check(Request(scope)) is None:
            await Response("the console needs credentials", status_code=401, headers=HEADERS)(
                scope, receive, send
            )
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *((k.lower().encode(), v.encode()) for k, v in HEADERS.items()),
                ]
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def _login_page(problem: str = "", status: int = 200) -> HTMLResponse:
    note = f'<p class="problem" id="login-problem">{html.escape(problem)}</p>' if problem else ""
    return HTMLResponse(_LOGIN.format(problem=note), status_code=status, headers=HEADERS)


pages = APIRouter(prefix="/console", include_in_schema=False)


@pages.get("")
async def bare() -> Response:
    return RedirectResponse("/console/", status_code=307, headers=HEADERS)


@pages.get("/")
async def index(request: Request) -> Response:
    """The page, or the way in: a basic-auth challenge, else the token's login form."""
    console: Console = request.app.state.console
    if console.guard.check(request) is not None:
        return FileResponse(static_dir() / "index.html", media_type="text/html", headers=HEADERS)
    if console.guard.uses_basic:
        headers = {**HEADERS, **console.challenge()}
        link = '<a href="/console/login">log in with the token</a>' if console.guard.uses_token else ""
        return HTMLResponse(f"<p>The console needs credentials. {link}</p>", status_code=401, headers=headers)
    return RedirectResponse("/console/login", status_code=303, headers=HEADERS)


@pages.get("/login")
async def login_form(request: Request) -> Response:
    if not request.app.state.console.guard.uses_token:
        return Response("the console is set up for basic auth only", status_code=404, headers=HEADERS)
    return _login_page()


@pages.get("/login.css")
async def login_css() -> Response:
    return FileResponse(static_dir() / "login.css", media_type="text/css", headers=HEADERS)


@pages.post("/login")
async def login(request: Request) -> Response:
    """Trade the token (a form field, never in the URL or a log line) for an HttpOnly session cookie."""
    guard: Guard = request.app.state.console.guard
    if not guard.uses_token:
        return Response("the console is set up for basic auth only", status_code=404, headers=HEADERS)
    try:
        check_origin(request)
    except ClientError as exc:
        return Response(str(exc.detail), status_code=exc.status, headers=HEADERS)
    try:
        raw = await read_limited(
            request, MAX_LOGIN_BYTES, lambda: ClientError(413, "login form too large", kind="console_login")
        )
    except ClientError:  # a form, answered with the login page rather than JSON
        return _login_page("That form was too large.", status=413)
    token = parse_qs(raw.decode("utf-8", "replace")).get("token", [""])[0]
    if not guard.token_matches(token):
        return _login_page("That token is not the console's.", status=401)
    response = RedirectResponse("/console/", status_code=303, headers=HEADERS)
    response.set_cookie(
        COOKIE,
        guard.session_cookie(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/console",
    )
    return response


def mount_console(app: FastAPI, settings: Settings) -> None:
    """Serve the console on ``app`` (the caller checks ``settings.console.enabled``).

    Raises:
        ValueError: no ``rules_path`` (the console edits that file), or its folder or the
            history's is not writable (a read-only mount): refused at start, not at the first publish.
    """
    if settings.rules_path is None:
        raise ValueError("the console edits the rules file: set RANKER_RULES_PATH to enable it")
    guard = Guard(settings.console)
    store = RulesStore(
        settings.rules_path, settings.console.history_dir, max_history=settings.console.max_history
    )
    for folder in {store.rules_path.resolve().parent, store.history_dir.parent}:
        if not os.access(folder, os.W_OK | os.X_OK):  # a publish renames a new file into it
            raise ValueError(f"the console writes into {folder}, which this process cannot write to")
    app.state.console = Console(settings=settings, guard=guard, store=store)
    app.include_router(pages)
    app.include_router(api_router)
    app.mount("/console/static", GuardedFiles(guard, static_dir()), name="console-static")
