"""A headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) on pytest-django's
live_server, signed in as a staff user through a session cookie."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from tests.support.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = "apt-get install chromium chromium-driver"
#: The laptop screen the page is built for: 1366 px wide (900 px tall, window chrome aside).
WINDOW = (1366, 900)


def _find(path: str, name: str) -> str | None:
    return path if Path(path).exists() else shutil.which(name)


@pytest.fixture(scope="session")
def chromium(live_server) -> Iterator[Any]:
    """One headless Chromium for the session; skips (one line, how to install) when there is none.

    It depends on live_server so that it quits first: the live server's request threads hold
    Chromium's keep-alive connections, and each closes the shared in-memory SQLite connection
    when its socket closes, which must happen before the server stops sharing it.
    """
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _find(CHROMIUM, "chromium"), _find(CHROMEDRIVER, "chromedriver")
    if not binary or not driver_path:
        pytest.skip(f"browser tests need Chromium and its driver ({CHROMIUM}, {CHROMEDRIVER}): "
                    f"{INSTALL_HINT}")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--no-sandbox",
                     "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars", "--lang=en-US",
                     "--force-device-scale-factor=1", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except WebDriverException as error:
        pytest.skip(f"Chromium did not start ({str(error.msg).splitlines()[0]}): {INSTALL_HINT}")
    driver.set_script_timeout(10)
    yield driver
    driver.quit()
    wait_until(lambda: not [t for t in threading.enumerate() if "process_request_thread" in t.name],
               timeout=10, message="the live server's request threads to end")


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("operator", password="operator-pw", is_staff=True)


@pytest.fixture
def browser(chromium, live_server, staff_user) -> Any:
    """The session's Chromium, signed in as ``staff_user`` on live_server (a Django session cookie)."""
    client = Client()
    client.force_login(staff_user)
    chromium.delete_all_cookies()
    chromium.get(f"{live_server.url}/dashboard/assets/favicon.svg")  # a page of the origin, to set its cookie
    chromium.add_cookie({"name": settings.SESSION_COOKIE_NAME, "path": "/",
                         "value": client.cookies[settings.SESSION_COOKIE_NAME].value})
    chromium.get_log("browser")  # drop what earlier tests logged
    return chromium


def text(driver: Any, selector: str) -> str | None:
    """The textContent of the first element matching ``selector`` now, or None (no stale handles)."""
    return driver.execute_script(
        "const node = document.querySelector(arguments[0]); return node ? node.textContent : null;", selector)


def shown(driver: Any, selector: str) -> bool:
    """Whether the first element matching ``selector`` exists and is rendered (not hidden)."""
    return driver.execute_script(
        "const node = document.querySelector(arguments[0]);"
        "return !!node && !node.hidden && node.getClientRects().length > 0;", selector)


def console_errors(driver: Any) -> list[str]:
    """The browser's console errors since the last call.  The dashboard's pages name their own icon;
    the page the ``browser`` fixture opens to set its cookie (an SVG) does not, so Chromium may ask
    for /favicon.ico there, a 404 that can reach the log late: that one is left out."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and "/favicon.ico " not in entry["message"]]
