"""flask --app timebank reports impact --from --to --format csv|xlsx|json [--timebank SLUG] [--output FILE]"""
from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from timebank.errors import DomainError
from timebank.extensions import db

reports_cli = AppGroup("reports", help="Impact reports.")


@reports_cli.command("impact")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), required=True)
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), required=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx", "json"]), default="csv")
@click.option("--timebank", "slug", default=None, help="One time bank; every time bank when omitted.")
@click.option("--group-by", "group_by", type=click.Choice(["month", "year"]), default="month")
@click.option("--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="File to write; standard output when omitted (xlsx needs --output).")
def impact_command(start, end, fmt, slug, group_by, output):
    """Write the impact report (the same figures as the dashboard)."""
    from timebank.community.models import TimeBank
    from timebank.community.service import timebank_by_slug
    from timebank.impact.exports import FORMATS
    from timebank.impact.service import get_report

    try:
        timebanks = [timebank_by_slug(db.session, slug)] if slug else list(
            db.session.scalars(select(TimeBank).order_by(TimeBank.slug)))
        if not timebanks:
            raise click.ClickException("There is no time bank yet.")
        report = get_report(db.session, timebanks, start.date(), end.date(), group_by)
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from exc
    db.session.rollback()  # read only: nothing to commit
    _mime, render = FORMATS[fmt]
    body = render(report)
    if output:
        mode = "wb" if isinstance(body, bytes) else "w"
        with open(output, mode, **({} if mode == "wb" else {"encoding": "utf-8", "newline": ""})) as fh:
            fh.write(body)
        click.echo(f"Wrote {fmt} impact report to {output}.", err=True)
    elif isinstance(body, bytes):
        raise click.ClickException("XLSX is binary: give --output FILE.")
    else:
        sys.stdout.write(body)


@reports_cli.command("rebuild-rollups")
@click.option("--timebank", "slug", default=None, help="One time bank; every time bank when omitted.")
def rebuild_rollups_command(slug):
    """Rebuild the report roll-up from the raw exchange and transfer rows (after bulk loads or imports)."""
    from timebank.community.service import timebank_by_slug
    from timebank.impact.rollups import rebuild_rollups

    try:
        timebank_id = timebank_by_slug(db.session, slug).id if slug else None
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from exc
    rows = rebuild_rollups(db.session, timebank_id)
    db.session.commit()
    click.echo(f"Report roll-up rebuilt for {slug or 'every time bank'}: {rows} fact rows.")


def register(app: Flask) -> None:
    app.cli.add_command(reports_cli)
