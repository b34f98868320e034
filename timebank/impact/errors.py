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
