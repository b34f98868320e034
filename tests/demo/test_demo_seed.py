"""The demo community: ledger invariants, determinism and the shape of a real time bank."""
from __future__ import annotations

import datetime as dt
import os
from collections import Counter

import pytest
from sqlalchemy import func, select

from timebank import demo
from timebank.community.models import Membership, Organisation, OrganisationRepresentative, TimeBank
from timebank.exchanges.models import Exchange, GroupActivity
from timebank.ledger.models import Account, Posting, Transfer
from timebank.ledger.verify import verify_ledger


def _quiet(*_args, **_kw):
    pass


def _load(session, slug, seed=7, size="XS"):
    demo.load_demo(session, size=size, seed=seed, slug=slug, echo=_quiet)
    session.flush()
    return session.scalar(select(TimeBank).where(TimeBank.slug == slug))


def assert_ledger_holds(session, timebank_id):
    """What `ledger verify` checks: balances = sum of postings, zero-sum transfers, floors respected."""
    sums = dict(session.execute(
        select(Posting.account_id, func.sum(Posting.minutes)).join(Account, Account.id == Posting.account_id)
        .where(Account.timebank_id == timebank_id).group_by(Posting.account_id)).all())
    accounts = session.scalars(select(Account).where(Account.timebank_id == timebank_id)).all()
    for account in accounts:
        assert account.balance_minutes == sums.get(account.id, 0), account.name
        if account.floor_minutes is not None:
            assert account.balance_minutes >= account.floor_minutes, account.name
    unbalanced = session.execute(
        select(Transfer.id, func.sum(Posting.minutes)).join(Posting, Posting.transfer_id == Transfer.id)
        .where(Transfer.timebank_id == timebank_id).group_by(Transfer.id)
        .having(func.sum(Posting.minutes) != 0)).all()
    assert unbalanced == []
    # Every confirmed exchange is backed by a transfer of the same time bank.
    orphans = session.scalar(select(func.count()).select_from(Exchange).where(
        Exchange.timebank_id == timebank_id, Exchange.status == "confirmed", Exchange.transfer_id.is_(None)))
    assert orphans == 0
    assert sum(a.balance_minutes for a in accounts) == 0
    # And the ledger's own verifier (hash chains, reversal mirrors, limits) agrees.
    report = verify_ledger(session, timebank_id)
    assert report.ok, report.problems[:5]


def test_demo_keeps_every_ledger_invariant(session):
    timebank = _load(session, "demo-ledger")
    assert_ledger_holds(session, timebank.id)
    transfers = session.scalar(select(func.count()).select_from(Transfer).where(Transfer.timebank_id == timebank.id))
    assert transfers > 250
    kinds = set(session.scalars(select(Transfer.kind).where(Transfer.timebank_id == timebank.id)))
    assert {"exchange", "group_activity", "donation", "grant", "reversal", "opening"} <= kinds


def _balances(session, timebank_id):
    return [a.balance_minutes for a in session.scalars(
        select(Account).where(Account.timebank_id == timebank_id).order_by(Account.id))]


def test_same_seed_gives_the_same_balances_and_another_seed_does_not(session):
    first = _load(session, "demo-one", seed=11)
    second = _load(session, "demo-two", seed=11)
    third = _load(session, "demo-three", seed=12)
    assert _balances(session, first.id) == _balances(session, second.id)
    assert _balances(session, first.id) != _balances(session, third.id)
    assert_ledger_holds(session, third.id)


