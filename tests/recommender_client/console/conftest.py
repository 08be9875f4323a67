"""A ranking service with the console on, over the tiny artefacts and a popularity LocalScorer."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recommender_client.console.settings import ConsoleSettings
from recommender_client.ranking import LocalScorer
from recommender_client.recall.artifacts import load_artifacts
from recommender_client.service.app import create_app
from recommender_client.service.settings import Settings
from tests.recommender_client.test_service import settings_for

TOKEN = "console-token-0123456789"
USER, PASSWORD = "ops", "basic-pass-123"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
# boost-b lifts category b (i3, i4) by 1.2: u2's list is [i3, i2, i6, ...] (see test_service)
RULES = "rules:\n  - {name: boost-b, type: boost, multiplier: 1.2, categories: [b]}\n"


def console_settings(
    artifacts_dir: Path, rules: Path, *, service: dict[str, Any] | None = None, **console: Any
) -> Settings:
    """test_service's settings (5 recalled items of the tiny catalogue) with the console on.

    ``service``: more service settings (e.g. the model server's address); ``console``: console ones.
    """
    values = {"enabled": True, "token": TOKEN, "username": USER, "password": PASSWORD} | console
    return settings_for(
        artifacts_dir,
        rules_path=rules,
        rules_reload_interval_s=0,
        console=ConsoleSettings(**values),
        **(service or {}),
    )


@pytest.fixture()
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules" / "rules.yaml"
    path.parent.mkdir()
    path.write_text(RULES)
    return path


@pytest.fixture()
def console_client(artifacts_dir: Path, rules_file: Path) -> Iterator[TestClient]:
    """The service with the console (token and basic auth), scored by p = (1 + pop) / (2 + pop)."""
    scorer = LocalScorer(load_artifacts(artifacts_dir).popularity_of(), intercept=0.0, slope=1.0)
    with TestClient(create_app(console_settings(artifacts_dir, rules_file), scorer=scorer)) as client:
        yield client
