"""Playwright against Debian's chromium and pytest-django's live server.

No browser is ever downloaded: Playwright launches /usr/bin/chromium. Where it is missing the
browser tests fail under CI (which installs it in .ci/run) and are skipped on a developer machine.
"""

import os
from collections.abc import Iterator
from multiprocessing import Event, Queue, Value
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django_q.brokers import get_broker
from django_q.models import OrmQ
from django_q.monitor import monitor
from django_q.pusher import pusher
from django_q.worker import worker
from playwright.sync_api import sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make between
# browser steps are still plain synchronous code, which Django would otherwise refuse.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if "tests/browser/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing; install Debian's chromium (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server) -> Iterator:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def log_in_as(page, live_server):
    """Give the browser a signed-in session for `user` without going through the form."""

    def log_in(user) -> None:
        client = Client()
        client.force_login(user)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME]
        page.context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}]
        )

    return log_in


@pytest.fixture
def screenshot(page):
    """Save a PNG of the page (or of one element) under test-artifacts/ for a person to look at."""

    def save(name: str, locator=None) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        if locator is not None:
            locator.screenshot(path=str(path))
        else:
            page.screenshot(path=str(path), full_page=True)
        return path

    return save


@pytest.fixture
def run_queued_tasks():
    """What a qcluster does, in this process: pull every queued task, run it, save its result."""

    def run() -> int:
        broker = get_broker()
        task_queue, result_queue, stop = Queue(), Queue(), Event()
        stop.set()  # one pass of the pusher per call; the ORM broker hands out one task per pass
        queued = OrmQ.objects.count()
        for _ in range(queued):
            pusher(task_queue, stop, broker=broker)
        task_queue.put("STOP")
        worker(task_queue, result_queue, Value("f", -1))
        result_queue.put("STOP")
        monitor(result_queue, broker=broker)
        return queued

    return run
