"""Rules YAML: schema errors name the rule and field; phase order; hot reload keeps the last good rules."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from recommender_client.recall.artifacts import RecallArtifacts
from recommender_client.rerank.exposure import InMemoryExposureLog
from recommender_client.rerank.reload import RuleBook
from recommender_client.rerank.rules import (
    MAX_RULES_BYTES,
    RulesError,
    build_operators,
    load_rules,
    parse_rules,
    read_rules_text,
    rules_digest,
    to_epoch,
)

FULL = """
version: 1
rules:
  - {name: pin-promo, type: pin, item: i4, position: 0, start: "2023-11-14T00:00:00Z", end: 1800000000}
  - {name: diversity, type: category_diversity, max_per_window: 2, window: 4}
  - {name: fresh, type: freshness, max_boost: 0.5, half_life_hours: 12}
  - {name: ban, type: blacklist, items: [i1], categories: [spam]}
  - {name: explore, type: exploration, slots: [4]}
  - {name: boost-c, type: boost, multiplier: 1.2, categories: [c], tags: [t1]}
  - {name: seen, type: filter_seen, ttl_hours: 24}
  - {name: cap, type: frequency_cap, max_impressions: 3, period_hours: 24}
  - {name: quiet, type: bury, multiplier: 0.5, items: [i2], enabled: false}
  - {name: live, type: filter_unpublished}
