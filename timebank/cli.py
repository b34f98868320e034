"""flask --app timebank ... commands. Each command commits once, at the end."""
from __future__ import annotations

import importlib

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import func, select

from timebank.errors import DomainError
from timebank.extensions import db

timebanks_cli = AppGroup("timebanks", help="Manage time banks.")
users_cli = AppGroup("users", help="Manage users.")
seed_cli = AppGroup("seed", help="Load demo data.")


def _fail(exc: DomainError):
    db.session.rollback()
    raise click.ClickException(exc.message)


@timebanks_cli.command("create")
@click.option("--slug", required=True)
@click.option("--name", required=True)
def create_timebank_command(slug, name):
    """Create a time bank with its system accounts and default categories."""
    from timebank.community.service import create_timebank

    try:
        timebank = create_timebank(db.session, slug=slug, name=name)
    except DomainError as exc:
        _fail(exc)
    db.session.commit()
    click.echo(f"Created time bank {timebank.slug} (id {timebank.id}).")


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--name", "display_name", default=None)
@click.option("--role", type=click.Choice(["member", "broker", "commissioner", "admin"]), default="member")
@click.option("--timebank", "slug", default=None, help="Time bank slug; optional when there is only one.")
def create_user_command(email, password, display_name, role, slug):
    """Create a user with an active membership in a time bank."""
    from timebank.community.models import TimeBank
    from timebank.community.service import add_membership, create_user, timebank_by_slug

    try:
        if slug:
            timebank = timebank_by_slug(db.session, slug)
        else:
            banks = db.session.scalars(select(TimeBank)).all()
            if len(banks) != 1:
                raise click.ClickException("Say which time bank with --timebank SLUG.")
            timebank = banks[0]
        user = create_user(db.session, email=email, display_name=display_name or email.split("@")[0],
                           password=password)
        add_membership(db.session, user=user, timebank=timebank, role=role)
    except DomainError as exc:
        _fail(exc)
    db.session.commit()
    click.echo(f"Created {role} {user.email} in {timebank.slug}.")


@seed_cli.command("if-empty")
def seed_if_empty_command():
    """Load the demo community when the database has no time bank yet (used by `make run`)."""
    from timebank.community.models import TimeBank

    if db.session.scalar(select(func.count()).select_from(TimeBank)):
        click.echo("The database already has data; no demo data loaded.")
        return
    import datetime as dt

    from timebank import demo

    # The story ends yesterday, so the dashboards' default periods (this year, last month) show it.
    demo.load_demo(db.session, size="S", seed=1, echo=click.echo, end_date=dt.date.today() - dt.timedelta(days=1))
    db.session.commit()
    demo.print_logins(click.echo)


def register_cli(app: Flask) -> None:
    app.cli.add_command(timebanks_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(seed_cli)
    # Capability commands, each optional until it lands.
    for name in ("ledger.cli", "exchanges.cli", "matching.cli", "impact.cli", "demo_cli"):
        try:
            module = importlib.import_module(f"timebank.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"timebank.{name}":
                raise
            continue
        module.register(app)
