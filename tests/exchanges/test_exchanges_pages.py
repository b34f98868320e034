import datetime as dt

from sqlalchemy import select

from timebank.exchanges import service
from timebank.exchanges.models import Exchange


def test_member_logs_and_other_confirms_on_pages(client, make_person, login, balance, session):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    login(alice_u)
    page = client.get("/exchanges/new")
    assert page.status_code == 200 and bob_u.display_name in page.get_data(as_text=True)
    r = client.post("/exchanges/new", data={"direction": "gave", "other_id": bob.id, "hours": "1", "minutes": "30",
                                            "date": dt.date.today().isoformat(), "description": "Fixed a shelf"})
    assert r.status_code == 302, r.get_data(as_text=True)
    exchange = session.scalar(select(Exchange))
    assert exchange.minutes == 90 and exchange.status == "pending"
    client.post("/logout")

    login(bob_u)
    dash = client.get("/exchanges/").get_data(as_text=True)
    assert "Waiting for me" in dash and "Fixed a shelf" in dash
    assert 'aria-label="1 unread"' in dash
    r = client.post(f"/exchanges/{exchange.id}/confirm", follow_redirects=True)
    assert "Confirmed. The hours have moved." in r.get_data(as_text=True)
    assert (balance(alice), balance(bob)) == (90, -90)
    dash = client.get("/exchanges/").get_data(as_text=True)
    assert "Nothing is waiting for you." in dash and "-1 hour 30 minutes" in dash
    assert f"/accounts/{bob.account_id}/statement" in dash


def test_log_form_shows_rule_message_and_saves_nothing(client, make_person, login, session):
    alice_u, alice = make_person()
    _, bob = make_person()
    login(alice_u)
    future = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    r = client.post("/exchanges/new", data={"direction": "gave", "other_id": bob.id, "hours": "1", "minutes": "0",
                                            "date": future})
    assert r.status_code == 422
    assert "The date cannot be in the future" in r.get_data(as_text=True)
    r = client.post("/exchanges/new", data={"direction": "gave", "other_id": bob.id, "hours": "x",
                                            "date": dt.date.today().isoformat()})
    assert r.status_code == 422 and "hours and minutes" in r.get_data(as_text=True)
    assert session.scalar(select(Exchange)) is None


def test_dispute_on_page_then_broker_settles(client, make_person, login, balance, session):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    broker_u, _ = make_person("broker")
    exchange = service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=bob.id, minutes=120,
                                    happened_on=dt.date.today())
    login(bob_u)
    r = client.post(f"/exchanges/{exchange.id}/dispute", data={"reason": "It was one hour"}, follow_redirects=True)
    assert "Disputed" in r.get_data(as_text=True)
    assert client.get("/exchanges/broker").status_code == 403
    client.post("/logout")
    login(broker_u)
    desk = client.get("/exchanges/broker").get_data(as_text=True)
    assert "It was one hour" in desk
    r = client.post(f"/exchanges/{exchange.id}/resolve", data={"action": "replace", "hours": "1", "minutes": "0"},
                    follow_redirects=True)
    assert "Dispute settled." in r.get_data(as_text=True)
    assert (balance(alice), balance(bob)) == (60, -60)


