"""Verbs for matching. Services add and flush; the caller commits."""
from __future__ import annotations

import datetime as dt
from collections import Counter

from sqlalchemy import and_, func, insert, or_, select

from timebank.community.models import Category, Membership, Organisation, OrganisationRepresentative, TimeBank
from timebank.community.queries import active_membership_of
from timebank.community.service import log_audit
from timebank.errors import ValidationFailed
from timebank.matching import candidates, planner, queries, scoring
from timebank.matching.errors import (BlockNotFound, ListingClosed, ListingNotFound, MatchBlocked, MatchNotFound,
                                      MatchWrongState, NotAllowed, PlanAlreadySent, PlanNotFound)
from timebank.matching.models import (URGENCIES, BlockedPair, HelpRequest, Match, MatchPlan, MatchPlanProposal,
                                      Offer, utcnow)

DEFAULT_WEEKLY_CAPACITY = 2


def membership_in(session, user, timebank_id: int) -> Membership | None:
    return active_membership_of(session, user, timebank_id)


def is_broker(membership: Membership | None) -> bool:
    return membership is not None and membership.role in ("broker", "admin")


def _check_common(session, timebank: TimeBank, *, title: str, category_id: int, availability: int,
                  starts_on: dt.date | None = None, ends_on: dt.date | None = None) -> None:
    errors = {}
    if starts_on and ends_on and ends_on < starts_on:
        errors["ends_on"] = ["The last date is before the first date."]
    elif ends_on and ends_on < dt.date.today():
        errors["ends_on"] = ["This date has already passed."]
    if not title or not title.strip() or len(title) > 200:
        errors["title"] = ["Give a title of 1 to 200 characters."]
    category = session.get(Category, category_id) if category_id else None
    if category is None or category.timebank_id != timebank.id:
        errors["category_id"] = ["Choose a category of this time bank."]
    elif category.retired_at is not None:
        errors["category_id"] = [f"{category.name!r} is no longer used; choose another category."]
    if not 0 <= (availability or 0) < (1 << 21):
        errors["availability"] = ["Availability is 21 bits (day * 3 + part)."]
    if errors:
        raise ValidationFailed("Some fields are not valid.", errors=errors)


def create_offer(session, *, membership: Membership, title: str, category_id: int, description: str = "",
                 area: str | None = None, remote: bool = False, availability: int | None = None,
                 starts_on: dt.date | None = None, ends_on: dt.date | None = None) -> Offer:
    timebank = session.get(TimeBank, membership.timebank_id)
    availability = membership.availability if availability is None else availability
    _check_common(session, timebank, title=title, category_id=category_id, availability=availability,
                  starts_on=starts_on, ends_on=ends_on)
    now = utcnow()
    offer = Offer(timebank_id=timebank.id, membership_id=membership.id, category_id=category_id,
                  title=title.strip(), description=description or "", area=area or membership.ward,
                  remote=bool(remote), availability=availability or 0, starts_on=starts_on, ends_on=ends_on,
                  status="open", created_at=now,
                  expires_at=now + dt.timedelta(days=timebank.listing_expiry_days or 60))
    session.add(offer)
    session.flush()
    return offer


