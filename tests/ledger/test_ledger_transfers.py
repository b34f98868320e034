import datetime as dt

import pytest

from timebank.ledger import errors
from timebank.ledger.errors import describe_minutes
from timebank.ledger.models import Transfer
from timebank.ledger.queries import balance_of, statement
from timebank.ledger.service import normalise_postings, open_account, post_transfer, reverse_transfer

D = dt.date(2026, 11, 1)


def give(session, tb, src, dst, minutes, **kw):
    kw.setdefault("effective_date", D)
    return post_transfer(session, timebank_id=tb.id, kind=kw.pop("kind", "exchange"),
                         postings=[(src.id, -minutes), (dst.id, minutes)], **kw)


def test_describe_minutes_in_plain_words():
    assert describe_minutes(-660) == "-11 hours"
    assert describe_minutes(90) == "1 hour 30 minutes"
    assert describe_minutes(0) == "0 hours"
    assert describe_minutes(20) == "20 minutes"


def test_an_account_appears_once_per_transfer():
    with pytest.raises(errors.DuplicateAccount):
        normalise_postings([(1, 60), (1, -30), (2, -30)])


@pytest.mark.parametrize("postings, fragment", [
    ([(1, 60)], "at least two"),
    ([(1, 60), (2, -59)], "sum to 1"),
    ([(1, 0), (2, 0)], "zero minutes"),
    ([(1, 1.5), (2, -1.5)], "whole minutes"),
    ([(1, True), (2, -1)], "whole minutes"),
])
def test_pure_posting_rules_refuse_bad_shapes(postings, fragment):
    with pytest.raises(errors.UnbalancedTransfer, match=fragment):
        normalise_postings(postings)


def test_transfer_moves_balances_and_statement_shows_it(session, timebank, accounts):
    m1, m2 = accounts["m1"], accounts["m2"]
    give(session, timebank, m1, m2, 90, memo="Gardening")
    give(session, timebank, m2, m1, 30, memo="Shopping", effective_date=D + dt.timedelta(days=2))
    assert balance_of(session, m1.id) == -60
    assert balance_of(session, m2.id) == 60
    assert balance_of(session, m2.id, as_of=D) == 90
    assert balance_of(session, m2.id, as_of=D - dt.timedelta(days=1)) == 0
    st = statement(session, m2.id, D, D + dt.timedelta(days=5))
    assert (st.opening_minutes, st.closing_minutes, st.received_minutes, st.given_minutes) == (0, 60, 90, 30)
    assert [(line.memo, line.counterparty, line.minutes, line.running_minutes) for line in st.lines] == [
        ("Gardening", "Member 1", 90, 90), ("Shopping", "Member 1", -30, 60)]
    later = statement(session, m2.id, D + dt.timedelta(days=1), D + dt.timedelta(days=5))
    assert later.opening_minutes == 90 and later.total_lines == 1


def test_statement_pages_keep_running_balance(session, timebank, accounts):
    for i in range(7):
        give(session, timebank, accounts["issuance"], accounts["m1"], 10 + i)
    page2 = statement(session, accounts["m1"].id, D, D, page=2, per_page=3)
    assert page2.total_lines == 7 and page2.pages == 3
    assert [line.running_minutes for line in page2.lines] == [10 + 11 + 12 + 13, 10 + 11 + 12 + 13 + 14,
                                                              10 + 11 + 12 + 13 + 14 + 15]
    assert page2.closing_minutes == sum(range(10, 17))


def test_floor_refusal_names_account_and_depth(session, timebank, accounts):
    give(session, timebank, accounts["m3"], accounts["m1"], 600)
    with pytest.raises(errors.InsufficientBalance) as info:
        give(session, timebank, accounts["m3"], accounts["m1"], 60)
    assert "this would take Member 3 to -11 hours, below its limit of -10 hours" in info.value.message
    assert info.value.status == 422
    assert balance_of(session, accounts["m3"].id) == -600
    assert balance_of(session, accounts["m1"].id) == 600


def test_ceiling_refused(session, timebank, accounts):
    give(session, timebank, accounts["issuance"], accounts["capped"], 300)
    with pytest.raises(errors.CeilingExceeded):
        give(session, timebank, accounts["issuance"], accounts["capped"], 1)
    assert balance_of(session, accounts["capped"].id) == 300


def test_closed_and_cross_timebank_and_missing_accounts(session, timebank, accounts):
    from timebank.community.service import create_timebank

    other = create_timebank(session, slug="other", name="Other")
    stranger = open_account(session, timebank_id=other.id, kind="member", name="Stranger", floor_minutes=-600)
    with pytest.raises(errors.CrossTimebank):
        give(session, timebank, accounts["m1"], stranger, 10)
    with pytest.raises(errors.AccountNotFound):
        post_transfer(session, timebank_id=timebank.id, kind="exchange", postings=[(accounts["m1"].id, -5),
                                                                                    (999999, 5)], effective_date=D)
    accounts["m2"].status = "frozen"
    session.flush()
    with pytest.raises(errors.AccountClosed):
        give(session, timebank, accounts["m1"], accounts["m2"], 10)
    assert balance_of(session, accounts["m1"].id) == 0


