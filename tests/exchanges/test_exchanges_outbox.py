"""Notification emails through the transactional outbox: written with the change, sent after commit by
`flask notifications send`, retried on failure, never sent for a rolled-back change, never sent twice by
concurrent senders."""
import datetime as dt
import threading
import time

import pytest
from sqlalchemy import func, select

from timebank.community.service import add_membership, create_timebank, create_user
from timebank.exchanges import outbox, service
from timebank.exchanges.models import EmailOutbox, Notification
from timebank.extensions import db


class FakeSMTP:
    """Stands in for smtplib.SMTP: records what it was given; `fail` makes the next sends raise."""

    sent: list = []
    fail_connect = 0
    fail_send = 0
    delay = 0.0
    lock = threading.Lock()

    def __init__(self, host, port, timeout=None):
        with FakeSMTP.lock:
            if FakeSMTP.fail_connect:
                FakeSMTP.fail_connect -= 1
                raise ConnectionRefusedError(111, "Connection refused")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def send_message(self, message):
        if FakeSMTP.delay:
            time.sleep(FakeSMTP.delay)
        with FakeSMTP.lock:
            if FakeSMTP.fail_send:
                FakeSMTP.fail_send -= 1
                import smtplib

                raise smtplib.SMTPRecipientsRefused({message["To"]: (550, b"mailbox unavailable")})
            FakeSMTP.sent.append((message["To"], message["Subject"], message.get_content().strip()))


@pytest.fixture
def smtp(app, monkeypatch):
    FakeSMTP.sent, FakeSMTP.fail_connect, FakeSMTP.fail_send, FakeSMTP.delay = [], 0, 0, 0.0
    monkeypatch.setattr(outbox.smtplib, "SMTP", FakeSMTP)
    monkeypatch.setitem(app.config, "SMTP_HOST", "smtp.test")
    return FakeSMTP


def _outbox(session):
    session.expire_all()
    return list(session.scalars(select(EmailOutbox).order_by(EmailOutbox.id)))


def test_email_is_sent_after_commit_not_in_the_request(app, client, make_person, login, session, smtp):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    session.commit()
    login(alice_u)
    response = client.post("/exchanges/new", data={"direction": "gave", "other_id": bob.id, "hours": "1",
                                                   "minutes": "0", "date": dt.date.today().isoformat(),
                                                   "description": "Gardening"})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert smtp.sent == []  # the request only wrote the outbox row
    [row] = _outbox(session)
    assert (row.user_id, row.kind, row.status) == (bob_u.id, "exchange_to_confirm", "pending")
    body = row.body
    assert body
    result = outbox.deliver(session, app.config)
    assert result.sent == [row.id]
    assert smtp.sent == [(bob_u.email, "An exchange waits for me to confirm it", body)]
    assert (_outbox(session)[0].status, _outbox(session)[0].body) == ("sent", "")  # the text is not kept
    assert outbox.deliver(session, app.config).claimed == 0  # sent once, not again


def test_a_rolled_back_request_sends_nothing(app, client, make_person, api_headers, session, smtp, monkeypatch):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    headers = api_headers(alice_u, **{"Idempotency-Key": "rollback-1"})
    real_notify_all = service.notify_all

    def notify_then_fail(*args, **kwargs):
        real_notify_all(*args, **kwargs)  # the outbox row is written...
        raise RuntimeError("something later in the request fails")  # ...and the request then fails

    monkeypatch.setattr(service, "notify_all", notify_then_fail)
    response = client.post("/api/v1/exchanges", headers=headers, json={
        "provider_id": alice.id, "recipient_id": bob.id, "minutes": 30, "date": dt.date.today().isoformat()})
    assert response.status_code == 500
    assert _outbox(session) == []
    assert session.scalar(select(func.count(Notification.id))) == 0
    assert outbox.deliver(session, app.config).claimed == 0 and smtp.sent == []


def test_a_failed_send_is_retried_with_backoff_and_never_lost(app, make_person, session, smtp):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=bob.id, minutes=30,
                         happened_on=dt.date.today())
    t0 = dt.datetime(2030, 1, 1, 12, 0)
    smtp.fail_connect = 1  # the mail server is down
    first = outbox.deliver(session, app.config, now=t0)
    [row] = _outbox(session)
    assert first.retry == [row.id] and smtp.sent == []
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, t0 + dt.timedelta(minutes=1))
    assert row.last_error == "ConnectionRefusedError"
    # Not due yet: a run a few seconds later leaves it alone.
    assert outbox.deliver(session, app.config, now=t0 + dt.timedelta(seconds=30)).claimed == 0
    smtp.fail_send = 1  # the server refuses it once more
    second = outbox.deliver(session, app.config, now=t0 + dt.timedelta(minutes=1))
    row = _outbox(session)[0]
    assert second.retry == [row.id] and row.attempts == 2
    assert row.next_attempt_at == t0 + dt.timedelta(minutes=1) + dt.timedelta(minutes=2)  # doubled
    assert bob_u.email not in (row.last_error or "")  # the error text names no address
    third = outbox.deliver(session, app.config, now=t0 + dt.timedelta(minutes=3))
    assert third.sent == [row.id] and [to for to, _s, _b in smtp.sent] == [bob_u.email]
    assert _outbox(session)[0].status == "sent"


