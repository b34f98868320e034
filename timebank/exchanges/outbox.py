"""Delivering the email outbox: claim due rows, send them after the claim commits, record what happened.

Safe to run from cron as often as you like and from several hosts at once:

- claim: one short transaction takes up to `limit` due rows (PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED,
  so concurrent senders take different rows; SQLite: BEGIN IMMEDIATE, so claims queue on the write lock),
  counts the attempt and pushes next_attempt_at past a lease, then commits: no lock is held while mailing;
- send: outside any transaction, one SMTP connection per batch;
- record: a sent row becomes 'sent'; a failed one is retried after a backoff, or 'failed' after max attempts
  (kept, never deleted: `flask notifications send --retry-failed` queues them again). Each update names the
  attempt it claimed, so a sender whose lease ran out cannot overwrite a newer claim.

A sender that dies between claim and record leaves its rows 'pending'; they are claimed again when the lease
ends. Delivery is therefore at least once: a crash right after the SMTP server accepted a message can send it
twice, never zero times. Logs name the outbox id and template, never the address or the message.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import smtplib
from dataclasses import dataclass, field
from email.message import EmailMessage

from sqlalchemy import delete, select, update

from timebank.community.models import User
from timebank.database import write_transactions
from timebank.exchanges.models import EmailOutbox, utcnow

log = logging.getLogger("timebank.email")

DEFAULT_BATCH = 50
DEFAULT_MAX_ATTEMPTS = 8
SMTP_TIMEOUT_SECONDS = 10
# A claim is held longer than its batch can take (each message at most the SMTP timeout, plus connecting), so
# no other sender takes the rows while they are being sent; at least LEASE.
LEASE = dt.timedelta(minutes=10)
BACKOFF_BASE = dt.timedelta(minutes=1)
BACKOFF_CAP = dt.timedelta(hours=6)


def lease_for(limit: int) -> dt.timedelta:
    return max(LEASE, dt.timedelta(seconds=SMTP_TIMEOUT_SECONDS * (limit + 1) + 60))


def backoff(attempts: int) -> dt.timedelta:
    """Wait before the next try after `attempts` failures: 1, 2, 4, ... minutes, at most 6 hours."""
    return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_CAP)


@dataclass
class Claimed:
    id: int
    attempt: int
    kind: str
    subject: str
    body: str
    to: str | None  # None: the member was erased or is gone, so nothing is sent


@dataclass
class DeliveryResult:
    sent: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)

    @property
    def claimed(self) -> int:
        return len(self.sent) + len(self.retry) + len(self.failed) + len(self.skipped)


def claim(session, *, now: dt.datetime, limit: int = DEFAULT_BATCH) -> list[Claimed]:
    """Take up to `limit` due rows for this sender and COMMIT the claim. Answers plain values (no ORM rows),
    so sending touches no database connection."""
    session.commit()  # whatever the caller had open; the claim is its own short transaction
    with write_transactions():
        query = (select(EmailOutbox.id, EmailOutbox.attempts, EmailOutbox.kind, EmailOutbox.subject,
                        EmailOutbox.body, User.email, User.erased_at)
                 .join(User, User.id == EmailOutbox.user_id)
                 .where(EmailOutbox.status == "pending", EmailOutbox.next_attempt_at <= now)
                 .order_by(EmailOutbox.next_attempt_at, EmailOutbox.id).limit(limit))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(of=EmailOutbox, skip_locked=True)
        rows = session.execute(query).all()
        if rows:
            session.execute(update(EmailOutbox).where(EmailOutbox.id.in_([r.id for r in rows]))
                            .values(attempts=EmailOutbox.attempts + 1, next_attempt_at=now + lease_for(limit))
                            .execution_options(synchronize_session=False))
        session.commit()
    return [Claimed(id=r.id, attempt=r.attempts + 1, kind=r.kind, subject=r.subject, body=r.body,
                    to=None if r.erased_at is not None else r.email) for r in rows]


class _LogTransport:
    """No SMTP server configured (development): one log line per message, without the address or the text."""

    def send(self, item: Claimed, sender: str) -> None:
        log.info("email outbox=%s template=%s not sent: SMTP not configured (development)", item.id, item.kind)


class _SmtpTransport:
    def __init__(self, smtp):
        self.smtp = smtp

    def send(self, item: Claimed, sender: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = sender, item.to, item.subject
        message.set_content(item.body)
        self.smtp.send_message(message)


@contextlib.contextmanager
def _transport(config):
    host = config.get("SMTP_HOST") or config.get("MAIL_SERVER")
    if not host:
        yield _LogTransport()
        return
    port = int(config.get("SMTP_PORT") or config.get("MAIL_PORT") or 25)
    with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        if config.get("MAIL_USE_TLS"):
            smtp.starttls()
        if config.get("MAIL_USERNAME"):
            smtp.login(config["MAIL_USERNAME"], config.get("MAIL_PASSWORD", ""))
        yield _SmtpTransport(smtp)


def _error_text(exc: BaseException) -> str:
    """What went wrong, without the address (SMTPRecipientsRefused carries it, so only the class and code)."""
    code = getattr(exc, "smtp_code", None)
    return f"{exc.__class__.__name__}{f' {code}' if code else ''}"[:200]


def deliver(session, config, *, now: dt.datetime | None = None, limit: int = DEFAULT_BATCH,
            max_attempts: int | None = None) -> DeliveryResult:
    """Claim one batch of due emails, send them, record the outcome (commits; for the CLI and after-commit)."""
    now = now or utcnow()
    max_attempts = int(max_attempts or config.get("MAIL_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS)
    items = claim(session, now=now, limit=limit)
    result = DeliveryResult()
    if not items:
        return result
    errors: dict[int, str] = {}
    sender = config.get("MAIL_FROM") or config.get("MAIL_DEFAULT_SENDER") or "timebank@localhost"
    try:
        with _transport(config) as transport:
            for item in items:
                if item.to is None:
                    result.skipped.append(item.id)
                    continue
                try:
                    transport.send(item, sender)
                except smtplib.SMTPServerDisconnected:
                    raise  # the connection is gone: the rest of the batch fails too
                except Exception as exc:  # noqa: BLE001  this message only (refused, malformed): record, go on
                    errors[item.id] = _error_text(exc)
                else:
                    result.sent.append(item.id)
    except (OSError, smtplib.SMTPException) as exc:  # could not connect, or lost the connection
        done = set(result.sent) | set(result.skipped) | set(errors)
        for item in items:
            if item.id not in done:
                errors[item.id] = _error_text(exc)
    _record(session, items, result, errors, now=now, max_attempts=max_attempts)
    return result


def _record(session, items: list[Claimed], result: DeliveryResult, errors: dict[int, str], *, now: dt.datetime,
            max_attempts: int) -> None:
    by_id = {item.id: item for item in items}
    with write_transactions():
        # Once sent (or skipped), the text is not kept: it may hold a password link, and the in-app notification
        # keeps what a member was told.
        for outbox_id in result.sent:
            _finish(session, by_id[outbox_id], status="sent", sent_at=utcnow(), last_error=None, body="")
        for outbox_id in result.skipped:
            _finish(session, by_id[outbox_id], status="skipped", last_error="member erased", body="")
        for outbox_id, error in errors.items():
            item = by_id[outbox_id]
            if item.attempt >= max_attempts:
                result.failed.append(outbox_id)
                _finish(session, item, status="failed", last_error=error)
                log.error("email outbox=%s template=%s gave up after %s attempts: %s", item.id, item.kind,
                          item.attempt, error)
            else:
                result.retry.append(outbox_id)
                _finish(session, item, next_attempt_at=now + backoff(item.attempt), last_error=error)
                log.warning("email outbox=%s template=%s attempt %s failed (%s); retrying later", item.id,
                            item.kind, item.attempt, error)
        session.commit()


def _finish(session, item: Claimed, **values) -> None:
    # Only if no other sender re-claimed it after our lease ran out (that one has a higher attempt count).
    session.execute(update(EmailOutbox).where(EmailOutbox.id == item.id, EmailOutbox.attempts == item.attempt,
                                              EmailOutbox.status == "pending")
                    .values(**values).execution_options(synchronize_session=False))


def deliver_all(session, config, *, now: dt.datetime | None = None, limit: int = DEFAULT_BATCH,
                max_batches: int = 100) -> DeliveryResult:
    """Deliver batch after batch until nothing is due (or max_batches, so one run stays bounded)."""
    total = DeliveryResult()
    for _ in range(max_batches):
        result = deliver(session, config, now=now, limit=limit)
        for name in ("sent", "retry", "failed", "skipped"):
            getattr(total, name).extend(getattr(result, name))
        if result.claimed < limit:
            break
    return total


def retry_failed(session) -> int:
    """Queue every email that gave up for another round of attempts (after fixing the mail server)."""
    with write_transactions():
        count = session.execute(update(EmailOutbox).where(EmailOutbox.status == "failed")
                                .values(status="pending", attempts=0, next_attempt_at=utcnow())
                                .execution_options(synchronize_session=False)).rowcount
        session.commit()
    return count or 0


def purge_delivered(session, *, now: dt.datetime | None = None, keep_days: int = 30) -> int:
    """Delete sent and skipped emails older than `keep_days` (their text is already blanked when sent; the row
    says who was mailed what kind of message, and when). Failed and pending ones stay until they are delivered."""
    cutoff = (now or utcnow()) - dt.timedelta(days=keep_days)
    with write_transactions():
        count = session.execute(delete(EmailOutbox).where(EmailOutbox.status.in_(("sent", "skipped")),
                                                          EmailOutbox.created_at < cutoff)
                                .execution_options(synchronize_session=False)).rowcount
        session.commit()
    return count or 0


def counts(session) -> dict[str, int]:
    from sqlalchemy import func

    return {status: n for status, n in session.execute(
        select(EmailOutbox.status, func.count()).group_by(EmailOutbox.status))}