"""


def ops_for(text: str, artifacts: RecallArtifacts) -> list[str]:
    ops = build_operators(
        parse_rules(text),
        catalog=artifacts.catalog,
        seen=lambda u: ([], np.zeros(0)),
        exposures=InMemoryExposureLog(),
    )
    return [op.name for op in ops]


def test_full_file_builds_operators_in_phase_order(artifacts: RecallArtifacts) -> None:
    ruleset = parse_rules(FULL)
    assert [r.name for r in ruleset.rules] == [
        "pin-promo",
        "diversity",
        "fresh",
        "ban",
        "explore",
        "boost-c",
        "seen",
        "cap",
        "live",
    ]  # 'quiet' is disabled
    assert ruleset.rules[0].params == {
        "item": "i4",
        "position": 0,
        "start": 1699920000.0,
        "end": 1800000000.0,
    }
    assert ops_for(FULL, artifacts) == [
        "FilterBlacklisted",
        "FilterSeen",
        "CapFrequency",
        "FilterUnpublished",
        "BoostFreshness",
        "ScaleScores",
        "OrderByScore",
        "CapPerCategory",
        "InsertExploration",
        "PinItems",
    ]
    assert ops_for("rules: []", artifacts) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [{name: x, type: teleport}]", r"rule 'x': field 'type' must be one of"),
        ("rules: [{type: boost}]", r"rule #0: field 'name' must be a non-empty string"),
        (
            "rules: [{name: off, type: boost}]",
            r"rule #0: field 'name' must be a non-empty string, got False \(quote it",
        ),
        (
            "rules: [{name: b, type: boost, categories: [c]}]",
            r"rule 'b' \(boost\): missing field 'multiplier'",
        ),
        (
            "rules: [{name: b, type: boost, multiplier: 0.5, items: [i]}]",
            r"rule 'b' \(boost\): field 'multiplier' must be > 1",
        ),
        (
            "rules: [{name: b, type: bury, multiplier: 2, items: [i]}]",
            r"rule 'b' \(bury\): field 'multiplier' must be < 1, got 2 \(at rules\[0\].multiplier\)",
        ),
        ("rules: [{name: b, type: boost, multiplier: 2}]", r"rule 'b' \(boost\): give at least one of"),
        (
            "rules: [{name: b, type: boost, multiplier: 2, item: [i]}]",
            r"rule 'b' \(boost\): unknown fields \['item'\]",
        ),
        (
            "rules: [{name: s, type: filter_seen, ttl_hours: -1}]",
            r"rule 's' \(filter_seen\): field 'ttl_hours' must be > 0",
        ),
        (
            "rules: [{name: c, type: frequency_cap, max_impressions: 1.5, period_hours: 1}]",
            r"rule 'c' \(frequency_cap\): field 'max_impressions' must be an integer",
        ),
        (
            "rules: [{name: d, type: category_diversity, max_per_window: 3, window: 3}]",
            r"rule 'd' \(category_diversity\): field 'max_per_window' must be < 'window'",
        ),
        (
            "rules: [{name: e, type: exploration, slots: [1, 1]}]",
            r"rule 'e' \(exploration\): field 'slots' has duplicate",
        ),
        (
            "rules: [{name: p, type: pin, item: i1, position: 0, start: tomorrow}]",
            r"rule 'p' \(pin\): field 'start' must be an ISO 8601 time",
        ),
        (
            "rules: [{name: p, type: pin, item: i1, position: 0, start: 10, end: 5}]",
            r"rule 'p' \(pin\): field 'end' must be after 'start'",
        ),
        (
            "rules: [{name: p, type: pin, item: i1, position: 0}, {name: q, type: pin, item: i2, position: 0}]",
            r"rule 'q' \(pin\): field 'position' 0 is already pinned by rule 'p'",
        ),
        (
            "rules: [{name: a, type: filter_unpublished}, {name: a, type: filter_unpublished}]",
            r"rule 'a': duplicate rule name",
        ),
        (
            "rules: [{name: a, type: filter_unpublished, enabled: maybe}]",
            r"rule 'a' \(filter_unpublished\): field 'enabled' must be true or false, got 'maybe'",
        ),
        ("rules: {name: a}", r"'rules' must be a list"),
        ("rulez: []", r"unknown top-level keys \['rulez'\]"),
        ("rules: [a: b: c]", r"not valid YAML"),
        # an empty document is an invalid edit, never "no rules"; clearing takes rules: []
        ("", r"ops.yaml: the file is empty; to clear every rule write 'rules: \[\]'"),
        ("# all rules commented out\n", r"the file is empty; to clear every rule write 'rules: \[\]'"),
        ("null", r"the file is empty"),
        ("version: 1", r"'rules' must be a list, got None; to clear every rule write 'rules: \[\]'"),
        ("rules:", r"'rules' must be a list, got None"),
        ("[1, 2]", r"expected a mapping with a 'rules' list at the top, got list"),
        ("just words", r"expected a mapping with a 'rules' list at the top, got str"),
        ("rules: " + "[" * 21 + "]" * 21, r"nested deeper than 20 levels"),
        ("rules: " + "[" * 5000 + "]" * 5000, r"nested deeper than 20 levels"),  # no RecursionError
        ("rules: [{name: x, type: [boost]}]", r"rule 'x': field 'type' must be one of"),
        ("rules: [{name: x, type: boost, multiplier: .inf, items: [a]}]", r"'multiplier' must be a finite"),
        ("rules: [{name: x, type: boost, multiplier: 1" + "0" * 400 + ", items: [a]}]", r"must be a finite"),
        (
            "rules: [{name: x, type: pin, item: a, position: 0, start: .nan}]",
            r"'start' must be a finite time",
        ),
        ("rules: [{name: x, type: pin, item: a, position: 0, start: 2024-02-30}]", r"not valid YAML: day is"),
        ("rules: [{name: x, type: boost, multiplier: 2, items: [a], 1: 2}]", r"unknown fields \['1'\]"),
    ],
)
def test_invalid_rules_name_rule_and_field(text: str, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        parse_rules(text, source="ops.yaml")


def test_load_rules_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read rules file .*missing.yaml"):
        load_rules(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("rules: [{name: x, type: nope}]")
    with pytest.raises(RulesError, match=r"bad.yaml: rule 'x'"):
        load_rules(tmp_path / "bad.yaml")


def test_one_reader_and_digest_for_the_service_and_the_console(tmp_path: Path) -> None:
    """The console keeps a damaged file's bytes (its digest is theirs); the service refuses them."""
    path = tmp_path / "r.yaml"
    raw = b"rules: [{name: caf\xe9, type: filter_unpublished}]\n"
    path.write_bytes(raw)
    kept = read_rules_text(path, keep_undecodable=True)
    assert kept == "rules: [{name: caf\udce9, type: filter_unpublished}]\n"
    assert rules_digest(kept) == hashlib.sha256(raw).hexdigest()[:12]
    with pytest.raises(RulesError, match="not UTF-8: byte 0xe9"):
        read_rules_text(path)
    good = "rules: [{name: café, type: filter_unpublished}]\n"
    path.write_text(good, encoding="utf-8")
    assert (
        parse_rules(read_rules_text(path)).digest
        == rules_digest(read_rules_text(path, keep_undecodable=True))
        == hashlib.sha256(good.encode()).hexdigest()[:12]
    )