def create_request(session, *, user, timebank: TimeBank, title: str, category_id: int,
                   membership: Membership | None = None, organisation: Organisation | None = None,
                   description: str = "", area: str | None = None, remote: bool = False,
                   availability: int | None = None, urgency: str = "normal", estimated_minutes: int = 60,
                   volunteers_needed: int = 1, safety_check_level: str = "none", min_age: int | None = None,
                   starts_on: dt.date | None = None, ends_on: dt.date | None = None,
                   latitude: float | None = None, longitude: float | None = None) -> HelpRequest:
    """A member's request (membership) or an organisation's opportunity (organisation)."""
    if (membership is None) == (organisation is None):
        raise ValidationFailed("A request belongs to a member or to an organisation.",
                               errors={"organisation_id": ["Give a member or an organisation."]})
    availability = (membership.availability if membership and availability is None else availability) or 0
    _check_common(session, timebank, title=title, category_id=category_id, availability=availability,
                  starts_on=starts_on, ends_on=ends_on)
    errors = {}
    if urgency not in URGENCIES:
        errors["urgency"] = [f"Must be one of {', '.join(URGENCIES)}."]
    if not isinstance(estimated_minutes, int) or not 0 < estimated_minutes <= 24 * 60:
        errors["estimated_minutes"] = ["Between 1 and 1440 minutes."]
    if not isinstance(volunteers_needed, int) or not 1 <= volunteers_needed <= 500:
        errors["volunteers_needed"] = ["Between 1 and 500."]
    if membership is not None and volunteers_needed != 1:
        errors["volunteers_needed"] = ["A member's request needs one volunteer; organisations post opportunities."]
    if safety_check_level not in scoring.SAFETY_LEVELS:
        errors["safety_check_level"] = [f"Must be one of {', '.join(scoring.SAFETY_LEVELS)}."]
    if min_age is not None and not 0 <= min_age <= 120:
        errors["min_age"] = ["Between 0 and 120."]
    if errors:
        raise ValidationFailed("Some fields are not valid.", errors=errors)
    if membership is not None and latitude is None:
        latitude, longitude = membership.latitude, membership.longitude
    now = utcnow()
    request = HelpRequest(
        timebank_id=timebank.id, membership_id=membership.id if membership else None,
        organisation_id=organisation.id if organisation else None, created_by_user_id=user.id,
        category_id=category_id, title=title.strip(), description=description or "",
        area=area or (membership.ward if membership else organisation.area), remote=bool(remote),
        latitude=latitude, longitude=longitude, availability=availability, urgency=urgency,
        estimated_minutes=estimated_minutes, volunteers_needed=volunteers_needed,
        safety_check_level=safety_check_level, min_age=min_age, starts_on=starts_on, ends_on=ends_on,
        status="open", created_at=now, expires_at=now + dt.timedelta(days=timebank.listing_expiry_days or 60))
    session.add(request)
    session.flush()
    return request


def can_post_for(session, user, organisation: Organisation) -> bool:
    return session.get(OrganisationRepresentative, (organisation.id, user.id)) is not None


def close_listing(session, listing, *, by_membership: Membership, user=None) -> None:
    """Close an offer or request: its poster, a broker, or (for an opportunity) the organisation's representative."""
    owner = getattr(listing, "membership_id", None)
    representative = (user is not None and getattr(listing, "organisation_id", None) is not None
                      and can_post_for(session, user, listing.organisation))
    if owner != by_membership.id and not is_broker(by_membership) and not representative:
        raise NotAllowed("Only the person who posted it or a broker can close this listing.")
    if listing.status == "closed":
        raise ListingClosed("This listing is already closed.")
    listing.status = "closed"
    listing.closed_at = utcnow()
    session.flush()


def block_pair(session, *, timebank_id: int, a: int, b: int, reason: str = "", by_user_id: int | None = None,
               by_broker: bool = False) -> BlockedPair:
    """Never match members a and b again. A broker's block (safeguarding) outranks a member's own and cannot be
    lifted by the member; open proposals between the two are withdrawn."""
    if a == b:
        raise ValidationFailed("A member cannot be blocked from themself.", errors={"member_id": ["Same member."]})
    for mid in (a, b):
        member = session.get(Membership, mid)
        if member is None or member.timebank_id != timebank_id:
            raise ValidationFailed(f"There is no member {mid} in this time bank.",
                                   errors={"member_id": ["Choose a member of this time bank."]})
    low, high = sorted((a, b))
    reason = (reason or "").strip()[:2000]
    row = session.scalar(select(BlockedPair).where(BlockedPair.low_membership_id == low,
                                                   BlockedPair.high_membership_id == high))
    if row is None:
        row = BlockedPair(timebank_id=timebank_id, low_membership_id=low, high_membership_id=high, reason=reason,
                          blocked_by_user_id=by_user_id, by_broker=bool(by_broker))
        session.add(row)
    elif by_broker and not row.by_broker:
        row.by_broker, row.blocked_by_user_id = True, by_user_id
        row.reason = reason or row.reason
    else:
        return row
    session.flush()
    _withdraw_between(session, low, high)
    log_audit(session, "matching.pair_blocked", actor_user_id=by_user_id, timebank_id=timebank_id,
              target_type="blocked_pair", target_id=row.id, by_broker=bool(by_broker))
    return row


