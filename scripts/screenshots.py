"""Regenerate the README screenshots from the demo community (size S, seed 1).

    make screenshots          (or: .venv/bin/python scripts/screenshots.py [OUT_DIR])

Builds S in a temporary SQLite database, serves the app in a thread, logs in with the demo logins in
headless Chromium (/usr/bin/chromium, or CHROMIUM_PATH) and saves 1200-pixel-wide PNGs, reduced to a
128-colour palette, under docs/screenshots/.
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
WIDTH, HEIGHT = 1200, 860


def shots(member_account_id: int, busiest_request_id: int | None, start, end):
    """(file, login, path, element to scroll to): what a reader of the README should see."""
    return [
        ("member-dashboard.png", "member@demo.timebank", "/exchanges/", None),
        ("member-statement.png", "member@demo.timebank",
         f"/accounts/{member_account_id}/statement?from={end.replace(day=1)}&to={end}", None),
        ("broker-suggestions.png", "broker@demo.timebank",
         "/matching" + (f"?request_id={busiest_request_id}" if busiest_request_id else ""), "#suggestions"),
        ("offers-and-requests.png", "member@demo.timebank", "/listings", None),
        ("impact-dashboard.png", "commissioner@demo.timebank", f"/reports/?from={start}&to={end}", None),
    ]


def optimise(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        small.save(path, optimize=True)


def main(out_dir: Path) -> None:
    url = f"sqlite:///{tempfile.mkdtemp()}/screenshots.sqlite3"
    os.environ["DATABASE_URL"] = url
    from flask_migrate import upgrade
    from playwright.sync_api import sync_playwright
    from sqlalchemy import func, select
    from werkzeug.serving import make_server

    from timebank import create_app, demo
    from timebank.community.models import Membership, User
    from timebank.extensions import db
    from timebank.matching.models import HelpRequest

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "RATELIMIT_ENABLED": False})
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        demo.load_demo(db.session, size="S", seed=1, echo=lambda *_: None)
        db.session.commit()
        member_account_id = db.session.scalar(select(Membership.account_id).join(User, User.id == Membership.user_id)
                                              .where(User.email == "member@demo.timebank"))
        # A member's open request, so the broker's workbench shows ranked volunteers.
        busiest_request_id = db.session.scalar(select(func.min(HelpRequest.id)).where(
            HelpRequest.status == "open", HelpRequest.membership_id.is_not(None)))

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
            contexts = {}
            # The demo's year (S covers twelve months ending on demo.END_DATE).
            start = demo._add_months(demo.END_DATE.replace(day=1), 1 - demo.SIZES["S"].months)
            for name, login, path, anchor in shots(member_account_id, busiest_request_id, start, demo.END_DATE):
                if login not in contexts:
                    context = browser.new_context(base_url=base, viewport={"width": WIDTH, "height": HEIGHT})
                    page = context.new_page()
                    page.goto("/login")
                    page.get_by_label("Email address").fill(login)
                    page.get_by_label("Password").fill(demo.DEMO_PASSWORD)
                    page.get_by_role("button", name="Log in").click()
                    page.wait_for_load_state("networkidle")
                    contexts[login] = page
                page = contexts[login]
                response = page.goto(path)
                page.wait_for_load_state("networkidle")
                if response is None or response.status != 200:
                    raise SystemExit(f"{path} answered {response and response.status} for {login}")
                if anchor:
                    page.locator(anchor).scroll_into_view_if_needed()
                    page.evaluate("(sel) => document.querySelector(sel).scrollIntoView({block: 'start'})", anchor)
                target = out_dir / name
                page.screenshot(path=str(target), full_page=False)
                optimise(target)
                print(f"{target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}: "
                      f"{target.stat().st_size // 1024} KB ({login} {path})")
            browser.close()
    finally:
        server.shutdown()
        thread.join(timeout=10)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
