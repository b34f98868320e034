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
    """Confirm pending exchanges older than the time bank's waiting time. Safe to run from cron, also twice at
    once or while members confirm: each exchange is claimed under a row lock and committed on its own."""
    confirmed = run_auto_confirm(db.session, today.date() if today else dt.date.today())
    click.echo(f"Auto-confirmed {len(confirmed)} exchange{'s' if len(confirmed) != 1 else ''}.")


notifications_cli = AppGroup("notifications", help="Notification emails: deliver the outbox.")


@notifications_cli.command("send")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="Emails claimed per batch (batches repeat until nothing is due).")
@click.option("--retry-failed", is_flag=True, help="First queue again the emails that gave up.")
@click.option("--now", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]), default=None,
              help="Treat this UTC time as now (tests and replays).")
@click.option("--keep-days", type=click.IntRange(0, 3650), default=30, show_default=True,
              help="Delete sent emails older than this many days (the in-app notification keeps the text).")
def send_notifications_command(limit, retry_failed, now, keep_days):
    """Send the notification emails waiting in the outbox. Safe to run from cron often, and on several hosts at
    once: each email is claimed by one sender (FOR UPDATE SKIP LOCKED on PostgreSQL)."""
    from flask import current_app

    from timebank.exchanges.outbox import counts, deliver_all, purge_delivered
    from timebank.exchanges.outbox import retry_failed as requeue

    if retry_failed:
        click.echo(f"Queued again {requeue(db.session)} email(s) that had given up.")
    result = deliver_all(db.session, current_app.config, now=now, limit=limit)
    purged = purge_delivered(db.session, now=now, keep_days=keep_days)
    waiting = counts(db.session)
    db.session.rollback()
    click.echo(f"Sent {len(result.sent)}, to retry later {len(result.retry)}, gave up {len(result.failed)}, "
               f"skipped {len(result.skipped)} (erased members). Outbox: {waiting.get('pending', 0)} pending, "
               f"{waiting.get('failed', 0)} failed; {purged} sent email(s) older than {keep_days} days deleted.")


def run_auto_confirm(session, today: dt.date) -> list[int]:
    """Auto-confirm with one short transaction per exchange (not one for the whole run): the row, account and
    report-day locks are held for one exchange only, so a concurrent run or a member's confirm waits
    milliseconds, and two runs cannot deadlock over rows each holds for the other's next exchange."""
    from timebank.exchanges.service import auto_confirm_one, due_for_auto_confirm

    due = due_for_auto_confirm(session, today)
    session.rollback()
    confirmed = []
    for exchange_id, days in due:
        try:
            if auto_confirm_one(session, exchange_id, days):
                confirmed.append(exchange_id)
            session.commit()
        except Exception:
            session.rollback()
            raise
    return confirmed


def register(app: Flask) -> None:
    app.cli.add_command(exchanges_cli)
    app.cli.add_command(notifications_cli)