def test_idempotency_replay_and_reuse(session, timebank, accounts):
    first = give(session, timebank, accounts["m1"], accounts["m2"], 45, idempotency_key="k1", memo="x")
    again = give(session, timebank, accounts["m1"], accounts["m2"], 45, idempotency_key="k1", memo="x")
    assert again.id == first.id
    assert balance_of(session, accounts["m2"].id) == 45
    with pytest.raises(errors.IdempotencyKeyReused):
        give(session, timebank, accounts["m1"], accounts["m2"], 46, idempotency_key="k1", memo="x")
    assert balance_of(session, accounts["m2"].id) == 45


def test_multi_leg_transfer(session, timebank, accounts):
    t = post_transfer(session, timebank_id=timebank.id, kind="group_activity", effective_date=D,
                      postings=[(accounts["issuance"].id, -120), (accounts["m1"].id, 60), (accounts["m2"].id, 30),
                                (accounts["m3"].id, 30)])
    assert [balance_of(session, accounts[k].id) for k in ("m1", "m2", "m3")] == [60, 30, 30]
    assert balance_of(session, accounts["issuance"].id) == -120
    assert statement(session, accounts["m1"].id, D, D).lines[0].counterparty == "Issuance"
    assert len(t.postings) == 4


def test_reversal_once(session, timebank, accounts):
    t = give(session, timebank, accounts["m1"], accounts["m2"], 45)
    r = reverse_transfer(session, t.id, reason="typo", idempotency_key="rev-1")
    assert r.kind == "reversal" and r.reverses_transfer_id == t.id
    assert balance_of(session, accounts["m1"].id) == 0 and balance_of(session, accounts["m2"].id) == 0
    assert reverse_transfer(session, t.id, reason="typo", idempotency_key="rev-1").id == r.id
    with pytest.raises(errors.AlreadyReversed):
        reverse_transfer(session, t.id, reason="again")
    with pytest.raises(errors.TransferNotFound):
        reverse_transfer(session, 987654, reason="nope")


def test_reversal_respects_floor(session, timebank, accounts):
    t = give(session, timebank, accounts["issuance"], accounts["capped"], 100)
    give(session, timebank, accounts["capped"], accounts["m1"], 100)
    with pytest.raises(errors.InsufficientBalance):
        reverse_transfer(session, t.id, reason="mistake")


def test_a_rolled_back_savepoint_forgets_the_transfer_it_wrote(session, timebank, accounts):
    """The write path attaches its rows without the unit of work; a rollback must still undo them in the session:
    the transfer is gone from it, the balance shown is the database's again, and (on SQLite, where a rolled-back
    id is reused) the next transfer can be written."""
    issuance, m1 = accounts["issuance"], accounts["m1"]
    savepoint = session.begin_nested()
    gone = post_transfer(session, timebank_id=timebank.id, kind="adjustment", effective_date=D, postings=[(issuance.id, -30),
                                   (m1.id, 30)])
    assert m1.balance_minutes == 30
    savepoint.rollback()
    assert gone not in session
    assert m1.balance_minutes == 0
    kept = post_transfer(session, timebank_id=timebank.id, kind="adjustment", effective_date=D, postings=[(issuance.id, -45),
                                   (m1.id, 45)])
    session.flush()
    assert session.get(Transfer, kept.id) is kept
    assert m1.balance_minutes == 45


def test_statements_to_today_equal_the_sums_of_postings(session, timebank, accounts):
    """A period that runs to today or later takes its opening balance from the balance now less the period's
    lines (one statement); an older period sums the postings before it. Both must equal the sums of the postings,
    with transfers dated before, inside and after the period (a future date too)."""
    import random

    rng = random.Random(5)
    today = dt.date.today()
    m1, m2, issuance = accounts["m1"], accounts["m2"], accounts["issuance"]
    dated = []
    for _ in range(40):
        day = today + dt.timedelta(days=rng.randint(-90, 10))
        src, dst = rng.choice([(issuance, m1), (m1, m2), (m2, m1), (issuance, m2)])
        minutes = rng.randint(1, 30)
        give(session, timebank, src, dst, minutes, effective_date=day)
        dated += [(day, m1.id, minutes * ((dst is m1) - (src is m1))), (day, m2.id, minutes * ((dst is m2) - (src is m2)))]
    for account in (m1, m2):
        for date_from, date_to in [(today.replace(day=1), today), (today - dt.timedelta(days=30), today + dt.timedelta(
                days=3)), (today - dt.timedelta(days=60), today - dt.timedelta(days=20)), (today, today)]:
            st = statement(session, account.id, date_from, date_to, per_page=1000)
            mine = [(day, minutes) for day, account_id, minutes in dated if account_id == account.id and minutes]
            assert st.opening_minutes == sum(m for day, m in mine if day < date_from), (date_from, date_to)
            assert st.closing_minutes == sum(m for day, m in mine if day <= date_to), (date_from, date_to)
            assert st.received_minutes - st.given_minutes == sum(m for day, m in mine if date_from <= day <= date_to)
            assert all(date_from <= line.date <= date_to for line in st.lines)
