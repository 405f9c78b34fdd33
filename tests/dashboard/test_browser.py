"""The dashboard in headless Chromium on live_server, with a real in-process Celery worker."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium.webdriver.common.by import By

from easyrag.legacy.dead_letters import letter_id
from easyrag.legacy.items import dead_letter
from easyrag.task_app.async_task_framework import TaskStatus, cancel_task, get_task_status, submit_task
from tests.dashboard.conftest import WINDOW, console_errors, shown, text
from tests.support.handlers import mark_key
from tests.support.waiting import wait_final, wait_until

pytestmark = pytest.mark.django_db(transaction=True)  # the live server's thread reads the sessions

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "images" / "dashboard.png"
#: The page's status text once a poll has answered.
LIVE = "live · updated"


def row(task_id: str) -> str:
    return f'#recent tr[data-key="{task_id}"]'


def open_dashboard(browser, live_server, query: str = "") -> None:
    browser.get(f"{live_server.url}/dashboard/{query}")
    wait_until(lambda: (text(browser, "#live") or "").startswith(LIVE), message="the first poll")
    browser.execute_script("window.loadedOnce = 'still the same page';")


def not_reloaded(browser) -> bool:
    """The marker set after the first load is still there, and the page was navigated to once."""
    return browser.execute_script(
        "return window.loadedOnce === 'still the same page' && "
        "performance.getEntriesByType('navigation').length === 1;")


def open_gate(redis_client, task_id: str) -> None:
    redis_client.incr(mark_key(task_id, "gate"))


def test_a_task_submitted_while_the_page_is_open_appears_moves_and_completes_without_a_reload(
        browser, live_server, live_worker, redis_client):
    open_dashboard(browser, live_server)
    polls = int(browser.execute_script("return document.body.dataset.polls"))
    task_id = submit_task("GatedTaskHandler", {"steps": 3}, user_id=42)

    wait_until(lambda: text(browser, row(task_id)), message="the task in the recent list")
    assert text(browser, f"{row(task_id)} a.id") == task_id
    assert browser.find_element(By.CSS_SELECTOR, f"{row(task_id)} a.id").get_attribute("href") == \
        f"{live_server.url}/dashboard/tasks/{task_id}/"
    assert text(browser, f"{row(task_id)} td:nth-child(2)") == "GatedTaskHandler"
    assert text(browser, f"{row(task_id)} td:nth-child(3)") == "42"
    for step, percent in ((1, 25), (2, 50), (3, 75)):
        wait_until(lambda s=step: text(browser, f"{row(task_id)} .message") == f"step {s} of 3",
                   message=f"step {step} on the page")
        assert text(browser, f"{row(task_id)} .badge") == "RUNNING"
        assert text(browser, f"{row(task_id)} .pct") == f"{percent}%"
        assert text(browser, f"{row(task_id)} td:nth-child(9)") == live_worker.nodename
        open_gate(redis_client, task_id)
    wait_until(lambda: text(browser, f"{row(task_id)} .badge") == "COMPLETED",
               message="COMPLETED on the page")
    assert text(browser, f"{row(task_id)} .pct") == "100%"
    assert get_task_status(task_id).status is TaskStatus.COMPLETED
    assert browser.execute_script(f"return document.querySelector('{row(task_id)} td:nth-child(8)').title")
    assert not_reloaded(browser)
    assert int(browser.execute_script("return document.body.dataset.polls")) > polls + 3
    assert console_errors(browser) == []


def test_cancel_on_a_running_tasks_page_ends_it_cancelled(browser, live_server, live_worker, redis_client):
    task_id = submit_task("SleepyTaskHandler", {"seconds": 60})
    wait_until(lambda: redis_client.get(mark_key(task_id, "starts")), message="the handler to start")
    browser.get(f"{live_server.url}/dashboard/tasks/{task_id}/")
    wait_until(lambda: text(browser, "#task-status") == "RUNNING", message="RUNNING on the task page")
    assert text(browser, "#task-type") == "SleepyTaskHandler"
    assert json.loads(text(browser, "#task-data")) == {"seconds": 60}
    assert shown(browser, "#cancel")

    browser.find_element(By.ID, "cancel").click()
    browser.switch_to.alert.accept()  # "Cancel this task? ..."
    wait_until(lambda: text(browser, "#task-status") == "CANCELLED", timeout=10,
               message="CANCELLED on the page")
    assert wait_final(task_id).status is TaskStatus.CANCELLED
    assert redis_client.get(mark_key(task_id, "cancelled")) == "1"  # the coroutine saw CancelledError
    assert not shown(browser, "#cancel")
    assert "final" in text(browser, "#live")
    assert console_errors(browser) == []


def test_a_finished_tasks_page_has_no_cancel_button_and_shows_its_result(browser, live_server, live_worker):
    task_id = submit_task("EchoTaskHandler", {"hello": "<b>world</b>"})
    wait_final(task_id)
    browser.get(f"{live_server.url}/dashboard/tasks/{task_id}/")
    wait_until(lambda: text(browser, "#task-status") == "COMPLETED", message="COMPLETED on the page")
    assert json.loads(text(browser, "#task-result")) == {"echo": {"hello": "<b>world</b>"}, "user_id": None}
    assert browser.find_elements(By.CSS_SELECTOR, "#task-result b") == []  # text, not markup
    assert not shown(browser, "#cancel")


def test_a_dead_letter_typed_by_key_is_listed_and_requeue_puts_it_back_once(browser, live_server,
                                                                             redis_client):
    item = json.dumps({"type": "email", "data": {"to": "ops@example.com"}})
    other = json.dumps({"type": "email", "data": {"to": "<script>alert(1)</script>"}})
    letter = dead_letter(item.encode(), "SMTP refused")
    other_letter = dead_letter(other.encode(), "bad <address>")
    redis_client.lpush("mail:dead", letter, other_letter)
    open_dashboard(browser, live_server)

    field = browser.find_element(By.ID, "dead-letter-key")
    field.send_keys("mail")
    browser.find_element(By.CSS_SELECTOR, "#dead-letter-form button").click()
    target = f'#letters tr[data-key="{letter_id(letter)}"]'
    wait_until(lambda: text(browser, target), message="the dead letters listed")
    assert text(browser, "#dead-letter-summary") == "mail:dead holds 2 letters"
    assert text(browser, f"{target} pre.raw") == item
    assert text(browser, f"{target} .error-text") == "SMTP refused"
    assert browser.find_elements(By.CSS_SELECTOR, "#letters script") == []  # escaped, not markup

    browser.find_element(By.CSS_SELECTOR, f'{target} button[data-action="requeue"]').click()
    wait_until(lambda: (text(browser, "#dead-letter-flash") or "").startswith("Requeued onto mail"),
               message="the requeue to be confirmed")
    wait_until(lambda: not text(browser, target), message="the letter to leave the list")
    assert text(browser, "#dead-letter-summary") == "mail:dead holds 1 letter"
    assert redis_client.lrange("mail", 0, -1) == [item]  # back on the list, exactly once
    assert redis_client.lrange("mail:dead", 0, -1) == [other_letter.decode()]

    # The same letter again, as a second tab would send it: nothing happens.
    reply = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(document.body.dataset.requeueUrl, {method: 'POST', headers: {'X-CSRFToken':"
        " document.body.dataset.csrfToken}, body: new URLSearchParams({key: 'mail', id: arguments[0]})})"
        ".then((r) => r.json()).then(done);", letter_id(letter))
    assert reply == {"requeued": 0}
    assert redis_client.lrange("mail", 0, -1) == [item]
    assert redis_client.llen("mail:dead") == 1
    assert "key=mail" in browser.current_url and not_reloaded(browser)


def test_anonymous_browsers_land_on_the_login_page(chromium, live_server):
    chromium.delete_all_cookies()
    chromium.get(f"{live_server.url}/dashboard/")
    assert urlsplit(chromium.current_url).path == "/admin/login/"
    assert "next=/dashboard/" in chromium.current_url


def test_the_page_loads_nothing_from_outside_the_server(browser, live_server, live_worker):
    submit_task("EchoTaskHandler", {})
    open_dashboard(browser, live_server, "?key=mail")
    wait_until(lambda: int(browser.execute_script("return document.body.dataset.polls")) >= 3,
               message="a few polls")
    origin = urlsplit(live_server.url)
    referenced = browser.execute_script(
        "return Array.from(document.querySelectorAll('script[src], link[href], img[src], iframe[src],"
        " source[src], video[src], audio[src]')).map((n) => n.src || n.href);")
    fetched = browser.execute_script(
        "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
        ".map((e) => e.name);")
    assert len(referenced) >= 3 and any("/dashboard/data.json" in url for url in fetched)
    outside = [url for url in referenced + fetched
               if (urlsplit(url).scheme, urlsplit(url).netloc) != (origin.scheme, origin.netloc)]
    assert outside == []
    assert console_errors(browser) == []


def test_screenshot_of_the_dashboard_with_a_few_tasks(browser, live_server, live_worker, redis_client):
    """docs/images/dashboard.png: tasks running, done, failed and cancelled; a dead letter."""
    done = [submit_task("EchoTaskHandler", {"n": n}, user_id=7) for n in range(2)]
    failed = submit_task("RefusingTaskHandler", {"document_id": 3}, user_id=7)
    cancelled = submit_task("SleepyTaskHandler", {"seconds": 60}, user_id=9)
    for task_id in (*done, failed):
        wait_final(task_id)
    wait_until(lambda: redis_client.get(mark_key(cancelled, "starts")), message="the sleeper to start")
    cancel_task(cancelled)
    wait_final(cancelled)
    running = [submit_task("GatedTaskHandler", {"steps": steps}, user_id=7) for steps in (3, 1)]
    open_gate(redis_client, running[0])
    refused = "SMTPRecipientsRefused: {'x': (550, b'mailbox unavailable')}"
    redis_client.lpush("async_tasks:dead", dead_letter(b'{"type": "email", "data": {"to": "x"}}', refused))
    open_dashboard(browser, live_server, "?key=async_tasks")
    wait_until(lambda: text(browser, f"{row(running[0])} .message") == "step 2 of 3",
               message="progress shown")
    wait_until(lambda: text(browser, f'#failed tr[data-key="{failed}"]'), message="the failure listed")
    wait_until(lambda: text(browser, "#letters tr[data-key]"), message="the dead letter listed")
    active = f'#workers tr[data-key="{live_worker.nodename}"] td:nth-child(2)'
    wait_until(lambda: text(browser, active) == "2",
               message="the worker's two active tasks (its heartbeat is up to a second old)")
    # No horizontal scrolling on a 1366 px screen.
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    # The whole page: the window grows to the page's height (1366 px wide as before), then back.
    chrome = browser.get_window_size()["height"] - browser.execute_script("return window.innerHeight")
    page_height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(WINDOW[0], page_height + chrome)
    try:
        assert browser.save_screenshot(str(SCREENSHOT))
    finally:
        browser.set_window_size(*WINDOW)
    assert SCREENSHOT.stat().st_size < 400_000
    for task_id in running:  # let the worker finish them before it stops
        for _ in range(3):
            open_gate(redis_client, task_id)


def test_long_ids_messages_and_items_wrap_or_ellipsize_without_horizontal_scrolling(
        browser, live_server, live_worker, redis_client):
    task_id = submit_task("EchoTaskHandler", {"blob": "y" * 5000}, user_id="u" * 300)
    wait_final(task_id)
    redis_client.lpush("long:dead", dead_letter(b"z" * 5000, "E" * 3000))
    open_dashboard(browser, live_server, "?key=long")
    wait_until(lambda: text(browser, row(task_id)) and text(browser, "#letters tr[data-key]"),
               message="the task and the letter listed")
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    browser.get(f"{live_server.url}/dashboard/tasks/{task_id}/")
    wait_until(lambda: text(browser, "#task-status") == "COMPLETED", message="the task page")
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert text(browser, "#task-owner") == "u" * 300
