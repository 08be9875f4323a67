"""The console is off by default, refuses to start without credentials and refuses unauthenticated requests."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from recommender_client.console.auth import COOKIE
from recommender_client.console.settings import ConsoleSettings
from recommender_client.ranking import LocalScorer
from recommender_client.service.app import create_app
from recommender_client.service.settings import Settings
from tests.recommender_client.console.conftest import BASIC, BEARER, PASSWORD, TOKEN, USER, console_settings

CONSOLE_PATHS = ["/console/", "/console/api/rules", "/console/api/schema", "/console/static/console.js"]


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_console_is_off_unless_enabled(artifacts_dir: Path, rules_file: Path) -> None:
    settings = Settings(artifacts_dir=artifacts_dir, rules_path=rules_file)
    assert settings.console.enabled is False
    with TestClient(create_app(settings, scorer=LocalScorer({}))) as client:
        for path in CONSOLE_PATHS:
            assert client.get(path, headers=BEARER).status_code == 404, path
        assert client.post("/recommend", json={"user_id": "u2", "k": 2}).status_code == 200


def test_enabling_needs_credentials_and_a_rules_file(
    artifacts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="enabled without credentials"):
        ConsoleSettings(enabled=True)
    with pytest.raises(ValidationError, match="both username and password"):
        ConsoleSettings(enabled=True, username="ops")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        ConsoleSettings(enabled=True, token="short")  # type: ignore[arg-type]
    monkeypatch.setenv("RANKER_CONSOLE__ENABLED", "true")
    with pytest.raises(ValidationError, match="enabled without credentials"):
        Settings(artifacts_dir=artifacts_dir)
    monkeypatch.setenv("RANKER_CONSOLE__TOKEN", TOKEN)
    from_env = Settings(artifacts_dir=artifacts_dir)
    assert from_env.console.enabled and from_env.console.token is not None
    assert from_env.console.token.get_secret_value() == TOKEN and TOKEN not in repr(from_env)
    with pytest.raises(ValueError, match="RANKER_RULES_PATH"):
        create_app(from_env, scorer=LocalScorer({}))
    nowhere = from_env.model_copy(update={"rules_path": artifacts_dir / "absent" / "rules.yaml"})
    with pytest.raises(ValueError, match="this process cannot write to"):
        create_app(nowhere, scorer=LocalScorer({}))


def test_unauthenticated_and_wrong_credentials_are_refused(console_client: TestClient) -> None:
    wrong = [
        {},
        {"Authorization": "Bearer " + TOKEN[:-1] + "x"},
        {"Authorization": "Bearer "},
        _basic(USER, PASSWORD + "x"),
        _basic("root", PASSWORD),
        {"Authorization": "Basic not-base64!"},
        {"Cookie": f"{COOKIE}={TOKEN}"},  # the cookie is not the token itself
    ]
    for headers in wrong:
        for path in CONSOLE_PATHS:
            response = console_client.get(path, headers=headers, follow_redirects=False)
            assert response.status_code == 401, (path, headers)
        published = console_client.post(
            "/console/api/publish", headers=headers, json={"yaml": "rules: []\n", "base_version": 1}
        )
        assert published.status_code == 401
    challenge = console_client.get("/console/api/rules")
    assert challenge.headers["www-authenticate"] == 'Basic realm="recsys console"'
    assert challenge.json() == {"detail": "the console needs credentials (a bearer token or basic auth)"}
    for headers in (BEARER, BASIC):
        for path in CONSOLE_PATHS:
            assert console_client.get(path, headers=headers).status_code == 200, (path, headers)


def test_the_login_form_trades_the_token_for_a_cookie(artifacts_dir: Path, rules_file: Path) -> None:
    settings = console_settings(artifacts_dir, rules_file, username=None, password=None)
    with TestClient(create_app(settings, scorer=LocalScorer({}))) as client:
        first = client.get("/console/", follow_redirects=False)
        assert (first.status_code, first.headers["location"]) == (303, "/console/login")
        assert 'name="token"' in client.get("/console/login").text
        refused = client.post(
            "/console/login", data={"token": "not-the-token-at-all"}, follow_redirects=False
        )
        assert refused.status_code == 401 and "not the console" in refused.text
        assert COOKIE not in client.cookies
        ok = client.post("/console/login", data={"token": TOKEN}, follow_redirects=False)
        assert (ok.status_code, ok.headers["location"]) == (303, "/console/")
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert TOKEN not in cookie
        assert client.get("/console/api/rules").status_code == 200  # the cookie opens the API
        page = client.get("/console/")
        assert page.status_code == 200 and '<script src="/console/static/console.js"' in page.text
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        assert client.get("/console/static/console.js").headers["cache-control"] == "no-store"


def test_a_login_form_past_4096_bytes_is_a_413(artifacts_dir: Path, rules_file: Path) -> None:
    """Refused from its Content-Length, and while streaming when it declares none (chunked)."""
    settings = console_settings(artifacts_dir, rules_file, username=None, password=None)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    padded = f"token={TOKEN}&pad=".encode() + b"x" * 4096
    with TestClient(create_app(settings, scorer=LocalScorer({}))) as client:
        declared = client.post("/console/login", content=padded, headers=form, follow_redirects=False)
        assert declared.status_code == 413 and "too large" in declared.text
        chunked = client.post(
            "/console/login",
            content=iter([padded[:3000], padded[3000:]]),
            headers=form,
            follow_redirects=False,
        )
        assert chunked.status_code == 413 and COOKIE not in client.cookies
        just_fits = f"token={TOKEN}&pad=".encode().ljust(4096, b"x")
        ok = client.post("/console/login", content=just_fits, headers=form, follow_redirects=False)
        assert ok.status_code == 303  # exactly MAX_LOGIN_BYTES is still a form


def test_writes_from_another_origin_or_not_json_are_refused(console_client: TestClient) -> None:
    body = {"yaml": "rules: []\n", "base_version": 1, "author": "mallory"}
    cross = console_client.post(
        "/console/api/publish", headers={**BEARER, "Origin": "http://evil.example"}, json=body
    )
    assert cross.status_code == 403 and "cross-origin" in cross.json()["detail"]
    form = console_client.post("/console/api/publish", headers=BEARER, data={"yaml": "rules: []"})
    assert form.status_code == 415
    same = console_client.post(
        "/console/api/publish", headers={**BEARER, "Origin": "http://testserver"}, json=body
    )
    assert same.status_code == 200