def _withdraw_between(session, a: int, b: int) -> None:
    """Withdraw suggested, proposed or accepted matches pairing these two members (either way round)."""
    rows = session.scalars(select(Match).join(HelpRequest, HelpRequest.id == Match.request_id).where(
        Match.status.in_(("suggested", "proposed", "accepted")),
        or_(and_(Match.membership_id == a, HelpRequest.membership_id == b),
            and_(Match.membership_id == b, HelpRequest.membership_id == a))))
    now = utcnow()
    for match in rows:
        match.status, match.responded_at = "withdrawn", match.responded_at or now
    session.flush()


def get_block(session, block_id: int, timebank_id: int) -> BlockedPair:
    row = session.get(BlockedPair, block_id)
    if row is None or row.timebank_id != timebank_id:
        raise BlockNotFound(f"There is no blocked pair {block_id}.")
    return row


def can_lift(block: BlockedPair, membership: Membership) -> bool:
    """Brokers lift any block; a member only one they made themself (never a broker's safeguarding block)."""
    if block.timebank_id != membership.timebank_id:
        return False
    if is_broker(membership):
        return True
    return (not block.by_broker and block.blocked_by_user_id == membership.user_id
            and membership.id in (block.low_membership_id, block.high_membership_id))


def unblock_pair(session, block: BlockedPair, *, by_membership: Membership) -> None:
    if not can_lift(block, by_membership):
        raise NotAllowed("Only a broker, or the member who asked for it, can lift this block.")
    log_audit(session, "matching.pair_unblocked", actor_user_id=by_membership.user_id,
              timebank_id=block.timebank_id, target_type="blocked_pair", target_id=block.id,
              members=[block.low_membership_id, block.high_membership_id], by_broker=block.by_broker)
    session.delete(block)
    session.flush()


TAKEN_STATUSES = ("proposed", "accepted", "done", "logged")


def _open_places(session, request: HelpRequest) -> int:
    return request.volunteers_needed - _places_taken(session, [request.id]).get(request.id, 0)


def propose(session, request: HelpRequest, member_id: int, *, by_user_id: int, score: float | None = None,
            reasons: list | None = None, plan_id: int | None = None) -> Match:
    """Propose a volunteer for a request; the volunteer must pass the hard filters right now."""
    if not queries.is_open(request):
        raise ListingClosed("This request is closed or has expired.")
    if _open_places(session, request) <= 0:
        raise ListingClosed("Every place on this request is already taken.", code="request_full")
    if request.membership_id:
        low, high = sorted((request.membership_id, member_id))
        if session.scalar(select(BlockedPair.id).where(BlockedPair.low_membership_id == low,
                                                       BlockedPair.high_membership_id == high)):
            raise MatchBlocked("A broker has blocked this pair.")
    if score is None or reasons is None:
        found = queries.suggestions(session, request, limit=1, only_member_id=member_id)
        if not found:
            raise MatchWrongState("This member does not meet the request's requirements.",
                                  code="member_not_eligible")
        score, reasons = found[0].score, found[0].reasons
    match = session.scalar(select(Match).where(Match.request_id == request.id, Match.membership_id == member_id))
    match = _mark_proposed(session, request, member_id, match, by_user_id=by_user_id, score=score, reasons=reasons,
                           plan_id=plan_id)
    session.flush()
    return match


def _mark_proposed(session, request: HelpRequest, member_id: int, match: Match | None, *, by_user_id: int,
                   score: float, reasons: list, plan_id: int | None) -> Match:
    """The pair's match (new, or the suggested one) moved to proposed; the checks are the caller's."""
    now = utcnow()
    if match is None:
        match = Match(timebank_id=request.timebank_id, request_id=request.id, membership_id=member_id,
                      suggested_at=now)
        session.add(match)
    elif match.status != "suggested":
        raise MatchWrongState("This member was already proposed for this request.")
    match.status, match.score, match.reasons = "proposed", float(score), list(reasons)
    match.proposed_at, match.proposed_by_user_id, match.plan_id = now, by_user_id, plan_id
    return match


def get_match(session, match_id: int) -> Match:
    match = session.get(Match, match_id)
    if match is None:
        raise MatchNotFound(f"There is no match {match_id}.")
    return match


def respond(session, match: Match, *, accept: bool, by_membership: Membership) -> Match:
    if match.membership_id != by_membership.id and not is_broker(by_membership):
        raise NotAllowed("Only the volunteer (or a broker for them) can answer this match.")
    if match.status != "proposed":
        raise MatchWrongState(f"This match is {match.status}, not waiting for an answer.")
    match.status = "accepted" if accept else "declined"
    match.responded_at = utcnow()
    session.flush()
    return match


