"""The demo's bulk path: the rows the services would write, validated in Python and inserted in batches.

`BulkWriter` offers the service verbs the demo uses (`log_exchange`, `confirm_exchange`, `record_exchange`,
`record_group_activity`, `grant_from_pot`, `correct_exchange`, `auto_confirm`, `post_transfer`,
`create_offer`...) with the same signatures and the same rules, but instead of one ORM flush per row it
keeps the state it needs in memory (balances, floors, chain heads, statuses) and writes each table with
one Core executemany per batch. What it writes is what the services write: the same transfers (kind, memo,
idempotency key, request hash, metadata), postings with the same per-account hash chain, exchanges with
their tags and final status, group activities, notifications and audit events (tests/demo compares both
paths row by row).

It checks with the ledger's own pure rules (`normalise_postings`, `check_limits`, `posting_hash`) and the
exchanges' (`check_minutes`, `check_date`), and the database still checks every posting: the triggers stay
enabled, so balances and chain heads on the account rows are moved by the database itself and a posting
that breaks the chain, an account's floor or a transfer's zero sum fails the load.

Only for the demo: ids are drawn from the tables' sequences (PostgreSQL) or after the current maximum
(SQLite, whose write lock the load holds), and emails are not sent (in-app notifications are written).
"""
from __future__ import annotations

import datetime as dt
from collections import deque

from sqlalchemy import bindparam, select, text

from timebank.community.models import (AuditEvent, MemberSkill, Membership, Organisation,
                                       OrganisationRepresentative, User)
from timebank.errors import ValidationFailed
from timebank.exchanges.errors import BelowFloor, ExchangeNotDisputed, ExchangeNotPending, ExchangeRuleBroken
from timebank.exchanges.models import COPRODUCTION_SUBTYPES, COPRODUCTION_TYPES, OUTCOME_AREAS, Exchange, \
    GroupActivity, Notification
from timebank.exchanges.service import check_date, check_minutes, hours_text
from timebank.ledger.errors import AccountClosed, CrossTimebank, LedgerError
from timebank.ledger.models import Account, Posting, Transfer
from timebank.ledger.service import (GENESIS_HASH, check_limits, net_by_account, normalise_postings, posting_hash,
                                     request_hash)
from timebank.matching.models import HelpRequest, Offer


class Rec(dict):
    """A row as a dict of column values, readable as attributes like the ORM object it stands for."""

    __slots__ = ()
    # Plain dict lookups (a missing column raises KeyError): the load reads these millions of times.
    __getattr__ = dict.__getitem__
    __setattr__ = dict.__setitem__


def _defaults(model) -> dict:
    """Every column of a model's table with the value the ORM would give it when none is set."""
    values = {}
    for column in model.__table__.columns:
        default = column.default
        if default is not None and default.is_scalar:
            values[column.name] = default.arg
        elif default is not None and default.is_callable and column.name not in ("created_at", "recorded_at",
                                                                                  "at", "suggested_at"):
            values[column.name] = default.arg(None)  # dict, list: shared, so rows replace them, never mutate
        else:
            values[column.name] = None
    return values


class _Ids:
    """Ids for rows that others point at, drawn before insertion so the rows can be written in batches."""

    def __init__(self, session):
        self.session = session
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.pool: dict[str, deque] = {}
        self.last: dict[str, int] = {}

    def next(self, table: str) -> int:
        if self.postgres:
            pool = self.pool.get(table)
            if not pool:
                # Through the sequence, so anything else inserting meanwhile gets other ids.
                pool = self.pool[table] = deque(self.session.execute(text(
                    f"SELECT nextval(pg_get_serial_sequence('\"{table}\"', 'id')) FROM generate_series(1, 2000)"
                )).scalars())
            return pool.popleft()
        if table not in self.last:
            # SQLite: the load holds the database's write lock, so nobody else takes these.
            self.last[table] = self.session.execute(text(f'SELECT coalesce(max(id), 0) FROM "{table}"')).scalar()
        self.last[table] += 1
        return self.last[table]


_MODELS = {"user": User, "account": Account, "organisation": Organisation,
           "organisation_representative": OrganisationRepresentative, "membership": Membership,
           "member_skill": MemberSkill, "transfer": Transfer, "posting": Posting, "group_activity": GroupActivity,
           "exchange": Exchange, "notification": Notification, "audit_event": AuditEvent, "offer": Offer,
           "help_request": HelpRequest}
# Insertion order: every table after the tables it points at.
_ORDER = list(_MODELS)
_MUTABLE = {"exchange": ("status", "transfer_id", "confirmed_at", "auto_confirmed", "dispute_reason", "extra",
                         "created_at"),
            "membership": ("status", "risk_note")}


