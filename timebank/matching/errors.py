"""Refusals from matching, with stable codes."""
from timebank.errors import Conflict, DomainError, Forbidden, NotFound


class ListingNotFound(NotFound):
    code = "listing_not_found"
    title = "Listing not found"


class MatchNotFound(NotFound):
    code = "match_not_found"
    title = "Match not found"


class BlockNotFound(NotFound):
    code = "blocked_pair_not_found"
    title = "Blocked pair not found"


class PlanNotFound(NotFound):
    code = "plan_not_found"
    title = "Match plan not found"


class NotAllowed(Forbidden):
    code = "matching_forbidden"


class ListingClosed(Conflict):
    code = "listing_closed"
    title = "This listing is closed"


class MatchWrongState(Conflict):
    code = "match_wrong_state"
    title = "The match is not at that stage"


class PlanAlreadySent(Conflict):
    code = "plan_already_sent"
    title = "This plan was already sent"


class MatchBlocked(DomainError):
    code = "pair_blocked"
    status = 409
    title = "A broker has blocked this pair"
