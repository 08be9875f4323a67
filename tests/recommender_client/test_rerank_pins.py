"""Rules that hold: pinned items pass every removing rule, pins share a position in disjoint windows (issue 18 item 1).

Through the real Recommender (recall, feature join, local scorer, rules): u2's unruled ranking is
i2 .75, i3 2/3, i6 2/3, i1 .636, i5 .5 (test_pipeline); explicit candidates keep the pinned item
out of recall, the case where a pin used to bypass every filter.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recommender_client.pipeline import RankRequest
from recommender_client.recall.artifacts import RecallArtifacts
from recommender_client.recommender import Recommender
from recommender_client.rerank.reload import RuleBook
from recommender_client.rerank.rules import RulesError, parse_rules
from tests.recommender_client.conftest import DAY, T
from tests.recommender_client.test_pipeline import make


def recommender(tmp_path: Path, contract, artifacts: RecallArtifacts, rules: str) -> Recommender:
    (tmp_path / "rules.yaml").write_text(rules)
    return make(contract, artifacts, rules=RuleBook(tmp_path / "rules.yaml"))


def served(
    rec: Recommender, user: str = "u2", *, k: int = 5, now: float = T, candidates=None
) -> tuple[str, ...]:
    return rec.recommend(RankRequest(user_id=user, k=k, now=now, candidates=candidates))[0].items


@pytest.mark.parametrize(
    "ban",
    ["{name: ban, type: blacklist, items: [i4]}", "{name: ban, type: blacklist, categories: [b]}"],
)
def test_a_blacklisted_pin_is_not_served(tmp_path: Path, contract, loaded, ban: str) -> None:
    rec = recommender(
        tmp_path, contract, loaded, f"rules: [{ban}, {{name: p, type: pin, item: i4, position: 0}}]"
    )
    assert "i4" not in served(rec, candidates=("i2", "i5"))  # was ('i4', 'i2', 'i5')
    assert "i4" not in served(rec)  # recalled or not


def test_an_unpublished_pin_is_not_served(tmp_path: Path, contract, loaded) -> None:
    # i6 is published at T + 1 day
    rules = "rules: [{name: live, type: filter_unpublished}, {name: p, type: pin, item: i6, position: 0}]"
    rec = recommender(tmp_path, contract, loaded, rules)
    assert served(rec, candidates=("i2", "i5")) == ("i2", "i5")  # was ('i6', 'i2', 'i5')
    assert served(rec, candidates=("i2", "i5"), now=T + 2 * DAY) == ("i6", "i2", "i5")


def test_a_seen_pin_is_not_served(tmp_path: Path, contract, loaded) -> None:
    # u1 clicked i3 at T; i5 was never shown to u1
    rules = (
        "rules: [{name: seen, type: filter_seen, ttl_hours: 24}, {name: p, type: pin, item: i3, position: 0}]"
    )
    rec = recommender(tmp_path, contract, loaded, rules)
    assert served(rec, "u1", candidates=("i5",)) == ("i5",)  # was ('i3', 'i5')
    assert served(rec, "u1", candidates=("i5",), now=T + 2 * DAY) == ("i3", "i5")  # the TTL has passed


def test_a_pin_obeys_the_frequency_cap(tmp_path: Path, contract, loaded) -> None:
    rules = (
        "rules: [{name: cap, type: frequency_cap, max_impressions: 1, period_hours: 1},"
        " {name: p, type: pin, item: i4, position: 0}]"
    )
    rec = recommender(tmp_path, contract, loaded, rules)
    assert served(rec, k=2, candidates=("i2", "i3", "i5")) == ("i4", "i2")
    assert served(rec, k=2, candidates=("i2", "i3", "i5"), now=T + 60) == ("i3", "i5")  # was ('i4', 'i3')


def test_pins_share_a_position_in_disjoint_windows(tmp_path: Path, contract, loaded) -> None:
    weeks = (
        "rules:\n"
        f"  - {{name: week-1, type: pin, item: i4, position: 0, start: {T}, end: {T + 7 * DAY}}}\n"
        f"  - {{name: week-2, type: pin, item: i5, position: 0, start: {T + 7 * DAY}, end: {T + 14 * DAY}}}\n"
        f"  - {{name: i4-later, type: pin, item: i4, position: 2, start: {T + 7 * DAY}}}\n"
    )
    rec = recommender(tmp_path, contract, loaded, weeks)  # was RulesError: position 0 is already pinned
    assert served(rec, k=3, candidates=("i2", "i3")) == ("i4", "i2", "i3")
    assert served(rec, k=4, candidates=("i2", "i3"), now=T + 7 * DAY) == ("i5", "i2", "i4", "i3")
    assert served(rec, k=3, candidates=("i2", "i3"), now=T + 14 * DAY) == ("i2", "i3", "i4")
    overlapping = weeks.replace(f"start: {T + 7 * DAY}, end", f"start: {T + 7 * DAY - 1}, end")
    with pytest.raises(
        RulesError,
        match=r"rule 'week-2' \(pin\): field 'position' 0 is already pinned by rule "
        r"'week-1' in an overlapping time window \(at rules\[1\]\.position\)",
    ):
        parse_rules(overlapping)
    with pytest.raises(
        RulesError, match=r"'i4-later' \(pin\): field 'item' 'i4' is already pinned by rule 'week-1'"
    ):
        parse_rules(weeks.replace(f"position: 2, start: {T + 7 * DAY}", "position: 2"))


@pytest.mark.parametrize(
    ("rule", "where"),
    [
        ("{name: ban, type: blacklist, categories: ['']}", "rules[1].categories[0]"),
        ("{name: ban, type: blacklist, items: [i1, '']}", "rules[1].items[1]"),
        ("{name: up, type: boost, multiplier: 2, tags: ['']}", "rules[1].tags[0]"),
        ("{name: p, type: pin, item: '', position: 0}", "rules[1].item"),
    ],
)
def test_empty_strings_are_refused_with_their_location(rule: str, where: str) -> None:
    text = f"rules: [{{name: live, type: filter_unpublished}}, {rule}]"
    with pytest.raises(
        RulesError, match=r"must be a non-empty string, got '' \(at " + where.replace("[", r"\[")
    ) as err:
        parse_rules(text)  # categories: [''] used to blacklist every item without a category
    assert err.value.locations == (where,)


def test_the_list_is_backfilled_to_k_after_filtering(tmp_path: Path, contract, loaded) -> None:
    rules = (
        "rules: [{name: ban, type: blacklist, items: [i2, i4]}, {name: p, type: pin, item: i4, position: 0}]"
    )
    rec = recommender(tmp_path, contract, loaded, rules)
    # i2 (the best) and the pinned i4 are dropped; the next candidates fill their places
    assert served(rec, k=3) == ("i3", "i6", "i1")
    assert served(rec, k=5) == ("i3", "i6", "i1", "i5")  # only four remain
