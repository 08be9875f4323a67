"""A real HTTP server for an app (uvicorn in a thread) and Debian's headless Chromium driven by Selenium."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
OPTIONS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` under uvicorn on a free 127.0.0.1 port, in a thread; yields its base URL, then stops it."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", loop="asyncio", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the ranking service did not start (see the log above)")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium through the system chromedriver (never a downloaded one); skips without them."""
    webdriver = pytest.importorskip("selenium.webdriver")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            pytest.skip(f"{path} is missing: apt-get install {package} (make test-deps does it as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*OPTIONS, "--disable-dev-shm-usage", "--window-size=1500,1500"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for failures
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    # a page stuck in a script stalls chromedriver's answers: fail the step rather than wait forever
    driver.command_executor.client_config.timeout = 60
    try:
        yield driver
    finally:
        driver.quit()


def keep_screenshot(driver: Any, tmp_path: Path, name: str, env_dir: str | None) -> Path:
    """Save a screenshot under ``tmp_path`` and, when ``env_dir`` is set, copy it there too."""
    shot = tmp_path / name
    if not driver.save_screenshot(str(shot)):
        raise AssertionError(f"chromium did not write the screenshot {shot}")
    if env_dir:
        Path(env_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(env_dir) / name)
    return shot


def page_report(driver: Any) -> str:
    """What the page shows and what its JavaScript logged: the message of a failed browser step."""
    try:
        text = driver.find_element("tag name", "body").text
        logs = [f"{e['level']}: {e['message']}" for e in driver.get_log("browser")]
    except Exception as exc:  # the browser itself is gone
        return f"(no page: {exc!r})"
    return f"url {driver.current_url}\n--- page ---\n{text}\n--- browser log ---\n" + "\n".join(logs)