def test_after_max_attempts_it_is_kept_as_failed_and_can_be_queued_again(app, make_person, session, smtp,
                                                                        monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_MAX_ATTEMPTS", 2)
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=bob.id, minutes=30,
                         happened_on=dt.date.today())
    t0 = dt.datetime(2030, 1, 1, 12, 0)
    smtp.fail_connect = 2
    outbox.deliver(session, app.config, now=t0)
    gave_up = outbox.deliver(session, app.config, now=t0 + dt.timedelta(hours=1))
    [row] = _outbox(session)
    assert gave_up.failed == [row.id] and (row.status, row.attempts) == ("failed", 2)
    assert outbox.deliver(session, app.config, now=t0 + dt.timedelta(days=1)).claimed == 0
    assert outbox.retry_failed(session) == 1
    assert outbox.deliver(session, app.config).sent == [row.id]
    assert [to for to, _s, _b in smtp.sent] == [bob_u.email]


def test_a_crashed_sender_s_claim_runs_out_and_the_email_is_sent(app, make_person, session, smtp):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=bob.id, minutes=30,
                         happened_on=dt.date.today())
    t0 = dt.datetime(2030, 1, 1, 12, 0)
    claimed = outbox.claim(session, now=t0)  # a sender claims it, then dies before sending
    assert len(claimed) == 1
    assert outbox.deliver(session, app.config, now=t0 + dt.timedelta(minutes=5)).claimed == 0  # still leased
    later = outbox.deliver(session, app.config, now=t0 + outbox.LEASE)
    assert later.sent == [claimed[0].id] and len(smtp.sent) == 1
    # The dead sender's late report cannot overwrite the newer claim's result.
    outbox._record(session, claimed, outbox.DeliveryResult(retry=[]), {claimed[0].id: "late"}, now=t0,
                   max_attempts=8)
    assert _outbox(session)[0].status == "sent"


def test_a_big_batch_holds_its_claim_as_long_as_it_could_take_to_send(app, make_person, session, smtp):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=bob.id, minutes=30,
                         happened_on=dt.date.today())
    t0 = dt.datetime(2030, 1, 1, 12, 0)
    assert len(outbox.claim(session, now=t0, limit=500)) == 1  # a sender that may take 500 x the SMTP timeout
    still_sending = t0 + dt.timedelta(seconds=outbox.SMTP_TIMEOUT_SECONDS * 500)
    assert still_sending > t0 + outbox.LEASE
    assert outbox.deliver(session, app.config, now=still_sending).claimed == 0  # nobody takes it meanwhile
    assert smtp.sent == []


def test_an_erased_member_gets_no_email(app, make_person, session, smtp):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=bob.id, minutes=30,
                         happened_on=dt.date.today())
    bob_u.erased_at = dt.datetime(2030, 1, 1)
    session.flush()
    result = outbox.deliver(session, app.config)
    assert len(result.skipped) == 1 and smtp.sent == []
    assert _outbox(session)[0].status == "skipped"


