from timebank.errors import Conflict, DomainError, Forbidden


class NotAllowedToSeeReports(Forbidden):
    code = "reports_forbidden"
    title = "Only commissioners, brokers and admins of this time bank can see its impact report"


class NotAllowedToClosePeriods(Forbidden):
    code = "close_period_forbidden"
    title = "Only an admin of this time bank can close a reporting period"


class PeriodAlreadyClosed(Conflict):
    code = "period_already_closed"
    title = "This period is already closed"


class BadPeriod(DomainError):
    code = "bad_period"
    status = 422
    title = "The period is not valid"


class ReportsUnavailable(DomainError):
    """The reports database cancelled or could not run the query (e.g. a replica applying WAL): try later."""

    code = "reports_unavailable"
    status = 503
    title = "Reports are unavailable for a moment"

    def __init__(self, message: str | None = None, **kw):
        super().__init__(message or "The report could not be read just now: the reports database is busy "
                         "catching up. Your data is safe; please try again in a minute.", **kw)
