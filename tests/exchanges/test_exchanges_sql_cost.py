"""SQL cost of recording a group activity: participants are loaded in one query and their notifications and
outbox emails are inserted in one batch each, so the statement count hardly grows with the number of people.

Counted: every statement SQLAlchemy sends (the before_cursor_execute event). On PostgreSQL the ledger writes
its transfer through a psycopg pipeline that this event does not see; those statements are the ledger's own
and the same for 5 or 25 participants.
"""
import datetime as dt

from sqlalchemy import event

from timebank.extensions import db
from timebank.ledger.models import Account

# Measured when this was written (statements for the whole POST, 25 participants; before -> after):
# SQLite 154 -> 58 (25 of them the exchange rows: the ORM inserts one at a time on SQLite, without
# RETURNING ordering guarantees), PostgreSQL 126 -> 29 (55 and 25 after main's 488d190); two more since the impact
# roll-up keeps each fact row's previous days (two window UPDATEs); four more on SQLite and six on PostgreSQL since
# it keeps the members' year rows and first days (a DELETE and an INSERT each, and on PostgreSQL an advisory lock
# each), the same for 5 or 25 participants; two fewer on PostgreSQL since notifications are one statement. The
# bounds leave a little room, not a lot.
BOUND = {"sqlite": 69, "postgresql": 40}


def _post_activity(client, session, organisation, headers, members, key):
    statements = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(" ".join(statement.split()))

    session.expunge_all()  # a request starts with an empty session: nothing is served from memory
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        response = client.post("/api/v1/activities", headers={**headers, "Idempotency-Key": key}, json={
            "organisation_id": organisation.id, "title": "Litter pick", "date": dt.date.today().isoformat(),
            "participants": [{"member_id": m.id, "minutes": 180} for m in members]})
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert response.status_code == 201, response.get_json()
    return statements


def _setup(session, make_person, organisation, rep, api_headers, people):
    rep_u, _ = rep
    members = [make_person("member")[1] for _ in range(people)]
    session.get(Account, organisation.account_id).floor_minutes = None  # the organisation can pay them all
    session.flush()
    return members, {k: v for k, v in api_headers(rep_u).items()}


def test_group_activity_of_25_stays_within_its_statement_budget(client, session, make_person, organisation, rep,
                                                                api_headers):
    members, headers = _setup(session, make_person, organisation, rep, api_headers, 25)
    statements = _post_activity(client, session, organisation, headers, members, "cost-25")
    dialect = db.engine.dialect.name

    def starting(prefix):
        return [s for s in statements if s.upper().startswith(prefix.upper())]

    if dialect == "postgresql":  # choices, notifications and emails in one statement
        notifying = [s for s in statements if "INSERT INTO notification " in s]
        assert len(notifying) == 1 and "INSERT INTO email_outbox " in notifying[0] and \
            "notification_preference" in notifying[0], notifying
        assert not starting("SELECT notification_preference") and not starting("INSERT INTO email_outbox ")
    else:
        assert len(starting("INSERT INTO notification ")) == 1  # one batch, not one per participant
        assert len(starting("INSERT INTO email_outbox ")) == 1
        assert len(starting("SELECT notification_preference")) == 1
    assert len(starting("SELECT membership")) <= 2  # the representative's, then all participants at once
    assert len([s for s in statements if s.upper().startswith("SELECT") and
                (' FROM "user"' in s or " FROM user " in s)]) <= 1  # the signed-in user; none per participant
    assert len(statements) <= BOUND[dialect], "\n".join(statements)


def test_statements_hardly_grow_with_participants(client, session, make_person, organisation, rep, api_headers):
    members, headers = _setup(session, make_person, organisation, rep, api_headers, 25)
    few = len(_post_activity(client, session, organisation, headers, members[:5], "cost-5"))
    many = len(_post_activity(client, session, organisation, headers, members, "cost-25b"))
    # SQLite: only the 20 extra exchange rows (one INSERT each); PostgreSQL: nothing extra.
    allowed = 20 if db.engine.dialect.name == "sqlite" else 0
    assert many - few <= allowed, (few, many)


def _dashboard_statements(client, session):
    statements = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(" ".join(statement.split()))

    session.expunge_all()
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        page = client.get("/exchanges/")
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert page.status_code == 200
    return page.get_data(as_text=True), [s for s in statements if s.upper().startswith("SELECT")]


def test_dashboard_names_everyone_without_a_query_per_exchange(client, session, make_person, login, organisation,
                                                               rep):
    from timebank.exchanges import service

    me_u, me = make_person()
    partners = [make_person() for _ in range(6)]
    today = dt.date.today()
    # The first partner's exchange is waiting for me to confirm; the organisation credits me (counts at once).
    service.log_exchange(session, user=partners[0][0], provider_id=partners[0][1].id, recipient_id=me.id,
                         minutes=30, happened_on=today)
    session.get(Account, organisation.account_id).floor_minutes = None
    service.credit_volunteer(session, user=rep[0], organisation_id=organisation.id, membership_id=me.id, minutes=60,
                             happened_on=today)
    login(me_u)
    page, few = _dashboard_statements(client, session)
    assert partners[0][0].display_name in page and organisation.name in page
    for user, membership in partners[1:]:
        service.log_exchange(session, user=user, provider_id=membership.id, recipient_id=me.id, minutes=30,
                             happened_on=today)
    page, many = _dashboard_statements(client, session)
    assert all(user.display_name in page for user, _ in partners) and organisation.name in page
    assert len(many) == len(few), "\n".join(many)  # names: one query for the people, one for the organisations
