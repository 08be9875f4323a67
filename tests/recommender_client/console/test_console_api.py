"""The console API: validation with locations, preview, atomic publish, history, 409 on a stale base, rollback.

Scores are the LocalScorer's p = (1 + pop) / (2 + pop) over the tiny artefacts' popularity (i2 2.0,
i3 1, i6 1, i1 0.75, i5 0): i2 3/4, i3 = i6 2/3, i1 7/11, i5 1/2; boost-b makes i3 0.8.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recommender_client.console.history import FILE_AUTHOR
from tests.recommender_client.console.conftest import BASIC, BEARER, RULES, USER

BAN_I3 = RULES + "  - {name: ban-i3, type: blacklist, items: [i3]}\n"


def _post(client: TestClient, path: str, body: dict, headers: dict = BEARER):
    return client.post(f"/console/api/{path}", headers=headers, json=body)


def _live(client: TestClient) -> dict:
    return client.get("/console/api/rules", headers=BEARER).json()


def _recommend(client: TestClient, k: int = 3) -> dict:
    return client.post("/recommend", json={"user_id": "u2", "k": k}).json()


def test_live_rules_and_schema(console_client: TestClient, rules_file: Path) -> None:
    live = _live(console_client)
    assert live["yaml"] == RULES
    assert live["document"] == {
        "rules": [{"name": "boost-b", "type": "boost", "multiplier": 1.2, "categories": ["b"]}]
    }
    digest = hashlib.sha256(RULES.encode()).hexdigest()[:12]
    assert live["version"]["number"] == 1 and live["version"]["author"] == FILE_AUTHOR
    assert (
        live["version"]["digest"]
        == digest
        == live["in_force"]["digest"]
        == _recommend(console_client)["rules_version"]
    )
    schema = console_client.get("/console/api/schema", headers=BEARER).json()
    assert "pin" in schema["kinds"] and "boost" in schema["kinds"]
    assert schema["kinds"] == [  # the ten rule types, listed by hand
        "blacklist",
        "boost",
        "bury",
        "category_diversity",
        "exploration",
        "filter_seen",
        "filter_unpublished",
        "frequency_cap",
        "freshness",
        "pin",
    ]
    boost = schema["schema"]["$defs"]["Boost"]
    assert boost["properties"]["multiplier"]["exclusiveMinimum"] == 1


def test_validation_errors_name_their_location_and_line(console_client: TestClient) -> None:
    text = (
        "rules:\n"
        "  - {name: boost-b, type: boost, multiplier: 1.2, categories: [b]}\n"
        "  - name: bury-none\n"
        "    type: bury\n"
        "    multiplier: 0.5\n"
        "    categories: ['']\n"
    )
    answer = _post(console_client, "validate", {"yaml": text}).json()
    assert answer["ok"] is False and answer["digest"] is None
    (error,) = answer["errors"]
    assert error["locations"] == ["rules[1].categories[0]"] and error["lines"] == [6]
    assert "bury-none" in error["message"] and "must be a non-empty string" in error["message"]
    form = {"rules": [{"name": "b", "type": "boost", "multiplier": 0.5, "items": ["i1"]}]}
    answer = _post(console_client, "validate", {"document": form}).json()
    assert answer["errors"][0]["locations"] == ["rules[0].multiplier"]
    assert "must be > 1, got 0.5" in answer["errors"][0]["message"]
    assert answer["yaml"].startswith("version: 1\nrules:\n- name: b\n")  # the form's document as YAML
    good = _post(console_client, "validate", {"yaml": BAN_I3}).json()
    assert good["ok"] and good["errors"] == [] and good["enabled_rules"] == 2
    assert good["digest"] == hashlib.sha256(BAN_I3.encode()).hexdigest()[:12]
    assert good["document"]["rules"][1] == {"name": "ban-i3", "type": "blacklist", "items": ["i3"]}
    broken = _post(console_client, "validate", {"yaml": "rules: [\n"}).json()
    assert broken["ok"] is False and "not valid YAML" in broken["errors"][0]["message"]
    both = _post(console_client, "validate", {"yaml": RULES, "document": {"rules": []}})
    assert both.status_code == 422 and "exactly one" in both.json()["detail"]


def test_preview_ranks_live_and_draft_side_by_side(console_client: TestClient) -> None:
    body = {"user_id": "u2", "k": 3, "yaml": BAN_I3}
    answer = _post(console_client, "preview", body).json()
    live, draft = answer["live"]["items"], answer["draft"]["items"]
    assert [i["item_id"] for i in live] == [i["item_id"] for i in _recommend(console_client)["items"]]
    assert [i["item_id"] for i in live] == ["i3", "i2", "i6"]
    assert [i["item_id"] for i in draft] == ["i2", "i6", "i1"]
    assert live[0]["rank_score"] == pytest.approx(2 / 3 * 1.2, rel=1e-6) and live[0]["rules"] == ["boost-b"]
    assert draft[2]["score"] == pytest.approx(7 / 11, rel=1e-6) and draft[2]["other_position"] is None
    moved = {m["item_id"]: (m["live_position"], m["draft_position"]) for m in answer["moved"]}
    assert moved == {"i2": (1, 0), "i6": (2, 1), "i1": (None, 2), "i3": (0, None)}
    candidates = {c["item_id"]: c for c in answer["candidates"]}
    assert answer["recall"]["candidates"] == len(candidates) == 5
    assert sum(answer["recall"]["by_source"].values()) == 5
    # an independent route: /recommend with k = 5 serves all five candidates with their sources
    served = Counter(i["recall_source"] for i in _recommend(console_client, k=5)["items"])
    assert answer["recall"]["by_source"] == dict(served) and sum(served.values()) == 5
    assert {c["item_id"]: c["recall_source"] for c in answer["candidates"]} == {
        i["item_id"]: i["recall_source"] for i in _recommend(console_client, k=5)["items"]
    }
    assert candidates["i5"]["score"] == pytest.approx(0.5) and candidates["i2"]["model_position"] == 0
    assert answer["live"]["rules_version"] == _live(console_client)["version"]["digest"]


def test_preview_records_nothing(console_client: TestClient) -> None:
    """A cap of one impression: a preview that recorded its list would filter it the second time."""
    capped = "rules:\n  - {name: cap-1, type: frequency_cap, max_impressions: 1, period_hours: 24}\n"
    body = {"user_id": "u2", "k": 3, "yaml": capped}
    first, second = (_post(console_client, "preview", body).json()["draft"]["items"] for _ in range(2))
    assert [i["item_id"] for i in first] == [i["item_id"] for i in second] == ["i2", "i3", "i6"]


def test_preview_refuses_bad_requests_and_drafts(console_client: TestClient) -> None:
    bad_k = _post(console_client, "preview", {"user_id": "u2", "k": 0, "yaml": RULES})
    assert bad_k.status_code == 400 and "k must be between 1 and 20" in bad_k.json()["detail"]
    context = _post(console_client, "preview", {"user_id": "u2", "context": {"nope": "x"}, "yaml": RULES})
    assert context.status_code == 400 and "nope" in context.json()["detail"]
    with_context = _post(
        console_client, "preview", {"user_id": "u2", "context": {"device": "ios"}, "yaml": RULES}
    )
    assert with_context.status_code == 200
    no_user = _post(console_client, "preview", {"yaml": RULES})
    assert no_user.status_code == 422
    invalid = _post(console_client, "preview", {"user_id": "u2", "yaml": "rules: [{name: x, type: boost}]"})
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["locations"] == ["rules[0].multiplier"]


def test_publish_writes_the_file_and_the_service_follows(
    console_client: TestClient, rules_file: Path
) -> None:
    inode = rules_file.stat().st_ino
    rules_file.chmod(0o640)  # the operator's permission bits survive a publish
    answer = _post(
        console_client, "publish", {"yaml": BAN_I3, "base_version": 1, "author": "alice", "message": "no i3"}
    ).json()
    version = answer["version"]
    assert (version["number"], version["author"], version["parent"], version["message"]) == (
        2,
        "alice",
        1,
        "no i3",
    )
    assert (
        rules_file.read_text() == BAN_I3 and rules_file.stat().st_ino != inode
    )  # renamed over, not rewritten
    assert rules_file.stat().st_mode & 0o777 == 0o640
    served = _recommend(console_client)
    assert [i["item_id"] for i in served["items"]] == ["i2", "i6", "i1"]
    assert served["rules_version"] == version["digest"] == answer["in_force"]["digest"]
    history = rules_file.parent / "rules.yaml.history"
    assert sorted(p.name for p in history.iterdir() if not p.name.startswith(".")) == [
        "000001.json",
        "000001.yaml",
        "000002.json",
        "000002.yaml",
    ]
    assert (history / "000002.yaml").read_text() == BAN_I3
    assert json.loads((history / "000002.json").read_text())["author"] == "alice"
    assert {p.stat().st_mode & 0o777 for p in history.glob("00000*")} == {0o644}
    assert not [p for p in rules_file.parent.iterdir() if p.name.endswith(".tmp")]
    by_basic = _post(console_client, "publish", {"yaml": RULES, "base_version": 2}, headers=BASIC).json()
    assert by_basic["version"]["author"] == USER  # the basic-auth user when the body names nobody
    diff = console_client.get("/console/api/history/2", headers=BEARER).json()["diff"]
    assert "+  - {name: ban-i3, type: blacklist, items: [i3]}\n" in diff and diff.startswith(
        "--- version 1\n"
    )


def test_publish_is_atomic_for_readers(console_client: TestClient, rules_file: Path) -> None:
    """A reader never sees a part of a file: each read is one whole published text (~30 KB each)."""
    texts = [RULES + "".join(f"# padding {n} {'x' * 80}\n" for n in range(size)) for size in (300, 400)]
    whole = {RULES, *texts}
    seen: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(rules_file.read_text())
            time.sleep(0.0005)  # let the publishing thread run

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(12):
            response = _post(
                console_client, "publish", {"yaml": texts[n % 2], "base_version": n + 1, "author": "bot"}
            )
            assert response.status_code == 200, response.text
    finally:
        stop.set()
        reader.join()
    assert len(seen) > 12 and set(seen) <= whole


def test_a_stale_base_is_a_409_naming_both_versions(console_client: TestClient, rules_file: Path) -> None:
    first = _post(console_client, "publish", {"yaml": BAN_I3, "base_version": 1, "author": "alice"})
    assert first.status_code == 200
    late = _post(console_client, "publish", {"yaml": "rules: []\n", "base_version": 1, "author": "bob"})
    assert late.status_code == 409
    assert late.json() == {
        "detail": "the draft starts from version 1, but version 2 is live now: reload the live rules "
        "(version 2) and apply the edit again",
        "base_version": 1,
        "live_version": 2,
    }
    assert rules_file.read_text() == BAN_I3
    rules_file.write_text(RULES)  # an edit on the server, outside the console
    adopted = _live(console_client)["version"]
    assert (adopted["number"], adopted["author"]) == (3, FILE_AUTHOR)
    assert (
        _post(console_client, "publish", {"yaml": "rules: []\n", "base_version": 2, "author": "a"}).json()[
            "live_version"
        ]
        == 3
    )


def test_rollback_to_any_earlier_version(console_client: TestClient, rules_file: Path) -> None:
    _post(console_client, "publish", {"yaml": BAN_I3, "base_version": 1, "author": "alice"})
    _post(console_client, "publish", {"yaml": "rules: []\n", "base_version": 2, "author": "alice"})
    assert _recommend(console_client)["rules_version"] == hashlib.sha256(b"rules: []\n").hexdigest()[:12]
    stale = _post(console_client, "rollback", {"version": 1, "base_version": 2, "author": "bob"})
    assert stale.status_code == 409 and stale.json()["live_version"] == 3
    back = _post(console_client, "rollback", {"version": 1, "base_version": 3, "author": "bob"}).json()
    assert (back["version"]["number"], back["version"]["rollback_of"]) == (4, 1)
    assert back["version"]["message"] == "rollback to version 1"
    assert rules_file.read_text() == RULES
    assert [i["item_id"] for i in _recommend(console_client)["items"]] == ["i3", "i2", "i6"]
    listed = console_client.get("/console/api/history", headers=BEARER).json()["versions"]
    assert [(v["number"], v["author"]) for v in listed] == [
        (4, "bob"),
        (3, "alice"),
        (2, "alice"),
        (1, FILE_AUTHOR),
    ]
    missing = _post(console_client, "rollback", {"version": 99, "base_version": 4, "author": "bob"})
    assert missing.status_code == 404 and "no version 99" in missing.json()["detail"]


def test_invalid_drafts_are_never_published(console_client: TestClient, rules_file: Path) -> None:
    bad = "rules:\n  - {name: x, type: boost, multiplier: 1.5, categories: [b]}\n  - {name: x, type: filter_unpublished}\n"
    refused = _post(console_client, "publish", {"yaml": bad, "base_version": 1, "author": "alice"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["locations"] == ["rules[1].name"]
    assert "duplicate rule name" in refused.json()["detail"][0]["message"]
    assert rules_file.read_text() == RULES and _live(console_client)["version"]["number"] == 1


def test_every_input_is_bounded(console_client: TestClient) -> None:
    huge = "rules: []\n" + "#" * (256 * 1024)
    assert _post(console_client, "validate", {"yaml": huge}).status_code == 413
    body = json.dumps({"yaml": "x" * (1 << 20)})
    big = console_client.post(
        "/console/api/validate", headers={**BEARER, "Content-Type": "application/json"}, content=body
    )
    assert big.status_code == 413 and "max_body_bytes" in big.json()["detail"]
    not_json = console_client.post(
        "/console/api/validate", headers={**BEARER, "Content-Type": "application/json"}, content=b"{"
    )
    assert not_json.status_code == 400
    no_author = _post(console_client, "publish", {"yaml": RULES, "base_version": 1})
    assert no_author.status_code == 422 and "'author' is required" in no_author.json()["detail"]
    control = _post(console_client, "publish", {"yaml": RULES, "base_version": 1, "author": "a\nb"})
    assert control.status_code == 422 and "control characters" in control.json()["detail"]
    unknown = _post(console_client, "publish", {"yaml": RULES, "base_version": 1, "author": "a", "x": 1})
    assert unknown.status_code == 422
    assert console_client.get("/console/api/history?limit=0", headers=BEARER).status_code == 422
    assert console_client.get("/console/api/history/12345", headers=BEARER).status_code == 404


def test_history_is_bounded(artifacts_dir: Path, rules_file: Path) -> None:
    from fastapi.testclient import TestClient as Client

    from recommender_client.ranking import LocalScorer
    from recommender_client.service.app import create_app
    from tests.recommender_client.console.conftest import console_settings

    settings = console_settings(artifacts_dir, rules_file, max_history=3)
    with Client(create_app(settings, scorer=LocalScorer({}))) as client:
        for n in range(1, 5):
            text = RULES + f"# edit {n}\n"
            assert (
                _post(client, "publish", {"yaml": text, "base_version": n, "author": "a"}).status_code == 200
            )
        listed = client.get("/console/api/history", headers=BEARER).json()["versions"]
        assert [v["number"] for v in listed] == [5, 4, 3]
        assert client.get("/console/api/history/2", headers=BEARER).status_code == 404
        assert not (rules_file.parent / "rules.yaml.history" / "000002.yaml").exists()


def test_a_broken_file_on_disk_is_shown_never_a_500(console_client: TestClient, rules_file: Path) -> None:
    assert _live(console_client)["version"]["number"] == 1
    raw = b"rules: [{name: caf\xe9, type: filter_unpublished}]\n"
    rules_file.write_bytes(raw)
    live = console_client.get("/console/api/rules", headers=BEARER)
    assert live.status_code == 200
    body = live.json()
    assert body["yaml"] == raw.decode("utf-8", "replace") and "not UTF-8" in body["errors"][0]["message"]
    assert (
        body["version"]["digest"] == hashlib.sha256(raw).hexdigest()[:12]
        and body["version"]["valid"] is False
    )
    assert "not UTF-8" in body["in_force"]["last_error"]  # the service kept version 1's rules
    assert body["in_force"]["digest"] == hashlib.sha256(RULES.encode()).hexdigest()[:12]
    refused = _post(console_client, "rollback", {"version": 2, "base_version": 2, "author": "a"})
    assert refused.status_code == 422  # version 2 is the broken file: never published again
    history = rules_file.parent / "rules.yaml.history"
    (history / "000001.json").write_text("{damaged")
    assert console_client.get("/console/api/history/1", headers=BEARER).status_code == 404
    listed = console_client.get("/console/api/history", headers=BEARER).json()["versions"]
    assert [v["number"] for v in listed] == [2]
    fixed = _post(console_client, "publish", {"yaml": RULES, "base_version": 2, "author": "a"})
    assert fixed.status_code == 200 and rules_file.read_bytes() == RULES.encode()


def test_a_symlinked_rules_file_keeps_its_link(artifacts_dir: Path, tmp_path: Path) -> None:
    from recommender_client.ranking import LocalScorer
    from recommender_client.service.app import create_app
    from tests.recommender_client.console.conftest import console_settings

    target = tmp_path / "real" / "rules.yaml"
    target.parent.mkdir()
    target.write_text(RULES)
    link = tmp_path / "rules.yaml"
    link.symlink_to(target)
    with TestClient(create_app(console_settings(artifacts_dir, link), scorer=LocalScorer({}))) as client:
        assert _post(client, "publish", {"yaml": BAN_I3, "base_version": 1, "author": "a"}).status_code == 200
        assert (
            client.post("/recommend", json={"user_id": "u2", "k": 2}).json()["rules_version"]
            == (hashlib.sha256(BAN_I3.encode()).hexdigest()[:12])
        )
    assert link.is_symlink() and link.resolve() == target.resolve() and target.read_text() == BAN_I3


def test_a_version_number_beyond_any_history_is_a_404(console_client: TestClient) -> None:
    """A 300-digit number would name a file longer than the file system takes (once a 500)."""
    huge = "9" * 300
    listed = console_client.get(f"/console/api/history/{huge}", headers=BEARER)
    assert listed.status_code == 404 and "numbered 1 to 1000000000" in listed.json()["detail"]
    assert console_client.get("/console/api/history/0", headers=BEARER).status_code == 404
    back = _post(console_client, "rollback", {"version": int(huge), "base_version": 1, "author": "a"})
    assert back.status_code == 404 and "numbered 1 to 1000000000" in back.json()["detail"]


def test_a_document_whose_yaml_outgrows_the_limit_is_a_413_while_dumping(
    console_client: TestClient,
) -> None:
    """60 nested lists of 300,000 ones: 900 KB of JSON, but 37 MB of indented YAML, never built."""
    nested: list = [1] * 300_000
    for _ in range(60):
        nested = [nested]
    body = json.dumps({"document": {"rules": nested}})
    assert len(body) < 1 << 20  # within max_body_bytes: only the dump is too large
    answer = console_client.post(
        "/console/api/validate", headers={**BEARER, "Content-Type": "application/json"}, content=body
    )
    assert answer.status_code == 413
    assert answer.json()["detail"] == "the draft's YAML has more than max_rules_bytes=262144"


def test_to_yaml_stops_at_max_bytes() -> None:
    from recommender_client.console.drafts import DraftTooLarge, to_yaml

    assert to_yaml({"rules": []}, max_bytes=21) == "version: 1\nrules: []\n"  # 21 bytes
    with pytest.raises(DraftTooLarge):
        to_yaml({"rules": []}, max_bytes=20)
    assert to_yaml({"rules": ["é"]}, max_bytes=23) == "version: 1\nrules:\n- é\n"  # 11 + 7 + 5: é is 2 bytes
    with pytest.raises(DraftTooLarge):
        to_yaml({"rules": ["é"]}, max_bytes=22)
