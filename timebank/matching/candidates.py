"""Candidate pairs for a batch plan, set-based: for every request of the plan at once, the members who pass the
hard filters and the pair's base score, exactly as `queries.suggestions()` finds them one request at a time.

A handful of queries load the time bank's eligible members (location, slots, safety check, age, balance, bio),
their skills and live offers, blocked pairs, existing matches and match statistics; the category fit, the hard
filters and the features are then computed on arrays with numpy. Reasons in words are written only for the pairs
a plan chooses (`Candidates.reasons`). tests/matching/test_matching_candidates.py checks the two paths agree on
random communities: same pairs, same scores, same reasons.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import csr_matrix
from sqlalchemy import func, select

from timebank.community.models import Category, Membership, MemberSkill, TimeBank, User
from timebank.ledger.models import Account
from timebank.matching import scoring
from timebank.matching.models import BlockedPair, HelpRequest, Match, Offer, utcnow
from timebank.matching.queries import (FIT_VALUE, VOLUNTEER_ROLES, OfferDates, among, family_from, is_open,
                                       match_stats, offer_live, offer_overlaps)

_CHUNK = 5000  # ids per IN list
_NO_STATS = {"proposed": 0, "completed": 0, "open": 0, "week": 0}


@dataclass
class Candidates:
    """One row per (request, member) pair passing every hard filter, sorted by request id then member id."""

    request_id: np.ndarray
    member_id: np.ndarray
    base_score: np.ndarray  # the weighted features, before the load penalty (as Suggestion.base_score)
    stats: dict[int, dict[str, int]]  # match statistics of every member in a pair
    category_id: np.ndarray = field(repr=False, default=None)
    distance_km: np.ndarray = field(repr=False, default=None)  # NaN: no distance (remote or no location)
    _context: dict = field(repr=False, default_factory=dict)

    def __len__(self) -> int:
        return len(self.request_id)

    def _index(self, request_id: int, member_id: int) -> int:
        keys = self._context["keys"]
        key = (request_id << 32) | member_id
        i = int(np.searchsorted(keys, key))
        if i >= len(keys) or keys[i] != key:
            raise KeyError((request_id, member_id))
        return i

    def reasons(self, request_id: int, member_id: int) -> list[str]:
        """The pair's reasons in words, as queries.suggestions() gives them."""
        i = self._index(request_id, member_id)
        ctx = self._context
        request = ctx["requests"][request_id]
        cid, distance = int(self.category_id[i]), float(self.distance_km[i])
        distance = None if np.isnan(distance) else distance
        member = ctx["members"][member_id]
        s = self.stats.get(member_id, _NO_STATS)
        words = member["bio_words"].union(*(offered for starts_on, ends_on, expires_at, offered in
                                             ctx["offers_of"].get(member_id, ())
                                             if offer_overlaps(starts_on, ends_on, expires_at, request.starts_on,
                                                               request.ends_on)))
        request_words = ctx["request_words"][request_id]
        slots = member["slots"]
        common = (request.availability & slots) if request.availability else slots
        return scoring.reasons(category_name=ctx["category_names"].get(cid, "help"), fit=ctx["fits"][request_id][cid],
                               distance_km=distance, remote=request.remote, common_slots=common,
                               asked_this_week=s["week"], open_commitments=s["open"],
                               balance_minutes=member["balance"], completed=s["completed"], proposed=s["proposed"],
                               shared_words=request_words & words)


