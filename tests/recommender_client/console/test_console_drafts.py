"""Drafts: one YAML parse gives both the form's document and the service's verdict."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import yaml

from recommender_client.console.drafts import check_text
from recommender_client.rerank.rules import parse_rules

BOOST = "rules:\n  - {name: boost-b, type: boost, multiplier: 1.2, categories: [b]}\n"
BAD = "rules:\n  - {name: bury-none, type: bury, multiplier: 0.5, categories: ['']}\n"


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every yaml.safe_load of a draft, recorded (the real loader still runs)."""
    seen: list[str] = []
    real = yaml.safe_load

    def recording(stream: str) -> Any:
        seen.append(stream)
        return real(stream)

    monkeypatch.setattr(yaml, "safe_load", recording)
    return seen


def test_a_valid_draft_is_parsed_once(loads: list[str]) -> None:
    checked = check_text(BOOST)
    assert loads == [BOOST]
    assert checked.document == {
        "rules": [{"name": "boost-b", "type": "boost", "multiplier": 1.2, "categories": ["b"]}]
    }
    assert checked.ruleset is not None and checked.ruleset == parse_rules(BOOST, source="draft")
    assert checked.ruleset.digest == hashlib.sha256(BOOST.encode()).hexdigest()[:12]


def test_an_invalid_draft_keeps_its_document_and_its_problem(loads: list[str]) -> None:
    checked = check_text(BAD)
    assert loads == [BAD] and not checked.ok
    assert checked.document is not None and checked.document["rules"][0]["categories"] == [""]
    (problem,) = checked.problems
    assert problem.locations == ("rules[0].categories[0]",) and problem.lines == (2,)


@pytest.mark.parametrize(
    ("text", "message"),
    [("rules: [\n", "not valid YAML"), ("rules: " + "[" * 21 + "]" * 21, "nested deeper than 20 levels")],
)
def test_yaml_the_service_cannot_read_has_no_document(text: str, message: str) -> None:
    checked = check_text(text)
    assert checked.document is None and not checked.ok and message in checked.problems[0].message
