"""flask --app timebank ledger verify | export."""
from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup

from timebank.extensions import db

ledger_cli = AppGroup("ledger", help="Check and export the hour ledger.")


def _timebank_id(slug: str | None) -> int | None:
    if slug is None:
        return None
    from timebank.community.models import TimeBank
    from sqlalchemy import select

    tb_id = db.session.scalar(select(TimeBank.id).where(TimeBank.slug == slug.lower()))
    if tb_id is None:
        raise click.ClickException(f"No time bank called {slug!r}.")
    return tb_id


@ledger_cli.command("verify")
@click.option("--timebank", "slug", default=None, help="Only this time bank (slug).")
def verify_command(slug):
    """Recompute balances, zero sums, limits, reversal links and the hash chain; exit 1 on any problem."""
    from timebank.ledger.verify import verify_ledger

    report = verify_ledger(db.session, _timebank_id(slug))
    db.session.rollback()
    click.echo(report.summary())
    if not report.ok:
        for problem in report.problems:
            click.echo(f"  - {problem}")
        sys.exit(1)


@ledger_cli.command("export")
@click.option("--format", "fmt", type=click.Choice(["hledger", "ledger", "beancount"]), required=True)
@click.option("--timebank", "slug", default=None, help="Only this time bank (slug).")
@click.option("--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of standard output.")
def export_command(fmt, slug, output):
    """Write the ledger as a journal with balance assertions for every account."""
    from timebank.ledger.journal import export_journal

    text = export_journal(db.session, fmt, _timebank_id(slug))
    db.session.rollback()
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
        click.echo(f"Wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def register(app: Flask) -> None:
    app.cli.add_command(ledger_cli)
