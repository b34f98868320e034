"""Nouns for matching: listings, candidates that pass the hard filters, ranked suggestions."""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import ARRAY, Integer, String, and_, any_, bindparam, case, cast, func, literal, or_, select, true

from timebank.community.models import Category, Membership, MemberSkill, TimeBank, User
from timebank.ledger.models import Account
from timebank.matching import scoring
from timebank.matching.errors import ListingNotFound
from timebank.matching.models import BlockedPair, HelpRequest, Match, Offer, utcnow

VOLUNTEER_ROLES = ("member", "broker", "admin")


@dataclass
class Suggestion:
    member_id: int
    display_name: str
    score: float
    base_score: float
    features: dict[str, float]
    reasons: list[str]
    open_commitments: int = 0
    distance_km: float | None = None
    category_id: int | None = None
    extra: dict = field(default_factory=dict)


def among(session, column, ids):
    """column IN ids; on PostgreSQL as = ANY(one array parameter), not thousands of parameters to parse and bind.

    The ids are sent as one comma-separated text, split and cast in SQL: psycopg dumps a Python list element by
    element (1.6 ms of CPU for a thousand ids, against 0.2 ms for the text). string_to_array and the cast are
    immutable, so PostgreSQL computes the array once; a text cast straight to integer[] goes through array_in, which
    is only stable, and the planner then re-parsed it for every row it filtered (match statistics for 1,100 members:
    14 ms against 0.1 ms)."""
    postgres = _postgres(session)
    if postgres:
        return column == any_(_id_array(bindparam(None, ids_param(ids, postgres), type_=String())))
    return column.in_(ids_param(ids, postgres))


def among_param(column, postgres: bool, name: str = "ids"):
    """among() for a statement built once: column IN the bind parameter `name`, given by ids_param()."""
    if postgres:
        return column == any_(_id_array(bindparam(name, type_=String())))
    return column.in_(bindparam(name, expanding=True))


def _id_array(text_ids):
    """integer[] from a comma-separated text (among's reasons for splitting in SQL)."""
    return cast(func.string_to_array(text_ids, ","), ARRAY(Integer))


def ids_param(ids, postgres: bool):
    """The value for among_param's parameter."""
    ids = [int(i) for i in ids]
    return ",".join(map(str, ids)) if postgres else ids


