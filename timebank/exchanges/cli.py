"""flask --app timebank exchanges ... commands."""
from __future__ import annotations

import datetime as dt

import click
from flask import Flask
from flask.cli import AppGroup

from timebank.extensions import db

exchanges_cli = AppGroup("exchanges", help="Exchanges: confirm waiting exchanges automatically.")


@exchanges_cli.command("auto-confirm")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Treat this date as today (YYYY-MM-DD); defaults to today.")
def auto_confirm_command(today):
    """Confirm pending exchanges older than the time bank's waiting time. Safe to run from cron."""
    from timebank.exchanges.service import auto_confirm

    confirmed = auto_confirm(db.session, today.date() if today else dt.date.today())
    db.session.commit()
    click.echo(f"Auto-confirmed {len(confirmed)} exchange{'s' if len(confirmed) != 1 else ''}.")


def register(app: Flask) -> None:
    app.cli.add_command(exchanges_cli)
