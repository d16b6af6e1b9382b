"""The portal in a real browser: Debian's chromium driven by Playwright against
pytest-django's live server, a database seeded by `seed_demo`, and (for the screening
story) a real Celery worker running the shipped model.

Every page a test visits is checked with axe-core (the vendored `axe.min.js`, added to
the page as a script of the portal's own origin, since the CSP allows no inline
script); a serious or critical violation fails the test. Full-page screenshots of the
key pages go to BROWSER_SCREENSHOTS_DIR (default `var/test-output/screenshots/`)."""

from __future__ import annotations

import io
import os
import threading
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.management import call_command

from hospitals.models import Hospital
from ml.card import default_model_dir
from tests.factories import totp_code
from tests.reliability.stack import REPO, Worker, point_publisher, worker_site

PASSWORD = "browser-demo-password-7"
SCREENSHOTS = Path(os.environ.get("BROWSER_SCREENSHOTS_DIR") or REPO / "var" / "test-output" / "screenshots")
AXE = REPO / "static" / "vendor" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")
DESKTOP = {"width": 1280, "height": 900}


NEEDS_WORKER = pytest.StashKey[bool]()


def pytest_collection_modifyitems(config, items):
    config.stash[NEEDS_WORKER] = any("pipeline" in item.fixturenames for item in items)


class WorkerWarmUp:
    """The worker starts (and loads the model) in a thread while the first browser tests
    run; `ready()` waits for it."""

    def __init__(self, worker: Worker):
        self.worker, self.error = worker, None
        self.thread = threading.Thread(target=self._start, daemon=True)
        self.thread.start()

    def _start(self):
        try:
            self.worker.start()
        except BaseException as exc:  # reported by ready(), in the test that needs the worker
            self.error = exc

    def ready(self) -> Worker:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.worker


@pytest.fixture(scope="session")
def screening_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """One worker for the browser tests that need films read, on its own broker, with the
    shipped model (real inference)."""
    site = worker_site(tmp_path_factory.mktemp("browser-worker"), django_db_blocker)
    warm_up = WorkerWarmUp(Worker(tmp=site.tmp, broker=site.broker, db_url=site.db_url,
                                  model_dir=default_model_dir(), media=site.media))
    yield warm_up
    warm_up.thread.join()
    warm_up.worker.stop()
    if site.broker.own:
        site.broker.own.stop()


@pytest.fixture(autouse=True)
def _warm_up_the_worker(request):
    """Start the worker with the first browser test when a later one needs it."""
    if request.config.stash.get(NEEDS_WORKER, False):
        request.getfixturevalue("screening_worker")


@pytest.fixture
def pipeline(screening_worker, settings):
    """This test publishes to the worker's broker and shares its media folder."""
    worker = screening_worker.ready()
    settings.MEDIA_ROOT = worker.media
    point_publisher(worker.broker.url, worker.broker.dir)
    yield worker
    point_publisher("memory://")


class Portal:
    """Signed-in pages, their screenshots and their axe results."""

    def __init__(self, browser, url: str, name: str):
        self.browser, self.url, self.name = browser, url, name
        self.axe: dict[str, Counter] = {}
        self.blocking: list[str] = []
        self.errors: list[str] = []
        self.shots: list[Path] = []

    def page(self, viewport=None):
        context = self.browser.new_context(viewport=viewport or DESKTOP, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        return page

    def sign_in(self, email: str, *, viewport=None):
        """Sign in through allauth's pages. An administrator enrols an authenticator app on
        the way (the portal requires a second factor for them), as on a first sign-in:
        password again, then a code from the secret the page shows."""
        page = self.page(viewport)
        page.goto(f"{self.url}/accounts/login/")
        page.fill('input[name="login"]', email)
        page.fill('input[name="password"]', PASSWORD)
        with page.expect_navigation():
            page.click('main button[type="submit"]')
        if "/accounts/reauthenticate/" in page.url:
            page.fill('input[name="password"]', PASSWORD)
            with page.expect_navigation():
                page.click('main button[type="submit"]')
        if "/2fa/totp/activate" in page.url:
            secret = page.input_value("#authenticator_secret")
            page.fill('input[name="code"]', totp_code(secret))
            with page.expect_navigation():
                page.click('main button[type="submit"]')
        assert not any(step in page.url for step in ("/accounts/login/", "/accounts/reauthenticate/",
                                                     "/2fa/totp/activate")), page.url
        return page

    def check(self, page, name: str) -> Counter:
        """axe-core on the page as it is now; remembers serious and critical violations."""
        if not page.evaluate("() => typeof window.axe !== 'undefined'"):
            page.add_script_tag(url=f"{self.url}{settings.STATIC_URL}vendor/axe-core/axe.min.js")
        violations = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
                                   ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length,"
                                   " target: v.nodes[0].target.join(' ')}))")
        counts = Counter(v["impact"] for v in violations)
        self.axe[name] = counts
        self.blocking += [f"{name}: {v['impact']} {v['id']} ({v['nodes']}x, e.g. {v['target']})"
                          for v in violations if v["impact"] in BLOCKING]
        return counts

    def shot(self, page, name: str) -> Path:
        path = SCREENSHOTS / f"{self.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def visit(self, page, name: str, *, shot: bool = False):
        """axe on the page, and a screenshot when asked."""
        self.check(page, name)
        if shot:
            self.shot(page, name)

    def assert_clean(self):
        assert self.axe, "no page was checked"
        assert not self.blocking, "axe: serious or critical violations:\n" + "\n".join(self.blocking)
        assert not self.errors, "script errors:\n" + "\n".join(self.errors)


@pytest.fixture
def demo(flushable_audit, live_server):
    """The demo hospitals, staff and patients, as `make run` seeds them."""
    call_command("seed_demo", password=PASSWORD, json=True, stdout=io.StringIO())
    return SimpleNamespace(url=live_server.url, general=Hospital.objects.get(slug="demo-general"),
                           north=Hospital.objects.get(slug="demo-north"))


@pytest.fixture
def portal(request, demo, browser, figure):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    portal = Portal(browser, demo.url, request.node.name.removeprefix("test_"))
    yield portal
    total = sum(portal.axe.values(), Counter())
    figure(f"axe {request.node.name}",
           f"{len(portal.axe)} pages; " + ", ".join(f"{impact} {total[impact]}" for impact in
                                                    ("critical", "serious", "moderate", "minor")),
           pages={name: dict(counts) for name, counts in portal.axe.items()})
