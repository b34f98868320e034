"""The navigation, grown by role."""
from __future__ import annotations

from flask import url_for
from flask_login import current_user
from werkzeug.routing import BuildError


def _link(label: str, endpoint: str):
    try:
        return {"label": label, "url": url_for(endpoint), "endpoint": endpoint}
    except BuildError:  # the page's capability has not landed in this build
        return None


def roles_of(user) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    return {m.role for m in user.memberships if m.status == "active"}


def navigation_for() -> list[dict]:
    user = current_user
    roles = roles_of(user)
    items = [("Home", "web.index")]
    if roles & {"member", "broker", "admin"}:
        items += [("My dashboard", "exchanges.dashboard"), ("Log hours", "exchanges.new_exchange"),
                  ("Offers & requests", "matching.listings")]
    if roles & {"broker", "admin"}:
        items += [("Members", "people.directory"), ("Onboarding", "people.onboarding_queue"),
                  ("Broker desk", "exchanges.broker_desk"), ("Matching", "matching.workbench"),
                  ("Categories", "people.categories")]
    if roles & {"commissioner", "broker", "admin"}:
        items += [("Impact", "reports.dashboard")]
    if "admin" in roles:
        items += [("Settings", "people.admin_settings"), ("Audit log", "people.audit_log")]
    links = [_link(label, endpoint) for label, endpoint in items]
    return [link for link in links if link]
