"""Keep the match funnel honest when the exchange that logged a match's hours is undone.

A logged match whose exchange is cancelled (by the person who logged it, or by a broker settling a dispute) or
reversed (a broker's correction) goes back to "done": the work was reported done, its hours are no longer logged,
and they can be logged again. The match keeps the undone exchange's id as a record. When the broker's settlement
or correction records a replacement exchange between the same people, the match is logged again with it.

Exchanges do not know about matching (dependencies point from matching to exchanges), so matching watches the
session's flushes, as the impact roll-up does: every path that changes an exchange (pages, API, CLI) is covered.
"""
from __future__ import annotations

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session

UNDONE = ("cancelled", "reversed")


def _before_flush(session, _flush_context, _instances) -> None:
    from timebank.exchanges.models import Exchange

    undone, replacements = [], []
    for obj in list(session.dirty) + list(session.new):
        if not isinstance(obj, Exchange) or obj.id is None:
            continue  # an exchange without an id was never linked to a match
        state = inspect(obj)
        status = state.attrs["status"].history
        if obj.status in UNDONE and status.added:  # set to cancelled or reversed in this flush
            undone.append(obj.id)
        elif obj.replaces_exchange_id is not None and state.attrs["replaces_exchange_id"].history.added:
            replacements.append(obj)
    if undone or replacements:
        with session.no_autoflush:
            _sync(session, undone, replacements)


def _sync(session, undone: list[int], replacements: list) -> None:
    from timebank.community.service import log_audit
    from timebank.matching.models import HelpRequest, Match, utcnow

    if undone:
        for match in session.scalars(select(Match).where(Match.exchange_id.in_(undone), Match.status == "logged")):
            match.status, match.logged_at = "done", None
            log_audit(session, "matching.match_unlogged", timebank_id=match.timebank_id, target_type="match",
                      target_id=match.id, exchange_id=match.exchange_id)
    for exchange in replacements:
        match = session.scalar(select(Match).where(Match.exchange_id == exchange.replaces_exchange_id,
                                                   Match.status == "done"))
        if match is None:
            continue
        request = session.get(HelpRequest, match.request_id)
        if (exchange.provider_membership_id, exchange.recipient_membership_id, exchange.recipient_organisation_id) \
                != (match.membership_id, request.membership_id, request.organisation_id):
            continue  # the correction changed who took part: it no longer logs this match
        match.status, match.exchange_id, match.logged_at = "logged", exchange.id, utcnow()


def install() -> None:
    """Watch every session's flushes (idempotent)."""
    if not event.contains(Session, "before_flush", _before_flush):
        event.listen(Session, "before_flush", _before_flush)
