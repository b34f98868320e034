import datetime as dt

import pytest
from sqlalchemy import func, select

from timebank.community.models import AuditEvent
from timebank.errors import DomainError
from timebank.exchanges import service
from timebank.exchanges.models import Exchange
from timebank.exchanges.notifications import unread_count
from timebank.ledger.models import Posting, Transfer


def transfers_for(session, exchange):
    """Transfers that post this exchange (by the exchange link or the transfer's metadata)."""
    return [t for t in session.scalars(select(Transfer).where(Transfer.kind == "exchange"))
            if (t.metadata_ or {}).get("exchange_id") == exchange.id]


def log(session, user, provider, recipient, minutes=90, **kw):
    kw.setdefault("happened_on", dt.date.today())
    return service.log_exchange(session, user=user, provider_id=provider.id, recipient_id=recipient.id,
                                minutes=minutes, description="Gardening", **kw)


def test_log_then_confirm_posts_one_transfer(session, make_person, balance):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    exchange = log(session, alice_u, alice, bob)
    assert exchange.status == "pending"
    assert (balance(alice), balance(bob)) == (0, 0)
    assert transfers_for(session, exchange) == []
    assert unread_count(session, bob_u.id) == 1

    service.confirm_exchange(session, exchange.id, user=bob_u)
    assert exchange.status == "confirmed"
    assert (balance(alice), balance(bob)) == (90, -90)
    assert len(transfers_for(session, exchange)) == 1
    assert unread_count(session, alice_u.id) == 1


def test_logger_cannot_confirm_own_and_outsider_cannot(session, make_person, balance):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    carol_u, _ = make_person()
    exchange = log(session, alice_u, alice, bob)
    for user in (alice_u, carol_u):
        with pytest.raises(DomainError) as err:
            service.confirm_exchange(session, exchange.id, user=user)
        assert err.value.status == 403
    assert exchange.status == "pending" and balance(bob) == 0


def test_recipient_logs_provider_confirms(session, make_person, balance):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    exchange = log(session, bob_u, alice, bob)
    service.confirm_exchange(session, exchange.id, user=alice_u)
    assert (balance(alice), balance(bob)) == (90, -90)


def test_dispute_and_cancel_post_nothing(session, make_person, balance):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    disputed = log(session, alice_u, alice, bob)
    service.dispute_exchange(session, disputed.id, user=bob_u, reason="It was one hour")
    cancelled = log(session, alice_u, alice, bob, minutes=30)
    with pytest.raises(DomainError):
        service.cancel_exchange(session, cancelled.id, user=bob_u)
    service.cancel_exchange(session, cancelled.id, user=alice_u)
    assert (disputed.status, cancelled.status) == ("disputed", "cancelled")
    assert transfers_for(session, disputed) == [] and transfers_for(session, cancelled) == []
    assert (balance(alice), balance(bob)) == (0, 0)
    with pytest.raises(DomainError) as err:
        service.confirm_exchange(session, cancelled.id, user=bob_u)
    assert err.value.code == "exchange_not_pending"


def test_dispute_needs_reason(session, make_person):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    exchange = log(session, alice_u, alice, bob)
    with pytest.raises(DomainError) as err:
        service.dispute_exchange(session, exchange.id, user=bob_u, reason="  ")
    assert err.value.code == "validation_error"
    assert exchange.status == "pending"


@pytest.mark.parametrize("action,expected", [("confirm", (90, -90)), ("cancel", (0, 0)), ("replace", (60, -60))])
def test_broker_resolves_dispute(session, make_person, balance, action, expected):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    broker_u, _ = make_person("broker")
    exchange = log(session, alice_u, alice, bob)
    service.dispute_exchange(session, exchange.id, user=bob_u, reason="It was one hour")
    with pytest.raises(DomainError):
        service.resolve_dispute(session, exchange.id, user=alice_u, action="confirm")
    result = service.resolve_dispute(session, exchange.id, user=broker_u, action=action,
                                     replacement={"minutes": 60})
    assert (balance(alice), balance(bob)) == expected
    if action == "replace":
        assert exchange.status == "cancelled" and transfers_for(session, exchange) == []
        assert result.replaces_exchange_id == exchange.id and result.status == "confirmed"
        assert len(transfers_for(session, result)) == 1