def complete(session, match: Match, *, by_membership: Membership) -> Match:
    request = session.get(HelpRequest, match.request_id)
    allowed = {match.membership_id, request.membership_id}
    if by_membership.id not in allowed and not is_broker(by_membership):
        raise NotAllowed("Only the people in this match or a broker can mark it done.")
    if match.status != "accepted":
        raise MatchWrongState(f"This match is {match.status}; only an accepted match can be marked done.")
    match.status = "done"
    match.completed_at = utcnow()
    session.flush()
    return match


def prefilled_exchange(session, match: Match) -> dict:
    """The fields of the exchange that logs a done match's hours (for the exchanges form)."""
    request = session.get(HelpRequest, match.request_id)
    return {"provider_membership_id": match.membership_id, "recipient_membership_id": request.membership_id,
            "recipient_organisation_id": request.organisation_id, "minutes": request.estimated_minutes,
            "category_id": request.category_id, "description": request.title, "match_id": match.id}


def weekly_capacity(timebank: TimeBank) -> int:
    try:
        return max(0, int((timebank.settings or {}).get("weekly_match_capacity", DEFAULT_WEEKLY_CAPACITY)))
    except (TypeError, ValueError):
        return DEFAULT_WEEKLY_CAPACITY


def _requests_of(session, request_ids: list[int], timebank_id: int) -> list[HelpRequest]:
    """The requests with these ids, in the order given (repeats dropped); ListingNotFound for an unknown one."""
    ids = list(dict.fromkeys(request_ids))
    found = {}
    for start in range(0, len(ids), 5000):
        found.update((r.id, r) for r in session.scalars(select(HelpRequest).where(
            queries.among(session, HelpRequest.id, ids[start:start + 5000]))))
    out = []
    for rid in ids:
        request = found.get(rid)
        if request is None or request.timebank_id != timebank_id:
            raise ListingNotFound(f"There is no request {rid}.")
        out.append(request)
    return out


def _places_taken(session, request_ids: list[int]) -> dict[int, int]:
    """{request id: places already taken} (proposed, accepted, done or logged matches), in one query per 5,000."""
    taken: dict[int, int] = {}
    for start in range(0, len(request_ids), 5000):
        taken.update(session.execute(select(Match.request_id, func.count()).where(
            queries.among(session, Match.request_id, request_ids[start:start + 5000]),
            Match.status.in_(TAKEN_STATUSES))
            .group_by(Match.request_id)).all())
    return taken


def create_plan(session, *, timebank: TimeBank, request_ids: list[int], by_user_id: int) -> MatchPlan:
    """An exactly optimal plan for these open requests, with each volunteer's weekly capacity.

    Candidate pairs come from candidates.plan_candidates(): the hard filters and scores of suggestions(), for all
    the requests at once."""
    if not request_ids:
        raise ValidationFailed("Choose at least one request.", errors={"request_ids": ["Give at least one id."]})
    weights = scoring.weights_for(timebank.settings)
    cap_per_week = weekly_capacity(timebank)
    requests = _requests_of(session, request_ids, timebank.id)
    now = utcnow()
    for request in requests:
        if not queries.is_open(request, now):
            raise ListingClosed(f"Request {request.id} is closed or has expired.")
    taken = _places_taken(session, [r.id for r in requests])
    places = {r.id: max(0, r.volunteers_needed - taken.get(r.id, 0)) for r in requests}
    found = candidates.plan_candidates(session, requests, timebank=timebank, weights=weights, now=now)
    capacity = {mid: max(0, cap_per_week - st["week"]) for mid, st in found.stats.items()}
    open_load = {mid: st["open"] for mid, st in found.stats.items()}
    result = planner.solve_pairs(found.request_id, found.member_id, found.base_score, places, capacity, open_load,
                                 weights["load"])
    plan = MatchPlan(timebank_id=timebank.id, created_by_user_id=by_user_id, status="draft",
                     request_ids=[r.id for r in requests], total_score=round(result.total, 4),
                     capacity={"weekly_per_volunteer": cap_per_week,
                               "volunteers_used": len(result.used),
                               "eligible_volunteers": len(capacity),
                               "places": sum(places.values()),
                               "places_filled": len(result.assignments),
                               "used": {str(mid): {"used": n, "available": capacity[mid]}
                                        for mid, n in sorted(result.used.items())}})
    session.add(plan)
    session.flush()
    if result.assignments:
        session.execute(insert(MatchPlanProposal), [
            {"plan_id": plan.id, "request_id": request_id, "membership_id": member_id, "score": round(net, 4),
             "reasons": found.reasons(request_id, member_id)} for request_id, member_id, net in result.assignments])
    return plan