def test_send_after_commit_when_configured(app, client, make_person, api_headers, session, smtp, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_SEND_AFTER_COMMIT", True)
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    headers = api_headers(alice_u, **{"Idempotency-Key": "after-commit-1"})
    response = client.post("/api/v1/exchanges", headers=headers, json={
        "provider_id": alice.id, "recipient_id": bob.id, "minutes": 30, "date": dt.date.today().isoformat()})
    assert response.status_code == 201, response.get_json()
    assert [to for to, _s, _b in smtp.sent] == [bob_u.email]
    assert _outbox(session)[0].status == "sent"


def test_send_after_commit_failing_leaves_it_for_the_job(app, client, make_person, api_headers, session, smtp,
                                                         monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_SEND_AFTER_COMMIT", True)
    smtp.fail_connect = 1
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    headers = api_headers(alice_u, **{"Idempotency-Key": "after-commit-2"})
    response = client.post("/api/v1/exchanges", headers=headers, json={
        "provider_id": alice.id, "recipient_id": bob.id, "minutes": 30, "date": dt.date.today().isoformat()})
    assert response.status_code == 201  # the exchange is saved whatever the mail server does
    [row] = _outbox(session)
    assert (row.status, row.attempts) == ("pending", 1)


# --- the command, with real commits --------------------------------------------------------------------------------

def _community(session, people=2):
    tb = create_timebank(session, slug="outboxbank", name="Outbox bank")
    members = []
    for i in range(people):
        user = create_user(session, email=f"outbox{i}@example.test", display_name=f"O{i}", password="pw-123456789")
        members.append((user, add_membership(session, user=user, timebank=tb)))
    return members


def test_send_command_delivers_and_is_safe_to_repeat(committed_db, runner, app, smtp):
    session = committed_db.session
    (alice_u, alice), (bob_u, bob) = _community(session)
    service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=bob.id, minutes=60,
                         happened_on=dt.date.today())
    session.commit()
    first = runner.invoke(args=["notifications", "send"])
    second = runner.invoke(args=["notifications", "send"])
    assert first.exit_code == 0, first.output
    assert "Sent 1, to retry later 0, gave up 0" in first.output and "Outbox: 0 pending, 0 failed;" in first.output
    assert second.exit_code == 0 and "Sent 0," in second.output
    assert [to for to, _s, _b in smtp.sent] == ["outbox1@example.test"]


def test_concurrent_senders_send_each_email_exactly_once(committed_db, app, smtp):
    session = committed_db.session
    members = _community(session, people=9)
    (alice_u, alice) = members[0]
    for _user, member in members[1:]:
        for minutes in (30, 45, 60, 75, 90):
            service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=member.id,
                                 minutes=minutes, happened_on=dt.date.today())
    session.commit()
    total = session.scalar(select(func.count(EmailOutbox.id)))
    assert total == 40
    session.rollback()  # end the read (on SQLite it holds the write lock: transactions begin IMMEDIATE)
    smtp.delay = 0.01  # a slow server, so the senders overlap
    barrier, results, errors = threading.Barrier(3), [], []

    def sender():
        with app.app_context():
            try:
                barrier.wait()
                results.append(outbox.deliver_all(db.session, app.config, limit=5))
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    sent_ids = [i for r in results for i in r.sent]
    assert len(sent_ids) == len(set(sent_ids)) == total
    assert len(smtp.sent) == total  # every email once, none twice
    assert sum(1 for r in results if r.sent) >= 2, "the senders did not overlap; the test proves nothing"
    session.expire_all()
    assert session.scalar(select(func.count(EmailOutbox.id)).where(EmailOutbox.status == "sent")) == total


def test_one_bad_message_does_not_stop_or_undo_the_batch(app, make_person, session, smtp, monkeypatch):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    carol_u, carol = make_person()
    for other in (bob, carol):
        service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=other.id, minutes=30,
                             happened_on=dt.date.today())
    real_send = outbox._SmtpTransport.send

    def send(self, item, sender):
        if item.to == bob_u.email:
            raise ValueError("a header the library refuses")
        return real_send(self, item, sender)

    monkeypatch.setattr(outbox._SmtpTransport, "send", send)
    result = outbox.deliver(session, app.config)
    assert len(result.sent) == 1 and len(result.retry) == 1
    assert [to for to, _s, _b in smtp.sent] == [carol_u.email]
    statuses = {row.user_id: (row.status, row.last_error) for row in _outbox(session)}
    assert statuses == {carol_u.id: ("sent", None), bob_u.id: ("pending", "ValueError")}


def test_sent_emails_are_deleted_after_the_keep_days_and_failed_ones_kept(committed_db, runner, app, smtp):
    session = committed_db.session
    (alice_u, alice), (bob_u, bob), (carol_u, carol) = _community(session, people=3)
    for other in (bob, carol):
        service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=other.id, minutes=60,
                             happened_on=dt.date.today())
    session.commit()
    smtp.fail_send = 1  # the first one is refused and waits for a retry
    assert runner.invoke(args=["notifications", "send"]).exit_code == 0
    session.expire_all()
    assert sorted(r.status for r in _outbox(session)) == ["pending", "sent"]
    session.rollback()
    later = (dt.datetime.utcnow() + dt.timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%S")
    smtp.fail_send = 1000  # from now on the server refuses everything
    result = runner.invoke(args=["notifications", "send", "--now", later])
    assert result.exit_code == 0, result.output
    assert "1 sent email(s) older than 30 days deleted." in result.output
    assert [r.status for r in _outbox(session)] == ["pending"]  # the undelivered one is kept


def test_a_password_link_is_mailed_through_the_outbox_and_not_kept(app, client, make_person, session, smtp):
    user, _ = make_person()
    session.commit()
    response = client.post("/password/forgot", data={"email": user.email})
    assert response.status_code == 200
    assert smtp.sent == []  # no SMTP conversation during the request
    [row] = _outbox(session)
    assert (row.user_id, row.kind, row.status) == (user.id, "password_reset", "pending")
    assert outbox.deliver(session, app.config).sent == [row.id]
    [(to, subject, body)] = smtp.sent
    assert (to, subject) == (user.email, "Reset your time bank password")
    link = body.split("http://localhost")[1].split()[0]
    assert client.get(link).status_code == 200  # the mailed link works
    assert (_outbox(session)[0].status, _outbox(session)[0].body) == ("sent", "")  # the link is not kept


def test_an_unknown_address_gets_no_password_email(client, session, smtp):
    assert client.post("/password/forgot", data={"email": "nobody-here@example.test"}).status_code == 200
    assert _outbox(session) == []