def test_broker_records_exchange_and_grants(client, make_person, login, balance, session, timebank):
    _, alice = make_person()
    giver_u, bob = make_person()
    broker_u, _ = make_person("broker")
    service.donate_to_pot(session, user=giver_u, timebank_id=timebank.id, minutes=120)
    login(broker_u)
    r = client.post("/exchanges/broker", data={"task": "record", "provider_id": alice.id, "recipient_id": bob.id,
                                               "hours": "2", "minutes": "0", "date": dt.date.today().isoformat()},
                    follow_redirects=True)
    assert "Recorded:" in r.get_data(as_text=True)
    assert (balance(alice), balance(bob)) == (120, -240)
    r = client.post("/exchanges/broker", data={"task": "grant", "member_id": alice.id, "hours": "1",
                                               "minutes": "0", "reason": ""}, follow_redirects=True)
    assert "Give a reason for the grant." in r.get_data(as_text=True)
    r = client.post("/exchanges/broker", data={"task": "grant", "member_id": alice.id, "hours": "1",
                                               "minutes": "0", "reason": "Frail"}, follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "Granted 1 hour from the pot." in page and 'id="pot-balance">1 hour<' in page
    assert balance(alice) == 180


def test_group_activity_csv_preview_then_record_on_page(client, make_person, login, balance, organisation, rep):
    rep_u, _ = rep
    a_u, a = make_person()
    b_u, b = make_person()
    login(rep_u)
    base = {"task": "activity", "title": "Litter pick", "date": dt.date.today().isoformat()}
    bad = f"{a_u.email},3\nghost@example.test,2\n"
    r = client.post(f"/exchanges/organisations/{organisation.id}", data={**base, "csv": bad, "step": "record"})
    page = r.get_data(as_text=True)
    assert r.status_code == 422 and "Unknown member" in page and "nothing has been recorded" in page
    assert (balance(a), balance(organisation)) == (0, 0)
    good = f"{a_u.email},3\n{b_u.email},1:30\n"
    r = client.post(f"/exchanges/organisations/{organisation.id}", data={**base, "csv": good, "step": "preview"})
    assert r.status_code == 200 and "every row is right" in r.get_data(as_text=True)
    assert balance(a) == 0
    r = client.post(f"/exchanges/organisations/{organisation.id}", data={**base, "csv": good, "step": "record"},
                    follow_redirects=True)
    assert "Recorded the group activity" in r.get_data(as_text=True)
    assert (balance(a), balance(b), balance(organisation)) == (180, 90, -270)


def test_org_rep_credits_volunteer_and_others_cannot(client, make_person, login, balance, organisation, rep):
    rep_u, _ = rep
    vol_u, vol = make_person()
    login(vol_u)
    assert client.get(f"/exchanges/organisations/{organisation.id}").status_code == 403
    client.post("/logout")
    login(rep_u)
    r = client.post(f"/exchanges/organisations/{organisation.id}",
                    data={"task": "credit", "member_id": vol.id, "hours": "3", "minutes": "0",
                          "date": dt.date.today().isoformat()}, follow_redirects=True)
    assert "Credited:" in r.get_data(as_text=True)
    assert (balance(vol), balance(organisation)) == (180, -180)


def test_notification_preferences_turn_off_in_app(client, make_person, login, session):
    from timebank.exchanges.notifications import unread_count

    alice_u, alice = make_person()
    bob_u, bob = make_person()
    login(bob_u)
    r = client.post("/exchanges/notifications/preferences", data={"exchange_confirmed-email": "on"},
                    follow_redirects=True)
    assert "Your notification choices are saved." in r.get_data(as_text=True)
    service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=bob.id, minutes=30,
                         happened_on=dt.date.today())
    assert unread_count(session, bob_u.id) == 0
    service.log_exchange(session, user=bob_u, provider_id=alice.id, recipient_id=bob.id, minutes=30,
                         happened_on=dt.date.today())
    assert unread_count(session, alice_u.id) == 1
    client.post("/logout")
    login(alice_u)
    page = client.get("/exchanges/notifications").get_data(as_text=True)
    assert "Please confirm" in page
    client.post("/exchanges/notifications")
    assert unread_count(session, alice_u.id) == 0


def test_email_is_a_log_line_without_smtp_naming_no_one(app, make_person, session, caplog):
    """Without SMTP the email is a log line (development) that names the outbox row and template only: no
    address, no message text (personal data stays out of the logs)."""
    import re

    from timebank.exchanges.models import EmailOutbox
    from timebank.exchanges.outbox import deliver

    alice_u, alice = make_person()
    bob_u, bob = make_person()
    with caplog.at_level("DEBUG"):
        exchange = service.log_exchange(session, user=alice_u, provider_id=alice.id, recipient_id=bob.id,
                                        minutes=30, happened_on=dt.date.today(), description="Fixed Bob's gate")
        assert not [r for r in caplog.records if r.name == "timebank.email"]  # written to the outbox, not sent
        row = session.scalar(select(EmailOutbox).where(EmailOutbox.user_id == bob_u.id))
        assert (row.kind, row.status) == ("exchange_to_confirm", "pending")
        result = deliver(session, app.config)
    assert result.sent == [row.id]
    lines = [r.getMessage() for r in caplog.records if r.name == "timebank.email"]
    assert lines == [f"email outbox={row.id} template=exchange_to_confirm not sent: SMTP not configured "
                     "(development)"]
    everything = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert bob_u.email not in everything and alice_u.email not in everything
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", everything), "an email address reached the logs"
    assert "gate" not in everything and str(exchange.minutes) + " minutes" not in everything


def test_pages_need_login(client):
    assert client.get("/exchanges/").status_code == 302
    assert client.get("/exchanges/broker").status_code == 302