def get_plan(session, plan_id: int, timebank_id: int | None = None) -> MatchPlan:
    plan = session.get(MatchPlan, plan_id)
    if plan is None or (timebank_id is not None and plan.timebank_id != timebank_id):
        raise PlanNotFound(f"There is no match plan {plan_id}.")
    return plan


def send_plan(session, plan: MatchPlan, *, by_user_id: int) -> list[Match]:
    """Turn the plan's proposals into proposed matches, skipping those no longer valid.

    A proposal is skipped when, since the plan was made, its request was closed, expired or filled, the volunteer
    is no longer an active member, the pair was blocked, the volunteer was already proposed, or the volunteer no
    longer passes the request's hard filters. plan.skipped lists them (request and member ids, the reason in words;
    names are looked up when shown, queries.skipped_of, so an erased member's name is never kept here)."""
    if plan.status == "sent":
        raise PlanAlreadySent("This plan was already sent.")
    proposals = list(plan.proposals)
    request_ids = sorted({p.request_id for p in proposals})
    # The requests' matches, read once: who was proposed already, the places taken, the rows to update.
    known = list(session.scalars(select(Match).where(queries.among(session, Match.request_id, request_ids)))) \
        if request_ids else []
    problems = _proposal_problems(session, plan, proposals, known)
    # The checks above are propose()'s, done for all proposals at once; places are counted down as they are sent.
    existing = {(m.request_id, m.membership_id): m for m in known}
    taken = Counter(m.request_id for m in known if m.status in TAKEN_STATUSES)
    places_left = {rid: session.get(HelpRequest, rid).volunteers_needed - taken.get(rid, 0) for rid in request_ids}
    matches, skipped = [], []
    for proposal in proposals:
        request = session.get(HelpRequest, proposal.request_id)
        pair = (proposal.request_id, proposal.membership_id)
        reason = problems.get(pair)
        if reason is None and places_left[request.id] <= 0:
            reason = "every place on this request is already taken"
        if reason is None:
            matches.append(_mark_proposed(session, request, proposal.membership_id, existing.get(pair),
                                          by_user_id=by_user_id, score=proposal.score, reasons=proposal.reasons,
                                          plan_id=plan.id))
            places_left[request.id] -= 1
            continue
        skipped.append({"request_id": proposal.request_id, "member_id": proposal.membership_id, "reason": reason})
    plan.status, plan.sent_at, plan.skipped = "sent", utcnow(), skipped
    session.flush()
    return matches


def _proposal_problems(session, plan: MatchPlan, proposals: list, matches: list[Match]) -> dict[tuple[int, int], str]:
    """{(request id, member id): why it cannot be sent now} for the plan's proposals that are no longer valid.
    `matches`: every match on the proposals' requests."""
    if not proposals:
        return {}
    timebank = session.get(TimeBank, plan.timebank_id)
    now = utcnow()
    requests = {r.id: r for r in _requests_of(session, [p.request_id for p in proposals], plan.timebank_id)}
    member_ids = sorted({p.membership_id for p in proposals})
    members = {m.id: m for m in session.scalars(select(Membership).where(Membership.id.in_(member_ids)))}
    owners = {r.membership_id for r in requests.values() if r.membership_id}
    blocks = {(b.low_membership_id, b.high_membership_id): b.by_broker for b in session.scalars(
        select(BlockedPair).where(BlockedPair.timebank_id == plan.timebank_id,
                                  or_(BlockedPair.low_membership_id.in_(owners),
                                      BlockedPair.high_membership_id.in_(owners))))} if owners else {}
    already = {(m.request_id, m.membership_id): m.status for m in matches if m.status != "suggested"}
    open_requests = [r for r in requests.values() if queries.is_open(r, now)]
    # Only the plan's volunteers are scored (the pairs are what is asked about), not the whole time bank.
    found = candidates.plan_candidates(session, open_requests, timebank=timebank,
                                       weights=scoring.weights_for(timebank.settings), now=now, member_ids=member_ids)
    eligible = set(zip(found.request_id.tolist(), found.member_id.tolist()))
    problems = {}
    for p in proposals:
        pair = (p.request_id, p.membership_id)
        request, member = requests[p.request_id], members.get(p.membership_id)
        block = blocks.get(tuple(sorted((request.membership_id, p.membership_id)))) if request.membership_id \
            else None
        if not queries.is_open(request, now):
            problems[pair] = "the request is closed or has expired"
        elif member is None or member.status != "active":
            problems[pair] = ("the volunteer's membership is suspended" if member is not None
                              and member.status == "suspended" else "the volunteer is no longer an active member")
        elif block is not None:
            problems[pair] = ("a broker has blocked this pair (safeguarding)" if block
                              else "one of the two has blocked the other")
        elif pair in already:
            problems[pair] = f"the volunteer was already proposed for this request (the match is {already[pair]})"
        elif pair not in eligible:
            problems[pair] = ("the volunteer no longer meets the request's requirements (skills, availability, "
                              "distance or safety check)")
    return problems


