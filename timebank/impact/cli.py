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

def _previous_month(today) -> tuple:
    import datetime as dt

    end = today.replace(day=1) - dt.timedelta(days=1)
    return end.replace(day=1), end


@reports_cli.command("close-period")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option("--previous-month", is_flag=True, help="Close the calendar month before today (for cron/systemd).")
@click.option("--timebank", "slug", default=None, help="One time bank; every time bank when omitted.")
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Treat this date as today.")
def close_period_command(start, end, previous_month, slug, today):
    """Freeze a period's impact report (SHA-256 content hash). Already closed periods are left as they are, so
    it is safe to run from a scheduler more than once."""
    import datetime as dt

    from timebank.community.models import TimeBank
    from timebank.community.service import timebank_by_slug
    from timebank.impact.service import close_period, closed_period_for

    if previous_month == bool(start or end):
        raise click.UsageError("Give either --previous-month or both --from and --to.")
    if previous_month:
        start, end = _previous_month((today.date() if today else dt.date.today()))
    elif not (start and end):
        raise click.UsageError("Give both --from and --to.")
    else:
        start, end = start.date(), end.date()
    try:
        timebanks = [timebank_by_slug(db.session, slug)] if slug else list(
            db.session.scalars(select(TimeBank).order_by(TimeBank.slug)))
        closed = []
        for timebank in timebanks:
            if closed_period_for(db.session, timebank.id, start, end) is not None:
                click.echo(f"{timebank.slug}: {start} to {end} was already closed.")
                continue
            row = close_period(db.session, timebank=timebank, start=start, end=end)
            closed.append(timebank.slug)
            click.echo(f"{timebank.slug}: closed {start} to {end} (sha256 {row.content_hash[:12]}…).")
    except DomainError as exc:
        db.session.rollback()
        raise click.ClickException(exc.message) from exc
    db.session.commit()
    click.echo(f"Closed {len(closed)} period{'s' if len(closed) != 1 else ''}.")


def register(app: Flask) -> None:
    app.cli.add_command(reports_cli)