def _postgres(session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def get_request(session, request_id: int, timebank_id: int | None = None) -> HelpRequest:
    row = session.get(HelpRequest, request_id)
    if row is None or (timebank_id is not None and row.timebank_id != timebank_id):
        raise ListingNotFound(f"There is no request {request_id}.")
    return row


def get_offer(session, offer_id: int, timebank_id: int | None = None) -> Offer:
    row = session.get(Offer, offer_id)
    if row is None or (timebank_id is not None and row.timebank_id != timebank_id):
        raise ListingNotFound(f"There is no offer {offer_id}.")
    return row


def category_family(session, category_id: int) -> tuple[dict[int, str], dict[int, str]]:
    """({category id: fit}, {category id: name}) for the request's category: 'exact', its parent 'broader', its
    children 'narrower'. One statement: the category, its children and its parent."""
    rows = session.execute(_CATEGORY_FAMILY, {"category_id": category_id}).all()
    own = [row for row in rows if row.id == category_id]
    if not own:
        return {category_id: "exact"}, {}
    children = [row.id for row in rows if row.parent_id == category_id]
    return family_from(category_id, own[0].parent_id, children), {row.id: row.name for row in rows}


_CATEGORY_FAMILY = select(Category.id, Category.parent_id, Category.name).where(or_(
    Category.id == bindparam("category_id"), Category.parent_id == bindparam("category_id"),
    Category.id == select(Category.parent_id).where(Category.id == bindparam("category_id")).scalar_subquery()))


def family_from(category_id: int, parent_id: int | None, child_ids) -> dict[int, str]:
    """{category id: fit} from a category, its parent and its children."""
    family = {category_id: "exact"}
    if parent_id:
        family[parent_id] = "broader"
    for child_id in child_ids:
        family[child_id] = "narrower"
    return family


FIT_VALUE = {"exact": 1.0, "narrower": 0.8, "broader": 0.6}


def _listing_filters(model, *, timebank_id: int, status: str | None, category_id: int | None, area: str | None,
                     availability: int | None, text: str | None, session, now: dt.datetime):
    conditions = [model.timebank_id == timebank_id]
    today = now.date()
    if status == "open":
        conditions += [model.status == "open", model.expires_at > now,
                       or_(model.ends_on.is_(None), model.ends_on >= today)]
    elif status == "closed":
        conditions.append(or_(model.status == "closed", model.expires_at <= now, model.ends_on < today))
    if category_id:
        ids = [category_id] + list(session.scalars(select(Category.id).where(Category.parent_id == category_id)))
        conditions.append(model.category_id.in_(ids))
    if area:
        conditions.append(or_(func.lower(model.area).like(f"%{_escape(area.lower())}%", escape="\\"),
                              model.remote.is_(True)))
    if availability:
        conditions.append(or_(model.availability.op("&")(availability) != 0, model.availability == 0))
    if text:
        # Portable full-text: every word must appear in the title or description (case-insensitive).
        for word in text.lower().split()[:8]:
            pattern = f"%{_escape(word)}%"
            conditions.append(or_(func.lower(model.title).like(pattern, escape="\\"),
                                  func.lower(model.description).like(pattern, escape="\\")))
    return conditions


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_offers(session, timebank_id: int, *, status: str | None = "open", category_id: int | None = None,
                area: str | None = None, availability: int | None = None, text: str | None = None,
                membership_id: int | None = None, limit: int = 100, now: dt.datetime | None = None) -> list[Offer]:
    conditions = _listing_filters(Offer, timebank_id=timebank_id, status=status, category_id=category_id, area=area,
                                  availability=availability, text=text, session=session, now=now or utcnow())
    if membership_id:
        conditions.append(Offer.membership_id == membership_id)
    return list(session.scalars(select(Offer).where(*conditions).order_by(Offer.created_at.desc(), Offer.id.desc())
                                .limit(limit)))


def list_requests(session, timebank_id: int, *, status: str | None = "open", category_id: int | None = None,
                  area: str | None = None, availability: int | None = None, text: str | None = None,
                  opportunities: bool | None = None, membership_id: int | None = None, limit: int = 100,
                  now: dt.datetime | None = None) -> list[HelpRequest]:
    conditions = _listing_filters(HelpRequest, timebank_id=timebank_id, status=status, category_id=category_id,
                                  area=area, availability=availability, text=text, session=session,
                                  now=now or utcnow())
    if opportunities is True:
        conditions.append(HelpRequest.organisation_id.is_not(None))
    elif opportunities is False:
        conditions.append(HelpRequest.organisation_id.is_(None))
    if membership_id:
        conditions.append(HelpRequest.membership_id == membership_id)
    return list(session.scalars(select(HelpRequest).where(*conditions)
                                .order_by(HelpRequest.created_at.desc(), HelpRequest.id.desc()).limit(limit)))


def is_open(listing, now: dt.datetime | None = None) -> bool:
    """Open, not expired, and its last date (an offer's "until", a request's "needed by") not passed."""
    now = now or utcnow()
    return (listing.status == "open" and listing.expires_at > now
            and (listing.ends_on is None or listing.ends_on >= now.date()))


def closes_on(listing) -> dt.date:
    """The last day a listing can be matched: its own last date or its expiry, whichever comes first."""
    expiry = (listing.expires_at - dt.timedelta(microseconds=1)).date()
    return min(expiry, listing.ends_on) if listing.ends_on else expiry


def offer_live(now: dt.datetime) -> list:
    """Conditions for an offer that is live now: open, not expired, its last date not passed."""
    return _window_terms(now, now.date())


def _window_terms(now, today, request_ends_on=None, request_starts_on=None, request_starts_at=None) -> list:
    """Conditions for an offer live at `now` (on `today`) whose dates overlap a request's (offer_overlaps in SQL).
    Values or bind parameters; a request date that is None sets no bound."""
    terms = [Offer.status == "open", Offer.expires_at > now, or_(Offer.ends_on.is_(None), Offer.ends_on >= today)]
    if request_ends_on is not None:
        terms.append(or_(Offer.starts_on.is_(None), Offer.starts_on <= request_ends_on))
    if request_starts_on is not None:
        terms += [or_(Offer.ends_on.is_(None), Offer.ends_on >= request_starts_on), Offer.expires_at > request_starts_at]
    return terms


def offer_overlaps(starts_on: dt.date | None, ends_on: dt.date | None, expires_at: dt.datetime,
                   request_starts_on: dt.date | None, request_ends_on: dt.date | None) -> bool:
    """In Python, the date part of _window_terms(): does a live offer's window overlap the request's?"""
    if request_ends_on is not None and starts_on is not None and starts_on > request_ends_on:
        return False
    if request_starts_on is not None:
        if ends_on is not None and ends_on < request_starts_on:
            return False
        if not expires_at > dt.datetime.combine(request_starts_on, dt.time()):
            return False
    return True


class OfferDates:
    """Many offers' dates as arrays, for offer_overlaps() on all of them at once (batch plans)."""

    def __init__(self, offers: list[tuple]):
        """`offers`: (starts_on, ends_on, expires_at) of each offer."""
        never, always = dt.date.min.toordinal(), dt.date.max.toordinal()
        self.starts = np.array([never if o[0] is None else o[0].toordinal() for o in offers], dtype=np.int64)
        self.ends = np.array([always if o[1] is None else o[1].toordinal() for o in offers], dtype=np.int64)
        self.expires = np.array([o[2] for o in offers], dtype="datetime64[us]")

    def overlapping(self, request_starts_on: dt.date | None, request_ends_on: dt.date | None) -> np.ndarray:
        """offer_overlaps() of every offer with this request's dates, as a boolean array."""
        live = np.ones(len(self.starts), dtype=bool)
        if request_ends_on is not None:
            live &= self.starts <= request_ends_on.toordinal()
        if request_starts_on is not None:
            live &= (self.ends >= request_starts_on.toordinal()) & (
                self.expires > np.datetime64(dt.datetime.combine(request_starts_on, dt.time()), "us"))
        return live


def _match_stats_columns(week_ago: dt.datetime) -> list:
    """Per member (grouped by Match.membership_id): proposed (ever), completed, open commitments, asked this week."""
    return [func.sum(case((Match.proposed_at.is_not(None), 1), else_=0)).label("proposed"),
            func.sum(case((Match.status.in_(("done", "logged")), 1), else_=0)).label("completed"),
            func.sum(case((Match.status.in_(("proposed", "accepted")), 1), else_=0)).label("open"),
            func.sum(case((Match.proposed_at >= week_ago, 1), else_=0)).label("week")]


def candidate_rows(session, request: HelpRequest, *, today: dt.date | None = None, radius_km: float | None = None,
                   only_member_id: int | None = None, now: dt.datetime | None = None):
    """Members passing every hard filter, with their match statistics, straight from SQL (distance still needs the
    haversine check): one statement for the category family, one for the candidates.

    Returns (rows, family, category names); a row is (membership_id, category_id, latitude, longitude, availability,
    age_band, balance, proposed, completed, open, week, has_bio). Bios are not in it, only whether there is one: only
    the members who could still reach the top need their words (member_word_parts)."""
    today, now = today or dt.date.today(), now or utcnow()
    family, names = category_family(session, request.category_id)
    located = not request.remote and request.latitude is not None and request.longitude is not None
    safety = bool(request.safety_check_level and request.safety_check_level != "none")
    params = {"family": sorted(family), "now": now, "today": now.date(), "tb": request.timebank_id,
              "request_id": request.id, "week_ago": now - dt.timedelta(days=7), "only": only_member_id,
              "requester": request.membership_id, "availability": request.availability,
              "ends_on": request.ends_on, "starts_on": request.starts_on,
              "starts_at": None if request.starts_on is None else dt.datetime.combine(request.starts_on, dt.time()),
              "levels": list(scoring.levels_at_least(request.safety_check_level)) if safety else [],
              "safe_until": today}
    if located:
        params.update(zip(("min_lat", "max_lat", "min_lon", "max_lon"), scoring.bounding_box(
            request.latitude, request.longitude, radius_km or 10)))
    stmt = _candidate_statement(_postgres(session), only_member_id is not None,
                                bool(request.membership_id), bool(request.availability), located, safety,
                                request.ends_on is not None, request.starts_on is not None)
    # Plain rows, no ORM entities: through the connection, past the ORM's result machinery (a thousand rows on L).
    session.flush()
    return session.connection().execute(stmt, params).all(), family, names


@functools.lru_cache(maxsize=256)
def _candidate_statement(postgres: bool, only_member: bool, requester: bool, availability: bool, located: bool,
                         safety: bool, request_ends: bool, request_starts: bool):
    """candidate_rows' statement for one shape of request, with bind parameters for every value: built once per
    process and shape (building it was two thirds of the Python a suggestion request spent in SQLAlchemy)."""
    p = bindparam
    family = p("family", expanding=True)
    skills = select(MemberSkill.membership_id.label("mid"), MemberSkill.category_id.label("cid")).where(
        MemberSkill.category_id.in_(family))
    # An offer counts only while it is live and its dates overlap the request's (a profile skill has no dates).
    offers = select(Offer.membership_id.label("mid"), Offer.category_id.label("cid")).where(
        Offer.category_id.in_(family), *_window_terms(p("now"), p("today"), p("ends_on") if request_ends else None,
                                                      p("starts_on") if request_starts else None, p("starts_at")))
    fits = skills.union(offers).cte("fits")
    m = Membership
    conditions = [m.timebank_id == p("tb"), m.status == "active", m.role.in_(VOLUNTEER_ROLES)]
    if only_member:
        conditions.append(m.id == p("only"))
    if requester:
        # The requester's blocked partners read once (a hashed NOT IN), not probed for each candidate.
        conditions += [m.id != p("requester"), m.id.not_in(
            select(BlockedPair.high_membership_id).where(BlockedPair.low_membership_id == p("requester")).union_all(
                select(BlockedPair.low_membership_id).where(BlockedPair.high_membership_id == p("requester"))))]
    if availability:
        conditions.append(m.availability.op("&")(p("availability", type_=Integer)) != 0)
    if located:
        lat, lon = m.latitude, m.longitude
        if not postgres:
            # "+ 0" keeps SQLite from scanning members by the location index (the radius box usually holds most of
            # them, each then checked for blocks and matches); it starts from the few with the skill instead.
            lat, lon = lat + 0, lon + 0
        conditions += [lat.between(p("min_lat"), p("max_lat")), lon.between(p("min_lon"), p("max_lon"))]
    if safety:
        conditions += [m.safety_check_level.in_(p("levels", expanding=True)), m.safety_check_expires >= p("safe_until")]
    # Already proposed, accepted, declined or done for this request: not suggested again (read once, like blocks).
    conditions.append(m.id.not_in(select(Match.membership_id).where(
        Match.request_id == p("request_id"), Match.status != "suggested", Match.membership_id.is_not(None))))
    stats = (select(Match.membership_id.label("mid"), *_match_stats_columns(p("week_ago")))
             .where(Match.membership_id.in_(select(fits.c.mid))).group_by(Match.membership_id).subquery("stats"))
    columns = ("id", "latitude", "longitude", "availability", "age_band", "account_id")
    has_bio = m.bio.is_not(None).label("has_bio")  # the bio itself is read for the contenders only
    if postgres:
        # From the members with the skill, each looked up by its key (LATERAL), instead of filtering every member of
        # the time bank and joining by hash: 5.5 → 2.9 ms for a request with 270 candidates on the L community.
        lateral = select(*[getattr(m, c) for c in columns], has_bio).where(m.id == fits.c.mid,
                                                                            *conditions).lateral("m")
        member, source = lateral.c, select().select_from(fits).join(lateral, true())
        has_bio = member.has_bio
    else:
        member = m.__table__.c
        source = select().select_from(fits).join(m, m.id == fits.c.mid).where(*conditions)
    # Planned for each request's own values (timebank/database.py): a plan made once for any categories, as
    # PostgreSQL settles on after a few executions of a prepared statement, took 57 ms instead of 3.
    return (source.add_columns(member.id, fits.c.cid, *[member[c] for c in columns[1:5]],
                               func.coalesce(Account.balance_minutes, 0),
                               *[func.coalesce(stats.c[c], 0) for c in ("proposed", "completed", "open", "week")],
                               has_bio)
            .outerjoin(Account, Account.id == member.account_id)
            .outerjoin(stats, stats.c.mid == member.id)
            .execution_options(prepare=False))


def match_stats(session, membership_ids: list[int], now: dt.datetime | None = None) -> dict[int, dict[str, int]]:
    """Per member: proposed (ever), completed, open commitments, asked in the last 7 days."""
    if not membership_ids:
        return {}
    week_ago = (now or utcnow()) - dt.timedelta(days=7)
    stats = {}
    for chunk_start in range(0, len(membership_ids), 5000):
        chunk = membership_ids[chunk_start:chunk_start + 5000]
        stmt = (select(Match.membership_id, *_match_stats_columns(week_ago))
                .where(among(session, Match.membership_id, chunk)).group_by(Match.membership_id))
        for mid, proposed, completed, open_, week in session.execute(stmt):
            stats[mid] = {"proposed": int(proposed or 0), "completed": int(completed or 0),
                          "open": int(open_ or 0), "week": int(week or 0)}
    return stats


def member_word_parts(session, membership_ids, request: HelpRequest, now: dt.datetime,
                      with_bio=None) -> dict[int, list]:
    """{membership id: the word sets of their bio and of each offer live in the request's window}: what the text
    similarity compares with the request's words (scoring.text_similarity_of_parts). One statement.

    with_bio: the members among them known to have a bio (candidate_rows says which); default all of them."""
    parts: dict[int, list] = {}
    ids = list(membership_ids)
    if not ids:
        return parts
    bio_ids = ids if with_bio is None else list(with_bio)
    postgres = _postgres(session)
    stmt = _word_parts_statement(postgres, request.ends_on is not None, request.starts_on is not None, bool(bio_ids))
    params = {"ids": ids_param(ids, postgres), "bio_ids": ids_param(bio_ids, postgres), "now": now,
              "today": now.date(), "ends_on": request.ends_on, "starts_on": request.starts_on,
              "starts_at": None if request.starts_on is None else dt.datetime.combine(request.starts_on, dt.time())}
    for mid, is_offer, title, description in session.connection().execute(stmt, params).all():
        parts.setdefault(mid, []).append(scoring.tokens(f"{title} {description}" if is_offer else title or ""))
    return parts


@functools.lru_cache(maxsize=16)
def _word_parts_statement(postgres: bool, request_ends: bool, request_starts: bool, bios: bool):
    """member_word_parts' statement for one shape of request: (membership id, is offer, title or bio, description)."""
    p = bindparam
    stmt = select(Offer.membership_id, literal(True), Offer.title, Offer.description).where(
        among_param(Offer.membership_id, postgres),
        *_window_terms(p("now"), p("today"), p("ends_on") if request_ends else None,
                       p("starts_on") if request_starts else None, p("starts_at")))
    if bios:
        stmt = select(Membership.id, literal(False), Membership.bio, literal(None, String())).where(
            among_param(Membership.id, postgres, "bio_ids"), Membership.bio.is_not(None)).union_all(stmt)
    return stmt


def best_fit_rows(rows, family: dict[int, str]) -> dict[int, tuple]:
    """{member: their candidate row with the best category fit}; between equal fits the lowest category id, so the
    reason names the same category each time. A member appears more than once only when they have several
    categories of the family (a skill and an offer, say): usually nobody does, and there is nothing to choose."""
    best = {row[0]: row for row in rows}
    if len(best) == len(rows):
        return best
    best = {}
    for row in rows:
        mid, cid = row[0], row[1]
        if mid not in best or (FIT_VALUE[family[cid]], -cid) > (FIT_VALUE[family[best[mid][1]]], -best[mid][1]):
            best[mid] = row
    return best


def suggestions(session, request: HelpRequest, *, limit: int = 10, weights: dict | None = None,
                now: dt.datetime | None = None, today: dt.date | None = None,
                only_member_id: int | None = None) -> list[Suggestion]:
    """The top `limit` members for a request, best first: hard filters in SQL, then the weighted score.

    only_member_id narrows the candidates to one member (is this member eligible, and how well do they fit?)."""
    now = now or utcnow()
    if not is_open(request, now):
        return []  # closed, expired or past its needed-by date: nobody is suggested
    timebank = session.get(TimeBank, request.timebank_id)
    weights = weights or scoring.weights_for(timebank.settings)
    radius = float(timebank.match_radius_km or 10)
    rows, family, category_names = candidate_rows(session, request, today=today, radius_km=radius,
                                                  only_member_id=only_member_id, now=now)
    request_words = scoring.tokens(f"{request.title} {request.description}")
    days_waiting = (now - request.created_at).total_seconds() / 86400
    waiting = scoring.waiting(days_waiting, request.urgency)
    best = best_fit_rows(rows, family)
    if request.min_age is not None:
        best = {mid: row for mid, row in best.items()
                if (lower := scoring.age_lower_bound(row[5])) is not None and lower >= request.min_age}
    if not best:
        return []
    # Every candidate scored at once, on arrays, with the same formulas in the same order as the scalar functions
    # in scoring.py (so the same floats): on a large time bank a request has a thousand candidates or more, and the
    # per-candidate Python (a dict of features, a weighted sum) was most of the request's CPU.
    rows = list(best.values())
    columns = list(zip(*rows))  # one tuple per column: mid, cid, lat, lon, slots, age, balance, stats ×4, has_bio
    mids = np.array(columns[0], dtype=np.int64)
    distance = np.full(len(rows), np.nan)
    if not request.remote and request.latitude is not None:
        located = np.array([lat is not None for lat in columns[2]])
        if located.any():
            distance[located] = scoring.haversine_km_array(
                request.latitude, request.longitude, np.array(columns[2], dtype=float)[located],
                np.array(columns[3], dtype=float)[located])
    keep = ~(distance > radius)  # an unknown distance (NaN) is kept
    if not keep.all():
        rows = [r for r, k in zip(rows, keep) if k]
        columns = list(zip(*rows)) if rows else []
        mids, distance = mids[keep], distance[keep]
    if not rows:
        return []
    completed, proposed, commitments = (np.array(columns[k], dtype=float) for k in (8, 7, 9))
    slots = np.array([s or 0 for s in columns[4]], dtype=np.int64)
    balance = np.array(columns[6], dtype=float)
    features = {
        "category": np.array([FIT_VALUE[family[cid]] for cid in columns[1]]),
        "text": np.zeros(len(rows)),
        "distance": scoring.distance_feature_array(distance, radius, np.full(len(rows), bool(request.remote))),
        "availability": scoring.availability_overlap_array(np.full(len(rows), request.availability or 0,
                                                                   dtype=np.int64), slots),
        "reliability": scoring.reliability(completed, proposed),
        "reciprocity": scoring.reciprocity_array(balance),
        "waiting": np.full(len(rows), waiting),
    }
    load = weights["load"]
    penalty = scoring.marginal_load(commitments, load)
    score = scoring.base_score(features, weights) - penalty
    # Text can only add up to weights["text"]: only members who could still reach the top need their words read.
    kth = np.sort(score)[::-1][min(limit, len(rows)) - 1]
    contenders = np.flatnonzero(score + weights["text"] >= kth)
    parts = member_word_parts(session, mids[contenders].tolist(), request, now,
                              with_bio=[rows[i][0] for i in contenders.tolist() if rows[i][11]])
    shared = {}
    for i, mid in zip(contenders.tolist(), mids[contenders].tolist()):
        features["text"][i], shared[i] = scoring.text_similarity_of_parts(request_words, parts.get(mid, ()))
    base = scoring.base_score({k: v[contenders] for k, v in features.items()}, weights)
    raw = base - penalty[contenders]
    # Scores are shown rounded to 4 places and ranked by the rounded score, then by member id. Python's rounding
    # (as before) only for those near the top: rounding moves a score by at most 0.00005, so one more than 0.0001
    # below the limit-th raw score cannot reach the top after rounding.
    cut = np.sort(raw)[::-1][min(limit, len(raw)) - 1] - 1e-4
    near = np.flatnonzero(raw >= cut)
    final = np.array([round(float(x), 4) for x in raw[near]])
    order = near[np.lexsort((mids[contenders][near], -final))[:limit]]
    final_of = dict(zip(near.tolist(), final.tolist()))
    names = member_names(session, [int(mids[contenders[j]]) for j in order])
    out = []
    # Reasons in words only for the members shown (a few hundred contenders on a large time bank).
    for j in order:
        i = int(contenders[j])
        row = rows[i]
        mid, cid, name = int(mids[i]), row[1], names[int(mids[i])]
        s = {"proposed": int(row[7]), "completed": int(row[8]), "open": int(row[9]), "week": int(row[10])}
        d = None if np.isnan(distance[i]) else float(distance[i])
        member_features = {k: float(v[i]) for k, v in features.items()}
        member_features["load"] = -float(penalty[i]) / load if load else 0.0
        common = (request.availability & int(slots[i])) if request.availability else int(slots[i])
        out.append(Suggestion(
            member_id=mid, display_name=name, score=final_of[int(j)], base_score=float(base[j]),
            features=member_features, distance_km=d, category_id=cid, open_commitments=s["open"],
            extra={"stats": s, "balance": int(balance[i])},
            reasons=scoring.reasons(category_name=category_names.get(cid, "help"), fit=family[cid],
                                    distance_km=d, remote=request.remote, common_slots=common,
                                    asked_this_week=s["week"], open_commitments=s["open"],
                                    balance_minutes=int(balance[i]), completed=s["completed"],
                                    proposed=s["proposed"], shared_words=shared[i])))
    return out


def requests_member_could_help(session, membership: Membership, *, limit: int = 20) -> list[tuple[HelpRequest, Suggestion]]:
    """Open requests where this member passes the hard filters, best first (ties in listing order).

    The set-based candidates of a batch plan (candidates.plan_candidates, tested equal to suggestions()) for this
    one member: a few statements for every open request at once, where asking suggestions() of each request cost
    five statements per request (up to 200). Features are not itemised; the reasons are."""
    from timebank.matching.candidates import plan_candidates  # candidates builds on this module

    now = utcnow()
    timebank = session.get(TimeBank, membership.timebank_id)
    weights = scoring.weights_for(timebank.settings)
    open_requests = [r for r in list_requests(session, membership.timebank_id, status="open", limit=200, now=now)
                     if r.membership_id != membership.id]
    found = plan_candidates(session, open_requests, timebank=timebank, weights=weights, now=now,
                            member_ids=[membership.id])
    at = {int(rid): i for i, rid in enumerate(found.request_id.tolist())}
    s = found.stats.get(membership.id, {"proposed": 0, "completed": 0, "open": 0, "week": 0})
    penalty = scoring.marginal_load(s["open"], weights["load"])
    name = membership.user.display_name if membership.user is not None else ""
    result = []
    for request in open_requests:
        i = at.get(request.id)
        if i is None:
            continue
        base = float(found.base_score[i])
        distance = float(found.distance_km[i])
        result.append((request, Suggestion(
            member_id=membership.id, display_name=name, score=round(base - penalty, 4), base_score=base, features={},
            reasons=found.reasons(request.id, membership.id), open_commitments=s["open"],
            distance_km=None if np.isnan(distance) else distance, category_id=int(found.category_id[i]),
            extra={"stats": s})))
    result.sort(key=lambda pair: -pair[1].score)
    return result[:limit]


def matches_for_member(session, membership_id: int) -> list[Match]:
    return list(session.scalars(select(Match).where(Match.membership_id == membership_id,
                                                    Match.status != "suggested").order_by(Match.id.desc())))


def matches_for_timebank(session, timebank_id: int, *, status: str | None = None, limit: int = 200) -> list[Match]:
    stmt = select(Match).where(Match.timebank_id == timebank_id)
    if status:
        stmt = stmt.where(Match.status == status)
    return list(session.scalars(stmt.order_by(Match.id.desc()).limit(limit)))


def funnel(session, timebank_id: int) -> dict[str, int]:
    rows = session.execute(select(Match.status, func.count()).where(Match.timebank_id == timebank_id)
                           .group_by(Match.status)).all()
    counts = {status: 0 for status in ("suggested", "proposed", "accepted", "declined", "done", "logged")}
    counts.update({status: int(n) for status, n in rows})
    return counts


def blocked_pairs(session, timebank_id: int, *, made_by_user_id: int | None = None) -> list[BlockedPair]:
    """The time bank's blocked pairs, newest first (a member sees only the blocks they made themself)."""
    stmt = select(BlockedPair).where(BlockedPair.timebank_id == timebank_id)
    if made_by_user_id is not None:
        stmt = stmt.where(BlockedPair.blocked_by_user_id == made_by_user_id, BlockedPair.by_broker.is_(False))
    return list(session.scalars(stmt.order_by(BlockedPair.created_at.desc(), BlockedPair.id.desc())))


def member_names(session, membership_ids) -> dict[int, str]:
    ids = set(membership_ids)
    if not ids:
        return {}
    postgres = _postgres(session)
    return dict(session.execute(_member_names_statement(postgres), {"ids": ids_param(ids, postgres)}).all())


@functools.lru_cache(maxsize=2)
def _member_names_statement(postgres: bool):
    return select(Membership.id, User.display_name).join(User, User.id == Membership.user_id).where(
        among_param(Membership.id, postgres))


def skipped_of(session, plan) -> list[dict]:
    """A sent plan's skipped proposals with the request's title and the member's name as they are now (an erased
    member shows as erased; plans sent by earlier versions stored names, which are not used)."""
    entries = list(plan.skipped or [])
    names = member_names(session, [e["member_id"] for e in entries])
    request_ids = sorted({e["request_id"] for e in entries})
    titles = dict(session.execute(select(HelpRequest.id, HelpRequest.title).where(HelpRequest.id.in_(request_ids)))
                  .all()) if request_ids else {}
    return [{"request_id": e["request_id"], "member_id": e["member_id"],
             "request_title": titles.get(e["request_id"], f"request {e['request_id']}"),
             "member_name": names.get(e["member_id"], f"member {e['member_id']}"), "reason": e["reason"]}
            for e in entries]


def active_members(session, timebank_id: int) -> list[tuple[int, str]]:
    """(membership id, name) of the time bank's active members and brokers, by name."""
    return list(session.execute(select(Membership.id, User.display_name).join(User, User.id == Membership.user_id)
                                .where(Membership.timebank_id == timebank_id, Membership.status == "active",
                                       Membership.role.in_(VOLUNTEER_ROLES))
                                .order_by(User.display_name, Membership.id)).all())


def matches_on_requests_of(session, membership_id: int) -> list[Match]:
    """Matches on the requests this member posted (they can see who is coming and log the hours)."""
    return list(session.scalars(select(Match).join(HelpRequest, HelpRequest.id == Match.request_id)
                                .where(HelpRequest.membership_id == membership_id,
                                       Match.status.in_(("accepted", "done", "logged")))
                                .order_by(Match.id.desc())))
