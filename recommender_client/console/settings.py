"""The console's settings, nested in the service's one Settings object (``RANKER_CONSOLE__*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator

from recommender_client.rerank.rules import MAX_RULES_BYTES

# Printable ASCII without ':' (the basic-auth separator) and without spaces.
Username = Annotated[str, StringConstraints(pattern=r"^[!-9;-~]{1,64}$")]


class ConsoleSettings(BaseModel):
    """Whether /console is served, who may use it and how much any one request may carry.

    The console can rewrite the rules every request obeys, so it is off by default and, when
    on, refuses to start without credentials: a token (``Authorization: Bearer``, or the login
    page's cookie) and/or HTTP basic auth (``username`` and ``password``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="serve the operator console at /console")
    token: SecretStr | None = Field(
        default=None, description="bearer token (at least 16 characters) that opens the console"
    )
    username: Username | None = Field(default=None, description="HTTP basic auth user")
    password: SecretStr | None = Field(default=None, description="HTTP basic auth password")
    history_dir: Path | None = Field(
        default=None,
        description="published versions (numbered YAML and JSON metadata); default: <rules_path>.history",
    )
    max_history: int = Field(
        default=200, ge=2, le=10_000, description="versions kept; older ones are deleted on publish"
    )
    max_rules_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=MAX_RULES_BYTES,
        description="largest draft (UTF-8 YAML); at most what the service's own reload accepts",
    )
    max_body_bytes: int = Field(
        default=1 << 20,
        ge=4096,
        description="largest request body (413 beyond): a draft as a JSON string, or as a document",
    )
    max_author_chars: int = Field(default=64, ge=1, le=256)
    preview_deadline_s: float = Field(
        default=5.0, gt=0, le=60, description="deadline of a preview's model call (an operator waits)"
    )

    @model_validator(mode="after")
    def _credentials(self) -> ConsoleSettings:
        if not self.enabled:
            return self
        basic = (self.username is not None, self.password is not None)
        if basic[0] != basic[1]:
            raise ValueError("console: set both username and password for basic auth, or neither")
        if self.token is None and not all(basic):
            raise ValueError(
                "console: enabled without credentials; set RANKER_CONSOLE__TOKEN or "
                "RANKER_CONSOLE__USERNAME and RANKER_CONSOLE__PASSWORD"
            )
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError("console: the token must have at least 16 characters")
        if self.password is not None and len(self.password.get_secret_value()) < 8:
            raise ValueError("console: the password must have at least 8 characters")
        if self.max_body_bytes < self.max_rules_bytes:
            raise ValueError("console: max_body_bytes must be at least max_rules_bytes")
        return self
