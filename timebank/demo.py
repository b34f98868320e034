"""Demo data. For now a small fixed community; the realistic generator replaces load_demo."""
from __future__ import annotations

from timebank.community.service import (add_membership, create_organisation, create_timebank, create_user)


DEMO_PASSWORD = "demo-password-123"
DEMO_LOGINS = [
    ("member@demo.timebank", "member", "Mina Member"),
    ("org@demo.timebank", "member", "Olu Organiser"),
    ("broker@demo.timebank", "broker", "Bea Broker"),
    ("commissioner@demo.timebank", "commissioner", "Cal Commissioner"),
    ("admin@demo.timebank", "admin", "Ada Admin"),
]


def load_demo(session, *, size: str = "S", seed: int = 1, slug: str = "riverside", echo=print):
    timebank = create_timebank(session, slug=slug, name="Riverside Time Bank")
    users = {}
    for email, role, name in DEMO_LOGINS:
        users[email] = create_user(session, email=email, display_name=name, password=DEMO_PASSWORD)
        add_membership(session, user=users[email], timebank=timebank, role=role)
    organisation = create_organisation(session, timebank=timebank, name="Riverside Community Centre",
                                       kind="community_group", area="Riverside")
    organisation.representatives.append(users["org@demo.timebank"])
    session.flush()
    echo(f"Loaded the demo time bank {timebank.slug}.")
    return timebank


def print_logins(echo=print):
    echo("Demo logins (demo only; password for all: %s):" % DEMO_PASSWORD)
    for email, role, _name in DEMO_LOGINS:
        label = "organisation representative" if email.startswith("org@") else role
        echo(f"  {label:<28} {email}")