def test_demo_has_the_shape_of_a_real_time_bank(session):
    timebank = _load(session, "demo-shape", seed=5)
    reps = set(session.scalars(select(OrganisationRepresentative.user_id)))
    members = [m for m in session.scalars(select(Membership).where(
        Membership.timebank_id == timebank.id, Membership.role == "member", Membership.account_id.is_not(None)))
        if m.user_id not in reps]
    confirmed = session.scalars(select(Exchange).where(Exchange.timebank_id == timebank.id,
                                                       Exchange.status == "confirmed")).all()
    minutes = Counter()
    for e in confirmed:
        for member_id in (e.provider_membership_id, e.recipient_membership_id):
            if member_id is not None:
                minutes[member_id] += e.minutes
    never = [m for m in members if minutes[m.id] == 0]
    assert len(never) / len(members) > 0.4
    ranked = sorted((minutes[m.id] for m in members), reverse=True)
    top = ranked[:max(1, len(ranked) // 10)]
    assert sum(top) / sum(ranked) > 0.35  # a small core carries a large share of the hours
    collective = sum(e.minutes for e in confirmed if e.collective)
    individual = sum(e.minutes for e in confirmed if not e.collective)
    assert 0 < collective < individual
    assert {e.kind for e in confirmed} == {"p2p", "p2a", "a2a"}
    statuses = Counter(session.scalars(select(Exchange.status).where(Exchange.timebank_id == timebank.id)))
    assert statuses["reversed"] and statuses["pending"] and statuses["disputed"] + statuses["cancelled"]
    assert any(e.auto_confirmed for e in confirmed)
    assert len({e.coproduction_type for e in confirmed}) >= 3
    assert len({e.outcome_area for e in confirmed}) >= 5
    sizes = [len(session.scalars(select(Exchange.id).where(Exchange.activity_id == a.id)).all())
             for a in session.scalars(select(GroupActivity).where(GroupActivity.timebank_id == timebank.id))]
    assert sizes and min(sizes) >= 5 and max(sizes) <= 60
    # Categories: the most popular carries far more hours than the median one.
    hours = Counter()
    for e in confirmed:
        hours[e.category_id] += e.minutes
    by_category = sorted(hours.values(), reverse=True)
    assert by_category[0] > 3 * by_category[len(by_category) // 2]


def test_demo_population_has_people_of_every_kind(session):
    timebank = _load(session, "demo-people", seed=5)
    memberships = session.scalars(select(Membership).where(Membership.timebank_id == timebank.id)).all()
    statuses = Counter(m.status for m in memberships)
    assert statuses["active"] and statuses["pending"] and (statuses["left"] + statuses["suspended"])
    roles = Counter(m.role for m in memberships)
    assert roles["broker"] and roles["commissioner"] and roles["admin"]
    assert len({m.ward for m in memberships if m.ward}) >= 12
    assert any(m.age_band is None for m in memberships) and len({m.age_band for m in memberships}) >= 6
    assert len({m.joined_on.replace(day=1) for m in memberships if m.role == "member"}) >= 6
    soon = [m for m in memberships if m.safety_check_expires
            and demo.END_DATE < m.safety_check_expires <= demo.END_DATE + dt.timedelta(days=30)]
    assert soon
    organisations = session.scalars(select(Organisation).where(Organisation.timebank_id == timebank.id)).all()
    assert len({o.kind for o in organisations}) >= 3
    assert all(o.representatives for o in organisations)


def test_the_story_can_end_on_any_day(session):
    """`make run` ends the demo yesterday, so this year's and last month's reports show it."""
    end = dt.date(2027, 3, 17)
    demo.load_demo(session, size="XS", seed=7, slug="demo-ends", echo=_quiet, end_date=end)
    session.flush()
    timebank = session.scalar(select(TimeBank).where(TimeBank.slug == "demo-ends"))
    assert_ledger_holds(session, timebank.id)
    dates = list(session.scalars(select(Transfer.effective_date).where(Transfer.timebank_id == timebank.id)))
    assert max(dates) <= end and max(dates) >= end - dt.timedelta(days=14)
    assert min(dates) >= dt.date(2026, 10, 1)  # six months, counted from the end's month
    assert max(session.scalars(select(Transfer.recorded_at).where(Transfer.timebank_id == timebank.id))).date() <= end


@pytest.mark.slow
def test_seed_if_empty_loads_a_demo_that_ends_yesterday(committed_db, runner):
    result = runner.invoke(args=["seed", "if-empty"])
    assert result.exit_code == 0, result.output
    yesterday = dt.date.today() - dt.timedelta(days=1)
    latest = committed_db.session.scalar(select(func.max(Transfer.effective_date)))
    assert yesterday - dt.timedelta(days=14) <= latest <= yesterday
    again = runner.invoke(args=["seed", "if-empty"])
    assert again.exit_code == 0 and "already has data" in again.output


@pytest.mark.slow
def test_seed_demo_command_builds_and_refuses_a_taken_slug(committed_db, runner):
    result = runner.invoke(args=["seed", "demo", "--size", "XS", "--seed", "2", "--timebank", "cli-demo"])
    assert result.exit_code == 0, result.output
    assert "Demo community: cli-demo" in result.output
    assert "member@demo.timebank" in result.output
    timebank = committed_db.session.scalar(select(TimeBank).where(TimeBank.slug == "cli-demo"))
    assert_ledger_holds(committed_db.session, timebank.id)
    again = runner.invoke(args=["seed", "demo", "--size", "XS", "--timebank", "cli-demo"])
    assert again.exit_code != 0 and "already exists" in again.output


def test_demo_has_open_offers_requests_and_opportunities(session):
    from timebank.matching.models import HelpRequest, Offer

    timebank = _load(session, "demo-listings", seed=5)
    offers = session.scalars(select(Offer).where(Offer.timebank_id == timebank.id, Offer.status == "open")).all()
    requests = session.scalars(select(HelpRequest).where(HelpRequest.timebank_id == timebank.id,
                                                         HelpRequest.status == "open")).all()
    assert offers and any(r.membership_id for r in requests) and any(r.organisation_id for r in requests)
    # Offers come from members' own skills.
    skills = {(s.membership_id, s.category_id) for s in session.scalars(select(demo.MemberSkill))}
    assert all((o.membership_id, o.category_id) in skills for o in offers)


# --- determinism and the bulk path ------------------------------------------------------------------------------------

def _content(session) -> dict[str, list[tuple]]:
    """Every row of every table, in primary-key order. Password hashes are salted, so only their presence counts."""
    from timebank.extensions import db

    content = {}
    for table in db.metadata.sorted_tables:
        columns = [c for c in table.columns]
        rows = session.execute(select(*columns).order_by(*table.primary_key.columns)).all()
        if table.name == "user":
            index = [c.name for c in columns].index("password_hash")
            rows = [r[:index] + (r[index] is not None,) + r[index + 1:] for r in rows]
        content[table.name] = [tuple(r) for r in rows]
    return content


def _renumbered(content: dict) -> dict:
    """The content with every id replaced by its row's rank in its table, and every reference to it likewise.

    On PostgreSQL the bulk path draws ids from the sequences in blocks, so a row the services add afterwards
    (a match's exchange) gets a later id than it would on the service path: the rows are the same up to ids.
    """
    from timebank.extensions import db

    ranks = {}
    for table in db.metadata.sorted_tables:
        if "id" in table.c and list(table.primary_key.columns) == [table.c.id]:
            index = list(table.c.keys()).index("id")
            ranks[table.name] = {row[index]: rank for rank, row in enumerate(sorted(content[table.name],
                                                                                     key=lambda r: r[index]))}
    out = {}
    for table in db.metadata.sorted_tables:
        mapping = {}
        for i, column in enumerate(table.c):
            if column.name == "id" and table.name in ranks:
                mapping[i] = ranks[table.name]
            for key in column.foreign_keys:
                if key.column.table.name in ranks and key.column.name == "id":
                    mapping[i] = ranks[key.column.table.name]
        rows = [tuple(mapping[i].get(v, v) if i in mapping else v for i, v in enumerate(row))
                for row in content[table.name]]
        out[table.name] = sorted(rows, key=repr)
    return out


def _fresh_load(committed_db, app, *, via="bulk", seed=4):
    from tests.conftest import reset_database

    committed_db.session.remove()
    reset_database(app)
    demo.load_demo(committed_db.session, size="XS", seed=seed, echo=_quiet, via=via)
    committed_db.session.commit()
    content = _content(committed_db.session)
    committed_db.session.remove()
    return content


def _column(content: dict, table: str, name: str) -> list:
    from timebank.extensions import db

    index = list(db.metadata.tables[table].columns.keys()).index(name)
    return [row[index] for row in content[table]]


def _differences(first: dict, second: dict) -> list[str]:
    found = []
    for table, rows in first.items():
        if rows != second[table]:
            mismatch = next((i for i, (a, b) in enumerate(zip(rows, second[table])) if a != b), None)
            found.append(f"{table}: {len(rows)} vs {len(second[table])} rows, first difference at row {mismatch}")
    return found


@pytest.mark.slow
def test_the_same_seed_builds_the_same_community_row_for_row(committed_db, app):
    """Dates, times, hashes, notifications, listings: nothing comes from the clock or the machine."""
    first = _fresh_load(committed_db, app)
    second = _fresh_load(committed_db, app)
    assert sum(len(rows) for rows in first.values()) > 2000
    assert first["transfer"] and first["exchange"] and first["offer"] and first["notification"]
    assert _differences(first, second) == []
    # Every date on the demo's own calendar, none from the day the test runs.
    assert max(_column(first, "transfer", "effective_date")) <= demo.END_DATE
    assert max(_column(first, "transfer", "recorded_at")).date() <= demo.END_DATE


@pytest.mark.slow
def test_the_bulk_path_writes_exactly_what_the_services_write(committed_db, app):
    """The bulk path is only a faster way of writing the same rows: compared with the service path, table by table.
    On both databases: on PostgreSQL the bulk path writes through COPY, on SQLite through executemany."""
    bulk = _fresh_load(committed_db, app, via="bulk", seed=9)
    services = _fresh_load(committed_db, app, via="services", seed=9)
    if committed_db.engine.dialect.name == "postgresql":  # the same rows, ids drawn in blocks (see _renumbered)
        bulk, services = _renumbered(bulk), _renumbered(services)
    assert _differences(services, bulk) == []
    assert set(_column(bulk, "transfer", "kind")) >= {"exchange", "group_activity", "reversal", "grant", "donation"}


def test_demo_has_a_match_history_through_every_stage(session):
    """Brokers' proposals for the open requests, answered on the demo's calendar; logged ones wait as exchanges."""
    from timebank.matching.models import HelpRequest, Match

    timebank = _load(session, "demo-matches", seed=5, size="S")
    matches = session.scalars(select(Match).where(Match.timebank_id == timebank.id)).all()
    assert {"proposed", "declined", "accepted", "logged"} <= {m.status for m in matches}
    end = dt.datetime.combine(demo.END_DATE, dt.time(18))
    for match in matches:
        request = session.get(HelpRequest, match.request_id)
        assert request.created_at <= match.proposed_at <= end and match.proposed_by_user_id is not None
        assert match.membership_id != request.membership_id
        if match.status in ("accepted", "declined", "done", "logged"):
            assert match.proposed_at <= match.responded_at <= end
        if match.status == "logged":
            exchange = session.get(Exchange, match.exchange_id)
            assert exchange.status == "pending" and exchange.provider_membership_id == match.membership_id
            assert (exchange.recipient_membership_id, exchange.recipient_organisation_id) == \
                (request.membership_id, request.organisation_id)
            assert exchange.created_at == match.logged_at <= end
    # The demo member has a proposal to answer on their dashboard.
    demo_member = session.scalar(select(Membership.id).join(demo.User, demo.User.id == Membership.user_id).where(
        demo.User.email == "member@demo.timebank", Membership.timebank_id == timebank.id))
    assert any(m.membership_id == demo_member and m.status == "proposed" for m in matches)


def _balances_by_holder(session) -> dict:
    """Every account's balance by who holds it. (Ids differ when banks are built side by side, and so do the chain
    heads: a posting's hash covers its transfer's id.)"""
    from sqlalchemy import text

    return {tuple(r[:2]): r[2] for r in session.execute(text(
        "SELECT t.slug, COALESCE(u.email, o.name, a.system_code, a.name), a.balance_minutes "
        "FROM account a JOIN timebank t ON t.id = a.timebank_id "
        "LEFT JOIN membership m ON m.account_id = a.id LEFT JOIN \"user\" u ON u.id = m.user_id "
        "LEFT JOIN organisation o ON o.account_id = a.id"))}


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TEST_DB") != "postgres", reason="banks are built in parallel on PostgreSQL only")
def test_banks_built_in_parallel_processes_are_the_banks_built_one_after_another(committed_db, app):
    from tests.conftest import reset_database

    results = []
    for jobs in (1, 3):
        committed_db.session.remove()
        reset_database(app)
        summary = demo.load_demo(committed_db.session, size="XS", seed=5, echo=_quiet, banks=3, jobs=jobs,
                                 commit_every=100)
        committed_db.session.commit()
        assert verify_ledger(committed_db.session).ok
        results.append((summary["timebanks"], summary["transfers"], _balances_by_holder(committed_db.session)))
    assert results[0][0] == ["riverside", "riverside-2", "riverside-3"]
    assert results[0][1] > 300
    assert results[0] == results[1]


def test_parallel_banks_need_postgresql_and_commits(session):
    if session.get_bind().dialect.name != "postgresql":
        with pytest.raises(ValueError, match="PostgreSQL"):
            demo.load_demo(session, size="XS", seed=5, echo=_quiet, banks=2, jobs=2, commit_every=100)
    with pytest.raises(ValueError, match="commit_every"):
        demo.load_demo(session, size="XS", seed=5, echo=_quiet, banks=2, jobs=2)
