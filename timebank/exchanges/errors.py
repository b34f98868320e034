"""Exchange refusals, each with a stable code and words a member understands."""
from __future__ import annotations

from timebank.errors import Conflict, DomainError, Forbidden, NotFound


class ExchangeNotFound(NotFound):
    code = "exchange_not_found"
    title = "Exchange not found"


class ExchangeNotPending(Conflict):
    code = "exchange_not_pending"
    title = "This exchange is no longer waiting"


class ExchangeNotDisputed(Conflict):
    code = "exchange_not_disputed"
    title = "This exchange is not disputed"


class ExchangeNotConfirmed(Conflict):
    code = "exchange_not_confirmed"
    title = "This exchange is not confirmed"


class NotAllowed(Forbidden):
    code = "forbidden"


class ExchangeRuleBroken(DomainError):
    """A business rule (self-exchange, dates, maximum, inactive party)."""

    code = "exchange_rule_broken"
    status = 422
    title = "This exchange breaks a time bank rule"


class BelowFloor(DomainError):
    code = "insufficient_balance"
    status = 409
    title = "Not enough hours"


class CsvInvalid(DomainError):
    code = "csv_invalid"
    status = 422
    title = "Some rows of the file are not right"
