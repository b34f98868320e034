"""UK GDPR: a member downloads what is held about them; an admin erases a person without touching the ledger."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from timebank.ledger.models import Account, Posting, Transfer


def _transfer(session, timebank_id, pairs, memo="Gardening"):
    """Record a balanced transfer: through the ledger's post_transfer when it is present, else directly."""
    from timebank.ledger import service as ledger_service

    if hasattr(ledger_service, "post_transfer"):
        return ledger_service.post_transfer(session, timebank_id=timebank_id, kind="exchange", postings=pairs,
                                            effective_date=dt.date.today(), memo=memo)
    transfer = Transfer(timebank_id=timebank_id, kind="exchange", memo=memo, effective_date=dt.date.today())
    session.add(transfer)
    session.flush()
    for account_id, minutes in pairs:
        session.add(Posting(transfer_id=transfer.id, account_id=account_id, minutes=minutes))
        session.get(Account, account_id).balance_minutes += minutes
    session.flush()
    return transfer


def _ledger_picture(session, timebank_id):
    balances = dict(session.execute(select(Account.id, Account.balance_minutes)
                                    .where(Account.timebank_id == timebank_id)).all())
    postings = dict(session.execute(select(Posting.account_id, func.sum(Posting.minutes))
                                    .group_by(Posting.account_id)).all())
    count = session.scalar(select(func.count()).select_from(Transfer).where(Transfer.timebank_id == timebank_id))
    return balances, postings, count


def test_member_downloads_everything_held_about_them(client, world, session, login):
    _transfer(session, world.timebank.id, [(world.other_m.account_id, -90), (world.member_m.account_id, 90)])
    world.member_m.bio = "I like bikes"
    session.commit()
    login(world.member)
    response = client.get("/profile/data.json")
    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    data = response.get_json()
    assert data["user"]["email"] == world.member.email
    mine = data["memberships"][0]
    assert mine["balance_minutes"] == 90 and mine["profile"]["bio"] == "I like bikes"
    assert [e["minutes"] for e in mine["ledger_entries"]] == [90]
    assert world.other.email not in response.get_data(as_text=True)
    # The API gives the same document.
    login_free = client.get("/api/v1/me/data", headers=_bearer(session, world.member))
    assert login_free.get_json()["user"] == data["user"]
    from timebank.community.models import AuditEvent

    exports = session.scalars(select(AuditEvent).where(AuditEvent.action == "privacy.exported",
                                                       AuditEvent.target_id == world.member.id)).all()
    assert len(exports) == 2


def _bearer(session, user):
    from timebank.community.auth import issue_token

    token, _ = issue_token(session, user)
    session.commit()
    return {"Authorization": f"Bearer {token}"}


def test_erasure_keeps_ledger_balances_and_transfer_count_identical(client, world, session, api_headers):
    tb = world.timebank.id
    _transfer(session, tb, [(world.other_m.account_id, -120), (world.member_m.account_id, 120)])
    _transfer(session, tb, [(world.member_m.account_id, -30), (world.organisation.account_id, 30)])
    world.other_m.bio = "private story"
    world.other_m.risk_note = "sensitive"
    world.other.phone = "07700 900000"
    session.commit()
    before = _ledger_picture(session, tb)
    old_email = world.other.email
    response = client.post(f"/api/v1/members/{world.other_m.id}/erase",
                           headers=api_headers(world.admin, **{"Idempotency-Key": "erase-1"}), json={})
    assert response.status_code == 200
    session.expire_all()
    assert _ledger_picture(session, tb) == before
    user = world.other
    assert user.email != old_email and user.phone is None and user.password_hash is None
    assert world.other_m.bio is None and world.other_m.risk_note is None
    assert session.get(Account, world.other_m.account_id).balance_minutes == -120
    # They cannot log in, they are gone from the directory, and the erasure is in the audit log.
    assert client.post("/api/v1/tokens", auth=(old_email, "pw-123456789")).status_code == 401
    listing = client.get("/api/v1/members?timebank=testbank", headers=api_headers(world.broker)).get_json()
    assert world.other_m.id not in [m["id"] for m in listing]
    from timebank.community.models import AuditEvent

    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "privacy.erased",
                                                   AuditEvent.target_id == user.id)) is not None


def test_erasing_twice_is_a_conflict_and_brokers_cannot_erase(client, world, api_headers):
    refused = client.post(f"/api/v1/members/{world.other_m.id}/erase",
                          headers=api_headers(world.broker, **{"Idempotency-Key": "e0"}), json={})
    assert refused.status_code == 403
    ok = client.post(f"/api/v1/members/{world.other_m.id}/erase",
                     headers=api_headers(world.admin, **{"Idempotency-Key": "e1"}), json={})
    assert ok.status_code == 200
    again = client.post(f"/api/v1/members/{world.other_m.id}/erase",
                        headers=api_headers(world.admin, **{"Idempotency-Key": "e2"}), json={})
    assert again.status_code == 409 and again.get_json()["code"] == "already_erased"


def test_admin_erases_from_the_page_only_with_confirmation(client, world, session, login):
    login(world.admin)
    client.post(f"/members/{world.other_m.id}/erase", data={})
    session.expire_all()
    assert world.other.erased_at is None
    client.post(f"/members/{world.other_m.id}/erase", data={"confirm": "erase"})
    session.expire_all()
    assert world.other.erased_at is not None