def mark_logged(session, match: Match, *, exchange_id: int) -> Match:
    """The last funnel step: the hours of a done match were logged as this exchange."""
    if match.status != "done":
        raise MatchWrongState(f"This match is {match.status}; only a done match can be logged.")
    match.status = "logged"
    match.exchange_id = exchange_id
    match.logged_at = utcnow()
    session.flush()
    return match


def link_exchange(session, match: Match, exchange) -> Match:
    """Record that this exchange logs the match's hours: an accepted match becomes done, then logged.

    The exchange must be between the match's volunteer (provider) and the request's member or organisation."""
    if match.status == "logged":  # a done match may keep the id of an exchange that was cancelled
        raise MatchWrongState("The hours of this match are already logged.", code="match_already_logged")
    if match.status not in ("accepted", "done"):
        raise MatchWrongState(f"This match is {match.status}; log hours once it is accepted or done.")
    request = session.get(HelpRequest, match.request_id)
    if (exchange.timebank_id != match.timebank_id or exchange.provider_membership_id != match.membership_id
            or exchange.recipient_membership_id != request.membership_id
            or exchange.recipient_organisation_id != request.organisation_id):
        raise ValidationFailed("This exchange is not between the people in the match.",
                               errors={"match_id": ["The exchange's provider and recipient must be the match's."]})
    if match.status == "accepted":
        match.status, match.completed_at = "done", utcnow()
    return mark_logged(session, match, exchange_id=exchange.id)


def log_hours(session, match: Match, *, user, minutes: int | None = None, happened_on: dt.date | None = None,
              description: str | None = None, category_id: int | None = None, tags: dict | None = None,
              today: dt.date | None = None):
    """Log the hours of an accepted or done match as an exchange (fields default to the match's) and move the
    match to logged. A party logs it (it waits for the other side as usual); a broker records it for them."""
    from timebank.exchanges import policy as exchange_policy, service as exchanges
    from timebank.exchanges.models import Exchange

    if match.status == "logged":  # a done match may keep the id of an exchange that was cancelled
        raise MatchWrongState("The hours of this match are already logged.", code="match_already_logged")
    if match.status not in ("accepted", "done"):
        raise MatchWrongState(f"This match is {match.status}; log hours once it is accepted or done.")
    draft = prefilled_exchange(session, match)
    fields = dict(provider_id=draft["provider_membership_id"], recipient_id=draft["recipient_membership_id"],
                  recipient_organisation_id=draft["recipient_organisation_id"],
                  minutes=draft["minutes"] if minutes is None else minutes,
                  happened_on=happened_on or today or dt.date.today(),
                  description=draft["description"] if description is None else description,
                  category_id=draft["category_id"] if category_id is None else category_id, tags=tags, today=today)
    probe = Exchange(timebank_id=match.timebank_id, provider_membership_id=fields["provider_id"],
                     recipient_membership_id=fields["recipient_id"],
                     recipient_organisation_id=fields["recipient_organisation_id"])
    if (not exchange_policy.sides_of(session, user, probe)
            and exchange_policy.can_record(session, user, match.timebank_id)):
        exchange = exchanges.record_exchange(session, user=user, **fields)
    else:
        exchange = exchanges.log_exchange(session, user=user, **fields)
    link_exchange(session, match, exchange)
    return exchange
