"""Real headless Chromium (Debian's /usr/bin/chromium, never a downloaded one) against a live server.

Fixtures for every capability's browser tests:
  live_server        -> base URL of the app served by werkzeug in a thread, over the committed_db database
  browser_page       -> a Playwright page in a fresh context (CSP bypassed only so axe can be injected)
  check_accessibility(page) -> runs axe-core on the page; fails on any serious or critical violation
  browser_login(page, email, password)
Skipped with a clear message when chromium or playwright is missing, except under CI=true (then it fails).
"""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable_reason() -> str | None:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests need the playwright package (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="session")
def _chromium():
    reason = _unavailable_reason()
    if reason:
        if IN_CI:
            pytest.fail("CI=true and " + reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def live_server(app, committed_db):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def browser_page(_chromium, live_server):
    context = _chromium.new_context(base_url=live_server, bypass_csp=True)
    context.set_default_timeout(15000)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def check_accessibility():
    source = AXE.read_text()

    def run_axe(page):
        page.wait_for_load_state("load")
        if not page.evaluate("() => typeof window.axe !== 'undefined'"):
            page.add_script_tag(content=source)
        return page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")

    def check(page, *, impacts=("serious", "critical")):
        from playwright.sync_api import Error

        # A link just clicked may still be navigating: the old document can be torn down between
        # injecting axe and running it ("Execution context was destroyed", or no <head> yet to add
        # the script to). Wait for the new page to load and run again; a violation is never retried.
        for attempt in range(3):
            try:
                result = run_axe(page)
                break
            except Error as error:
                navigating = ("context was destroyed" in str(error) or "appendChild" in str(error)
                              or "navigat" in str(error))
                if not navigating or attempt == 2:
                    raise
                page.wait_for_timeout(100)
        bad = [v for v in result["violations"] if v.get("impact") in impacts]
        summary = "; ".join(f"{v['id']} ({v['impact']}): {v['help']} at "
                            f"{[n['target'] for n in v['nodes']][:3]}" for v in bad)
        assert not bad, f"accessibility violations on {page.url}: {summary}"
        return result

    return check


@pytest.fixture
def browser_login():
    def do_login(page, email, password):
        page.goto("/login")
        page.get_by_label("Email address").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
        assert page.get_by_text("Welcome back").is_visible(), page.content()[:2000]

    return do_login