def test_rules_refuse_and_change_nothing(session, make_person, balance, timebank, today):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    cases = [
        (dict(minutes=25 * 60), "exchange_too_long"),
        (dict(happened_on=today + dt.timedelta(days=1)), "date_in_future"),
        (dict(happened_on=today - dt.timedelta(days=timebank.max_backdate_days + 1)), "date_too_old"),
        (dict(minutes=0), "validation_error"),
    ]
    for kwargs, code in cases:
        with pytest.raises(DomainError) as err:
            log(session, alice_u, alice, bob, **kwargs)
        assert err.value.code == code, kwargs
    with pytest.raises(DomainError) as err:
        log(session, alice_u, alice, alice)
    assert err.value.code in ("self_exchange", "forbidden")
    assert err.value.message == "You cannot log an exchange with yourself."
    assert session.scalar(select(func.count(Exchange.id))) == 0
    assert (balance(alice), balance(bob)) == (0, 0)


def test_floor_message_when_recipient_would_go_below_limit(session, make_person, balance, timebank):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    # Bob spends nine and a half hours first; 90 more minutes would take him past -10 hours.
    for _ in range(19):
        e = log(session, alice_u, alice, bob, minutes=30)
        service.confirm_exchange(session, e.id, user=bob_u)
    assert balance(bob) == -570
    with pytest.raises(DomainError) as err:
        log(session, bob_u, alice, bob, minutes=90)
    assert err.value.message == ("This would take you below your limit of -10 hours; "
                                 "you can earn hours by offering help first.")
    pending = log(session, alice_u, alice, bob, minutes=90)
    with pytest.raises(DomainError) as err:
        service.confirm_exchange(session, pending.id, user=bob_u)
    assert err.value.code == "insufficient_balance"
    assert balance(bob) == -570 and balance(alice) == 570


def test_inactive_and_other_timebank_refused(session, make_person, balance):
    from timebank.community.service import create_timebank

    alice_u, alice = make_person()
    _, suspended = make_person()
    suspended.status = "suspended"
    other = create_timebank(session, slug="other", name="Other")
    _, stranger = make_person(tb=other)
    for who, code in ((suspended, "inactive_member"), (stranger, "not_same_timebank")):
        with pytest.raises(DomainError) as err:
            log(session, alice_u, alice, who)
        assert err.value.code == code
    assert balance(alice) == 0


def test_tags_default_from_category_and_can_be_overridden(session, make_person, timebank):
    from timebank.community.models import Category

    alice_u, alice = make_person()
    _, bob = make_person()
    befriending = session.scalar(select(Category).where(Category.timebank_id == timebank.id,
                                                        Category.name == "Befriending"))
    e = log(session, alice_u, alice, bob, category_id=befriending.id)
    assert (e.coproduction_type, e.outcome_area, e.collective) == ("co_delivery", "social_care", False)
    e2 = log(session, alice_u, alice, bob, category_id=befriending.id,
             tags={"coproduction_type": "co_design", "coproduction_subtype": "design_lab", "substitutive": True})
    assert (e2.coproduction_type, e2.coproduction_subtype, e2.outcome_area, e2.substitutive) == (
        "co_design", "design_lab", "social_care", True)
    with pytest.raises(DomainError):
        log(session, alice_u, alice, bob, tags={"outcome_area": "space_travel"})


def test_broker_records_and_audit_says_who(session, make_person, balance):
    _, alice = make_person()
    _, bob = make_person()
    broker_u, _ = make_person("broker")
    exchange = service.record_exchange(session, user=broker_u, provider_id=alice.id, recipient_id=bob.id,
                                       minutes=120, happened_on=dt.date.today())
    assert exchange.status == "confirmed" and (balance(alice), balance(bob)) == (120, -120)
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "exchange.recorded"))
    assert event.actor_user_id == broker_u.id and event.target_id == exchange.id
    member_u, _ = make_person()
    with pytest.raises(DomainError) as err:
        service.record_exchange(session, user=member_u, provider_id=alice.id, recipient_id=bob.id, minutes=60,
                                happened_on=dt.date.today())
    assert err.value.status == 403
    assert (balance(alice), balance(bob)) == (120, -120)