def test_load_rules_refuses_bytes_that_are_not_utf8_and_oversized_files(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(b"rules: [{name: caf\xe9, type: filter_unpublished}]")
    with pytest.raises(
        RulesError, match=r"r.yaml: not UTF-8: byte 0xe9 at offset 18 \(invalid continuation byte\)"
    ):
        load_rules(path)
    path.write_bytes(b"# " + b"x" * MAX_RULES_BYTES + b"\nrules: []\n")
    with pytest.raises(RulesError, match=rf"larger than {MAX_RULES_BYTES} bytes"):
        load_rules(path)
    path.write_bytes(b"")
    with pytest.raises(RulesError, match="the file is empty"):
        load_rules(path)


def test_to_epoch_accepts_numbers_iso_and_naive_utc() -> None:
    assert to_epoch(5) == 5.0
    assert to_epoch("1970-01-02T00:00:00Z") == 86400.0
    assert to_epoch("1970-01-02T01:00:00+01:00") == 86400.0
    assert to_epoch("1970-01-02") == 86400.0


class FakeClock:
    """A settable monotonic clock (real object, lets the test decide when time passes)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_hot_reload_polls_and_keeps_last_good_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "rules.yaml"
    write(path, "rules: [{name: a, type: filter_unpublished}]", 1_000_000_000)
    clock = FakeClock()
    book = RuleBook(path, min_interval_s=5, clock=clock)
    first = book.current()
    assert [r.name for r in first.rules] == ["a"]

    write(path, "rules: [{name: b, type: filter_unpublished}]", 2_000_000_000)
    clock.now = 4.0
    assert book.current() is first  # within the interval: not even looked at
    clock.now = 6.0
    second = book.current()
    assert [r.name for r in second.rules] == ["b"] and second.digest != first.digest and book.reloads == 1

    write(path, "rules: [{name: c, type: boost, multiplier: 0.1, items: [x]}]", 3_000_000_000)
    clock.now = 12.0
    with caplog.at_level("WARNING"):
        assert book.current() is second
    assert book.failures == 1 and "rule 'c' (boost): field 'multiplier' must be > 1" in book.last_error
    assert "rules reload failed" in caplog.text
    clock.now = 18.0
    assert book.current() is second and book.failures == 1  # unchanged bad file is not re-parsed

    path.unlink()
    clock.now = 24.0
    assert book.current() is second and book.failures == 2  # a vanished file keeps the rules too

    write(path, "rules: [{name: d, type: filter_unpublished}]", 4_000_000_000)
    clock.now = 30.0
    assert [r.name for r in book.current().rules] == ["d"] and book.last_error is None


def test_every_reload_failure_is_counted_logged_once_and_keeps_the_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rules.yaml"
    write(path, "rules: [{name: a, type: filter_unpublished}]", 1_000_000_000)
    clock = FakeClock()
    book = RuleBook(path, min_interval_s=1, clock=clock)
    good = book.current()
    bad_edits = [
        b"",  # an editor truncated the file
        b"- not a mapping",
        b"rules: [{name: caf\xe9, type: filter_unpublished}]",
        b"rules: " + b"[" * 3000 + b"]" * 3000,
    ]
    with caplog.at_level("WARNING", logger="recommender_client.rerank.reload"):
        for n, edit in enumerate(bad_edits, start=1):
            path.write_bytes(edit)
            os.utime(path, ns=((n + 1) * 10**9,) * 2)
            for _ in range(3):  # looked at three times, parsed and logged once
                clock.now += 2
                assert book.current() is good
            assert book.failures == n
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4 and all(m.startswith("rules reload failed, keeping rules ") for m in messages)
    assert "the file is empty" in messages[0] and "got list" in messages[1]
    assert "not UTF-8: byte 0xe9" in messages[2] and "nested deeper than 20" in messages[3]

    def explode(path: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("recommender_client.rerank.reload.load_rules", explode)
    write(path, "rules: []", 9 * 10**9)
    clock.now += 2
    assert book.current() is good and book.failures == 5 and book.last_error == "RuntimeError: disk on fire"
    monkeypatch.undo()
    write(path, "rules: []", 10 * 10**9)
    clock.now += 2
    cleared = book.current()
    assert cleared.rules == () and book.failures == 5 and book.last_error is None


def test_first_load_must_succeed(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("rules: [{name: x}]")
    with pytest.raises(RulesError, match=r"rule 'x': field 'type'"):
        RuleBook(tmp_path / "r.yaml")


def test_shipped_default_rules_are_valid(artifacts: RecallArtifacts) -> None:
    import recommender_client.rerank as rerank

    path = Path(rerank.__file__).parent / "default_rules.yaml"
    assert [r.type for r in load_rules(path).rules] == [
        "filter_unpublished",
        "filter_seen",
        "frequency_cap",
        "freshness",
        "category_diversity",
        "exploration",
    ]
    assert ops_for(path.read_text(), artifacts)[-1] == "InsertExploration"