class BulkWriter:
    """The service verbs the demo calls, writing rows in batches. One writer per time bank."""

    def __init__(self, session, timebank, categories):
        self.session = session
        self.timebank = timebank
        self.categories = {c.id: c for c in categories}
        self.ids = _Ids(session)
        self.defaults = {name: _defaults(model) for name, model in _MODELS.items()}
        self.new: dict[str, list] = {name: [] for name in _MODELS}
        self.dirty: dict[str, dict[int, Rec]] = {name: {} for name in _MUTABLE}
        self.flushed: dict[str, set] = {name: set() for name in _MUTABLE}
        self.accounts: dict[int, Rec] = {}
        self.members: dict[int, Rec] = {}
        self.account_holder: dict[int, Rec] = {}
        self.users: dict[int, object] = {}
        self.orgs: dict[int, Rec] = {}
        self.reps: dict[int, list[int]] = {}
        self.exchanges: dict[int, Rec] = {}
        self.pending: dict[int, Rec] = {}
        self.postings_of: dict[int, list[tuple[int, int]]] = {}
        self.keys: set[str] = set()
        self._pot = None
        self.activity_exchanges: dict[int, list[Rec]] = {}
        self.now = dt.datetime.combine(dt.date.today(), dt.time())
        self.rows = 0
        self.commits = 0
        for account in session.scalars(select(Account).where(Account.timebank_id == timebank.id)):
            self.accounts[account.id] = Rec(id=account.id, timebank_id=account.timebank_id, name=account.name,
                                            status=account.status, floor_minutes=account.floor_minutes,
                                            ceiling_minutes=account.ceiling_minutes,
                                            balance_minutes=account.balance_minutes, chain_head=account.chain_head)

    # --- rows -----------------------------------------------------------------------------------------------------

    def _add(self, table: str, with_id: bool = True, **values) -> Rec:
        rec = Rec(self.defaults[table])
        rec.update(values)
        if with_id and "id" in rec and rec.get("id") is None:
            rec["id"] = self.ids.next(table)
        for stamp in ("created_at", "recorded_at", "at", "suggested_at"):
            if stamp in rec and rec[stamp] is None:
                rec[stamp] = self.now
        self.new[table].append(rec)
        self.rows += 1
        return rec

    def touch(self, rec: Rec, table: str = "exchange") -> None:
        """Record a change to a row that may already be written (the services UPDATE it likewise)."""
        if rec["id"] in self.flushed[table]:
            self.dirty[table][rec["id"]] = rec

    def flush(self) -> None:
        """Write every new row, table by table in dependency order, then the changes to written rows."""
        execute = self.session.execute
        for table in _ORDER:
            rows = self.new[table]
            if not rows:
                continue
            model_table = _MODELS[table].__table__
            if table in ("notification", "audit_event", "posting"):
                rows = [{k: v for k, v in r.items() if k != "id"} for r in rows]
            if self.ids.postgres:
                self._copy(model_table, rows)
            else:
                execute(model_table.insert(), [dict(r) for r in rows])
            if table in self.flushed:
                self.flushed[table].update(r["id"] for r in self.new[table])
            self.new[table] = []
        for table, changed in self.dirty.items():
            if not changed:
                continue
            model_table = _MODELS[table].__table__
            columns = _MUTABLE[table]
            statement = model_table.update().where(model_table.c.id == bindparam("row_id")).values(
                {c: bindparam(c) for c in columns})
            execute(statement, [{"row_id": r["id"], **{c: r[c] for c in columns}} for r in changed.values()])
            changed.clear()
        self._forget_old()

    def _copy(self, model_table, rows: list[dict]) -> None:
        """PostgreSQL: the rows through COPY, which fires the same row triggers and checks the same constraints as
        INSERT but costs the server far less per row than one INSERT execution each (and Python less than
        SQLAlchemy's parameter handling). Values go through the columns' own bind processing (JSON to text)."""
        columns = [name for name in rows[0] if name in model_table.c]  # rows also carry the writer's own notes
        dialect = self.session.get_bind().dialect
        processors = [model_table.c[name].type._cached_bind_processor(dialect) for name in columns]
        converted = [(i, p) for i, p in enumerate(processors) if p is not None]
        cursor = self.session.connection().connection.dbapi_connection.cursor()
        names = ", ".join(f'"{name}"' for name in columns)
        with cursor.copy(f'COPY "{model_table.name}" ({names}) FROM STDIN') as copy:
            for row in rows:
                values = [row[name] for name in columns]  # KeyError: a row without a column the first one has
                for i, process in converted:
                    values[i] = process(values[i])
                copy.write_row(values)

    def _forget_old(self, keep: int = 50_000) -> None:
        """Bound memory on large loads: settled rows far behind the newest are never touched again."""
        if len(self.exchanges) > 2 * keep:
            newest = max(self.exchanges)
            self.exchanges = {i: e for i, e in self.exchanges.items()
                              if i > newest - keep or e["status"] in ("pending", "disputed")}
        if len(self.postings_of) > 2 * keep:
            newest = max(self.postings_of)
            self.postings_of = {i: p for i, p in self.postings_of.items() if i > newest - keep}

    def after_commit(self) -> None:
        """On PostgreSQL, vacuum the account table now and then during a long load.

        Every posting updates its account row; the dead versions of busy accounts (the pot, the issuance
        account, councils) pile up faster than autovacuum (if it runs at all) clears them, and each look-up
        walks them. Vacuum cannot clear versions that a transaction still open anywhere may see.
        """
        self.commits += 1
        if self.ids.postgres and self.commits % 10 == 0:
            with self.session.get_bind().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM account")

    def finish(self) -> None:
        self.flush()
        # The ORM's copies of accounts and memberships are stale: the database moved them.
        self.session.expire_all()

    # --- people ---------------------------------------------------------------------------------------------------

    def create_user(self, session=None, *, email: str, display_name: str, password_hash: str | None = None) -> Rec:
        email = email.strip().lower()
        if "@" not in email or len(email) > 320:
            raise ValidationFailed("Enter a real email address.", errors={"email": ["Not a valid email address."]})
        user = self._add("user", email=email, display_name=display_name.strip() or email.split("@")[0],
                         password_hash=password_hash)
        self.users[user.id] = user
        return user

    def add_membership(self, session=None, *, user, timebank, role: str = "member", status: str = "active",
                       joined_on: dt.date | None = None, **profile) -> Rec:
        membership = self._add("membership", user_id=user.id, timebank_id=timebank.id, role=role, status=status,
                               joined_on=joined_on, **profile)
        membership["_name"] = user.display_name
        if status == "active" and role in ("member", "broker", "admin"):
            account = self._open_account(kind="member", name=f"Member {membership.id}",
                                         floor_minutes=timebank.default_floor_minutes,
                                         ceiling_minutes=timebank.default_ceiling_minutes)
            membership.account_id = account.id
        self.members[membership.id] = membership
        if membership.account_id is not None:
            self.account_holder.setdefault(user.id, membership)
        return membership

    def _open_account(self, *, kind, name, floor_minutes, ceiling_minutes=None) -> Rec:
        account = self._add("account", timebank_id=self.timebank.id, kind=kind, name=name,
                            floor_minutes=floor_minutes, ceiling_minutes=ceiling_minutes, status="open",
                            balance_minutes=0)
        self.accounts[account.id] = Rec(account)
        return account

    def add_skill(self, membership_id: int, category_id: int) -> None:
        self._add("member_skill", with_id=False, membership_id=membership_id, category_id=category_id)

    def create_organisation(self, session=None, *, timebank, name: str, kind: str, area: str | None) -> Rec:
        organisation = self._add("organisation", timebank_id=timebank.id, name=name.strip(), kind=kind, area=area)
        account = self._open_account(kind="organisation", name=organisation.name,
                                     floor_minutes=timebank.default_floor_minutes * 10)
        organisation.account_id = account.id
        self.orgs[organisation.id] = organisation
        self.reps[organisation.id] = []
        return organisation

    def add_representative(self, organisation, user) -> None:
        self._add("organisation_representative", with_id=False, organisation_id=organisation.id, user_id=user.id)
        self.reps[organisation.id].append(user.id)

    def floor_of(self, account_id: int):
        return self.accounts[account_id].floor_minutes

    def stamp_activity(self, activity, at: dt.datetime) -> None:
        activity.created_at = at
        for exchange in self.activity_exchanges.pop(activity.id, []):
            exchange.confirmed_at = at
            self.touch(exchange)

    def set_status(self, membership, status: str, note: str | None) -> None:
        membership.status, membership.risk_note = status, note
        self.touch(membership, "membership")

    def membership(self, membership_id: int) -> Rec:
        return self.members[membership_id]

    def organisation(self, organisation_id: int) -> Rec:
        return self.orgs[organisation_id]

    # --- the ledger -----------------------------------------------------------------------------------------------

    def post_transfer(self, session=None, *, timebank_id: int, kind: str, postings, effective_date: dt.date,
                      memo: str = "", recorded_by_user_id: int | None = None, idempotency_key: str | None = None,
                      metadata: dict | None = None, _reverses_transfer_id: int | None = None) -> Rec:
        """ledger.service.post_transfer's rules, in memory; the database triggers check each posting again."""
        if (kind == "reversal") != (_reverses_transfer_id is not None):
            raise LedgerError("Reversals are made with reverse_transfer.", code="reversal_only_by_reverse")
        clean = normalise_postings(postings)
        memo = memo or ""
        fingerprint = request_hash(timebank_id=timebank_id, kind=kind, postings=clean, effective_date=effective_date,
                                   memo=memo, metadata=metadata, reverses_transfer_id=_reverses_transfer_id)
        if idempotency_key is not None:
            if idempotency_key in self.keys:
                raise LedgerError("The demo reused an idempotency key.", code="idempotency_key_reused")
            self.keys.add(idempotency_key)
        net = net_by_account(clean)
        for account_id in sorted(net):
            account = self.accounts[account_id]
            if account.timebank_id != timebank_id:
                raise CrossTimebank(f"{account.name} belongs to another time bank.", account_id=account_id)
            if account.status != "open":
                raise AccountClosed(f"{account.name} is {account.status}.", account_id=account_id)
            check_limits(account, net[account_id])
        transfer = self._add("transfer", timebank_id=timebank_id, kind=kind, memo=memo, effective_date=effective_date,
                             recorded_by_user_id=recorded_by_user_id, idempotency_key=idempotency_key,
                             request_hash=fingerprint, reverses_transfer_id=_reverses_transfer_id,
                             metadata=metadata or {})
        for account_id, minutes in clean:
            account = self.accounts[account_id]
            prev = account.chain_head or GENESIS_HASH
            link = posting_hash(prev, transfer=transfer, account_id=account_id, minutes=minutes)
            self._add("posting", with_id=False, transfer_id=transfer.id, account_id=account_id, minutes=minutes,
                      prev_hash=prev, hash=link)
            account.chain_head = link
            account.balance_minutes += minutes
        self.postings_of[transfer.id] = clean
        return transfer

    def pot(self) -> Rec:
        if self._pot is None:
            self._pot = next(a for a in self.accounts.values() if a.get("name") == "Community pot")
        return self._pot

    # --- exchanges ------------------------------------------------------------------------------------------------

    def _side_account(self, side) -> Rec:
        kind, ref = side
        return self.accounts[(self.members[ref] if kind == "m" else self.orgs[ref]).account_id]

    def _side_name(self, side) -> str:
        kind, ref = side
        return self.members[ref]["_name"] if kind == "m" else self.orgs[ref].name

    def _side_users(self, side) -> list[int]:
        kind, ref = side
        return [self.members[ref].user_id] if kind == "m" else list(self.reps[ref])

    def _sides(self, exchange):
        provider = ("m", exchange.provider_membership_id) if exchange.provider_membership_id else \
            ("o", exchange.provider_organisation_id)
        recipient = ("m", exchange.recipient_membership_id) if exchange.recipient_membership_id else \
            ("o", exchange.recipient_organisation_id)
        return provider, recipient

    def _check_active(self, side) -> None:
        kind, ref = side
        row = self.members[ref] if kind == "m" else self.orgs[ref]
        if row.timebank_id != self.timebank.id:
            raise ExchangeRuleBroken("Not part of this time bank.", code="not_same_timebank")
        if row.status != "active" or row.account_id is None:
            raise ExchangeRuleBroken(f"{self._side_name(side)} is not active in this time bank.",
                                     code="inactive_member" if kind == "m" else "inactive_organisation")

    def _tags(self, category_id, tags: dict | None) -> dict:
        tags = dict(tags or {})
        category = self.categories.get(category_id) if category_id is not None else None
        if category_id is not None and category is None:
            raise ValidationFailed("That category does not exist in this time bank.",
                                   errors={"category_id": ["Unknown category."]})
        ctype = tags.get("coproduction_type") or (category and category.default_coproduction_type) or "co_delivery"
        area = tags.get("outcome_area") or (category and category.default_outcome_area) or "other"
        subtype = tags.get("coproduction_subtype") or None
        areas = set(OUTCOME_AREAS) | set((self.timebank.settings or {}).get("outcome_areas", []))
        if ctype not in COPRODUCTION_TYPES or (subtype is not None and subtype not in COPRODUCTION_SUBTYPES[ctype]) \
                or area not in areas:
            raise ValidationFailed("Some co-production tags are not known.")
        return {"coproduction_type": ctype, "coproduction_subtype": subtype, "outcome_area": area,
                "substitutive": bool(tags.get("substitutive", False))}

    def _describe(self, exchange) -> str:
        provider, recipient = self._sides(exchange)
        return (f"{self._side_name(provider)} helped {self._side_name(recipient)} "
                f"for {hours_text(exchange.minutes)} on {exchange.happened_on:%d %b %Y}")

    def _notify(self, user_id, kind: str, message: str, exchange_id=None) -> None:
        self._add("notification", with_id=False, user_id=user_id, timebank_id=self.timebank.id, kind=kind,
                  message=message, exchange_id=exchange_id)

    def _notify_sides(self, exchange, kind: str, message: str, skip_user_id=None) -> None:
        for side in self._sides(exchange):
            for user_id in self._side_users(side):
                if user_id != skip_user_id:
                    self._notify(user_id, kind, message, exchange.id)

    def _audit(self, action: str, actor_user_id, target_type: str, target_id: int, **detail) -> None:
        self._add("audit_event", with_id=False, action=action, actor_user_id=actor_user_id,
                  timebank_id=self.timebank.id, target_type=target_type, target_id=target_id, detail=detail)

    def _new_exchange(self, *, user, provider, recipient, minutes, happened_on, description, category_id, tags,
                      today, backdate_check=True, logged_for=None) -> Rec:
        if provider == recipient:
            raise ExchangeRuleBroken("You cannot log an exchange with yourself.", code="self_exchange")
        self._check_active(provider)
        self._check_active(recipient)
        check_minutes(minutes, self.timebank)
        if backdate_check or happened_on > today:
            check_date(happened_on, self.timebank, today)
        tag_values = self._tags(category_id, tags)
        kind = ("p2p", "p2a", "a2a")[(provider[0] == "o") + (recipient[0] == "o")]
        exchange = self._add(
            "exchange", timebank_id=self.timebank.id, kind=kind,
            provider_membership_id=provider[1] if provider[0] == "m" else None,
            provider_organisation_id=provider[1] if provider[0] == "o" else None,
            recipient_membership_id=recipient[1] if recipient[0] == "m" else None,
            recipient_organisation_id=recipient[1] if recipient[0] == "o" else None,
            minutes=minutes, happened_on=happened_on, description=(description or "").strip()[:2000],
            category_id=category_id, collective=False, status="pending", logged_by_user_id=user.id,
            extra={"logged_for": logged_for} if logged_for else {}, auto_confirmed=False, **tag_values)
        self.exchanges[exchange.id] = exchange
        return exchange

    def _post(self, exchange, *, recorded_by_user_id) -> None:
        provider, recipient = self._sides(exchange)
        self._check_active(provider)
        self._check_active(recipient)
        payer = self._side_account(recipient)
        if payer.floor_minutes is not None and payer.balance_minutes - exchange.minutes < payer.floor_minutes:
            raise BelowFloor("This would take the recipient below the credit limit.")
        transfer = self.post_transfer(
            timebank_id=exchange.timebank_id, kind="exchange",
            postings=[(payer.id, -exchange.minutes), (self._side_account(provider).id, exchange.minutes)],
            effective_date=exchange.happened_on, memo=exchange.description[:500],
            recorded_by_user_id=recorded_by_user_id, idempotency_key=f"exchange:{exchange.id}",
            metadata={"exchange_id": exchange.id})
        exchange.transfer_id = transfer.id
        exchange.status = "confirmed"
        exchange.confirmed_at = self.now
        self.pending.pop(exchange.id, None)
        self.touch(exchange)

    def _get(self, exchange_id) -> Rec:
        return self.exchanges[exchange_id]

    def log_exchange(self, session=None, *, user, provider_id=None, recipient_id=None, provider_organisation_id=None,
                     recipient_organisation_id=None, minutes, happened_on, description="", category_id=None,
                     tags=None, today=None) -> Rec:
        provider = ("m", provider_id) if provider_id is not None else ("o", provider_organisation_id)
        recipient = ("m", recipient_id) if recipient_id is not None else ("o", recipient_organisation_id)
        sides = {name for name, side in (("provider", provider), ("recipient", recipient))
                 if user.id in self._side_users(side)}
        if not sides:
            raise ExchangeRuleBroken("You can only log an exchange you took part in.", code="forbidden")
        logged_for = "recipient" if "recipient" in sides else "provider"
        if logged_for == "recipient" and "provider" not in sides:
            payer = self._side_account(recipient)
            if payer.floor_minutes is not None and payer.balance_minutes - minutes < payer.floor_minutes:
                raise BelowFloor("This would take you below your limit.")
        exchange = self._new_exchange(user=user, provider=provider, recipient=recipient, minutes=minutes,
                                      happened_on=happened_on, description=description, category_id=category_id,
                                      tags=tags, today=today, logged_for=logged_for)
        if exchange.kind != "p2p" and logged_for == "recipient":
            self._post(exchange, recorded_by_user_id=user.id)
            self._notify_sides(exchange, "exchange_recorded", f"Recorded: {self._describe(exchange)}.",
                               skip_user_id=user.id)
        else:
            self.pending[exchange.id] = exchange
            other = recipient if logged_for == "provider" else provider
            for user_id in self._side_users(other):
                self._notify(user_id, "exchange_to_confirm", f"Please confirm: {self._describe(exchange)}.",
                             exchange.id)
        return exchange

    def credit_volunteer(self, session=None, *, user, organisation_id, membership_id, **fields) -> Rec:
        if user.id not in self.reps[organisation_id]:
            raise ExchangeRuleBroken("The demo credits volunteers through representatives.", code="forbidden")
        return self.log_exchange(user=user, provider_id=membership_id, recipient_organisation_id=organisation_id,
                                 **fields)

    def spend_with_organisation(self, session=None, *, user, membership_id, organisation_id, **fields) -> Rec:
        return self.log_exchange(user=user, provider_organisation_id=organisation_id, recipient_id=membership_id,
                                 **fields)

    def organisation_exchange(self, session=None, *, user, provider_organisation_id, recipient_organisation_id,
                              **fields) -> Rec:
        return self.log_exchange(user=user, provider_organisation_id=provider_organisation_id,
                                 recipient_organisation_id=recipient_organisation_id, **fields)

    def confirm_exchange(self, session, exchange_id, *, user) -> Rec:
        exchange = self._get(exchange_id)
        if exchange.status != "pending":
            raise ExchangeNotPending("This exchange cannot be confirmed now.")
        self._post(exchange, recorded_by_user_id=user.id)
        self._notify(exchange.logged_by_user_id, "exchange_confirmed", f"Confirmed: {self._describe(exchange)}.",
                     exchange.id)
        return exchange

    def dispute_exchange(self, session, exchange_id, *, user, reason) -> Rec:
        exchange = self._get(exchange_id)
        if exchange.status != "pending":
            raise ExchangeNotPending("This exchange cannot be disputed now.")
        exchange.status = "disputed"
        exchange.dispute_reason = reason.strip()[:2000]
        self.pending.pop(exchange.id, None)
        self.touch(exchange)
        self._notify(exchange.logged_by_user_id, "exchange_disputed",
                     f"Disputed: {self._describe(exchange)}. Reason: {exchange.dispute_reason}", exchange.id)
        return exchange

    def resolve_dispute(self, session, exchange_id, *, user, action, reason="", today=None) -> Rec:
        exchange = self._get(exchange_id)
        if exchange.status != "disputed":
            raise ExchangeNotDisputed("This exchange is not disputed.")
        if action == "confirm":
            self._post(exchange, recorded_by_user_id=user.id)
        elif action == "cancel":
            exchange.status = "cancelled"
            self.touch(exchange)
        else:
            raise ValidationFailed("The demo confirms or cancels disputes.")
        self._audit(f"exchange.dispute_{action}", user.id, "exchange", exchange.id, reason=reason,
                    replacement_id=None)
        self._notify_sides(exchange, "dispute_resolved",
                           f"A broker settled a dispute ({action}): {self._describe(exchange)}.")
        return exchange

    def _broker_record(self, *, user, base, changes: dict, today) -> Rec:
        def pick(name):
            if name in changes and changes[name] is not None:
                return changes[name]
            return base[name] if base is not None else None

        fields = {key: changes.get(key, base[column] if base is not None else None) for key, column in (
            ("provider_id", "provider_membership_id"), ("recipient_id", "recipient_membership_id"),
            ("provider_organisation_id", "provider_organisation_id"),
            ("recipient_organisation_id", "recipient_organisation_id"))}
        provider = ("m", fields["provider_id"]) if fields["provider_id"] is not None else \
            ("o", fields["provider_organisation_id"])
        recipient = ("m", fields["recipient_id"]) if fields["recipient_id"] is not None else \
            ("o", fields["recipient_organisation_id"])
        tags = changes.get("tags") or ({"coproduction_type": base.coproduction_type, "outcome_area": base.outcome_area,
                                        "coproduction_subtype": base.coproduction_subtype,
                                        "substitutive": base.substitutive} if base is not None else None)
        exchange = self._new_exchange(user=user, provider=provider, recipient=recipient, minutes=pick("minutes"),
                                      happened_on=pick("happened_on"), description=pick("description") or "",
                                      category_id=pick("category_id"), tags=tags, today=today,
                                      backdate_check=False, logged_for="broker")
        if base is not None:
            exchange.replaces_exchange_id = base.id
        self._post(exchange, recorded_by_user_id=user.id)
        return exchange

    def record_exchange(self, session=None, *, user, provider_id=None, recipient_id=None,
                        provider_organisation_id=None, recipient_organisation_id=None, minutes, happened_on,
                        description="", category_id=None, tags=None, today=None) -> Rec:
        exchange = self._broker_record(user=user, base=None, today=today, changes={
            "provider_id": provider_id, "recipient_id": recipient_id,
            "provider_organisation_id": provider_organisation_id,
            "recipient_organisation_id": recipient_organisation_id, "minutes": minutes,
            "happened_on": happened_on, "description": description, "category_id": category_id, "tags": tags})
        self._audit("exchange.recorded", user.id, "exchange", exchange.id, minutes=exchange.minutes,
                    transfer_id=exchange.transfer_id)
        self._notify_sides(exchange, "exchange_recorded", f"A broker recorded: {self._describe(exchange)}.",
                           skip_user_id=user.id)
        return exchange

    def correct_exchange(self, session, exchange_id, *, user, reason, replacement=None, today=None):
        exchange = self._get(exchange_id)
        if exchange.status != "confirmed" or exchange.activity_id is not None:
            raise ExchangeRuleBroken("Only a confirmed individual exchange can be corrected.", code="not_confirmed")
        original = exchange.transfer_id
        reversal = self.post_transfer(
            timebank_id=exchange.timebank_id, kind="reversal",
            postings=[(a, -m) for a, m in self.postings_of[original]], effective_date=today,
            memo=f"Reversal of transfer {original}: {reason.strip()}".strip(), recorded_by_user_id=user.id,
            idempotency_key=f"exchange-reversal:{exchange.id}", metadata=None, _reverses_transfer_id=original)
        exchange.status = "reversed"
        exchange.extra = {**(exchange.extra or {}), "reversal_transfer_id": reversal.id, "reversal_reason": reason}
        self.touch(exchange)
        new = None
        if replacement:
            new = self._broker_record(user=user, base=exchange, changes=replacement, today=today)
        self._audit("exchange.corrected", user.id, "exchange", exchange.id, reason=reason,
                    reversal_transfer_id=reversal.id, replacement_id=new.id if new else None)
        return exchange, new

    def auto_confirm(self, session=None, today=None) -> list[int]:
        days = self.timebank.auto_confirm_days
        confirmed = []
        for exchange_id in sorted(self.pending):
            exchange = self.pending[exchange_id]
            if exchange.created_at.date() + dt.timedelta(days=days) > today:
                continue
            try:
                self._post(exchange, recorded_by_user_id=None)
            except (BelowFloor, ExchangeRuleBroken, LedgerError):
                continue  # left for a broker, as the service does
            exchange.auto_confirmed = True
            confirmed.append(exchange.id)
            self._notify_sides(exchange, "exchange_auto_confirmed",
                               f"Confirmed automatically after {days} days: {self._describe(exchange)}.")
        return confirmed

    def record_group_activity(self, session=None, *, user, organisation_id, title, happened_on, participants,
                              category_id=None, tags=None, people_reached=None, today=None) -> Rec:
        organisation = self.orgs[organisation_id]
        if user.id not in self.reps[organisation_id]:
            raise ExchangeRuleBroken("Only the organisation's representatives record its activities.",
                                     code="forbidden")
        check_date(happened_on, self.timebank, today)
        self._check_active(("o", organisation_id))
        seen = set()
        for membership_id, minutes in participants:
            if membership_id in seen:
                raise ExchangeRuleBroken(f"Member {membership_id} is listed twice.", code="duplicate_participant")
            seen.add(membership_id)
            self._check_active(("m", membership_id))
            check_minutes(minutes, self.timebank)
        total = sum(m for _, m in participants)
        payer = self.accounts[organisation.account_id]
        if payer.floor_minutes is not None and payer.balance_minutes - total < payer.floor_minutes:
            raise BelowFloor(f"This would take {organisation.name} below the limit.")
        tag_values = self._tags(category_id, tags)
        activity = self._add("group_activity", timebank_id=self.timebank.id, organisation_id=organisation_id,
                             title=title.strip()[:200], happened_on=happened_on, category_id=category_id,
                             people_reached=people_reached, recorded_by_user_id=user.id, **tag_values)
        transfer = self.post_transfer(
            timebank_id=self.timebank.id, kind="group_activity",
            postings=[(organisation.account_id, -total)] + [(self.members[m].account_id, n) for m, n in participants],
            effective_date=happened_on, memo=activity.title, recorded_by_user_id=user.id,
            idempotency_key=f"activity:{activity.id}", metadata={"activity_id": activity.id})
        activity.transfer_id = transfer.id
        legs = self.activity_exchanges[activity.id] = []
        for membership_id, minutes in participants:
            exchange = self._add(
                "exchange", timebank_id=self.timebank.id, kind="p2a", provider_membership_id=membership_id,
                recipient_organisation_id=organisation_id, minutes=minutes, happened_on=happened_on,
                description=activity.title, category_id=category_id, collective=True, activity_id=activity.id,
                status="confirmed", logged_by_user_id=user.id, transfer_id=transfer.id, confirmed_at=self.now,
                extra={"logged_for": "recipient"}, auto_confirmed=False, **tag_values)
            self.exchanges[exchange.id] = exchange
            legs.append(exchange)
        self._audit("group_activity.recorded", user.id, "group_activity", activity.id,
                    participants=len(participants), minutes=total)
        for membership_id, minutes in participants:
            self._add("notification", with_id=False, user_id=self.members[membership_id].user_id,
                      timebank_id=self.timebank.id, kind="exchange_recorded",
                      message=f"{organisation.name} credited you {hours_text(minutes)} for {activity.title}.",
                      exchange_id=None)
        return activity

    def donate_to_pot(self, session=None, *, user, timebank_id, minutes, note="", today=None) -> Rec:
        membership = self.account_holder[user.id]
        return self.post_transfer(timebank_id=timebank_id, kind="donation",
                                  postings=[(membership.account_id, -minutes), (self.pot().id, minutes)],
                                  effective_date=today, memo=note[:500] or "Donation to the pot",
                                  recorded_by_user_id=user.id, metadata={"membership_id": membership.id})

    def grant_from_pot(self, session=None, *, user, membership_id, minutes, reason, today=None) -> Rec:
        membership = self.members[membership_id]
        self._check_active(("m", membership_id))
        pot = self.pot()
        if pot.balance_minutes < minutes:
            raise BelowFloor("The pot is too small.", code="pot_too_small")
        transfer = self.post_transfer(timebank_id=self.timebank.id, kind="grant",
                                      postings=[(pot.id, -minutes), (membership.account_id, minutes)],
                                      effective_date=today, memo=reason.strip()[:500], recorded_by_user_id=user.id,
                                      metadata={"membership_id": membership.id})
        self._audit("pot.grant", user.id, "membership", membership.id, minutes=minutes, reason=reason.strip())
        self._add("notification", with_id=False, user_id=membership.user_id, timebank_id=self.timebank.id,
                  kind="pot_grant", message=f"You received {hours_text(minutes)} from the community pot.",
                  exchange_id=None)
        return transfer

    # --- listings -------------------------------------------------------------------------------------------------

    def _listing_checks(self, title, category_id, availability) -> None:
        category = self.categories.get(category_id)
        if not title or not title.strip() or len(title) > 200 or category is None or \
                not 0 <= (availability or 0) < (1 << 21):
            raise ValidationFailed("Some fields are not valid.")

    def create_offer(self, session=None, *, membership, title, category_id, description="", remote=False) -> Rec:
        availability = membership.availability
        self._listing_checks(title, category_id, availability)
        return self._add("offer", timebank_id=membership.timebank_id, membership_id=membership.id,
                         category_id=category_id, title=title.strip(), description=description or "",
                         area=membership.ward, remote=bool(remote), availability=availability or 0, status="open",
                         created_at=self.now,
                         expires_at=self.now + dt.timedelta(days=self.timebank.listing_expiry_days or 60))

    def create_request(self, session=None, *, user, timebank, title, category_id, membership=None,
                       organisation=None, urgency="normal", estimated_minutes=60, volunteers_needed=1,
                       safety_check_level="none", starts_on=None, remote=False) -> Rec:
        availability = (membership.availability if membership is not None else None) or 0
        self._listing_checks(title, category_id, availability)
        return self._add(
            "help_request", timebank_id=timebank.id, membership_id=membership.id if membership else None,
            organisation_id=organisation.id if organisation else None, created_by_user_id=user.id,
            category_id=category_id, title=title.strip(), description="",
            area=membership.ward if membership else organisation.area, remote=bool(remote),
            latitude=membership.latitude if membership else None,
            longitude=membership.longitude if membership else None, availability=availability, urgency=urgency,
            estimated_minutes=estimated_minutes, volunteers_needed=volunteers_needed,
            safety_check_level=safety_check_level, min_age=None, starts_on=starts_on, ends_on=None, status="open",
            created_at=self.now, expires_at=self.now + dt.timedelta(days=timebank.listing_expiry_days or 60))