def test_broker_corrects_with_reversal_and_new_exchange(session, make_person, balance):
    _, alice = make_person()
    _, bob = make_person()
    broker_u, _ = make_person("broker")
    exchange = service.record_exchange(session, user=broker_u, provider_id=alice.id, recipient_id=bob.id,
                                       minutes=120, happened_on=dt.date.today())
    old, new = service.correct_exchange(session, exchange.id, user=broker_u, reason="Was 1 hour",
                                        replacement={"minutes": 60})
    assert old.status == "reversed" and new.status == "confirmed"
    assert (balance(alice), balance(bob)) == (60, -60)
    reversal = session.scalar(select(Transfer).where(Transfer.reverses_transfer_id == exchange.transfer_id))
    assert reversal is not None
    with pytest.raises(DomainError) as err:
        service.correct_exchange(session, exchange.id, user=broker_u, reason="again")
    assert err.value.code == "exchange_not_confirmed"


def test_auto_confirm_twice_confirms_once(session, make_person, balance, timebank, today):
    alice_u, alice = make_person()
    bob_u, bob = make_person()
    old = log(session, alice_u, alice, bob, minutes=60)
    old.created_at = old.created_at - dt.timedelta(days=timebank.auto_confirm_days)
    fresh = log(session, alice_u, alice, bob, minutes=30)
    disputed = log(session, alice_u, alice, bob, minutes=45)
    disputed.created_at = disputed.created_at - dt.timedelta(days=30)
    service.dispute_exchange(session, disputed.id, user=bob_u, reason="no")
    session.flush()
    assert service.auto_confirm(session, today) == [old.id]
    assert service.auto_confirm(session, today) == []
    assert (old.status, old.auto_confirmed, fresh.status, disputed.status) == (
        "confirmed", True, "pending", "disputed")
    assert len(transfers_for(session, old)) == 1
    assert (balance(alice), balance(bob)) == (60, -60)


def test_organisation_credits_volunteer_and_member_spends(session, make_person, balance, organisation, rep):
    rep_u, _ = rep
    vol_u, vol = make_person()
    e = service.credit_volunteer(session, user=rep_u, organisation_id=organisation.id, membership_id=vol.id,
                                 minutes=180, happened_on=dt.date.today())
    assert (e.kind, e.status) == ("p2a", "confirmed")
    assert (balance(vol), balance(organisation)) == (180, -180)
    spend = service.spend_with_organisation(session, user=vol_u, membership_id=vol.id,
                                            organisation_id=organisation.id, minutes=120,
                                            happened_on=dt.date.today(), description="Pottery course")
    assert spend.status == "confirmed" and (balance(vol), balance(organisation)) == (60, -60)
    with pytest.raises(DomainError) as err:
        service.credit_volunteer(session, user=vol_u, organisation_id=organisation.id, membership_id=vol.id,
                                 minutes=60, happened_on=dt.date.today())
    assert err.value.status == 403


def test_org_to_org_waits_for_paying_org(session, make_person, balance, organisation, rep, timebank):
    from timebank.community.service import create_organisation

    rep_u, _ = rep
    school = create_organisation(session, timebank=timebank, name="School")
    head_u, _ = make_person()
    school.representatives.append(head_u)
    session.flush()
    e = service.organisation_exchange(session, user=rep_u, provider_organisation_id=organisation.id,
                                      recipient_organisation_id=school.id, minutes=240,
                                      happened_on=dt.date.today(), description="Minibus")
    assert (e.kind, e.status) == ("a2a", "pending")
    service.confirm_exchange(session, e.id, user=head_u)
    assert (balance(organisation), balance(school)) == (240, -240)