def _chunks(values: list, size: int = _CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _empty() -> Candidates:
    none = np.zeros(0, dtype=np.int64)
    return Candidates(none, none, np.zeros(0), {}, none, np.zeros(0), {"keys": none})


def plan_candidates(session, requests: list[HelpRequest], *, timebank: TimeBank, weights: dict[str, float],
                    now: dt.datetime | None = None, today: dt.date | None = None,
                    member_ids=None) -> Candidates:
    """Every (request, member) pair passing the hard filters, with its base score; closed requests have none.

    `member_ids`: the pairs of those members only (which requests could this member help with? are a plan's
    proposals still eligible?)."""
    only = [] if member_ids is None else [among(session, Membership.id, sorted(set(member_ids)))]
    now = now or utcnow()
    today = today or dt.date.today()
    radius = float(timebank.match_radius_km or 10)
    requests = [r for r in requests if is_open(r, now)]
    if not requests:
        return _empty()

    # --- load: members, categories, skills, offers, blocks, existing matches -------------------------------------
    m = Membership
    member_rows = session.execute(
        select(m.id, m.latitude, m.longitude, m.availability, m.age_band, m.bio,
               func.coalesce(Account.balance_minutes, 0), m.safety_check_level, m.safety_check_expires)
        .join(User, User.id == m.user_id).outerjoin(Account, Account.id == m.account_id)
        .where(m.timebank_id == timebank.id, m.status == "active", m.role.in_(VOLUNTEER_ROLES),
               *only)
        .order_by(m.id)).all()
    if not member_rows:
        return _empty()
    n_members = len(member_rows)
    mids = np.fromiter((r[0] for r in member_rows), dtype=np.int64, count=n_members)
    pos_of = {int(mid): i for i, mid in enumerate(mids)}
    nan = float("nan")
    mlat = np.array([nan if r[1] is None else r[1] for r in member_rows], dtype=float)
    mlon = np.array([nan if r[2] is None else r[2] for r in member_rows], dtype=float)
    mslots = np.array([r[3] or 0 for r in member_rows], dtype=np.int64)
    ages = [scoring.age_lower_bound(r[4]) for r in member_rows]
    mage = np.array([-1 if a is None else a for a in ages], dtype=np.int64)
    mlevel = np.array([scoring.SAFETY_LEVELS.index(r[7]) if r[7] in scoring.SAFETY_LEVELS else -1
                       for r in member_rows], dtype=np.int64)
    mexpires = np.array([-1 if r[8] is None else r[8].toordinal() for r in member_rows], dtype=np.int64)
    members = {int(r[0]): {"slots": r[3] or 0, "balance": int(r[6]), "bio_words": scoring.tokens(r[5] or "")}
               for r in member_rows}

    categories = session.execute(select(Category.id, Category.parent_id, Category.name).where(
        Category.timebank_id.in_({timebank.id} | {r.timebank_id for r in requests}))).all()
    parent_of = {cid: parent for cid, parent, _ in categories}
    children_of: dict[int, list[int]] = {}
    for cid, parent, _ in categories:
        if parent is not None:
            children_of.setdefault(parent, []).append(cid)
    category_names = {cid: name for cid, _, name in categories}
    fits = {r.id: family_from(r.category_id, parent_of.get(r.category_id), children_of.get(r.category_id, ()))
            for r in requests}
    wanted_categories = sorted({cid for family in fits.values() for cid in family})

    skill_pairs = set()
    for chunk in _chunks(wanted_categories):
        skill_pairs.update(session.execute(
            select(MemberSkill.membership_id, MemberSkill.category_id).join(m, m.id == MemberSkill.membership_id)
            .where(m.timebank_id == timebank.id, MemberSkill.category_id.in_(chunk),
                   *only)).all())
    offers = session.execute(
        select(Offer.membership_id, Offer.category_id, Offer.starts_on, Offer.ends_on, Offer.expires_at, Offer.title,
               Offer.description)
        .join(m, m.id == Offer.membership_id)
        .where(m.timebank_id == timebank.id, *offer_live(now),
               *only)).all()
    offers = [o for o in offers if o[0] in pos_of]
    offer_words = [scoring.tokens(f"{o[5]} {o[6]}") for o in offers]
    blocked = np.array(sorted((low << 32) | high for low, high in session.execute(
        select(BlockedPair.low_membership_id, BlockedPair.high_membership_id)
        .where(BlockedPair.timebank_id == timebank.id))), dtype=np.int64)
    taken_keys = []
    for chunk in _chunks([r.id for r in requests]):
        taken_keys += [(rid << 32) | mid for rid, mid in session.execute(
            select(Match.request_id, Match.membership_id).where(among(session, Match.request_id, chunk),
                                                                Match.status != "suggested"))]
    taken = np.array(sorted(taken_keys), dtype=np.int64)

    # --- per request ------------------------------------------------------------------------------------------
    n_req = len(requests)
    rid = np.array([r.id for r in requests], dtype=np.int64)
    rowner = np.array([r.membership_id or -1 for r in requests], dtype=np.int64)
    rslots = np.array([r.availability or 0 for r in requests], dtype=np.int64)
    rremote = np.array([bool(r.remote) for r in requests])
    has_place = np.array([(not r.remote) and r.latitude is not None and r.longitude is not None for r in requests])
    rlat = np.array([r.latitude if has_place[i] else 0.0 for i, r in enumerate(requests)], dtype=float)
    rlon = np.array([r.longitude if has_place[i] else 0.0 for i, r in enumerate(requests)], dtype=float)
    # Only where the request has a place and is not remote: a distance is computed (and bounded by the radius).
    has_distance = np.array([(not r.remote) and r.latitude is not None for r in requests])
    boxes = np.array([scoring.bounding_box(r.latitude, r.longitude, radius) if has_place[i] else (0, 0, 0, 0)
                      for i, r in enumerate(requests)], dtype=float).reshape(n_req, 4)
    rlevel = np.array([scoring.SAFETY_LEVELS.index(r.safety_check_level) if r.safety_check_level
                       in scoring.SAFETY_LEVELS and r.safety_check_level != "none" else -1 for r in requests],
                      dtype=np.int64)
    rmin_age = np.array([-1 if r.min_age is None else r.min_age for r in requests], dtype=np.int64)
    rwaiting = np.array([scoring.waiting((now - r.created_at).total_seconds() / 86400, r.urgency)
                         for r in requests], dtype=float)
    request_words = {r.id: scoring.tokens(f"{r.title} {r.description}") for r in requests}
    rwords_len = np.array([len(request_words[r.id]) for r in requests], dtype=np.int64)

    # Requests are taken a date range at a time: which offers count (live in the range) depends on it. Real
    # requests mostly have dates, so there are hundreds of ranges: what does not depend on the range is done once
    # (the skill pairs sorted by category, the offers' dates as arrays), and per range only the members in its
    # edges are looked at.
    windows: dict[tuple, list[int]] = {}
    for i, r in enumerate(requests):
        windows.setdefault((r.starts_on, r.ends_on), []).append(i)
    skill_source = _pair_source([(pos_of[mid], cid) for mid, cid in skill_pairs if mid in pos_of])
    offer_pos = np.array([pos_of[o[0]] for o in offers], dtype=np.int64)
    offer_cid = np.array([o[1] for o in offers], dtype=np.int64)
    offer_dates = OfferDates([(o[2], o[3], o[4]) for o in offers])
    # Words as columns of one vocabulary for the whole plan: members' bios, offers and requests as sparse rows.
    bio_rows, offer_rows, request_rows = _word_rows([members[int(mid)]["bio_words"] for mid in mids], offer_words,
                                                    [request_words[r.id] for r in requests])
    parts = []
    for window, positions in windows.items():
        starts_on, ends_on = window
        live = offer_dates.overlapping(starts_on, ends_on)
        part = _window_edges(positions, [skill_source, _pair_source(list(zip(offer_pos[live].tolist(),
                                                                              offer_cid[live].tolist())))],
                             fits, requests)
        if part is None:
            continue
        e_r, e_m, e_fit, e_cid = part
        # Hard filters, as candidate_rows() and suggestions() apply them.
        keep = mids[e_m] != rowner[e_r]
        low, high = np.minimum(mids[e_m], rowner[e_r]), np.maximum(mids[e_m], rowner[e_r])
        keep &= ~((rowner[e_r] >= 0) & np.isin((low << 32) | high, blocked))
        keep &= (rslots[e_r] == 0) | ((mslots[e_m] & rslots[e_r]) != 0)
        box = boxes[e_r]
        in_box = ((mlat[e_m] >= box[:, 0]) & (mlat[e_m] <= box[:, 1]) & (mlon[e_m] >= box[:, 2])
                  & (mlon[e_m] <= box[:, 3]))
        keep &= ~has_place[e_r] | in_box
        keep &= (rlevel[e_r] < 0) | ((mlevel[e_m] >= rlevel[e_r]) & (mexpires[e_m] >= today.toordinal()))
        keep &= ~np.isin((rid[e_r] << 32) | mids[e_m], taken)
        keep &= (rmin_age[e_r] < 0) | ((mage[e_m] >= 0) & (mage[e_m] >= rmin_age[e_r]))
        e_r, e_m, e_fit, e_cid = e_r[keep], e_m[keep], e_fit[keep], e_cid[keep]
        with_distance = has_distance[e_r] & ~np.isnan(mlat[e_m])
        distance = np.full(len(e_r), np.nan)
        distance[with_distance] = scoring.haversine_km_array(rlat[e_r][with_distance], rlon[e_r][with_distance],
                                                             mlat[e_m][with_distance], mlon[e_m][with_distance])
        keep = ~(distance > radius)
        e_r, e_m, e_fit, e_cid, distance = e_r[keep], e_m[keep], e_fit[keep], e_cid[keep], distance[keep]
        # Text: the overlap of the request's words with the member's (offers live in this range, and bio), for
        # the members in this range's edges only: their bio rows plus the rows of their live offers.
        in_edges, local_m = np.unique(e_m, return_inverse=True)
        local_m = local_m.reshape(-1)
        live_k = np.flatnonzero(live)
        owns = csr_matrix((np.ones(len(live_k), dtype=np.int32), (offer_pos[live_k], live_k)),
                          shape=(n_members, len(offers)))[in_edges]
        member_rows = bio_rows[in_edges] + owns @ offer_rows
        member_rows.data[:] = 1  # a word in the bio and an offer, or in two offers, counts once
        common = _common_words(request_rows[positions], member_rows, positions, e_r, local_m)
        mlen = np.diff(member_rows.indptr)
        parts.append((e_r, e_m, e_fit, e_cid, distance,
                      scoring.text_similarity_array(common, rwords_len[e_r], mlen[local_m])))
    if not parts:
        return _empty()
    e_r, e_m, e_fit, e_cid, distance, text = (np.concatenate(c) for c in zip(*parts))

    # --- scores: the same features and weights as suggestions() -------------------------------------------------
    used = np.unique(e_m)
    stats = match_stats(session, [int(mids[i]) for i in used], now)
    reliability = np.zeros(n_members)
    reciprocity = np.zeros(n_members)
    for i in used:
        s = stats.get(int(mids[i]), _NO_STATS)
        reliability[i] = scoring.reliability(s["completed"], s["proposed"])
        reciprocity[i] = scoring.reciprocity(members[int(mids[i])]["balance"])
    features = {
        "category": e_fit,
        "distance": scoring.distance_feature_array(distance, radius, rremote[e_r]),
        "availability": scoring.availability_overlap_array(rslots[e_r], mslots[e_m]),
        "reliability": reliability[e_m],
        "reciprocity": reciprocity[e_m],
        "waiting": rwaiting[e_r],
        "text": text,
    }
    base = scoring.base_score(features, weights)
    request_ids, member_ids = rid[e_r], mids[e_m]
    keys = (request_ids << 32) | member_ids
    order = np.argsort(keys, kind="stable")
    return Candidates(
        request_id=request_ids[order], member_id=member_ids[order], base_score=np.asarray(base, dtype=float)[order],
        stats={int(mids[i]): stats.get(int(mids[i]), dict(_NO_STATS)) for i in used},
        category_id=e_cid[order], distance_km=distance[order],
        _context={"keys": keys[order], "requests": {r.id: r for r in requests}, "members": members,
                  "offers_of": _offers_by_member(offers, offer_words), "request_words": request_words,
                  "category_names": category_names,
                  "fits": fits})


def _pair_source(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(member positions, category ids) of (member position, category id) pairs, sorted by category."""
    pm = np.array([p[0] for p in pairs], dtype=np.int64)
    pc = np.array([p[1] for p in pairs], dtype=np.int64)
    order = np.argsort(pc, kind="stable")
    return pm[order], pc[order]


def _window_edges(positions: list[int], sources: list[tuple[np.ndarray, np.ndarray]], fits: dict, requests: list):
    """(request position, member position, fit value, category id) of each request's best category fit per
    member: the highest fit, then the lowest category id (as suggestions() picks). `sources`: (member positions,
    category ids) sorted by category (_pair_source); a pair in two sources counts once."""
    fam_r, fam_c, fam_fit = [], [], []
    for i in positions:
        for cid, fit in fits[requests[i].id].items():
            fam_r.append(i)
            fam_c.append(cid)
            fam_fit.append(FIT_VALUE[fit])
    fam_r, fam_c, fam_fit = np.array(fam_r, dtype=np.int64), np.array(fam_c, dtype=np.int64), np.array(fam_fit)
    pieces = []
    for pm, pc in sources:
        lo, hi = np.searchsorted(pc, fam_c, "left"), np.searchsorted(pc, fam_c, "right")
        counts = hi - lo
        total = int(counts.sum())
        if not total:
            continue
        e_fam = np.repeat(np.arange(len(fam_c)), counts)
        e_pair = np.repeat(lo, counts) + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
        pieces.append((e_fam, pm[e_pair], pc[e_pair]))
    if not pieces:
        return None
    e_fam, e_m, e_cid = (np.concatenate(c) for c in zip(*pieces))
    total = len(e_fam)
    e_r, e_fit = fam_r[e_fam], fam_fit[e_fam]
    # Sort by request, member, best fit first, lowest category id first: one int64 key (faster than lexsort).
    fit_rank = np.unique(-fam_fit, return_inverse=True)[1][e_fam]
    cids, cid_rank = np.unique(e_cid, return_inverse=True)
    n_m = int(e_m.max()) + 1
    key = ((e_r * n_m + e_m) * 3 + fit_rank) * len(cids) + cid_rank
    order = np.argsort(key)
    e_r, e_m, e_fit, e_cid = e_r[order], e_m[order], e_fit[order], e_cid[order]
    first = np.ones(total, dtype=bool)
    first[1:] = (e_r[1:] != e_r[:-1]) | (e_m[1:] != e_m[:-1])
    return e_r[first], e_m[first], e_fit[first], e_cid[first]


def _word_rows(*groups: list[set[str]]) -> list[csr_matrix]:
    """For each group of word sets, one binary sparse row per set; the columns (words) shared by all groups."""
    vocab: dict[str, int] = {}
    built = []
    for word_sets in groups:
        indptr, indices = [0], []
        for words in word_sets:
            indices.extend(vocab.setdefault(w, len(vocab)) for w in words)
            indptr.append(len(indices))
        built.append((len(word_sets), indices, indptr))
    width = max(1, len(vocab))
    return [csr_matrix((np.ones(len(indices), dtype=np.int32), indices, indptr), shape=(n, width))
            for n, indices, indptr in built]


def _offers_by_member(offers: list, offer_words: list[set[str]]) -> dict[int, list[tuple]]:
    """{member id: [(starts_on, ends_on, expires_at, words) of each live offer]}, for reasons in words."""
    out: dict[int, list[tuple]] = {}
    for o, words in zip(offers, offer_words):
        out.setdefault(o[0], []).append((o[2], o[3], o[4], words))
    return out


def _common_words(requests_rows: csr_matrix, member_rows: csr_matrix, positions: list[int], e_r: np.ndarray,
                  e_m: np.ndarray) -> np.ndarray:
    """How many words each pair's request and member share: sparse products, a block of requests at a time.
    `requests_rows`: the range's requests (in `positions` order); `e_m`: rows of `member_rows`."""
    common = np.zeros(len(e_r), dtype=np.int64)
    if not len(e_r):
        return common
    n_m, n_r = member_rows.shape[0], requests_rows.shape[0]
    members_t = member_rows.T.tocsr()
    local = np.searchsorted(np.asarray(positions), e_r)  # positions are increasing, e_r is sorted
    block = max(1, 4_000_000 // max(1, n_m))
    for start in range(0, n_r, block):
        lo, hi = np.searchsorted(local, start), np.searchsorted(local, start + block)
        if lo == hi:
            continue
        product = (requests_rows[start:start + block] @ members_t).toarray()
        common[lo:hi] = product[local[lo:hi] - start, e_m[lo:hi]]
    return common
