"""Who may use the console: a bearer token (or the cookie the login page sets for it) or HTTP basic auth."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from fastapi import Request

from recommender_client.console.settings import ConsoleSettings

COOKIE = "recsys_console"
# What the cookie carries instead of the token itself: an HMAC of a fixed label under the token,
# so the cookie opens the console but does not reveal the token.
_COOKIE_LABEL = b"recsys-console-session-v1"


@dataclass(frozen=True)
class Operator:
    """An authenticated caller: the basic-auth user name, or None for the token (no name in it)."""

    username: str | None


def _same(given: str | bytes, expected: str | bytes) -> bool:
    """Constant-time comparison (``hmac.compare_digest``) of two secrets as UTF-8 bytes."""
    a = given.encode("utf-8", "surrogateescape") if isinstance(given, str) else given
    b = expected.encode("utf-8", "surrogateescape") if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


class Guard:
    """Checks a request's credentials against the console settings; every comparison is constant-time."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self._token = settings.token.get_secret_value() if settings.token is not None else None
        self._username = settings.username
        self._password = settings.password.get_secret_value() if settings.password is not None else None

    @property
    def uses_token(self) -> bool:
        return self._token is not None

    @property
    def uses_basic(self) -> bool:
        return self._password is not None

    def session_cookie(self) -> str:
        """The cookie value that stands for the token (see ``_COOKIE_LABEL``)."""
        assert self._token is not None
        return hmac.new(self._token.encode(), _COOKIE_LABEL, hashlib.sha256).hexdigest()

    def token_matches(self, token: str) -> bool:
        return self._token is not None and _same(token, self._token)

    def _basic(self, encoded: str) -> Operator | None:
        if self._username is None or self._password is None:
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        user, sep, password = decoded.partition(":")
        # both compared whatever the first gives, so the timing tells neither apart
        user_ok = _same(user, self._username)
        password_ok = _same(password, self._password)
        return Operator(self._username) if sep and user_ok and password_ok else None

    def check(self, request: Request) -> Operator | None:
        """The operator behind ``request``, or None when it carries no valid credentials."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token_matches(value.strip()):
            return Operator(None)
        if scheme.lower() == "basic":
            return self._basic(value)
        cookie = request.cookies.get(COOKIE)
        if cookie is not None and self._token is not None and _same(cookie, self.session_cookie()):
            return Operator(None)
        return None