def test_group_activity_posts_one_transfer(session, make_person, balance, organisation, rep):
    rep_u, _ = rep
    people = [make_person()[1] for _ in range(5)]
    activity = service.record_group_activity(
        session, user=rep_u, organisation_id=organisation.id, title="Litter pick", happened_on=dt.date.today(),
        participants=[(m.id, 180) for m in people], tags={"outcome_area": "local_environment"})
    transfer = session.get(Transfer, activity.transfer_id)
    assert transfer.kind == "group_activity" and len(transfer.postings) == 6
    assert balance(organisation) == -900 and all(balance(m) == 180 for m in people)
    rows = session.scalars(select(Exchange).where(Exchange.activity_id == activity.id)).all()
    assert len(rows) == 5 and all(r.collective and r.transfer_id == transfer.id for r in rows)


def test_group_activity_all_or_nothing(session, make_person, balance, organisation, rep):
    rep_u, _ = rep
    good = make_person()[1]
    bad = make_person()[1]
    bad.status = "suspended"
    with pytest.raises(DomainError):
        service.record_group_activity(session, user=rep_u, organisation_id=organisation.id, title="Pick",
                                      happened_on=dt.date.today(), participants=[(good.id, 60), (bad.id, 60)])
    assert balance(good) == 0 and balance(organisation) == 0
    assert session.scalar(select(func.count(Posting.id))) == 0


def test_csv_preview_flags_each_bad_row_and_posts_nothing(session, make_person, balance, organisation, rep,
                                                          timebank):
    rep_u, _ = rep
    a_u, a = make_person()
    b_u, b = make_person()
    c_u, c = make_person()
    c.status = "suspended"
    text = (f"email,hours\n{a_u.email},3\n{b_u.email},2:30\nnobody@example.test,1\n"
            f"{c_u.email},1\n{a.id},abc\n")
    preview = service.parse_participants_csv(session, timebank, text)
    errors = {r.line: r.error for r in preview.rows}
    assert not preview.ok
    assert errors[2] is None and errors[3] is None
    assert "Unknown member" in errors[4]
    assert "active account" in errors[5]
    assert "listed twice" in errors[6] or "not a number" in errors[6]
    with pytest.raises(DomainError) as err:
        service.record_group_activity_from_csv(session, user=rep_u, organisation_id=organisation.id, title="Pick",
                                               happened_on=dt.date.today(), csv_text=text)
    assert err.value.code == "csv_invalid"
    assert (balance(a), balance(b), balance(organisation)) == (0, 0, 0)
    good = f"email,hours\n{a_u.email},3\n{b_u.email},2.5\n"
    preview = service.parse_participants_csv(session, timebank, good)
    assert preview.ok and preview.total_minutes == 330
    service.record_group_activity_from_csv(session, user=rep_u, organisation_id=organisation.id, title="Pick",
                                           happened_on=dt.date.today(), csv_text=good)
    assert (balance(a), balance(b), balance(organisation)) == (180, 150, -330)


def test_csv_bad_number(session, make_person, timebank):
    a_u, _ = make_person()
    preview = service.parse_participants_csv(session, timebank, f"{a_u.email},lots\n")
    assert not preview.ok and "not a number" in preview.rows[0].error


def test_pot_donation_and_grant(session, make_person, balance, timebank):
    from timebank.exchanges.queries import pot_summary

    giver_u, giver = make_person()
    _, needy = make_person()
    broker_u, _ = make_person("broker")
    service.donate_to_pot(session, user=giver_u, timebank_id=timebank.id, minutes=120)
    assert balance(giver) == -120 and pot_summary(session, timebank.id)["balance_minutes"] == 120
    with pytest.raises(DomainError):
        service.grant_from_pot(session, user=broker_u, membership_id=needy.id, minutes=60, reason="")
    with pytest.raises(DomainError):
        service.grant_from_pot(session, user=giver_u, membership_id=needy.id, minutes=60, reason="frail")
    with pytest.raises(DomainError) as err:
        service.grant_from_pot(session, user=broker_u, membership_id=needy.id, minutes=500, reason="frail")
    assert err.value.code == "pot_too_small"
    service.grant_from_pot(session, user=broker_u, membership_id=needy.id, minutes=60, reason="Recovering from op")
    summary = pot_summary(session, timebank.id)
    assert summary["balance_minutes"] == 60 and balance(needy) == 60
    assert [f["kind"] for f in summary["flows"]] == ["grant", "donation"]
    assert unread_count(session, needy.user_id) == 1
