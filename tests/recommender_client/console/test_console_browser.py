"""The whole operator cycle in headless Chromium against a real ranking service and model server.

The ranking service runs under uvicorn on a free port and scores through its own gRPC client
against the embedded model server of ``test_online_loop_serving`` (a seeded DeepFM over the
tiny contract), so every score in the page is a real Predict. In the browser: log in with the
token, add and remove cards, add a bury rule with a mistake and see the error at its location, fix it, preview u2 and
see the buried item moved, publish, see /recommend follow, roll back and see it return.

The expected draft order is computed here from /recommend's own live answer (rank scores times
the bury's multiplier, re-sorted), an independent route to what the page must show.

The screenshot of the preview lands in pytest's ``tmp_path`` as ``console-preview.png`` and, when
``RECSYS_CONSOLE_SCREENSHOT_DIR`` is set, is copied into that folder too (the README's picture is
one such copy).
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from recommender_client.service.app import create_app
from tests.recommender_client.console.browser import chromium, keep_screenshot, page_report, serving
from tests.recommender_client.console.conftest import RULES, TOKEN, console_settings
from tests.recommender_client.test_online_loop_serving import served  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow
BURY = 0.01
K = 5


def _served_order(base: str) -> tuple[list[str], list[float], str]:
    body = httpx.post(f"{base}/recommend", json={"user_id": "u2", "k": K}, timeout=30).json()
    assert body["degraded"] is False and body["model"] == "ctr", body
    items = body["items"]
    return [i["item_id"] for i in items], [i["rank_score"] for i in items], body["rules_version"]


def test_edit_preview_publish_rollback_in_chromium(
    served,  # noqa: F811
    artifacts_dir: Path,
    rules_file: Path,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    _, server = served
    settings = console_settings(
        artifacts_dir,
        rules_file,
        service={
            "protocol": "grpc",
            "grpc_target": f"127.0.0.1:{server.grpc_port}",
            "predict_timeout_s": 10.0,
            "request_deadline_s": 20.0,
        },
        username=None,
        password=None,
    )
    with serving(create_app(settings)) as base, chromium() as driver:
        live_items, live_scores, live_version = _served_order(base)
        assert len(live_items) == K
        target = live_items[0]
        scaled = [
            s * (BURY if item == target else 1.0) for item, s in zip(live_items, live_scores, strict=True)
        ]
        expected = [item for _, item in sorted(zip(scaled, live_items, strict=True), key=lambda p: -p[0])]
        assert expected != live_items
        wait = WebDriverWait(driver, 30)
        find = driver.find_element

        try:
            # log in: the page sends the browser to the token form
            driver.get(f"{base}/console/")
            wait.until(lambda d: d.current_url.endswith("/console/login"))
            find(By.ID, "token").send_keys(TOKEN)
            find(By.ID, "login").click()
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
            assert find(By.ID, "rule-0-name").get_attribute("value") == "boost-b"
            assert "version 1" in find(By.ID, "live-status").text

            # a card per kind: add a pin and remove it, add a boost and turn it into a bury
            cards = lambda: driver.find_elements(By.CSS_SELECTOR, "#rules-form .rule-card")  # noqa: E731
            Select(find(By.ID, "add-kind")).select_by_value("pin")
            find(By.ID, "add-rule").click()
            wait.until(lambda d: d.find_elements(By.ID, "rule-1-position"))
            assert find(By.ID, "rule-1-name").get_attribute("value") == "pin-2"
            find(By.CSS_SELECTOR, '.rule-card[data-index="1"] .remove-rule').click()
            wait.until(lambda d: len(cards()) == 1)
            Select(find(By.ID, "add-kind")).select_by_value("boost")
            find(By.ID, "add-rule").click()
            wait.until(lambda d: d.find_elements(By.ID, "rule-1-multiplier"))
            assert "> 1" in find(By.CSS_SELECTOR, '.rule-card[data-index="1"]').text
            Select(find(By.CSS_SELECTOR, '.rule-card[data-index="1"] select[name="type"]')).select_by_value(
                "bury"
            )
            wait.until(
                lambda d: "> 0, < 1" in d.find_element(By.CSS_SELECTOR, '.rule-card[data-index="1"]').text
            )
            assert len(cards()) == 2 and find(By.ID, "rule-1-name").get_attribute("value") == "bury-2"

            # give the bury a mistake (a bury multiplies by less than 1) and see the error
            find(By.ID, "rule-1-items").send_keys(target)
            find(By.ID, "rule-1-multiplier").send_keys("2")
            wait.until(lambda d: "rules[1].multiplier" in d.find_element(By.ID, "errors").text)
            assert "must be < 1, got 2" in find(By.ID, "errors").text
            assert "invalid" in find(By.ID, "rule-1-multiplier").get_attribute("class")
            assert find(By.ID, "validity").text.startswith("Invalid")

            # fix it: the error goes, the draft validates, the YAML view holds the new rule
            field = find(By.ID, "rule-1-multiplier")
            field.clear()
            field.send_keys(str(BURY))
            wait.until(lambda d: d.find_element(By.ID, "validity").text.startswith("Valid: 2 enabled rules"))
            assert find(By.ID, "errors").text == ""
            find(By.ID, "tab-yaml").click()
            yaml_text = find(By.ID, "yaml-text").get_attribute("value")
            assert (
                "type: bury" in yaml_text and f"- {target}" in yaml_text and "multiplier: 0.01" in yaml_text
            )
            # the YAML view is checked as you type too: a pin without its item, then the text as it was
            area = find(By.ID, "yaml-text")
            area.clear()
            area.send_keys(yaml_text + "- {name: pin-x, type: pin, position: 0}\n")
            wait.until(
                lambda d: "missing field 'item' (at rules[2].item)" in d.find_element(By.ID, "errors").text
            )
            assert find(By.CSS_SELECTOR, "#errors li a").text == f"line {yaml_text.count(chr(10)) + 1}"
            area.clear()
            area.send_keys(yaml_text)
            wait.until(lambda d: d.find_element(By.ID, "validity").text.startswith("Valid: 2 enabled rules"))
            find(By.ID, "tab-form").click()
            assert find(By.ID, "rule-1-multiplier").get_attribute("value") == str(BURY)

            # preview u2: live and draft side by side, the buried item moved down
            find(By.ID, "preview-user").send_keys("u2")
            k_field = find(By.ID, "preview-k")
            k_field.clear()
            k_field.send_keys(str(K))
            find(By.ID, "preview-run").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#preview-draft tr[data-item]"))
            rows = lambda table: [  # noqa: E731
                r.get_attribute("data-item")
                for r in driver.find_elements(By.CSS_SELECTOR, f"#{table} tr[data-item]")
            ]
            assert rows("preview-live") == live_items
            assert rows("preview-draft") == expected
            moved_to = expected.index(target)
            badge = find(By.CSS_SELECTOR, f'#preview-draft tr[data-item="{target}"] .badge')
            assert badge.text == f"▼ {moved_to}" and "down" in badge.get_attribute("class")
            assert "moved" in find(By.CSS_SELECTOR, f'#preview-draft tr[data-item="{target}"]').get_attribute(
                "class"
            )
            assert "scored by ctr v7" in find(By.ID, "preview-summary").text
            shot = keep_screenshot(
                driver, tmp_path, "console-preview.png", os.environ.get("RECSYS_CONSOLE_SCREENSHOT_DIR")
            )
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

            # publish: the file changes, the service follows
            find(By.ID, "author").send_keys("alice")
            find(By.ID, "message").send_keys(f"bury {target}")
            find(By.ID, "publish").click()
            wait.until(lambda d: "Published version 2" in d.find_element(By.ID, "publish-result").text)
            wait.until(lambda d: "the service applies it" in d.find_element(By.ID, "live-status").text)
            published_items, _, published_version = _served_order(base)
            assert published_items == expected and published_version != live_version
            assert "type: bury" in rules_file.read_text()
            author = find(By.CSS_SELECTOR, '#history-table tr[data-version="2"] .author')
            assert author.text == "alice"

            # roll back to version 1: the service serves the first rules again
            find(By.CSS_SELECTOR, '#history-table button.rollback[data-version="1"]').click()
            wait.until(lambda d: "Rolled back: version 3" in d.find_element(By.ID, "publish-result").text)
            back_items, _, back_version = _served_order(base)
            assert (back_items, back_version) == (live_items, live_version)
            assert rules_file.read_text() == RULES
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#history-table tr[data-version="3"]'))
        except Exception as exc:  # keep what the browser showed: the artefact and the message say why
            keep_screenshot(
                driver, tmp_path, "console-failure.png", os.environ.get("RECSYS_CONSOLE_SCREENSHOT_DIR")
            )
            raise AssertionError(page_report(driver)) from exc
